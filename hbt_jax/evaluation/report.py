"""Evaluation outputs in the workdir: results.json (flat keys), report.md, and the figures."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_results(workdir: str, results: dict[str, float], step: int) -> Path:
  path = Path(workdir) / "results.json"
  old = json.loads(path.read_text()) if path.exists() else {}
  old.update({k: v for k, v in results.items()})
  old["step"] = int(step)
  path.write_text(json.dumps(old, indent=1, sort_keys=True))
  with open(Path(workdir) / "results_history.jsonl", "a", encoding="utf-8") as f:
    f.write(json.dumps({"step": int(step), **results}) + "\n")
  return path


def heatmap(matrix: np.ndarray, langs: list[str], title: str, path: Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(1 + 0.55 * len(langs), 0.8 + 0.5 * len(langs)))
  im = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
  ax.set_xticks(range(len(langs)), langs)
  ax.set_yticks(range(len(langs)), langs)
  ax.set_xlabel("candidate language")
  ax.set_ylabel("query language")
  for i in range(len(langs)):
    for j in range(len(langs)):
      if np.isfinite(matrix[i, j]):
        ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                color="white" if matrix[i, j] < 0.6 else "black")
  ax.set_title(title)
  fig.colorbar(im, ax=ax, fraction=0.046)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def bars(values: dict[str, float], title: str, ylabel: str, path: Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(1.5 + 0.5 * len(values), 3))
  ax.bar(list(values), list(values.values()), color="tab:blue")
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def lareqa_markdown(name: str, res: dict[str, float], tables: dict, recall_ks, step: int,
                    timing: dict[str, float]) -> str:
  langs = tables["langs"]
  m = tables["map_matrix"]
  lines = [f"## {name} (step {step})", "",
           "| setting | mAP | " + " | ".join(f"R@{k}" for k in recall_ks) + " | rank distance |",
           "|---|---|" + "---|" * len(recall_ks) + "---|"]
  for s in ("mono", "cross", "multi"):
    rd = f"{res[f'{name}/multi/rank_distance']:.1f}" if s == "multi" else ""
    lines.append(f"| {s} | {res.get(f'{name}/{s}/map', float('nan')):.4f} | " +
                 " | ".join(f"{res.get(f'{name}/{s}/recall@{k}', float('nan')):.4f}"
                            for k in recall_ks) + f" | {rd} |")
  lines += ["", "Per language: mono mAP, multi mAP, multi rank distance; questions / candidates.", "",
            "| lang | mono mAP | multi mAP | rank distance | questions | candidates |",
            "|---|---|---|---|---|---|"]
  for i, l in enumerate(langs):
    st = tables["stats"][l]
    lines.append(f"| {l} | {m[i, i]:.4f} | {res[f'{name}/multi/map/{l}']:.4f} | "
                 f"{res[f'{name}/multi/rank_distance/{l}']:.1f} | {st['questions']} | "
                 f"{st['candidates']} |")
  lines += ["", "mAP, query language (rows) x candidate language (columns):", "",
            "| q \\ c | " + " | ".join(langs) + " |", "|---|" + "---|" * len(langs)]
  for i, l in enumerate(langs):
    lines.append(f"| {l} | " + " | ".join("" if not np.isfinite(v) else f"{v:.3f}" for v in m[i]) + " |")
  lines += ["", "Wall time: " + ", ".join(f"{k} {v:.1f} s" for k, v in timing.items()), ""]
  return "\n".join(lines)


def write_lareqa(workdir: str, name: str, res: dict[str, float], tables: dict, recall_ks, step: int,
                 timing: dict[str, float]) -> None:
  out = Path(workdir)
  out.mkdir(parents=True, exist_ok=True)
  langs = tables["langs"]
  heatmap(tables["map_matrix"], langs, f"{name} mAP (step {step})", out / f"{name}_map_matrix.png")
  bars({l: res[f"{name}/multi/rank_distance/{l}"] for l in langs},
       f"{name} language bias (multi pool)", "mean max-min rank", out / f"{name}_rank_distance.png")
  _write_section(out, name, lareqa_markdown(name, res, tables, recall_ks, step, timing))


def _write_section(out: Path, name: str, section: str) -> None:
  """report_NAME.md, and report.md = every evaluator's latest section."""
  (out / f"report_{name}.md").write_text(section)
  parts = sorted(out.glob("report_*.md"))
  (out / "report.md").write_text("# hbt_jax evaluation report\n\n" +
                                 "\n".join(p.read_text() for p in parts))


def image_text_markdown(name: str, res: dict[str, float], langs: list[str], ks, step: int,
                        timing: dict[str, float]) -> str:
  """`res` has the unprefixed keys of image_text_eval.evaluate."""
  f = lambda k: f"{res[k]:.4f}" if k in res else ""
  rk = [f"r@{k}" for k in ks]
  lines = [f"## {name} (step {step})", "",
           f"Mean recall {f('mean_recall')}; multilingual caption pool: image->text "
           + ", ".join(f"R@{k} {f(f'multi/i2t/r@{k}')}" for k in ks)
           + f", mAP@100 {f('multi/i2t/map@100')}, language bias {res.get('multi/language_bias', float('nan')):.1f}"
           f" (mean max-min rank of an image's best caption per language); caption->caption mAP "
           f"{f('c2c/map')}, R@1 {f('c2c/r@1')}.", "",
           "| lang | " + " | ".join(f"t2i R@{k}" for k in ks) + " | " +
           " | ".join(f"i2t R@{k}" for k in ks) + " | t2i mAP@100 | i2t mAP@100 | mean recall |",
           "|---|" + "---|" * (2 * len(ks) + 3)]
  for l in langs + [""]:
    sfx = f"/{l}" if l else ""
    lines.append(f"| {l or '**mean**'} | " + " | ".join(f(f"t2i/{k}{sfx}") for k in rk) + " | " +
                 " | ".join(f(f"i2t/{k}{sfx}") for k in rk) +
                 f" | {f(f't2i/map@100{sfx}')} | {f(f'i2t/map@100{sfx}')} | {f(f'mean_recall{sfx}')} |")
  lines += ["", "Caption->caption mAP, query language (rows) x pool language (columns):", "",
            "| q \\ c | " + " | ".join(langs) + " |", "|---|" + "---|" * len(langs)]
  for x in langs:
    lines.append(f"| {x} | " + " | ".join(f(f"c2c/map/{x}-{y}") for y in langs) + " |")
  lines += ["", "Wall time: " + ", ".join(f"{k} {v:.1f} s" for k, v in timing.items()), ""]
  return "\n".join(lines)


def write_image_text(workdir: str, name: str, res: dict[str, float], langs: list[str], ks, step: int,
                     timing: dict[str, float]) -> None:
  out = Path(workdir)
  out.mkdir(parents=True, exist_ok=True)
  c2c = np.array([[res.get(f"c2c/map/{x}-{y}", np.nan) for y in langs] for x in langs])
  heatmap(c2c, langs, f"{name} caption->caption mAP (step {step})", out / f"{name}_c2c_map.png")
  bars({l: res[f"mean_recall/{l}"] for l in langs if f"mean_recall/{l}" in res},
       f"{name} mean recall per language", "mean of t2i/i2t R@1,5,10", out / f"{name}_mean_recall.png")
  _write_section(out, name, image_text_markdown(name, res, langs, ks, step, timing))
