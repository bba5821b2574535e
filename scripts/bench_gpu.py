"""One prepared accelerator benchmark: train step, peak memory, time to the first step, encoding and
exact search, hbt_jax against PyTorch + transformers in the same process, a table printed last.

  python scripts/bench_gpu.py [--json OUT.json]          # XLM-R base shapes (a GPU host)
  python scripts/bench_gpu.py --small [--json OUT.json]  # tiny shapes: runs on a CPU in a minute

Runs with the packages of the measured H200 host (jax, flax, optax, orbax, transformers, torch;
no TensorFlow, no tokenizer download: random-init weights and random token ids) plus the small
wheels of ../shared/notes/gpu.md (ml_collections, ...). Every section runs on its own; a failing
one is reported in the table and the rest still run.

Train step: XLM-R base (random init), batch --batch, query --qlen / passage --plen tokens, InfoNCE at
temperature 0.05 over the batch, AdamW, grad clip 1.0, hidden dropout 0.1; compute dtype bf16 off
CPU (float32 on CPU). hbt_jax variants: attention fused / explicit (hbt_jax/attention.py), attention
dropout 0 and 0.1 (fused falls back to explicit for training with it), remat. PyTorch: the same model
(transformers XLMRobertaModel, SDPA attention, bf16 autocast, fused AdamW where CUDA). Medians of
--steps steps after 2 warm-ups. Peak memory: JAX's compiled program (arguments + outputs - aliased +
temporaries) and, on a GPU, the device's peak after the variant; torch.cuda.max_memory_allocated.
Time to first step: state creation + compile + one step (a fresh persistent cache per run:
`--cache_dir`). TFLOP/s from XLA's cost analysis of the step; % of --peak_tflops.
Encoding: --enc_texts texts of random lengths up to --enc_len tokens, hbt_jax's Embedder
(length buckets, token budget, one fetch at the end) vs torch sorted by length, batch --enc_batch.
Search: --queries x --cands x --dim unit vectors, k = --k: hbt_jax's search.top_k (bf16_3x screen +
float32 re-score off CPU) and a plain default-precision matmul + top_k in JAX, against torch float32
(TF32 off) matmul + topk; exactness = share of the float32 top-k ids found.
"""
from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from anywhere

import argparse
import json
import os
import statistics
import tempfile
import time
import traceback

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX and torch share the device

import numpy as np

XLMR_BASE = dict(arch="xlm-roberta", vocab_size=250002, hidden_size=768, num_layers=12, num_heads=12,
                 intermediate_size=3072, max_position=514, type_vocab_size=1, layer_norm_eps=1e-5,
                 pad_token_id=1, hidden_act="gelu")
TINY = dict(XLMR_BASE, vocab_size=1000, hidden_size=64, num_layers=2, num_heads=4,
            intermediate_size=128, max_position=130)


def _median_time(fn, steps: int, warmup: int = 2) -> float:
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def _batch(args, rng):
  b = {"query_ids": rng.integers(5, args.arch["vocab_size"], (args.batch, args.qlen)),
       "passage_ids": rng.integers(5, args.arch["vocab_size"], (args.batch, args.plen))}
  b = {k: v.astype(np.int32) for k, v in b.items()}
  b["query_mask"] = np.ones_like(b["query_ids"])
  b["passage_mask"] = np.ones_like(b["passage_ids"])
  return b


def _config(args, attention: str, attention_dropout: float, remat: bool):
  from hbt_jax.config_base import base_config
  c = base_config()
  c.batch_size = args.batch
  c.model.init = "random"
  c.model.random_init.update(args.arch)
  c.model.max_query_len, c.model.max_passage_len = args.qlen, args.plen
  c.model.dropout, c.model.attention_dropout = 0.1, attention_dropout
  c.model.attention, c.model.remat = attention, remat
  c.model.temperature = 0.05
  c.optim.warmup_steps, c.optim.grad_clip = 0, 1.0
  return c


def _bundle(cfg):
  """state.build_model without a tokenizer (random ids here; none is downloadable on the host)."""
  from hbt_jax import models, state, xla_options
  enc = models.encoder_config(cfg.model, None)
  module = models.DualEncoder(enc, shared=True, temperature=cfg.model.temperature)
  bundle = state.ModelBundle(module, enc, None, None)
  bundle.compiler_options = xla_options.encoder_compiler_options(cfg.model.cpu_dots)
  return bundle


def _compiled_peak(compiled) -> float:
  m = compiled.memory_analysis()
  if m is None:
    return float("nan")
  return (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
          + m.temp_size_in_bytes) / 1e9


def _device_peak() -> float:
  import jax
  stats = jax.local_devices()[0].memory_stats() or {}
  return stats.get("peak_bytes_in_use", float("nan")) / 1e9


