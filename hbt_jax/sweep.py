"""Grid sweeps: one `hbt_jax.main` run per point of the product of `--set` lists, then a summary.

  python -m hbt_jax.sweep --config configs/hbt_cpu.py:mlqa_r:hybrid --workdir runs/alpha \
      --set sampler.alpha=0,0.25,0.5,0.75,1 --set seed=0,1,2 [--config.num_steps=50 ...]
      [--print_commands] [--aggregate_only] [--languages hi,vi]

Runs go one after another in WORKDIR/runs/<key=value__...>/; a finished run (results.json written
after a successful exit) is skipped, an interrupted one is rerun in its workdir and resumes from its
checkpoint. `--print_commands` prints one `python -m hbt_jax.main ...` line per run (for a cluster
or pod scheduler) and runs nothing. After the runs, and alone with `--aggregate_only`, every run's
results.json goes into WORKDIR/summary.csv (one row per run), summary.md (mean ± std over the swept
`seed`, per language family / script / resource class) and summary_*.png. A failed run is listed with
its error. `--languages hi,vi` adds a table per language asked for (a low-resource study): its
per-language metrics, and for language-pair metrics (cross) the mean over the pairs where it is the
query language and where it is the pool language. Metric keys are read generically (`DATASET/SETTING/METRIC[/LANG]`), so image–text
results.json files aggregate the same way.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hbt_jax import languages
from hbt_jax.errors import ConfigError

SEED_KEY = "seed"
STATUS = "sweep_status.json"


def parse_sets(sets: list[str]) -> list[tuple[str, list[str]]]:
  grid = []
  for s in sets:
    key, sep, values = s.partition("=")
    vals = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not key.strip() or not vals:
      raise ConfigError(f"--set {s!r}: expected KEY=V1,V2,...")
    if key in [k for k, _ in grid]:
      raise ConfigError(f"--set {key}: given twice")
    grid.append((key.strip(), vals))
  return grid


def grid_points(grid: list[tuple[str, list[str]]]) -> list[dict[str, str]]:
  keys = [k for k, _ in grid]
  return [dict(zip(keys, combo)) for combo in itertools.product(*[v for _, v in grid])]


def run_name(point: dict[str, str]) -> str:
  return "__".join(f"{k}={v}" for k, v in point.items()) or "default"


def command(config: str, workdir: Path, point: dict[str, str], extra: list[str]) -> list[str]:
  return ([sys.executable, "-m", "hbt_jax.main", "--config", config, "--workdir",
           str(workdir / "runs" / run_name(point))] + extra +
          [f"--config.{k}={v}" for k, v in point.items()])


def run_one(cmd: list[str], wd: Path) -> dict:
  """Runs (or resumes) one point; returns its status record (also written to wd/STATUS)."""
  wd.mkdir(parents=True, exist_ok=True)
  t0 = time.time()
  with open(wd / "sweep.log", "a", encoding="utf-8") as log:
    log.write(f"\n$ {shlex.join(cmd)}\n")
    log.flush()
    proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
  status = {"status": "done" if proc.returncode == 0 and (wd / "results.json").exists() else "failed",
            "returncode": proc.returncode, "seconds": round(time.time() - t0, 1),
            "command": shlex.join(cmd)}
  if status["status"] == "failed":
    status["error"] = _last_error(wd / "sweep.log", proc.returncode)
  (wd / STATUS).write_text(json.dumps(status, indent=1))
  return status


def _last_error(log: Path, rc: int) -> str:
  lines = [ln.strip() for ln in log.read_text(encoding="utf-8", errors="replace").splitlines()
           if ln.strip()]
  errs = [ln for ln in lines if "Error" in ln or "error" in ln]
  return (errs[-1] if errs else lines[-1] if lines else f"exit code {rc}")[:500]


def is_done(wd: Path, cmd: list[str]) -> bool:
  """Finished with this very command; a finished run of another command (say a changed override)
  is an error rather than a silently stale row in the summary."""
  st = wd / STATUS
  if not (st.exists() and (wd / "results.json").exists()):
    return False
  rec = json.loads(st.read_text())
  if rec.get("status") != "done":
    return False
  before = shlex.split(rec["command"])[1:]  # the interpreter's path may differ between machines
  if before != cmd[1:]:
    raise ConfigError(f"{wd}: finished with another command: {shlex.join(before)} ; now: "
                      f"{shlex.join(cmd[1:])} ; use a new --workdir for a changed sweep")
  return True


# ----------------------------------------------------------------------------- aggregation
def collect(workdir: Path, points: list[dict[str, str]]) -> list[dict]:
  rows = []
  for p in points:
    wd = workdir / "runs" / run_name(p)
    st = json.loads((wd / STATUS).read_text()) if (wd / STATUS).exists() else {"status": "pending"}
    res = json.loads((wd / "results.json").read_text()) if st["status"] == "done" else {}
    rows.append({"point": p, "run": run_name(p), "status": st["status"],
                 "error": st.get("error", ""), "metrics": {k: v for k, v in res.items() if k != "step"}})
  return rows


def headline_keys(metric_keys) -> list[str]:
  """DATASET/SETTING/METRIC keys (the macro averages), e.g. xquad_r/multi/map or xtd10/t2i/r@1."""
  return sorted(k for k in metric_keys if k.count("/") == 2)


def _is_lang(code: str) -> bool:
  return languages.ALIASES.get(code, code) in languages.LANGUAGES


def per_language(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
  """{DATASET/SETTING/METRIC: {lang: value}} from the per-language keys, which come as
  DATASET/SETTING/METRIC/LANG (xquad_r/mono/map/de) or DATASET/SETTING/LANG/METRIC
  (xquad_r/mono/de/recall@1)."""
  out: dict[str, dict[str, float]] = {}
  for k, v in metrics.items():
    parts = k.split("/")
    if len(parts) != 4:
      continue
    if _is_lang(parts[3]):
      base, lang = "/".join(parts[:3]), parts[3]
    elif _is_lang(parts[2]):
      base, lang = "/".join(parts[:2] + parts[3:]), parts[2]
    else:
      continue
    out.setdefault(base, {})[lang] = v
  return out


def group_metrics(metrics: dict[str, float]) -> dict[str, float]:
  """Macro averages per language family / script / resource class, as extra flat keys:
  DATASET/SETTING/METRIC/by_family/Indo-European."""
  out = {}
  for base, per_lang in per_language(metrics).items():
    for by in languages.GROUPINGS:
      for g, (mean, _) in languages.group_means(per_lang, by).items():
        out[f"{base}/by_{by}/{g}"] = mean
  return out


def pair_metrics(metrics: dict[str, float], langs: list[str]) -> dict[str, float]:
  """For each language L asked for, the mean of a language-pair metric (DATASET/SETTING/METRIC/Q-P,
  e.g. xquad_r/cross/map/hi-en) over the pairs with L as the query language (…/query_lang/L) and
  over those with L as the pool language (…/pool_lang/L)."""
  sums: dict[str, list[float]] = {}
  for k, v in metrics.items():
    parts = k.split("/")
    if len(parts) != 4 or parts[3].count("-") != 1:
      continue
    q, c = parts[3].split("-")
    if not (_is_lang(q) and _is_lang(c)):
      continue
    base = "/".join(parts[:3])
    for side, lang in (("query_lang", q), ("pool_lang", c)):
      if lang in langs:
        sums.setdefault(f"{base}/{side}/{lang}", []).append(v)
  return {k: float(np.mean(v)) for k, v in sums.items()}


def language_keys(metric_keys, langs: list[str]) -> list[str]:
  """The summary's per-language rows for `langs`: DATASET/SETTING/METRIC/L and the pair means."""
  out = []
  for k in sorted(metric_keys):
    parts = k.split("/")
    if len(parts) == 4 and (parts[3] in langs or parts[2] in langs):
      out.append(k)
    elif len(parts) == 5 and parts[3] in ("query_lang", "pool_lang") and parts[4] in langs:
      out.append(k)
  return out


