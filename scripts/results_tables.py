"""Markdown tables of one LAReQA evaluation, as docs/results.md shows them.

  python scripts/results_tables.py RUN_DIR/results.json xquad_r [--compare OTHER/results.json]

Prints the settings table (mAP, R@1/5/10, MRR, rank distance) and the per-language table (mono and
multi mAP, rank distance); with --compare, a third row block gives this run minus the other.
"""
import argparse
import json

from hbt_jax.data.lareqa import LAREQA_LANGS


def settings(r, ds):
  rows = ["| setting | mAP | R@1 | R@5 | R@10 | MRR | rank distance |", "|---|---|---|---|---|---|---|"]
  for s in ("mono", "cross", "multi"):
    rd = f"{r[f'{ds}/multi/rank_distance']:.1f}" if s == "multi" else ""
    rows.append(f"| {s} | {r[f'{ds}/{s}/map']:.4f} | {r[f'{ds}/{s}/recall@1']:.4f} | "
                f"{r[f'{ds}/{s}/recall@5']:.4f} | {r[f'{ds}/{s}/recall@10']:.4f} | "
                f"{r[f'{ds}/{s}/mrr']:.4f} | {rd} |")
  return rows


def per_language(r, ds, other=None):
  langs = LAREQA_LANGS[ds]
  rows = ["| lang | " + " | ".join(langs) + " |", "|---|" + "---|" * len(langs)]
  for label, key, fmt in (("mono mAP", "mono/map", ".3f"), ("multi mAP", "multi/map", ".3f"),
                          ("rank distance", "multi/rank_distance", ".0f")):
    rows.append(f"| {label} | " + " | ".join(f"{r[f'{ds}/{key}/{l}']:{fmt}}" for l in langs) + " |")
    if other:
      rows.append(f"| Δ {label} | " + " | ".join(
          f"{r[f'{ds}/{key}/{l}'] - other[f'{ds}/{key}/{l}']:+{fmt}}" for l in langs) + " |")
  return rows


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("results")
  ap.add_argument("dataset", choices=sorted(LAREQA_LANGS))
  ap.add_argument("--compare", default="")
  a = ap.parse_args()
  r = json.load(open(a.results))
  other = json.load(open(a.compare)) if a.compare else None
  print("\n".join(settings(r, a.dataset)) + "\n\n" + "\n".join(per_language(r, a.dataset, other)))
  if f"{a.dataset}/seconds/encode" in r:
    print(f"\nWall time: encoding {r[f'{a.dataset}/seconds/encode']:.0f} s, search + metrics "
          f"{r[f'{a.dataset}/seconds/search_metrics']:.1f} s.")


if __name__ == "__main__":
  main()
