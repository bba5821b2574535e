"""Runs the CPU HBT experiment grid (configs/hbt_cpu.py) and writes docs/experiment_cpu.md.

  python scripts/run_hbt_experiment.py [--encoder me5] [--out runs/exp] [--only mlqa_r] [--variants hybrid,xy]

Each run is `python -m hbt_jax.main --config configs/hbt_cpu.py:TRAIN:VARIANT[:me5] --workdir OUT/...`;
`--encoder me5` (multilingual-e5-small) writes docs/experiment_cpu_me5.md and exp_me5_* figures;
finished runs (results.json present) are not repeated, so the script can be rerun after a stop.
"""
import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ["zeroshot", "xx_mono", "xx_mixed", "xy", "hybrid"]
OTHER = {"mlqa_r": "xquad_r", "xquad_r": "mlqa_r"}
# Elmahdy et al. 2024, Table 1 (XLM-R, XQuAD-R mAP) - for the orderings, not the magnitudes.
PAPER_XQUAD_XLMR = {"xx_mono": (0.792, 0.674, 0.547, 410), "xy": (0.755, 0.700, 0.593, 295),
                    "hybrid": (0.798, 0.705, 0.593, 287)}


def run(train, variant, out, suffix):
  wd = out / f"{train}_{variant}"
  if (wd / "results.json").exists():
    return wd, None
  t0 = time.time()
  cmd = [sys.executable, "-m", "hbt_jax.main", "--config", f"configs/hbt_cpu.py:{train}:{variant}{suffix}",
         "--workdir", str(wd)]
  with open(out / f"{train}_{variant}.log", "w") as log:
    subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=True)
  return wd, time.time() - t0


def table(out, train, variants):
  ev = OTHER[train]
  rows = [f"### Train {train}, evaluate {ev} (full, {'11' if ev == 'xquad_r' else '7'} languages)", "",
          "| variant | mono mAP | cross mAP | multi mAP | mono R@1 | cross R@1 | multi R@1 | multi R@10 "
          "| rank distance | wall s |",
          "|---|---|---|---|---|---|---|---|---|---|"]
  for v in variants:
    wd = out / f"{train}_{v}"
    if not (wd / "results.json").exists():
      continue
    r = json.loads((wd / "results.json").read_text())
    wall = json.loads((wd / "wall.json").read_text())["seconds"] if (wd / "wall.json").exists() else float("nan")
    rows.append(f"| {v} | {r[f'{ev}/mono/map']:.4f} | {r[f'{ev}/cross/map']:.4f} | "
                f"{r[f'{ev}/multi/map']:.4f} | {r[f'{ev}/mono/recall@1']:.4f} | "
                f"{r[f'{ev}/cross/recall@1']:.4f} | {r[f'{ev}/multi/recall@1']:.4f} | "
                f"{r[f'{ev}/multi/recall@10']:.4f} | {r[f'{ev}/multi/rank_distance']:.1f} | {wall:.0f} |")
  return "\n".join(rows) + "\n"


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--encoder", default="minilm", choices=["minilm", "me5"])
  ap.add_argument("--out", default="")
  ap.add_argument("--only", default="mlqa_r,xquad_r")
  ap.add_argument("--variants", default=",".join(VARIANTS))
  ap.add_argument("--tables_only", action="store_true",
                  help="run nothing; rewrite the docs from the runs that have finished")
  args = ap.parse_args()
  suffix = "" if args.encoder == "minilm" else ":" + args.encoder
  tag = "" if args.encoder == "minilm" else "_" + args.encoder
  out = ROOT / (args.out or f"runs/exp{tag}")
  out.mkdir(parents=True, exist_ok=True)
  variants = args.variants.split(",")
  for train in args.only.split(","):
    for v in variants if not args.tables_only else []:
      wd, secs = run(train, v, out, suffix)
      if secs is not None:
        (wd / "wall.json").write_text(json.dumps({"seconds": secs}))
      print(f"{train} {v}: done ({secs or 0:.0f} s)", flush=True)
  figs = ROOT / "docs" / "figures"
  figs.mkdir(parents=True, exist_ok=True)
  for train in args.only.split(","):
    for v in variants:
      for png in (out / f"{train}_{v}").glob("*.png"):
        shutil.copy(png, figs / f"exp{tag}_{train}_{v}_{png.name}")
      for rep in (out / f"{train}_{v}").glob("report_*.md"):  # the per-language tables
        reports = ROOT / "docs" / f"experiment_reports{tag}"
        reports.mkdir(exist_ok=True)
        shutil.copy(rep, reports / f"{train}_{v}.md")
  text = "\n".join(table(out, t, variants) for t in args.only.split(","))
  (ROOT / "docs" / f"experiment_cpu{tag}.md").write_text(
      "<!-- written by scripts/run_hbt_experiment.py -->\n" + text)
  print(text)


if __name__ == "__main__":
  main()