def train_hbt(args, attention: str, attention_dropout: float, remat: bool) -> dict:
  import jax
  from hbt_jax import attention as attention_mod, sharding, state, train
  t0 = time.perf_counter()
  cfg = _config(args, attention, attention_dropout, remat)
  mesh = sharding.make_mesh({"data": -1, "fsdp": 1})
  bundle = _bundle(cfg)
  tx = state.make_optimizer(cfg)
  st = state.create_train_state(bundle, cfg, mesh, tx)
  batch = sharding.host_local_to_global(_batch(args, np.random.default_rng(0)), mesh)
  step = jax.jit(train.make_train_step(bundle, tx, cfg), donate_argnums=(0,),
                 compiler_options=bundle.compiler_options["train"])
  compiled = step.lower(st, batch).compile()
  holder = {"st": st}

  def run():
    holder["st"], m = compiled(holder["st"], batch)
    jax.block_until_ready(m)
  run()
  first = time.perf_counter() - t0
  sec = _median_time(run, args.steps)
  flops = (compiled.cost_analysis() or {}).get("flops", float("nan"))
  if isinstance(flops, list):  # older JAX: one dict per program
    flops = flops[0].get("flops", float("nan"))
  return dict(pairs_per_s=args.batch / sec, step_ms=sec * 1e3, tflop_per_step=flops / 1e12,
              pct_peak=100 * flops / sec / 1e12 / args.peak_tflops, first_step_s=first,
              program_peak_gb=_compiled_peak(compiled), device_peak_gb=_device_peak(),
              attention_kernel=bundle.enc_cfg.attention,
              train_path=bundle.enc_cfg.attention if attention_mod.fused_now(
                  bundle.enc_cfg.attention, attention_dropout, False) else "explicit")


def _torch_model(args, attention_dropout: float):
  import torch
  import transformers
  a = args.arch
  cfg = transformers.XLMRobertaConfig(
      vocab_size=a["vocab_size"], hidden_size=a["hidden_size"], num_hidden_layers=a["num_layers"],
      num_attention_heads=a["num_heads"], intermediate_size=a["intermediate_size"],
      max_position_embeddings=a["max_position"], type_vocab_size=a["type_vocab_size"],
      layer_norm_eps=a["layer_norm_eps"], pad_token_id=a["pad_token_id"],
      hidden_dropout_prob=0.1, attention_probs_dropout_prob=attention_dropout,
      attn_implementation="sdpa")
  return transformers.XLMRobertaModel(cfg, add_pooling_layer=False).to(args.torch_device)


def _torch_embed(model, ids, mask):
  import torch
  h = model(input_ids=ids, attention_mask=mask).last_hidden_state
  m = mask[..., None].to(h.dtype)
  pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
  return torch.nn.functional.normalize(pooled.float(), dim=-1)


def _autocast(args):
  import contextlib
  import torch
  if args.torch_device == "cuda":
    return torch.autocast("cuda", dtype=torch.bfloat16)
  return contextlib.nullcontext()


def _sync(args):
  import torch
  if args.torch_device == "cuda":
    torch.cuda.synchronize()


def train_torch(args, attention_dropout: float) -> dict:
  import torch
  t0 = time.perf_counter()
  model = _torch_model(args, attention_dropout).train()
  fused = {"fused": True} if args.torch_device == "cuda" else {}
  opt = torch.optim.AdamW(model.parameters(), lr=3e-5, weight_decay=0.01, **fused)
  b = {k: torch.as_tensor(v, device=args.torch_device) for k, v in
       _batch(args, np.random.default_rng(0)).items()}
  labels = torch.arange(args.batch, device=args.torch_device)
  if args.torch_device == "cuda":
    torch.cuda.reset_peak_memory_stats()

  def run():
    with _autocast(args):
      q = _torch_embed(model, b["query_ids"], b["query_mask"])
      p = _torch_embed(model, b["passage_ids"], b["passage_mask"])
      loss = torch.nn.functional.cross_entropy(q @ p.T / 0.05, labels)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    _sync(args)
  run()
  first = time.perf_counter() - t0
  sec = _median_time(run, args.steps)
  peak = torch.cuda.max_memory_allocated() / 1e9 if args.torch_device == "cuda" else float("nan")
  return dict(pairs_per_s=args.batch / sec, step_ms=sec * 1e3, first_step_s=first,
              device_peak_gb=peak)


def _enc_tokens(args):
  rng = np.random.default_rng(1)
  lengths = rng.integers(8, args.enc_len + 1, args.enc_texts)
  mask = (np.arange(args.enc_len)[None] < lengths[:, None]).astype(np.int32)
  ids = np.where(mask > 0, rng.integers(5, args.arch["vocab_size"], mask.shape), 1).astype(np.int32)
  return ids, mask