def _mean_std(values: list[float]) -> tuple[float, float, int]:
  a = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
  if a.size == 0:
    return float("nan"), float("nan"), 0
  return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0, int(a.size)


def aggregate(workdir: Path, grid: list[tuple[str, list[str]]], langs: list[str] = ()) -> dict:
  points = grid_points(grid)
  rows = collect(workdir, points)
  for r in rows:
    r["metrics"].update(group_metrics(r["metrics"]))
    r["metrics"].update(pair_metrics(r["metrics"], list(langs)))
  keys = [k for k, _ in grid]
  metric_keys = sorted({k for r in rows for k in r["metrics"]})
  with open(workdir / "summary.csv", "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(["run", *keys, "status", "error", *metric_keys])
    for r in rows:
      w.writerow([r["run"], *[r["point"][k] for k in keys], r["status"], r["error"],
                  *[r["metrics"].get(m, "") for m in metric_keys]])
  group_keys = [k for k in keys if k != SEED_KEY]
  groups: dict[tuple, list[dict]] = {}
  for r in rows:
    groups.setdefault(tuple(r["point"][k] for k in group_keys), []).append(r)
  heads = headline_keys(metric_keys)
  summary = {g: {m: _mean_std([r["metrics"].get(m) for r in rs if r["status"] == "done"])
                 for m in metric_keys} for g, rs in groups.items()}
  (workdir / "summary.md").write_text(_markdown(workdir, grid, rows, group_keys, summary, heads,
                                                metric_keys, list(langs)), encoding="utf-8")
  _figures(workdir, grid, group_keys, summary, heads)
  return {"rows": rows, "summary": summary, "headline": heads}


def _cell(ms: tuple[float, float, int]) -> str:
  mean, std, n = ms
  if n == 0:
    return "–"
  digits = 1 if abs(mean) >= 100 else 4
  return f"{mean:.{digits}f} ± {std:.{digits}f} ({n})"


def _markdown(workdir, grid, rows, group_keys, summary, heads, metric_keys, langs) -> str:
  seeds = dict(grid).get(SEED_KEY, [])
  done = sum(r["status"] == "done" for r in rows)
  lines = [f"# Sweep summary: {workdir}", "",
           f"{len(rows)} runs ({done} done); grid: " +
           ", ".join(f"`{k}` ∈ {{{', '.join(v)}}}" for k, v in grid) + ".",
           f"Cells: mean ± standard deviation over {len(seeds)} seeds (n runs in brackets)." if seeds
           else "Cells: one run per point (no `seed` in the grid, so no spread).", ""]
  if heads:
    lines += ["| " + " | ".join(group_keys or ["run"]) + " | " + " | ".join(heads) + " |",
              "|" + "---|" * (max(len(group_keys), 1) + len(heads))]
    for g, s in summary.items():
      lines.append("| " + " | ".join(g or ("all",)) + " | " + " | ".join(_cell(s[m]) for m in heads)
                   + " |")
    lines.append("")
  for by in languages.GROUPINGS:
    gkeys = [m for m in metric_keys if f"/by_{by}/" in m]
    if not gkeys:
      continue
    lines += [f"## Per {by} (macro average over the group's languages)", ""]
    bases = sorted({m.split(f"/by_{by}/")[0] for m in gkeys})
    for base in bases:
      labels = sorted({m.split(f"/by_{by}/")[1] for m in gkeys if m.startswith(base + "/")})
      members = _members(rows, base, by)
      lines += [f"**{base}**", "",
                "| " + " | ".join(group_keys or ["run"]) + " | " +
                " | ".join(f"{lab} ({', '.join(members.get(lab, []))})" for lab in labels) + " |",
                "|" + "---|" * (max(len(group_keys), 1) + len(labels))]
      for g, s in summary.items():
        lines.append("| " + " | ".join(g or ("all",)) + " | " +
                     " | ".join(_cell(s[f"{base}/by_{by}/{lab}"]) for lab in labels) + " |")
      lines.append("")
  for lang in langs:
    keys = language_keys(metric_keys, [lang])
    if not keys:
      raise ConfigError(f"--languages: no per-language metric for {lang!r} in any run of {workdir}")
    lines += [f"## {languages.LANGUAGES[languages.ALIASES.get(lang, lang)].name} ({lang})", "",
              f"| metric \\ {', '.join(group_keys) or 'run'} | " +
              " | ".join(", ".join(g) or "all" for g in summary) + " |",
              "|" + "---|" * (1 + len(summary))]
    lines += ["| " + k + " | " + " | ".join(_cell(s[k]) for s in summary.values()) + " |"
              for k in keys]
    lines.append("")
  failed = [r for r in rows if r["status"] != "done"]
  if failed:
    lines += ["## Runs not done", "", "| run | status | error |", "|---|---|---|"]
    lines += [f"| {r['run']} | {r['status']} | {r['error'].replace('|', '/')} |" for r in failed]
    lines.append("")
  lines += ["Every run's metrics: `summary.csv`; figures: `summary_*.png`."]
  return "\n".join(lines) + "\n"


def _members(rows, base, by) -> dict[str, list[str]]:
  for r in rows:
    per_lang = per_language(r["metrics"]).get(base)
    if per_lang:
      return languages.groups(per_lang, by)
  return {}


def _figures(workdir: Path, grid, group_keys, summary, heads) -> None:
  """Each headline metric against the first swept (non-seed) key, one line per value of the other
  keys, error bars = std over seeds."""
  if not group_keys or not heads:
    return
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  x_key, rest = group_keys[0], group_keys[1:]
  x_vals = dict(grid)[x_key]
  numeric = all(_is_number(v) for v in x_vals)
  for m in heads:
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    series: dict[tuple, list] = {}
    for g, s in summary.items():
      series.setdefault(g[1:], []).append((g[0], s[m]))
    for label, pts in series.items():
      pts = sorted(pts, key=lambda p: x_vals.index(p[0]))
      xs = [float(p[0]) if numeric else x_vals.index(p[0]) for p in pts]
      ax.errorbar(xs, [p[1][0] for p in pts], yerr=[p[1][1] for p in pts], marker="o", capsize=3,
                  label=", ".join(f"{k}={v}" for k, v in zip(rest, label)) or None)
    if not numeric:
      ax.set_xticks(range(len(x_vals)), x_vals)
    ax.set_xlabel(x_key)
    ax.set_ylabel(m)
    if rest:
      ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(workdir / f"summary_{m.replace('/', '_').replace('@', 'at')}.png", dpi=110)
    plt.close(fig)


def _is_number(v: str) -> bool:
  try:
    float(v)
    return True
  except ValueError:
    return False


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(prog="python -m hbt_jax.sweep", description=__doc__.split("\n")[0])
  ap.add_argument("--config", required=True, help="configs/NAME.py[:arg], as for hbt_jax.main")
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2",
                  help="a swept config key and its values; the grid is the product of all --set")
  ap.add_argument("--print_commands", action="store_true", help="print one command per run, run none")
  ap.add_argument("--aggregate_only", action="store_true", help="summarize finished runs, run none")
  ap.add_argument("--languages", default="", metavar="L1,L2",
                  help="add a per-language table for these languages to summary.md")
  args, extra = ap.parse_known_args(argv)
  extra = [a for a in extra if a != "--traceback"]  # read in __main__
  bad = [a for a in extra if not a.startswith("--config.")]
  if bad:
    ap.error(f"unknown arguments {bad} (overrides for every run are --config.KEY=VALUE)")
  grid = parse_sets(args.set)
  workdir = Path(args.workdir)
  points = grid_points(grid)
  if args.print_commands:
    for p in points:
      print(shlex.join(command(args.config, workdir, p, extra)))
    return 0
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "sweep.json").write_text(json.dumps({"config": args.config, "grid": grid,
                                                  "overrides": extra}, indent=1))
  failed = 0
  if not args.aggregate_only:
    for i, p in enumerate(points):
      wd = workdir / "runs" / run_name(p)
      cmd = command(args.config, workdir, p, extra)
      if is_done(wd, cmd):
        print(f"[{i + 1}/{len(points)}] {run_name(p)}: done before, skipped", flush=True)
        continue
      st = run_one(cmd, wd)
      failed += st["status"] != "done"
      print(f"[{i + 1}/{len(points)}] {run_name(p)}: {st['status']} ({st['seconds']:.0f} s)"
            + (f": {st['error']}" if st["status"] != "done" else ""), flush=True)
  langs = [x for x in args.languages.split(",") if x]
  unknown = [x for x in langs if not _is_lang(x)]
  if unknown:
    ap.error(f"--languages: {unknown} not in hbt_jax/languages.py")
  aggregate(workdir, grid, langs)
  print(f"summary: {workdir / 'summary.md'}, {workdir / 'summary.csv'}")
  return 1 if failed else 0


if __name__ == "__main__":
  try:
    sys.exit(main())
  except ConfigError as e:  # a user's mistake: one line, status 2 (as hbt_jax.main; cli.py)
    if "--traceback" in sys.argv:
      raise
    sys.stderr.write(f"error: {e}\n")
    sys.exit(2)
