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


def _unit_rows(rng, n, d):
  x = rng.normal(size=(n, d))
  return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _reference_topk(q, c, k):
  """Ids and float32 scores of the exact top-k (float64 scores decide; ties to the lower index)."""
  s64 = q.astype(np.float64) @ c.astype(np.float64).T
  order = np.lexsort((np.broadcast_to(np.arange(len(c)), s64.shape), -s64), axis=1)[:, :k]
  return order, np.take_along_axis(s64, order, 1)


def _screened(q, c, screen):
  """The screen's scores, made here the way a GPU's bf16 tensor cores make them."""
  import jax.numpy as jnp
  return np.asarray(search._scores(jnp.asarray(q), jnp.asarray(c), screen), np.float64)


@pytest.mark.parametrize("screen", ["bf16", "bf16_3x"])
def test_screen_error_bound_holds(screen):
  """|screened - exact| <= screen_error * |q| |c| on random and adversarial (large, mixed-scale)
  vectors; and the bound is not vacuous (the worst error is within 100x of it)."""
  rng = np.random.default_rng(1)
  d = 96
  q = rng.normal(size=(64, d)) * rng.choice([1e-3, 1.0, 30.0], size=(64, 1))
  c = rng.normal(size=(500, d)) * rng.choice([1e-2, 1.0, 7.0], size=(500, 1))
  q, c = q.astype(np.float32), c.astype(np.float32)
  exact = q.astype(np.float64) @ c.astype(np.float64).T
  bound = (search.screen_error(screen, d) * np.linalg.norm(q.astype(np.float64), axis=1)[:, None]
           * np.linalg.norm(c.astype(np.float64), axis=1)[None])
  err = np.abs(_screened(q, c, screen) - exact)
  assert (err <= bound).all()
  assert (err / bound).max() > 0.01


@pytest.mark.parametrize("screen", ["bf16", "bf16_3x"])
def test_screened_topk_is_exact_against_numpy_and_faiss(screen):
  faiss = pytest.importorskip("faiss")
  rng = np.random.default_rng(2)
  d, k = 64, 20
  q, c = _unit_rows(rng, 90, d), _unit_rows(rng, 3000, d)
  want_ids, want_s = _reference_topk(q, c, k)
  stats = {}
  s, ids = search.top_k(q, c, k, q_block=32, c_block=256, screen=screen, stats=stats)
  np.testing.assert_array_equal(ids, want_ids)
  np.testing.assert_allclose(s, want_s, atol=2e-6)
  assert stats["screen"] == screen and stats["queries"] == 90
  index = faiss.IndexFlatIP(d)
  index.add(c)
  _, f_ids = index.search(q, k)
  np.testing.assert_array_equal(ids, f_ids)


def test_screen_alone_is_not_exact_but_the_rescored_topk_is():
  """Candidates whose scores differ by less than a bf16 screen can see: the screen's own top-k
  misorders them, the re-scored top-k does not, and where too many lie inside the screen's error
  for the kept list to be certified, those queries fall back to exact scores (and are exact)."""
  rng = np.random.default_rng(3)
  d, k = 64, 10
  q = _unit_rows(rng, 12, d)
  base = _unit_rows(rng, 1, d)[0]
  # 400 near-copies of one direction: scores against q[0] spaced ~1e-5 apart, far below bf16's
  # resolution (~4e-3); the rest random. q[0] points at the cluster.
  c = _unit_rows(rng, 2000, d)
  near = base[None] + 3e-3 * rng.normal(size=(400, d)).astype(np.float32)
  c[:400] = near / np.linalg.norm(near, axis=1, keepdims=True)
  q[0] = base
  want_ids, _ = _reference_topk(q, c, k)
  scr = _screened(q[:1], c, "bf16")[0]
  screen_only = np.lexsort((np.arange(len(c)), -scr))[:k]
  assert not np.array_equal(screen_only, want_ids[0])
  stats = {}
  _, ids = search.top_k(q, c, k, q_block=8, c_block=256, screen="bf16", stats=stats)
  np.testing.assert_array_equal(ids, want_ids)
  assert 1 <= stats["fallback"] < len(q)  # q[0]: the cluster is wider than the kept list
  _, ids3 = search.top_k(q, c, k, q_block=8, c_block=256, screen="bf16_3x")
  np.testing.assert_array_equal(ids3, want_ids)


def test_screen_is_on_by_default_off_cpu_only():
  assert search.resolve_screen("auto", "cpu") == "off"
  assert search.resolve_screen("auto", "gpu") == "bf16_3x"
  assert search.resolve_screen("auto", "tpu") == "bf16_3x"
  with pytest.raises(ValueError, match="screen='fp8'"):
    search.resolve_screen("fp8")
