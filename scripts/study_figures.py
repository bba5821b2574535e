"""The figures of docs/research.md §6 (image–text, synthetic world) and §7 (text, the paper side by
side), drawn from the committed per-run data in docs/study/ with the same selection and averaging as
the tables (scripts/doc_tables.py).

  python scripts/study_figures.py [--out docs/figures] [--only NAME ...]

Every point is the mean over seeds, its error bar one standard deviation (n - 1); the caption of each
figure names its source files and the code's commit. A figure whose study has no data yet is skipped
with a line saying so.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import doc_tables as dt  # noqa: E402

ROOT = dt.ROOT


def _point(study: str, where: dict, col) -> tuple[float, float]:
  mean, std, _ = dt._mean_std(dt.values(study, where, col))
  return mean, std


def _source(studies) -> str:
  return "; ".join(f"docs/study/{s} (code {dt._read(s)[1]['commit']})" for s in dict.fromkeys(studies))


def _save(fig, title: str, studies, path: pathlib.Path, world: str = "synthetic scene world") -> pathlib.Path:
  """Title, the source caption (data and code commit), and the PNG."""
  fig.suptitle(title)
  fig.text(0.01, 0.01, f"{world}; mean ± std over seeds; " + _source(studies), fontsize=7, color="0.3")
  fig.tight_layout(rect=(0, 0.04, 1, 1))
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def alpha(out: pathlib.Path) -> pathlib.Path:
  """t2i mAP@100, c2c mAP and t2i relative to the trained languages, against α, per language group."""
  study = "it_alpha_heldout"
  xs = [float(v) for v, _ in dt.ALPHAS]
  panels = [("t2i, ", "t2i mAP@100", "text→image, per language group"),
            ("c2c, ", "caption→caption mAP", "caption→caption, per pair group"),
            ("t2i ", "t2i mAP@100 of the group ÷ trained", "text→image relative to trained (α > 0)")]
  fig, axes = plt.subplots(1, len(panels), figsize=(15, 4.2))
  for ax, (prefix, ylabel, title) in zip(axes, panels):
    for header, cols in dt.GROUPS:
      if not header.startswith(prefix):
        continue
      alphas = dt.ALPHAS[1:] if isinstance(cols, dt.Ratio) else dt.ALPHAS  # α 0: t2i at chance
      pts = [_point(study, {"sampler.alpha": v}, cols) for v, _ in alphas]
      ax.errorbar([float(v) for v, _ in alphas], [m for m, _ in pts], yerr=[s for _, s in pts],
                  marker="o", capsize=3, label=header[len(prefix):])
    ax.set_xlabel("α (0 = tt_xy only, 1 = it_mono only)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.set_xticks(xs)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  return _save(fig, "α: trained, low-resource (hi tr, 15 % of images) and held-out (ru ja) caption "
               "languages", [study], out / "it_alpha_heldout.png")


def scale(out: pathlib.Path) -> pathlib.Path:
  """Data scale: hybrid against the English-only CLIP-style baseline, mono (t2i) and cross (c2c)."""
  series = {"hybrid (α 0.5)": [r for r in dt.SCALE if r[0].startswith("hybrid")],
            "English-only (it_mono on en)": [r for r in dt.SCALE if r[0].startswith("English")]}
  frac = {"1/8": 0.125, "1/4": 0.25, "1/2": 0.5, "1": 1.0}
  panels = [("t2i mAP@100, en", "English text→image mAP@100"),
            ("t2i mAP@100, other 8", "text→image mAP@100, the 8 other languages"),
            ("c2c mAP", "caption→caption mAP (cross-lingual)")]
  cols = dict(dt.SCALE_COLUMNS)
  fig, axes = plt.subplots(1, len(panels), figsize=(13, 4))
  studies = []
  for ax, (header, title) in zip(axes, panels):
    for name, rows in series.items():
      xs, ms, ss = [], [], []
      for label, study, where in rows:
        m, s = _point(study, where, cols[header])
        xs.append(frac[label.rsplit(", ", 1)[1]])
        ms.append(m)
        ss.append(s)
        studies.append(study)
      ax.errorbar(xs, ms, yerr=ss, marker="o", capsize=3, label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(frac.values()), list(frac))
    ax.set_xlabel("fraction of the 600 training images (nested)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  return _save(fig, "Data scale at 60 steps of batch 32: hybrid against an English-only CLIP-style "
               "baseline", studies, out / "it_scale.png")


def composition(out: pathlib.Path) -> pathlib.Path:
  """Batch composition against t2i mAP@100 per language family and per script (grouped bars)."""
  fig, axes = plt.subplots(1, 2, figsize=(13, 4))
  for ax, (groups, kind) in zip(axes, ((dt.FAMILIES, "by_family"), (dt.SCRIPTS, "by_script"))):
    width = 0.8 / len(dt.COMPOSITION)
    for i, (label, study, where) in enumerate(dt.COMPOSITION):
      pts = [_point(study, where, f"{dt.IT}/t2i/map@100/{kind}/{g}") for _, g in groups]
      ax.bar([j + i * width for j in range(len(groups))], [m for m, _ in pts], width,
             yerr=[s for _, s in pts], capsize=2, label=label)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(groups))], [h for h, _ in groups],
                  fontsize=7)
    ax.set_ylabel("t2i mAP@100")
    ax.set_title("per language family" if kind == "by_family" else "per script")
    ax.grid(alpha=0.3, axis="y")
  axes[0].legend(fontsize=8)
  return _save(fig, "Batch composition: text→image mAP@100 per language family and script",
               ["it_composition"], out / "it_composition.png")


# The paper's Table 1, XLM-R on XQuAD-R (research.md §7 quotes the same rows): α of the batch type
PAPER_XLMR_XQUAD_R = {1.0: (.792, .674, .547, 410), 0.0: (.755, .700, .593, 295), 0.5: (.798, .705, .593, 287)}


def text_full(out: pathlib.Path) -> pathlib.Path:
  """Ours (e5-small, 60 steps, full XQuAD-R with paragraph context) and the paper's XLM-R rows, each
  relative to its own X-Y row (another encoder and budget: their levels differ, their shapes compare):
  Δ mAP, and the rank distance as a ratio. Our error bars: the std over seeds of each row."""
  study = "text_full"
  cols = dict(dt.TABLES["text_full"].columns)
  panels = ["mono mAP", "cross mAP", "multi mAP", "rank distance"]
  alphas = [0.0, 0.5, 1.0]
  fig, axes = plt.subplots(1, len(panels), figsize=(15, 4))
  for k, (ax, header) in enumerate(zip(axes, panels)):
    ratio = header == "rank distance"
    ours = {float(w["sampler.alpha"]): _point(study, w, cols[header]) for _, _, w in dt.TEXT_FULL_ROWS}
    base, pbase = ours[0.0][0], PAPER_XLMR_XQUAD_R[0.0][k]
    rel = (lambda v, b: v / b) if ratio else (lambda v, b: v - b)
    ax.errorbar(alphas, [rel(ours[a][0], base) for a in alphas],
                yerr=[ours[a][1] / (base if ratio else 1) for a in alphas], marker="o", capsize=3,
                label="ours: e5-small, 60 steps")
    ax.plot(alphas, [rel(PAPER_XLMR_XQUAD_R[a][k], pbase) for a in alphas], marker="s", mfc="none",
            ls="--", label="paper: XLM-R (Table 1)")
    ax.axhline(1 if ratio else 0, color="0.5", lw=0.8)
    ax.set_xticks(alphas, ["X-Y\n(α 0)", "hybrid\n(α 0.5)", "X-X\n(α 1)"])
    ax.set_ylabel("÷ X-Y's" if ratio else "− X-Y's")
    ax.set_title(f"{header}, relative to X-Y", fontsize=10)
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  return _save(fig, "XQuAD-R, candidates with their paragraph: the batch types relative to X-Y, ours and "
               "the paper's", [study], out / "text_full.png", world="real text (MLQA-R → XQuAD-R)")


FIGURES = {"it_composition": (composition, ["it_composition"]),
           "it_alpha_heldout": (alpha, ["it_alpha_heldout"]),
           "it_scale": (scale, ["it_scale_hybrid", "it_scale_english", "it_composition"]),
           "text_full": (text_full, ["text_full"])}


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--out", default=str(ROOT / "docs" / "figures"))
  ap.add_argument("--only", nargs="*", default=list(FIGURES), choices=list(FIGURES))
  args = ap.parse_args(argv)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  for name in args.only:
    draw, needs = FIGURES[name]
    missing = [s for s in needs if not (dt.ROOT / "docs" / "study" / s / "summary.csv").exists()]
    if missing:
      print(f"{name}: skipped, no data yet in docs/study/{', '.join(missing)}")
      continue
    print(draw(out))
  return 0


if __name__ == "__main__":
  sys.exit(main())
