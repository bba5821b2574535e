"""P2: exact top-k of Q queries against N x D fp32 candidates: hbt_jax kernels vs faiss-cpu
IndexFlatIP vs the bare numpy sgemm of the same shape (blocked, scores only); peak RSS.

  python scripts/bench_search.py [--queries 10000 --cands 1000000 --dim 384 --k 100]
Each method runs in a fresh subprocess so its peak RSS is its own; the ratios come from one run.
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from anywhere

import argparse
import json
import resource
import subprocess
import time

import numpy as np


def empty_aligned(shape, align=64):
  """float32 array at a 64-byte aligned address, as np.load(..., mmap_mode="r") of a .npy gives."""
  nbytes = int(np.prod(shape)) * 4
  buf = np.empty(nbytes + align, np.uint8)
  off = (-buf.ctypes.data) % align
  return buf[off:off + nbytes].view(np.float32).reshape(shape)


def data(args):
  rng = np.random.default_rng(0)
  shape = (args.cands, args.dim)
  c = empty_aligned(shape) if args.aligned else np.empty(shape, np.float32)
  rng.standard_normal(dtype=np.float32, out=c)
  q = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
  return q, c


def run_one(method, args):
  q, c = data(args)
  base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  if method == "hbt_jax":
    from hbt_jax.evaluation import search
    kw = dict(q_block=args.q_block, c_block=args.c_block, slice_rows=args.slice_rows)
    search.top_k(q[:args.q_block], c[:args.slice_rows], args.k, **kw)  # compile
    t = time.perf_counter()
    _, idx = search.top_k(q, c, args.k, **kw)
    secs = time.perf_counter() - t
  elif method == "faiss":
    import faiss
    index = faiss.IndexFlatIP(args.dim)
    index.add(c)
    t = time.perf_counter()
    _, idx = index.search(q, args.k)
    secs = time.perf_counter() - t
  else:  # numpy sgemm, blocked over queries like the others (scores only, no selection)
    t = time.perf_counter()
    for s in range(0, len(q), args.sgemm_block):
      q[s:s + args.sgemm_block] @ c.T
    secs = time.perf_counter() - t
    idx = None
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  out = {"method": method, "seconds": secs, "queries_per_s": len(q) / secs, "peak_rss_mb": peak,
         "corpus_mb": c.nbytes / 2**20, "rss_before_search_mb": base_rss}
  if idx is not None:
    np.save(f"/tmp/bench_search_{method}.npy", np.asarray(idx)[:200])
  print(json.dumps(out))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--queries", type=int, default=10000)
  ap.add_argument("--cands", type=int, default=1000000)
  ap.add_argument("--dim", type=int, default=384)
  ap.add_argument("--k", type=int, default=100)
  ap.add_argument("--q_block", type=int, default=1024)
  ap.add_argument("--c_block", type=int, default=32768)
  ap.add_argument("--slice_rows", type=int, default=1 << 16)
  ap.add_argument("--aligned", action="store_true",
                  help="64-byte aligned corpus (XLA:CPU then reads it without a copy)")
  ap.add_argument("--sgemm_block", type=int, default=512, help="query rows per numpy matmul")
  ap.add_argument("--method", default="")
  args = ap.parse_args()
  if args.method:
    return run_one(args.method, args)
  res = {}
  for m in ("numpy_sgemm", "faiss", "hbt_jax"):
    out = subprocess.run([sys.executable, __file__, "--method", m] + sys.argv[1:], capture_output=True,
                         text=True, check=True).stdout.strip().splitlines()[-1]
    res[m] = json.loads(out)
    print(out, flush=True)
  same = (np.load("/tmp/bench_search_faiss.npy") == np.load("/tmp/bench_search_hbt_jax.npy")).mean()
  print(json.dumps({"hbt_vs_faiss_speed": res["faiss"]["seconds"] / res["hbt_jax"]["seconds"],
                    "hbt_time_over_sgemm": res["hbt_jax"]["seconds"] / res["numpy_sgemm"]["seconds"],
                    "hbt_peak_rss_minus_corpus_mb": res["hbt_jax"]["peak_rss_mb"] - res["hbt_jax"]["corpus_mb"],
                    "top_ids_equal_faiss": float(same)}))


if __name__ == "__main__":
  main()