def encode_hbt(args) -> dict:
  import jax
  from hbt_jax import sharding, state
  from hbt_jax.evaluation import encode
  cfg = _config(args, "auto", 0.0, False)
  mesh = sharding.make_mesh({"data": -1, "fsdp": 1})
  bundle = _bundle(cfg)
  st = state.create_train_state(bundle, cfg, mesh, state.make_optimizer(cfg))
  emb = encode.Embedder(bundle.module, None, mesh, args.enc_batch,
                        bundle.compiler_options.get("encode"))
  ids, mask = _enc_tokens(args)
  run = lambda: emb.encode_tokens(st["params"], ids, mask, "passage")
  sec = _median_time(run, args.enc_rounds, warmup=1)
  return dict(texts_per_s=args.enc_texts / sec, seconds=sec, attention_kernel=bundle.enc_cfg.attention,
              rows=emb.batch_size, token_budget=emb.token_budget)


def encode_torch(args) -> dict:
  import torch
  model = _torch_model(args, 0.0).eval()
  ids, mask = _enc_tokens(args)
  order = np.argsort(-mask.sum(1), kind="stable")

  @torch.inference_mode()
  def run():
    out = []
    for s in range(0, len(order), args.enc_batch):
      rows = order[s:s + args.enc_batch]
      w = int(mask[rows].sum(1).max())
      with _autocast(args):
        out.append(_torch_embed(model, torch.as_tensor(ids[rows, :w], device=args.torch_device),
                                torch.as_tensor(mask[rows, :w], device=args.torch_device)))
    return torch.cat(out).cpu()
  sec = _median_time(run, args.enc_rounds, warmup=1)
  return dict(texts_per_s=args.enc_texts / sec, seconds=sec)


def _search_data(args):
  rng = np.random.default_rng(2)
  unit = lambda n: (lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))(
      rng.normal(size=(n, args.dim)).astype(np.float32))
  return unit(args.queries), unit(args.cands)


def _overlap(ids, truth) -> float:
  return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ids, truth)]))


def search_all(args, results: dict) -> None:
  import jax
  import jax.numpy as jnp
  from hbt_jax.evaluation import search
  q, c = _search_data(args)
  truth = None
  try:
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False
    tq, tc = torch.as_tensor(q, device=args.torch_device), torch.as_tensor(c, device=args.torch_device)

    def torch_run():
      out = [torch.topk(tq[s:s + args.q_block] @ tc.T, args.k, dim=1).indices
             for s in range(0, len(q), args.q_block)]
      _sync(args)
      return torch.cat(out).cpu().numpy()
    truth = torch_run()
    results["search torch fp32"] = dict(seconds=_median_time(torch_run, args.search_rounds, 1))
  except Exception as e:  # no torch: float64 NumPy is the truth (small shapes only)
    results["search torch fp32"] = dict(error=f"{type(e).__name__}: {e}"[:200])
  if truth is None or args.small:
    s64 = q.astype(np.float64) @ c.astype(np.float64).T
    truth = np.argsort(-s64, axis=1, kind="stable")[:, :args.k]
  stats = {}
  ours = lambda: search.top_k(q, c, args.k, q_block=args.q_block, screen=args.screen, stats=stats)
  sec = _median_time(ours, args.search_rounds, 1)
  results["search hbt_jax top_k"] = dict(seconds=sec, exact_share=_overlap(ours()[1], truth),
                                         screen=stats.get("screen"), fallback=stats.get("fallback"))
  cj = jnp.asarray(c)
  plain = jax.jit(lambda qb: jax.lax.top_k(qb @ cj.T, args.k)[1])

  def plain_run():
    out = [plain(jnp.asarray(search._pad_rows(q[s:s + args.q_block], args.q_block)))
           for s in range(0, len(q), args.q_block)]
    return np.concatenate([np.asarray(o) for o in out])[:len(q)]
  results["search jax default precision"] = dict(
      seconds=_median_time(plain_run, args.search_rounds, 1), exact_share=_overlap(plain_run(), truth))
  peer = results["search torch fp32"].get("seconds")
  if peer:
    results["search hbt_jax top_k"]["vs_torch"] = peer / sec


def _section(results, name, fn, *a):
  print(f"[bench_gpu] {name} ...", flush=True)
  try:
    results[name] = fn(*a)
  except Exception as e:
    traceback.print_exc()
    results[name] = dict(error=f"{type(e).__name__}: {e}"[:300])


