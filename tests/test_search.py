"""Blocked, sharded search kernels on 8 fake devices == a NumPy full sort."""
import jax
import numpy as np
import pytest

from hbt_jax.evaluation import search


@pytest.mark.parametrize("nc,c_block", [(1003, 64), (37, 16), (2500, 512)])
def test_topk_and_ranks_match_numpy_full_sort(nc, c_block):
  assert jax.device_count() == 8
  rng = np.random.default_rng(nc)
  nq, d, k = 70, 24, 10
  q = rng.normal(size=(nq, d)).astype(np.float32)
  c = rng.normal(size=(nc, d)).astype(np.float32)
  c[3] = c[nc - 2]  # an exact tie across devices
  scores = np.asarray(jax.jit(lambda a, b: a @ b.T)(q, c))
  order = np.lexsort((np.broadcast_to(np.arange(nc), scores.shape), -scores), axis=1)

  s, idx = search.top_k(q, c, k, c_block=c_block, q_block=32)
  kk = min(k, nc)
  np.testing.assert_array_equal(idx[:, :kk], order[:, :kk])
  np.testing.assert_allclose(s[:, :kk], np.take_along_axis(scores, order[:, :kk], 1), rtol=1e-5)

  rel = np.stack([rng.choice(nc, 3, replace=False) for _ in range(nq)])
  rel[0] = [3, nc - 2, -1]
  rel[:, 2][rng.random(nq) < 0.3] = -1
  ranks = search.relevant_ranks(q, c, rel, c_block=c_block, q_block=32)
  pos = np.empty_like(order)
  np.put_along_axis(pos, order, np.arange(1, nc + 1)[None].repeat(nq, 0), 1)
  want = np.where(rel >= 0, np.take_along_axis(pos, np.maximum(rel, 0), 1), 0)
  np.testing.assert_array_equal(ranks, want)
  assert ranks[0, 0] + 1 == ranks[0, 1]  # the tied copy ranks right after the lower index


def test_kernels_accept_a_training_mesh():
  from hbt_jax import sharding
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  rng = np.random.default_rng(0)
  q, c = rng.normal(size=(5, 8)).astype(np.float32), rng.normal(size=(50, 8)).astype(np.float32)
  _, idx = search.top_k(q, c, 3, mesh=mesh)
  np.testing.assert_array_equal(idx, np.argsort(-(q @ c.T), 1)[:, :3])


@pytest.mark.parametrize("layout", ["random", "ascending", "descending", "ties"])
@pytest.mark.parametrize("devices", [1, 8])
def test_topk_segment_selection_is_exact(layout, devices):
  """The thresholded segment selection (segment < c_block) on layouts that drive it into each of its
  branches: scores rising along the pool (every block brings new top-k members), falling (almost
  none after the first block), and pools full of exact ties."""
  rng = np.random.default_rng(7)
  nq, nc, d, k = 40, 3001, 16, 12
  base = rng.normal(size=d)
  q = (base + 0.3 * rng.normal(size=(nq, d))).astype(np.float32)
  c = rng.normal(size=(nc, d)).astype(np.float32)
  if layout in ("ascending", "descending"):
    c = c[np.argsort(c @ base)][::1 if layout == "ascending" else -1]
  elif layout == "ties":
    c = c[rng.integers(0, 40, nc)]
  c = np.ascontiguousarray(c)
  scores = np.asarray(jax.jit(lambda a, b: a @ b.T)(q, c))
  order = np.lexsort((np.broadcast_to(np.arange(nc), scores.shape), -scores), axis=1)[:, :k]
  mesh = search.flat_mesh(jax.devices()[:devices])
  s, idx = search.top_k(q, c, k, mesh=mesh, q_block=16, c_block=128, slice_rows=1024, segment=8)
  np.testing.assert_array_equal(idx, order)
  np.testing.assert_allclose(s, np.take_along_axis(scores, order, 1), rtol=1e-5)


def test_topk_tie_across_segments_goes_to_lower_index():
  """Row 2 (segment 0, max 5) ties row 12 (segment 1, max 9): the gathered segments must stay in
  index order or row 12 would win the tie."""
  c = np.zeros((256, 4), np.float32)
  c[:, 1] = 1.0
  c[2, 0], c[9, 0], c[12, 0] = 5.0, 9.0, 5.0
  q = np.array([[1.0, 0.0, 0.0, 0.0]], np.float32)
  mesh = search.flat_mesh(jax.devices()[:1])
  _, idx = search.top_k(q, c, 2, mesh=mesh, c_block=128, segment=8)
  np.testing.assert_array_equal(idx, [[9, 2]])


def test_topk_cheap_merge_keeps_ties_in_index_order():
  """k = 20 > 16 so later blocks take the gather-16 + sorted-merge path; rows of block 1 tie rows
  already in the running top-k and must land right after them."""
  x = np.full(512, -1.0, np.float32)
  x[:256] = np.arange(256) * 0.5            # block 0: distinct scores, top-20 = rows 255..236
  x[256 + 7], x[256 + 100] = 120.0, 127.5   # block 1: exact copies of rows 240 and 255's scores
  c = np.stack([x, np.zeros_like(x)], 1)
  q = np.array([[1.0, 0.0]], np.float32)
  mesh = search.flat_mesh(jax.devices()[:1])
  _, idx = search.top_k(q, c, 20, mesh=mesh, c_block=256, segment=8)
  want = np.lexsort((np.arange(512), -x))[:20]
  assert list(want[:2]) == [255, 356] and 263 in want
  np.testing.assert_array_equal(idx[0], want)


def test_search_scores_ask_for_full_float32_precision(monkeypatch):
  """GPUs run float32 matmuls as TF32 unless told otherwise (TPUs as bf16 passes), which changes
  exact ranks and top-k ids by backend: there the kernels' score matmul asks for HIGHEST precision.
  XLA:CPU computes float32 either way and keeps its default (faster) dot. Checked on the lowered
  program, tracing as if for a GPU."""
  rng = np.random.default_rng(0)
  mesh = search.flat_mesh()

  def dots(n_cands):  # another shape per call: a fresh trace
    q = rng.normal(size=(8, 16)).astype(np.float32)
    cs, valid, idx, cb = search._shard_candidates(rng.normal(size=(n_cands, 16)).astype(np.float32),
                                                   mesh, 16)
    text = search._ranks_kernel.lower(q, np.zeros((8, 1), np.int32), cs, valid, idx, mesh=mesh,
                                      c_block=cb).as_text()
    return [l for l in text.splitlines() if "dot_general" in l]

  on_cpu = dots(64)
  assert on_cpu and not any("HIGHEST" in l for l in on_cpu), on_cpu[:2]
  monkeypatch.setattr(search.jax, "default_backend", lambda: "gpu")
  on_gpu = dots(128)
  assert on_gpu and all("HIGHEST" in l for l in on_gpu), on_gpu[:2]
