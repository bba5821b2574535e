"""The sweeps of docs/research.md's studies (issue 22), and the copy of each sweep's per-run data
into docs/study/NAME/ for scripts/doc_tables.py and scripts/study_figures.py.

  python scripts/study.py --print                   # the commands, one per sweep
  python scripts/study.py --run NAME [--runs DIR]   # run one sweep (resumable)
  python scripts/study.py --collect NAME --commit C # summary.csv + meta.json -> docs/study/NAME

Image–text sweeps (it_*): configs/image_text.py:scenes (LiT: EfficientNet-Lite0 features locked,
e5-small caption tower, 60 steps of batch 32) over seeds 0, 1, 2. The world is synthetic: coloured
shapes, template captions in 9 languages, hi and tr captioned for 15 % of the images (low-resource).
Text sweep (text_full): configs/hbt_cpu.py:mlqa_r:hybrid:me5:study:full — e5-small, 60 steps of
batch 32 on MLQA-R, evaluated with the README's protocol (full XQuAD-R, every candidate sentence
encoded with its paragraph), α ∈ {0, 0.5, 1} × seeds 0, 1, 2 (~25-30 min per run on 2 cores);
text_full_zeroshot / text_slice_zeroshot: the untrained e5 under that protocol and on the slice of
docs/research.md §1-§5; minilm_full_zeroshot: the untrained MiniLM under it on XQuAD-R and MLQA-R
(docs/results.md §1); one evaluation each.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import platform
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
SEEDS = "seed=0,1,2"
CFG = "configs/image_text.py:scenes"
HELD_IN = "en,de,fr,es,hi,tr,zh"  # ru and ja are held out of training in the α study

# name: (config, [--set ...], [extra flags]); a sequential study has a second stage.
SWEEPS = {
    # batch composition against mAP@100 per language family / script
    "it_composition": (CFG, [SEEDS, "sampler.batch_type=hybrid,it_mono,tt_xy,it_mixed"], []),
    # α: low-resource (hi, tr) and held-out (ru, ja) caption languages
    "it_alpha_heldout": (CFG, [SEEDS, "sampler.alpha=0,0.25,0.5,0.75,1"],
                         [f"--config.data.langs={HELD_IN}"]),
    # data scale of hybrid against the English-only CLIP-style baseline (nested fractions)
    "it_scale_hybrid": (CFG, [SEEDS, "data.fraction=0.125,0.25,0.5"], []),
    "it_scale_english": (CFG + ":english", [SEEDS, "data.fraction=0.125,0.25,0.5,1"], []),
    # separate tasks one after the other, 30 + 30 steps (hybrid and the single tasks: it_composition)
    # text, the README's protocol (paper Table 1's side by side)
    "text_full": ("configs/hbt_cpu.py:mlqa_r:hybrid:me5:study:full", [SEEDS, "sampler.alpha=0,0.5,1"], []),
    # the untrained e5 under the same two protocols (no seed: one evaluation each, run as seed 0)
    "text_full_zeroshot": ("configs/hbt_cpu.py:mlqa_r:zeroshot:me5:study:full", ["seed=0"], []),
    "text_slice_zeroshot": ("configs/hbt_cpu.py:mlqa_r:zeroshot:me5:study", ["seed=0"], []),
    # the untrained MiniLM under the README's protocol on both sets (docs/results.md §1)
    "minilm_full_zeroshot": ("configs/eval_lareqa.py", ["seed=0"], []),
    "it_seq_it_first": (CFG + ":it_mono", [SEEDS], ["--config.num_steps=30", "--config.checkpoint_every=30"]),
    "it_seq_then_tt": (CFG + ":tt_xy", [SEEDS], ["--config.num_steps=30", "--config.checkpoint_every=30",
                                                "--config.restore_from=RUNS/it_seq_it_first/runs/seed=SEED"]),
    "it_seq_tt_first": (CFG + ":tt_xy", [SEEDS], ["--config.num_steps=30", "--config.checkpoint_every=30"]),
    "it_seq_then_it": (CFG + ":it_mono", [SEEDS], ["--config.num_steps=30", "--config.checkpoint_every=30",
                                                  "--config.restore_from=RUNS/it_seq_tt_first/runs/seed=SEED"]),
}


DATA = {"it": "synthetic scenes (hbt_jax/data/synthetic_scenes.py): synthetic, not real photos",
        "text_full": "train MLQA-R, evaluate the full XQuAD-R with paragraph context",
        "text_full_zeroshot": "no training (the untrained e5); evaluate the full XQuAD-R with paragraph context",
        "minilm_full_zeroshot": "no training (the untrained all-MiniLM-L6-v2); evaluate the full XQuAD-R and "
                                "MLQA-R with paragraph context",
        "text_slice_zeroshot": "no training (the untrained e5); evaluate the study's XQuAD-R slice: the first 300 "
                               "questions per language, sentence candidates"}


def commands(name: str, runs: pathlib.Path) -> list[list[str]]:
  cfg, sets, extra = SWEEPS[name]
  extra = [e.replace("RUNS", str(runs)) for e in extra]
  if any("SEED" in e for e in extra):  # the second stage of a sequence: one run per seed
    out = []
    for seed in sets[0].split("=")[1].split(","):
      out.append([sys.executable, "-m", "hbt_jax.sweep", "--config", cfg, "--workdir", str(runs / name),
                  "--set", f"seed={seed}"] + [e.replace("SEED", seed) for e in extra])
    return out
  cmd = [sys.executable, "-m", "hbt_jax.sweep", "--config", cfg, "--workdir", str(runs / name)]
  for s in sets:
    cmd += ["--set", s]
  return [cmd + extra]


def collect(name: str, runs: pathlib.Path, commit: str) -> None:
  src = runs / name
  dst = ROOT / "docs" / "study" / name
  dst.mkdir(parents=True, exist_ok=True)
  # summary.csv is written when a sweep ends: aggregate what is finished now (a sweep still running,
  # or one sweep per seed in turn for a sequential study)
  cfg, sets, _ = SWEEPS[name]
  subprocess.run([sys.executable, "-m", "hbt_jax.sweep", "--config", cfg, "--workdir", str(src)]
                 + [a for s in sets for a in ("--set", s)] + ["--aggregate_only"], check=True)
  for f in ("summary.csv", "summary.md"):
    shutil.copy(src / f, dst / f)
  meta = dict(commit=commit, commands=[" ".join(["python"] + c[1:]) for c in commands(name, pathlib.Path("runs"))],
              machine=f"{platform.machine()}, {platform.processor() or 'cpu'}, 2 cores (the project's CPU box)",
              data=DATA["it" if name.startswith("it_") else name])
  (dst / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
  print(f"{dst}: summary.csv, summary.md, meta.json")


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--print", action="store_true")
  ap.add_argument("--run", default="")
  ap.add_argument("--collect", default="")
  ap.add_argument("--commit", default="")
  ap.add_argument("--runs", default="runs/it_study")
  args = ap.parse_args(argv)
  runs = pathlib.Path(args.runs)
  if args.print:
    for name in SWEEPS:
      for c in commands(name, runs):
        print(" ".join(c[0:1] and ["python"] + c[1:]))
  if args.run:
    for c in commands(args.run, runs):
      subprocess.run(c, check=True)
  if args.collect:
    if not args.commit:
      ap.error("--collect needs --commit (the code that produced the runs)")
    collect(args.collect, runs, args.commit)
  return 0


if __name__ == "__main__":
  sys.exit(main())
