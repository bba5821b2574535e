"""JIT-compiled exact search kernels over candidates sharded across all devices.

Candidates are split over a 1-D device axis; each device walks its shard in blocks of `c_block`
(`lax.scan`), so at most [q_block, c_block] scores exist at once per device, and the per-device
results are merged (a sum of counts, or a top-k of the gathered local top-ks).

Exact top-k on every backend: XLA runs float32 matmuls as TF32 on GPUs (bfloat16 passes on TPUs)
unless told otherwise, so exact scores there ask for HIGHEST precision — the slow float32 units. The
top-k instead runs a fast low-precision *screen* (bfloat16 tensor-core matmuls: "bf16", or three of
them on a hi/lo split, "bf16_3x") that keeps k + extra candidates per query, re-scores those in
float32 and checks a certificate that the true top-k is among them (see `screen_error`); a query
whose certificate fails is searched again with exact scores. Screening is on by default off CPU
(XLA:CPU computes float32 exactly and bf16 no faster). `relevant_ranks` uses exact scores throughout.

Tie rule (documented, deterministic): among equal scores the candidate with the lower index ranks
first. `relevant_ranks` gives rank = 1 + #{c : s(c) > s(rel)} + #{c : s(c) == s(rel), c < rel}; the
score of a relevant candidate is read from the same blocked matmul as everything it is compared with,
so it is never compared against a differently rounded copy of itself.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "cands"


def flat_mesh(mesh_or_devices=None) -> Mesh:
  """A 1-D mesh over the given mesh's (or all) devices, for sharding candidates."""
  if isinstance(mesh_or_devices, Mesh):
    if mesh_or_devices.axis_names == (AXIS,):
      return mesh_or_devices
    mesh_or_devices = mesh_or_devices.devices
  devices = np.asarray(mesh_or_devices if mesh_or_devices is not None else jax.devices())
  return Mesh(devices.reshape(-1), (AXIS,))


def _layout(n: int, n_dev: int, c_block: int) -> tuple[int, int]:
  """(block, rows per device) for n rows over n_dev devices: the block shrinks for small n, and the
  rows per device round up to whole blocks."""
  per_dev = math.ceil(max(n, 1) / n_dev)
  c_block = min(c_block, max(8, per_dev))
  return c_block, math.ceil(per_dev / c_block) * c_block


def _shard_candidates(cands: np.ndarray, mesh: Mesh, c_block: int):
  """Pads to n_dev * n_blocks * c_block rows; returns (cands, valid, index, c_block) sharded over
  AXIS; `index` is the candidate's row."""
  n, d = cands.shape
  c_block, per_dev = _layout(n, mesh.size, c_block)
  total = per_dev * mesh.size
  padded = cands
  if total != n:  # copy only to pad; a full slice goes to the devices as it is
    padded = np.zeros((total, d), cands.dtype)
    padded[:n] = cands
  idx = np.arange(total, dtype=np.int32)
  shard = NamedSharding(mesh, P(AXIS))
  return (jax.device_put(padded, shard), jax.device_put(idx < n, shard),
          jax.device_put(idx, shard), c_block)


def _exact_scores(q, cb):
  """[Q, C] float32 inner products at full float32 precision. GPUs otherwise run float32 matmuls as
  TF32 (and TPUs as bfloat16 passes), which changes ranks and top-k ids by backend, so there the
  matmul asks for HIGHEST. XLA:CPU computes float32 either way, and its dot measured a few percent
  slower with the flag set, so CPU programs do not carry it."""
  precision = None if jax.default_backend() == "cpu" else lax.Precision.HIGHEST
  return jnp.dot(q, cb.T, precision=precision, preferred_element_type=jnp.float32)


SCREENS = ("auto", "off", "bf16", "bf16_3x")
BF16_UNIT = 2.0 ** -8   # unit roundoff of bfloat16 (8 significant bits)
F32_UNIT = 2.0 ** -24


def resolve_screen(screen: str, backend: str | None = None) -> str:
  if screen not in SCREENS:
    raise ValueError(f"screen={screen!r}; known: {', '.join(SCREENS)}")
  if screen == "auto":
    return "off" if (backend or jax.default_backend()) == "cpu" else "bf16_3x"
  return screen