def table(results: dict, args) -> str:
  keys = ["pairs_per_s", "step_ms", "tflop_per_step", "pct_peak", "first_step_s", "program_peak_gb",
          "device_peak_gb", "texts_per_s", "seconds", "exact_share", "vs_torch", "attention_kernel",
          "train_path",
          "screen", "fallback", "error"]
  used = [k for k in keys if any(k in r for r in results.values())]
  fmt = lambda v: f"{v:,.4g}" if isinstance(v, float) else str(v)
  lines = [f"bench_gpu on {args.device} ({'small' if args.small else 'XLM-R base'}: batch "
           f"{args.batch}, {args.qlen}/{args.plen} tokens; encode {args.enc_texts} x <= {args.enc_len}; "
           f"search {args.queries} x {args.cands} x {args.dim}, k {args.k})",
           "| what | " + " | ".join(used) + " |", "|---" * (len(used) + 1) + "|"]
  for name, r in results.items():
    lines.append(f"| {name} | " + " | ".join(fmt(r.get(k, "")) for k in used) + " |")
  t = {n: r.get("pairs_per_s") for n, r in results.items()}
  for ad in ("0", "0.1"):
    ours, peer = t.get(f"train hbt_jax fused ad={ad}"), t.get(f"train torch ad={ad}")
    if ours and peer:
      lines.append(f"train ratio (fused, attention dropout {ad}): {ours / peer:.2f}x PyTorch")
  e_ours, e_peer = (results.get(n, {}).get("texts_per_s") for n in ("encode hbt_jax", "encode torch"))
  if e_ours and e_peer:
    lines.append(f"encode ratio: {e_ours / e_peer:.2f}x PyTorch")
  return "\n".join(lines)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--small", action="store_true", help="tiny shapes (a CPU, the test)")
  ap.add_argument("--json", default="", help="write the results here")
  ap.add_argument("--batch", type=int, default=128)
  ap.add_argument("--qlen", type=int, default=64)
  ap.add_argument("--plen", type=int, default=256)
  ap.add_argument("--steps", type=int, default=10)
  ap.add_argument("--peak_tflops", type=float, default=790.0,
                  help="the chip's bf16 peak (790: the H200 figure of ../shared/notes/gpu.md)")
  ap.add_argument("--enc_texts", type=int, default=16384)
  ap.add_argument("--enc_len", type=int, default=256)
  ap.add_argument("--enc_batch", type=int, default=512)
  ap.add_argument("--enc_rounds", type=int, default=3)
  ap.add_argument("--queries", type=int, default=10000)
  ap.add_argument("--cands", type=int, default=1000000)
  ap.add_argument("--dim", type=int, default=384)
  ap.add_argument("--k", type=int, default=100)
  ap.add_argument("--q_block", type=int, default=1024)
  ap.add_argument("--search_rounds", type=int, default=3)
  ap.add_argument("--screen", default="auto", help="search.top_k's screen (auto: bf16_3x off CPU)")
  ap.add_argument("--cache_dir", default="", help="persistent compilation cache (default: a fresh "
                  "temporary folder, so the first step is a cold start)")
  ap.add_argument("--skip", default="", help="comma-separated sections to skip: train,torch,encode,search")
  args = ap.parse_args(argv)
  args.arch = XLMR_BASE
  if args.small:
    args.arch = TINY
    args.batch, args.qlen, args.plen, args.steps = 8, 16, 32, 3
    args.enc_texts, args.enc_len, args.enc_batch, args.enc_rounds = 96, 64, 32, 1
    args.queries, args.cands, args.dim, args.k, args.q_block, args.search_rounds = 40, 3000, 32, 10, 16, 1
  skip = set(filter(None, args.skip.split(",")))
  os.environ["HBT_CACHE_DIR"] = args.cache_dir or tempfile.mkdtemp(prefix="bench_gpu_cache_")
  import jax
  from hbt_jax import compile_cache
  compile_cache.setup()
  args.device = f"{jax.devices()[0].device_kind} ({jax.default_backend()}, jax {jax.__version__})"
  try:
    import torch
    args.torch_device = "cuda" if torch.cuda.is_available() else "cpu"
    args.device += f"; torch {torch.__version__} on {args.torch_device}"
  except ImportError:
    skip.add("torch")
  results: dict = {}
  if "train" not in skip:
    for attention, ad, remat in (("fused", 0.0, False), ("explicit", 0.0, False), ("fused", 0.0, True),
                                 ("fused", 0.1, False), ("explicit", 0.1, False)):
      name = f"train hbt_jax {attention} ad={ad:g}" + (" remat" if remat else "")
      _section(results, name, train_hbt, args, attention, ad, remat)
    if "torch" not in skip:
      for ad in (0.0, 0.1):
        _section(results, f"train torch ad={ad:g}", train_torch, args, ad)
  if "encode" not in skip:
    _section(results, "encode hbt_jax", encode_hbt, args)
    if "torch" not in skip:
      _section(results, "encode torch", encode_torch, args)
  if "search" not in skip:
    try:
      search_all(args, results)
    except Exception as e:
      traceback.print_exc()
      results["search"] = dict(error=f"{type(e).__name__}: {e}"[:300])
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(dict(device=args.device, small=args.small,
                                                       results=results), indent=1))
  print(table(results, args))


if __name__ == "__main__":
  main()
