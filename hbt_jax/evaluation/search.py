"""JIT-compiled exact search kernels over candidates sharded across all devices.

Candidates are split over a 1-D device axis; each device walks its shard in blocks of `c_block`
(`lax.scan`), so at most [q_block, c_block] scores exist at once per device, and the per-device
results are merged (a sum of counts, or a top-k of the gathered local top-ks).

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


def _shard_candidates(cands: np.ndarray, mesh: Mesh, c_block: int, offset: int = 0):
  """Pads to n_dev * n_blocks * c_block rows; returns (cands, valid, index) sharded over AXIS.
  `index` is the global candidate index (offset + row)."""
  n_dev = mesh.size
  n, d = cands.shape
  per_dev = math.ceil(max(n, 1) / n_dev)
  c_block = min(c_block, max(8, per_dev))
  per_dev = math.ceil(per_dev / c_block) * c_block
  total = per_dev * n_dev
  padded = np.zeros((total, d), cands.dtype)
  padded[:n] = cands
  idx = np.arange(total, dtype=np.int32)
  shard = NamedSharding(mesh, P(AXIS))
  return (jax.device_put(padded, shard), jax.device_put(idx < n, shard),
          jax.device_put(idx + offset, shard), c_block)


def _blocks(c, valid, idx, c_block):
  nb = c.shape[0] // c_block
  return c.reshape(nb, c_block, -1), valid.reshape(nb, c_block), idx.reshape(nb, c_block)


@functools.partial(jax.jit, static_argnames=("mesh", "c_block"))
def _ranks_kernel(q, rel, c, valid, idx, *, mesh, c_block):
  def local(q, rel, c, valid, idx):
    blocks = _blocks(c, valid, idx, c_block)

    def scores(cb, vb):
      s = jnp.dot(q, cb.T, preferred_element_type=jnp.float32)
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


def _merge_topk(s1, i1, s2, i2, k):
  """Top-k of two candidate lists; ties go to the lower index (index as a secondary key)."""
  s = jnp.concatenate([s1, s2], 1)
  i = jnp.concatenate([i1, i2], 1)
  order = jnp.lexsort((i, -s), axis=1)[:, :k]
  return jnp.take_along_axis(s, order, 1), jnp.take_along_axis(i, order, 1)


SEGMENT = 128  # columns per segment in the two-stage block top-k


def _block_topk(s, ib, k):
  """Exact top-k of one [Q, cb] score block, in two cheap stages instead of one top_k over cb.

  The k-th largest score is >= the k-th largest segment maximum, so every top-k element lies in one
  of the k segments with the largest maxima: top_k over cb/SEGMENT maxima, gather those k segments,
  top_k over k*SEGMENT scores. (lax.top_k over the whole block dominates the search on CPU.)
  """
  qn, cb = s.shape
  seg_n = cb // SEGMENT
  if cb % SEGMENT or seg_n <= k or k * SEGMENT >= cb:
    bs, bi = lax.top_k(s, min(k, cb))
    return bs, ib[bi]
  seg = s.reshape(qn, seg_n, SEGMENT)
  _, top_seg = lax.top_k(seg.max(-1), k)                                    # [Q, k]
  cand = jnp.take_along_axis(seg, top_seg[:, :, None], axis=1).reshape(qn, k * SEGMENT)
  cand_pos = (top_seg[:, :, None] * SEGMENT + jnp.arange(SEGMENT)).reshape(qn, k * SEGMENT)
  bs, bp = lax.top_k(cand, k)
  return bs, ib[jnp.take_along_axis(cand_pos, bp, 1)]


@functools.partial(jax.jit, static_argnames=("mesh", "c_block", "k"))
def _topk_kernel(q, c, valid, idx, best_s, best_i, *, mesh, c_block, k):
  """Top-k of q against this slice of candidates, merged into the running (best_s, best_i)."""
  def local(q, c, valid, idx):
    blocks = _blocks(c, valid, idx, c_block)

    def body(carry, blk):
      cb, vb, ib = blk
      s = jnp.where(vb[None, :], jnp.dot(q, cb.T, preferred_element_type=jnp.float32), -jnp.inf)
      bs, bi = _block_topk(s, ib, k)
      return _merge_topk(carry[0], carry[1], bs, bi, k), None

    init = (jnp.full((q.shape[0], k), -jnp.inf, jnp.float32),
            jnp.full((q.shape[0], k), jnp.iinfo(jnp.int32).max, jnp.int32))
    (s, i), _ = lax.scan(body, init, blocks)
    return s[None], i[None]

  s, i = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(AXIS), P(AXIS), P(AXIS)),
                       out_specs=(P(AXIS), P(AXIS)), check_vma=False)(q, c, valid, idx)
  # Merge the devices' local top-ks: [n_dev, Q, k] -> [Q, n_dev * k] -> top-k.
  s = jnp.moveaxis(s, 0, 1).reshape(q.shape[0], -1)
  i = jnp.moveaxis(i, 0, 1).reshape(q.shape[0], -1)
  return _merge_topk(s, i, best_s, best_i, k)


def top_k(queries: np.ndarray, cands: np.ndarray, k: int, mesh: Mesh | None = None,
          q_block: int = 256, c_block: int = 4096, slice_rows: int = 1 << 18
          ) -> tuple[np.ndarray, np.ndarray]:
  """Exact top-k by inner product: (scores [Q, k], indices [Q, k]); -1 where fewer than k exist.

  The candidates go to the devices `slice_rows` at a time and the running top-k stays on device,
  so memory beyond the caller's array is one slice plus [q_block, c_block] scores per device.
  """
  mesh = flat_mesh(mesh)
  n = len(cands)
  k_eff = min(k, n)
  q_all = np.asarray(queries, np.float32)
  n_q = len(q_all)
  best = [(np.full((q_block, k_eff), -np.inf, np.float32),
           np.full((q_block, k_eff), np.iinfo(np.int32).max, np.int32))
          for _ in range(0, n_q, q_block)]
  for start in range(0, max(n, 1), slice_rows):
    part = np.asarray(cands[start:start + slice_rows], np.float32)
    c, valid, idx, cb = _shard_candidates(part, mesh, c_block, offset=start)
    for b, s in enumerate(range(0, n_q, q_block)):
      qb = _pad_rows(q_all[s:s + q_block], q_block)
      best[b] = _topk_kernel(qb, c, valid, idx, *best[b], mesh=mesh, c_block=cb, k=k_eff)
    del c, valid, idx
  scores = np.concatenate([np.asarray(bs) for bs, _ in best])[:n_q]
  ids = np.concatenate([np.asarray(bi) for _, bi in best])[:n_q].astype(np.int64)
  ids[(ids >= n) | ~np.isfinite(scores)] = -1
  return scores, ids


def _pad_rows(x: np.ndarray, n: int, fill=0) -> np.ndarray:
  if x.shape[0] == n:
    return x
  out = np.full((n,) + x.shape[1:], fill, x.dtype)
  out[:x.shape[0]] = x
  return out