def screen_error(screen: str, dim: int) -> float:
  """c such that |screened(q . x) - q . x| <= c * |q| * |x| for every q, x of `dim` dimensions.

  With u the bf16 unit roundoff, bf16(v) = v (1 + d), |d| <= u, elementwise. "bf16": the products of
  the rounded inputs are exact in float32, so rounding costs <= (2u + u^2) sum|q_i x_i|. "bf16_3x":
  v = hi + lo + r with hi = bf16(v), lo = bf16(v - hi), |lo| <= u (1 + u)|v|, |r| <= u^2 |v|, and the
  screen sums hi.hi + hi.lo + lo.hi: the terms left out (lo.lo, hi.r, r.hi, lo.r, r.lo, r.r) are
  <= u^2 (3 + 6u + 4u^2) sum|q_i x_i|. Float32 accumulation of d terms adds <= gamma_d (= d 2^-24 /
  (1 - d 2^-24)) times the sum of the magnitudes of that pass's terms: (1 + u)^2 sum|q_i x_i| for
  hi.hi, u (1 + u)^2 sum|q_i x_i| for each of hi.lo and lo.hi; it is counted 8x over (accelerator
  accumulators need not round to nearest), the two float32 additions of the passes add <= 4 2^-24,
  and sum|q_i x_i| <= |q| |x| (Cauchy-Schwarz)."""
  u = BF16_UNIT
  gamma = dim * F32_UNIT / (1 - dim * F32_UNIT)
  if screen == "bf16":
    return (2 * u + u * u) + 8 * gamma * (1 + u) ** 2
  if screen == "bf16_3x":
    return u * u * (3 + 6 * u + 4 * u * u) + 8 * gamma * (1 + u) ** 2 * (1 + 2 * u) + 4 * F32_UNIT
  raise ValueError(f"no error bound for screen={screen!r}")


def _scores(q, cb, screen: str):
  """[Q, C] scores: exact float32 ("off"), or the bf16 screen (float32 accumulation)."""
  if screen == "off":
    return _exact_scores(q, cb)
  dot = lambda a, b: jnp.dot(a, b.T, preferred_element_type=jnp.float32)
  qh, ch = q.astype(jnp.bfloat16), cb.astype(jnp.bfloat16)
  s = dot(qh, ch)
  if screen == "bf16_3x":
    lo = lambda x, h: (x - h.astype(jnp.float32)).astype(jnp.bfloat16)
    s = s + (dot(qh, lo(cb, ch)) + dot(lo(q, qh), ch))
  return s


def _blocks(c, valid, idx, c_block):
  nb = c.shape[0] // c_block
  return c.reshape(nb, c_block, -1), valid.reshape(nb, c_block), idx.reshape(nb, c_block)


@functools.partial(jax.jit, static_argnames=("mesh", "c_block"))
def _ranks_kernel(q, rel, c, valid, idx, *, mesh, c_block):
  def local(q, rel, c, valid, idx):
    blocks = _blocks(c, valid, idx, c_block)

    def scores(cb, vb):
      s = _exact_scores(q, cb)
      return jnp.where(vb[None, :], s, -jnp.inf)

    def find(best, blk):  # pass 1: the score of each relevant candidate, from this matmul
      cb, vb, ib = blk
      s = scores(cb, vb)
      hit = ib[None, None, :] == rel[:, :, None]
      return jnp.maximum(best, jnp.where(hit, s[:, None, :], -jnp.inf).max(-1)), None

    rel_s, _ = lax.scan(find, jnp.full(rel.shape, -jnp.inf, jnp.float32), blocks)
    rel_s = lax.pmax(rel_s, AXIS)

    def count(acc, blk):  # pass 2: how many candidates rank above each relevant one
      cb, vb, ib = blk
      s = scores(cb, vb)[:, None, :]
      above = (s > rel_s[:, :, None]) | ((s == rel_s[:, :, None]) & (ib[None, None, :] < rel[:, :, None]))
      return acc + above.sum(-1, dtype=jnp.int32), None

    n_above, _ = lax.scan(count, jnp.zeros(rel.shape, jnp.int32), blocks)
    return lax.psum(n_above, AXIS)

  n_above = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(), P(AXIS), P(AXIS), P(AXIS)),
                          out_specs=P(), check_vma=False)(q, rel, c, valid, idx)
  return jnp.where(rel >= 0, n_above + 1, 0)


def relevant_ranks(queries: np.ndarray, cands: np.ndarray, relevant: np.ndarray,
                   mesh: Mesh | None = None, q_block: int = 256, c_block: int = 4096) -> np.ndarray:
  """[Q, M] 1-based rank of each relevant candidate (index into `cands`; -1 pads -> rank 0)."""
  mesh = flat_mesh(mesh)
  relevant = np.asarray(relevant, np.int32)
  c, valid, idx, cb = _shard_candidates(np.asarray(cands, np.float32), mesh, c_block)
  out = np.zeros(relevant.shape, np.int64)
  for s in range(0, len(queries), q_block):
    qb = _pad_rows(np.asarray(queries[s:s + q_block], np.float32), q_block)
    rb = _pad_rows(relevant[s:s + q_block], q_block, fill=-1)
    r = np.asarray(_ranks_kernel(qb, rb, c, valid, idx, mesh=mesh, c_block=cb))
    out[s:s + q_block] = r[:min(q_block, len(queries) - s)]
  return out


