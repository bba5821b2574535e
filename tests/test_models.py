"""models.Dropout: rate, unbiased scale, and the same mask under any sharding."""
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from hbt_jax import models, sharding


def _apply(x, rate, seed=0, deterministic=False):
  return models.Dropout(rate).apply({}, x, deterministic, rngs={"dropout": jax.random.key(seed)})


def test_dropout_rate_and_scale():
  x = jnp.ones((64, 128, 385), jnp.float32)  # odd last dim: the 16-bit pairs are cut back
  y = np.asarray(_apply(x, 0.1))
  kept = y != 0
  n = kept.size
  assert abs(kept.mean() - 0.9) < 4 * np.sqrt(0.09 / n)  # 4 sigma of a binomial proportion
  np.testing.assert_allclose(np.unique(y[kept]), 65536 / round(0.9 * 65536), rtol=1e-6)
  assert abs(y.mean() - 1.0) < 4 * np.sqrt(0.1 / 0.9 / n) + 1e-6  # unbiased
  assert not np.array_equal(y, np.asarray(_apply(x, 0.1, seed=1)))
  np.testing.assert_array_equal(np.asarray(_apply(x, 0.1, deterministic=True)), np.asarray(x))
  np.testing.assert_array_equal(np.asarray(_apply(x, 0.0)), np.asarray(x))


def test_dropout_mask_is_the_same_under_sharding():
  mesh = sharding.make_mesh({"data": 8})
  x = jnp.asarray(np.random.default_rng(0).normal(size=(16, 8, 6)).astype(np.float32))
  one = jax.jit(lambda x: _apply(x, 0.3))(x)
  xs = jax.device_put(x, NamedSharding(mesh, P("data")))
  many = jax.jit(lambda x: _apply(x, 0.3), out_shardings=NamedSharding(mesh, P("data")))(xs)
  np.testing.assert_array_equal(np.asarray(one), np.asarray(many))
