"""InfoNCE over the global batch on 8 fake devices equals a single-device NumPy reference."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from hbt_jax import losses, sharding


def _np_info_nce(q, p, t, neg=None, valid=None, symmetric=False):
  def ce(logits):
    m = logits.max(1, keepdims=True)
    lse = np.log(np.exp(logits - m).sum(1)) + m[:, 0]
    return np.mean(lse - np.diag(logits[:, :logits.shape[0]]))
  cands = p if neg is None else np.concatenate([p, neg.reshape(-1, p.shape[1])])
  logits = q @ cands.T / t
  if neg is not None:
    ok = np.concatenate([np.ones(len(p), bool), valid.reshape(-1)])
    logits = np.where(ok[None], logits, -np.inf)
  loss = ce(logits)
  if symmetric:
    loss = 0.5 * (loss + ce(p @ q.T / t))
  return loss


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("with_negs,symmetric", [(False, False), (True, False), (False, True)])
def test_global_batch_loss_on_8_devices_matches_numpy(with_negs, symmetric):
  assert jax.device_count() == 8
  rng = np.random.default_rng(0)
  b, d, k = 32, 16, 2
  q, p = _unit(rng.normal(size=(b, d))), _unit(rng.normal(size=(b, d)))
  neg = _unit(rng.normal(size=(b, k, d))) if with_negs else None
  valid = rng.random((b, k)) > 0.3 if with_negs else None
  ref = _np_info_nce(q, p, 0.05, neg, valid, symmetric)
  mesh = sharding.make_mesh({"data": -1, "fsdp": 1})
  shard = NamedSharding(mesh, P("data"))
  args = [jax.device_put(np.float32(x), shard) for x in (q, p)]
  extra = [jax.device_put(np.float32(neg), shard), jax.device_put(valid, shard)] if with_negs else [None, None]
  assert len(args[0].sharding.device_set) == 8
  fn = jax.jit(lambda q, p, n, v: losses.info_nce(q, p, 0.05, n, v, symmetric)[0])
  got = float(fn(*args, *extra))
  np.testing.assert_allclose(got, ref, rtol=1e-5)
  # Sharding must not change the result: the same on one device.
  single = float(fn(*(jnp.float32(x) if x is not None else None for x in (q, p, neg)),
                    None if valid is None else jnp.asarray(valid)))
  np.testing.assert_allclose(got, single, rtol=1e-6)


def test_loss_uses_negatives_from_other_shards():
  """A pair whose only hard in-batch negative lives on another device must still see it."""
  b, d = 8, 4
  q = np.eye(b, d, dtype=np.float32)[np.arange(b) % d]
  p = q.copy()
  mesh = sharding.make_mesh({"data": -1, "fsdp": 1})
  shard = NamedSharding(mesh, P("data"))
  got = float(jax.jit(lambda q, p: losses.info_nce(q, p, 1.0)[0])(jax.device_put(q, shard),
                                                                  jax.device_put(p, shard)))
  # Each query has an identical passage 4 rows away (another device): log(2 e / (2 e + 6)) term.
  np.testing.assert_allclose(got, _np_info_nce(q, p, 1.0), rtol=1e-6)
  assert got > _np_info_nce(q[:1], p[:1], 1.0) + 0.5
