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
  section = lareqa_markdown(name, res, tables, recall_ks, step, timing)
  (out / f"report_{name}.md").write_text(section)
  # report.md = all evaluators' latest sections.
  parts = sorted(out.glob("report_*.md"))
  (out / "report.md").write_text("# hbt_jax evaluation report\n\n" +
                                 "\n".join(p.read_text() for p in parts))
