"""Memory of the plain vs GradCache train step at a large global batch (XLA's own accounting).

  python scripts/bench_grad_cache.py [--batch 4096 --chunk 64 --qlen 32 --plen 128]

Compiles both steps for all-MiniLM-L6-v2 (no data needed) and prints the temporary (activation)
memory XLA reserves for each; the plain step's grows with the batch, GradCache's with the chunk.
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from anywhere

import argparse
import json

import jax
import jax.numpy as jnp


def temp_bytes(cfg, batch):
  from hbt_jax import sharding, state, train
  mesh = sharding.make_mesh({"data": -1, "fsdp": 1})
  bundle = state.build_model(cfg)
  tx = state.make_optimizer(cfg)
  abstract = jax.eval_shape(lambda: state.create_train_state(bundle, cfg, mesh, tx))
  b = {k: jax.ShapeDtypeStruct((batch, cfg.model.max_query_len if k.startswith("query")
                                else cfg.model.max_passage_len), jnp.int32)
       for k in ("query_ids", "query_mask", "passage_ids", "passage_mask")}
  step = jax.jit(train.make_train_step(bundle, tx, cfg, sharding.data_parallel_size(mesh)),
                 donate_argnums=(0,))
  mem = step.lower(abstract, b).compile().memory_analysis()
  return mem.temp_size_in_bytes


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--batch", type=int, default=4096)
  ap.add_argument("--chunk", type=int, default=64)
  ap.add_argument("--qlen", type=int, default=32)
  ap.add_argument("--plen", type=int, default=128)
  args = ap.parse_args()
  from hbt_jax.config_base import base_config, use_minilm
  out = {}
  for name, chunk in (("plain", 0), ("grad_cache", args.chunk)):
    cfg = use_minilm(base_config())
    cfg.batch_size = args.batch
    cfg.model.max_query_len, cfg.model.max_passage_len = args.qlen, args.plen
    cfg.loss.grad_cache_chunk = chunk
    out[f"{name}_temp_GiB"] = temp_bytes(cfg, args.batch) / 2**30
  out["batch"], out["chunk"] = args.batch, args.chunk
  print(json.dumps(out))


if __name__ == "__main__":
  main()