def _take_top(best_s, best_i, s, i, k):
  """Top-k of the running list followed by new candidates. The running list holds only lower
  indices and the new candidates come in index order, and lax.top_k keeps the lower position first
  among equal values, so ties go to the lower index without a sort."""
  v, p = lax.top_k(jnp.concatenate([best_s, s], 1), k)
  return v, jnp.take_along_axis(jnp.concatenate([best_i, i], 1), p, 1)


def _merge_sorted(best_s, best_i, new_s, new_i):
  """Top-k of two lists sorted by score (descending), the running list first on ties: each element's
  place in the merged list is its own index plus how many of the other list go before it. Much
  cheaper on CPU than a top_k with k = 100 over both."""
  k, m = best_s.shape[1], new_s.shape[1]
  at_best = jnp.arange(k) + (new_s[:, None, :] > best_s[:, :, None]).sum(-1)
  at_new = jnp.arange(m) + (best_s[:, None, :] >= new_s[:, :, None]).sum(-1)
  at = jnp.concatenate([at_best, at_new], 1)
  rows = jnp.arange(best_s.shape[0])[:, None]

  def place(a, b):
    out = jnp.zeros((a.shape[0], k + m), a.dtype)
    return out.at[rows, at].set(jnp.concatenate([a, b], 1), unique_indices=True)[:, :k]
  return place(best_s, new_s), place(best_i, new_i)


SEGMENT = 128                # columns per segment of a score block
FEW_SEGMENTS = (16, 32, 64)  # segments gathered per query when few can still enter the top-k


def _block_merge(best_s, best_i, s, first, n_valid, k, segment):
  """Merges one [Q, cb] score block (candidate ids first..first+cb-1, those >= n_valid padding) into
  the running top-k.

  Only a score above the running k-th can enter, so only a segment whose maximum is above it can
  contribute; after the first blocks few do. One pass takes the segment maxima; with at most m such
  segments per query (m the smallest of FEW_SEGMENTS that fits) they are the m segments with the
  largest maxima: gather them, and if they hold at most m new members per query, take their top m
  and merge the two sorted lists (cheap); else take the top k of them and the running list.
  Otherwise (the first blocks) gather the k segments with the largest maxima, which hold the
  block's top k (its k-th score is >= its k-th largest segment maximum). All paths are exact. This
  replaces a top_k over the whole block; top_k with k = 100 dominates exact search on XLA:CPU.
  """
  qn, cb = s.shape
  seg_n = cb // segment if cb % segment == 0 else 0
  col = jnp.arange(cb, dtype=jnp.int32)
  if seg_n <= 1:
    ids = jnp.broadcast_to(first + col, s.shape)
    return _take_top(best_s, best_i, jnp.where(ids < n_valid, s, -jnp.inf), ids, k)
  seg = s.reshape(qn, seg_n, segment)
  seg_live = first + col[::segment] < n_valid
  seg_max = jnp.where(seg_live, seg.max(-1), -jnp.inf)
  threshold = best_s[:, -1:]
  n_hot = (seg_max > threshold).sum(-1).max()

  def gather(m):  # the m segments with the largest maxima, in index order (see _take_top)
    top = jnp.sort(lax.top_k(seg_max, m)[1], axis=1) if m < seg_n else \
        jnp.broadcast_to(jnp.arange(seg_n), (qn, seg_n))
    ids = first + (top[:, :, None] * segment + col[:segment]).reshape(qn, -1)
    cand = jnp.take_along_axis(seg, top[:, :, None], 1).reshape(qn, -1)
    return jnp.where(ids < n_valid, cand, -jnp.inf), ids

  def few(m, best_s, best_i):
    cand, ids = gather(m)

    def sorted_merge():
      new_s, at = lax.top_k(cand, m)
      return _merge_sorted(best_s, best_i, new_s, jnp.take_along_axis(ids, at, 1))

    n_new = (cand > threshold).sum(-1).max()
    return lax.cond(n_new <= m, sorted_merge, lambda: _take_top(best_s, best_i, cand, ids, k))

  def many(best_s, best_i):
    return _take_top(best_s, best_i, *gather(min(k, seg_n)), k)

  sizes = [m for m in FEW_SEGMENTS if m < min(k, seg_n)]
  branch = sum((n_hot > m).astype(jnp.int32) for m in sizes)
  return lax.switch(branch, [functools.partial(few, m) for m in sizes] + [many], best_s, best_i)


