"""Markdown tables of image–text runs for docs/results.md, from their results.json.

  python scripts/image_text_tables.py EVAL_NAME LABEL=WORKDIR [LABEL=WORKDIR ...]

Table 1: per run, t2i / i2t R@1, R@10, mAP@100 (means over languages), mean recall, multilingual
pool i2t mAP@100 and language bias, caption->caption mAP. Table 2: mean recall per language.
"""
import json
import sys
from pathlib import Path


def main(argv):
  name, runs = argv[0], [a.split("=", 1) for a in argv[1:]]
  res = {label: json.loads((Path(wd) / "results.json").read_text()) for label, wd in runs}
  cols = [("t2i R@1", "t2i/r@1"), ("t2i R@10", "t2i/r@10"), ("t2i mAP@100", "t2i/map@100"),
          ("i2t R@1", "i2t/r@1"), ("i2t R@10", "i2t/r@10"), ("i2t mAP@100", "i2t/map@100"),
          ("mean recall", "mean_recall"), ("multi i2t mAP@100", "multi/i2t/map@100"),
          ("language bias", "multi/language_bias"), ("c2c mAP", "c2c/map")]
  print("| run | " + " | ".join(c for c, _ in cols) + " |")
  print("|---|" + "---|" * len(cols))
  for label, r in res.items():
    cells = [f"{r[f'{name}/{k}']:.1f}" if "bias" in k else f"{r[f'{name}/{k}']:.4f}" for _, k in cols]
    print(f"| {label} | " + " | ".join(cells) + " |")
  langs = sorted({k.split("/")[-1] for r in res.values() for k in r
                  if k.startswith(f"{name}/mean_recall/")})
  print("\nMean recall per language:\n")
  print("| run | " + " | ".join(langs) + " |")
  print("|---|" + "---|" * len(langs))
  for label, r in res.items():
    print(f"| {label} | " + " | ".join(f"{r[f'{name}/mean_recall/{l}']:.3f}" for l in langs) + " |")


if __name__ == "__main__":
  main(sys.argv[1:])
