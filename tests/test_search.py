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