@functools.partial(jax.jit, static_argnames=("mesh", "c_block", "k", "segment", "screen"))
def _topk_kernel(q, c, firsts, n_valid, best_s, best_i, *, mesh, c_block, k, segment, screen):
  """Merges this slice of candidates into each device's running top-k ([n_dev, Q, k], sharded);
  `firsts` [n_dev] is the candidate id of each device's first row.

  Every slice has the same shape (the last is padded) and each device walks only the blocks that
  hold real candidates (a dynamic trip count), so one compilation serves the whole search."""
  def local(q, c, firsts, bs, bi):
    first = firsts[0]
    n_blocks = jnp.clip((n_valid - first + c_block - 1) // c_block, 0, c.shape[0] // c_block)

    def body(j, carry):
      cb = lax.dynamic_slice_in_dim(c, j * c_block, c_block)
      s = _scores(q, cb, screen)
      return _block_merge(*carry, s, first + j * c_block, n_valid, k, segment)

    s, i = lax.fori_loop(0, n_blocks, body, (bs[0], bi[0]))
    return s[None], i[None]

  if mesh.size == 1:  # the common CPU case; shard_map's wrapping measured slower there
    return local(q, c, firsts, best_s, best_i)
  return jax.shard_map(local, mesh=mesh, in_specs=(P(), P(AXIS), P(AXIS), P(AXIS), P(AXIS)),
                       out_specs=(P(AXIS), P(AXIS)), check_vma=False)(q, c, firsts, best_s, best_i)


@functools.partial(jax.jit, static_argnames=("k",))
def _merge_devices(s, i, k):
  """[n_dev, Q, k] local top-ks -> [Q, k]; ties to the lower index."""
  s = jnp.moveaxis(s, 0, 1).reshape(s.shape[1], -1)
  i = jnp.moveaxis(i, 0, 1).reshape(i.shape[1], -1)
  order = jnp.lexsort((i, -s), axis=1)[:, :k]
  return jnp.take_along_axis(s, order, 1), jnp.take_along_axis(i, order, 1)


SCREEN_EXTRA = 32    # candidates kept beyond k by the screen (and at least k // 4)
RESIDENT_BYTES = 4 << 30  # re-score from candidates held on the device up to this size


def top_k(queries: np.ndarray, cands: np.ndarray, k: int, mesh: Mesh | None = None,
          q_block: int = 1024, c_block: int = 32768, slice_rows: int = 1 << 16,
          segment: int = SEGMENT, screen: str = "auto", stats: dict | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
  """Exact top-k by inner product: (scores [Q, k], indices [Q, k]); -1 where fewer than k exist.
  Float32 scores; ties to the lower index.

  The candidates go to the devices `slice_rows` at a time and each device keeps its running top-k
  across slices, so memory beyond the caller's array is one slice plus [q_block, c_block] scores
  per device. `screen` ("auto": "bf16_3x" off CPU, "off" on CPU; see the module doc) finds the
  candidates with low-precision scores, re-scores them in float32 and falls back to exact scores for
  any query whose certificate fails; `stats` (a dict) receives how many queries did.
  """
  n = len(cands)
  k_eff = min(k, n)
  screen = resolve_screen(screen)
  keep = k_eff + max(SCREEN_EXTRA, k_eff // 4)
  q_all = np.asarray(queries, np.float32)
  if stats is not None:
    stats.update(screen=screen, queries=len(q_all), fallback=0)
  if screen == "off" or keep + 1 > n or len(q_all) == 0:
    if stats is not None:
      stats["screen"] = "off"
    return _top_k_pass(q_all, cands, k_eff, mesh, q_block, c_block, slice_rows, segment, "off")
  s_scr, ids = _top_k_pass(q_all, cands, keep + 1, mesh, q_block, c_block, slice_rows, segment,
                           screen)
  # Certificate. The screen's error is <= eps per score, so the k-th best true score is >= tau - eps
  # (tau: the k-th best screened score: those k candidates score >= tau - eps), and every member of
  # the true top-k (true score >= that) screens >= tau - 2 eps. Every candidate left out of the kept
  # list screens <= the (keep + 1)-th screened score: if that is < tau - 2 eps, the kept list holds
  # the true top-k, and re-scoring it in float32 gives the exact top-k.
  c_norm = float(np.sqrt(np.max(np.einsum("nd,nd->n", cands, cands, dtype=np.float64))))
  q_norm = np.sqrt(np.einsum("qd,qd->q", q_all, q_all, dtype=np.float64))
  eps = screen_error(screen, q_all.shape[1]) * q_norm * c_norm
  tau = s_scr[:, k_eff - 1].astype(np.float64)
  ok = s_scr[:, keep].astype(np.float64) < tau - 2 * eps
  exact_s = _rescore(q_all, cands, ids[:, :keep], mesh, q_block)
  order = np.lexsort((ids[:, :keep], -exact_s), axis=1)[:, :k_eff]
  scores = np.take_along_axis(exact_s, order, 1).astype(np.float32)
  top = np.take_along_axis(ids[:, :keep], order, 1)
  redo = np.flatnonzero(~ok)
  if len(redo):
    scores[redo], top[redo] = _top_k_pass(q_all[redo], cands, k_eff, mesh, q_block, c_block,
                                          slice_rows, segment, "off")
  if stats is not None:
    stats["fallback"] = int(len(redo))
  return scores, top


@functools.partial(jax.jit, static_argnames=("gather",))
def _rescore_kernel(q, c, ids, gather):
  """[Q, K] float32 scores of q against c[ids] (gather: c is all candidates) or c ([Q, K, D])."""
  rows = jnp.take(c, ids, axis=0) if gather else c
  precision = None if jax.default_backend() == "cpu" else lax.Precision.HIGHEST
  return jnp.einsum("qd,qkd->qk", q, rows, precision=precision,
                    preferred_element_type=jnp.float32)


def _rescore(q_all, cands, ids, mesh, q_block):
  """Float32 scores of each query against its kept candidates: gathered on the device from the
  candidates held there when they fit in RESIDENT_BYTES, else gathered on the host per block."""
  resident = cands.nbytes <= RESIDENT_BYTES
  if resident:
    c_dev = jax.device_put(np.asarray(cands, np.float32),
                           NamedSharding(flat_mesh(mesh), P()))
  out = np.zeros(ids.shape, np.float64)
  for s in range(0, len(q_all), q_block):
    qb = _pad_rows(q_all[s:s + q_block], q_block)
    ib = _pad_rows(ids[s:s + q_block], q_block)
    rows = c_dev if resident else np.asarray(cands, np.float32)[ib]
    r = _rescore_kernel(qb, rows, ib, gather=resident)
    out[s:s + q_block] = np.asarray(r)[:min(q_block, len(q_all) - s)]
  return out


def _top_k_pass(q_all, cands, k_eff, mesh, q_block, c_block, slice_rows, segment, screen):
  """The streamed top-k of `q_all` over `cands` by `screen`'s scores ("off": exact float32)."""
  mesh = flat_mesh(mesh)
  n = len(cands)
  n_q = len(q_all)
  shard = NamedSharding(mesh, P(AXIS))
  best = [(jax.device_put(np.full((mesh.size, q_block, k_eff), -np.inf, np.float32), shard),
           jax.device_put(np.full((mesh.size, q_block, k_eff), np.iinfo(np.int32).max, np.int32),
                          shard))
          for _ in range(0, n_q, q_block)]
  cb, per_dev = _layout(min(slice_rows, n), mesh.size, c_block)
  rows = per_dev * mesh.size
  for start in range(0, max(n, 1), rows):
    c = jax.device_put(_pad_rows(np.asarray(cands[start:start + rows], np.float32), rows), shard)
    firsts = jax.device_put(np.arange(start, start + rows, per_dev, dtype=np.int32), shard)
    jax.block_until_ready(best)  # the previous slice is done with: at most two slices in memory
    for b, s in enumerate(range(0, n_q, q_block)):
      qb = _pad_rows(q_all[s:s + q_block], q_block)
      best[b] = _topk_kernel(qb, c, firsts, np.int32(n), *best[b], mesh=mesh, c_block=cb,
                             k=k_eff, segment=segment, screen=screen)
    del c, firsts
  merged = [_merge_devices(bs, bi, k_eff) for bs, bi in best]
  scores = np.concatenate([np.asarray(bs) for bs, _ in merged])[:n_q]
  ids = np.concatenate([np.asarray(bi) for _, bi in merged])[:n_q].astype(np.int64)
  ids[(ids >= n) | ~np.isfinite(scores)] = -1
  return scores, ids


def _pad_rows(x: np.ndarray, n: int, fill=0) -> np.ndarray:
  if x.shape[0] == n:
    return x
  out = np.full((n,) + x.shape[1:], fill, x.dtype)
  out[:x.shape[0]] = x
  return out
