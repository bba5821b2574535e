"""The frozen image tower's embedding cache: hits, and no stale reuse across towers, weights,
preprocessing or edited images."""
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from hbt_jax import embedding_cache as ec, image_models
from hbt_jax.data import images


def test_cache_hits_and_invalidation(tmp_path):
  paths = []
  for i in range(5):
    p = tmp_path / f"{i}.png"
    Image.new("RGB", (40, 30), (i * 40, 10, 200)).save(p)
    paths.append(str(p))
  module = image_models.EfficientNetLite()
  variables = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  apply = jax.jit(module.apply)  # one compile (batches padded to 2), not op-by-op dispatch
  spec = images.Preprocess(size=32, resize="squash")
  calls = []

  def compute(ps):
    calls.append(len(ps))
    x = np.stack([images.load(p, spec) for p in ps])
    pad = np.zeros((max(2 - len(x), 0),) + x.shape[1:], x.dtype)
    return np.asarray(apply(variables, np.concatenate([x, pad])))[:len(ps)]

  key = ec.tower_key("lite0", variables, spec.key())
  cache = ec.EmbeddingCache(tmp_path / "cache", key)
  first = cache.get(paths, compute, batch=2)
  assert calls == [2, 2, 1] and first.shape == (5, 1280)
  again = ec.EmbeddingCache(tmp_path / "cache", key).get(paths, compute)
  np.testing.assert_array_equal(again, first)
  assert calls == [2, 2, 1]  # all hits
  # Another preprocessing, other weights or another tower config: another key, recomputed.
  other_spec = images.Preprocess(size=48, resize="squash")
  moved = jax.tree.map(lambda a: a + 1e-3, variables)
  keys = {key, ec.tower_key("lite0", variables, other_spec.key()),
          ec.tower_key("lite0", moved, spec.key()), ec.tower_key("lite1", variables, spec.key())}
  assert len(keys) == 4
  # An edited image is recomputed alone.
  Image.new("RGB", (40, 30), (0, 255, 0)).save(paths[3])
  cache = ec.EmbeddingCache(tmp_path / "cache", key)
  updated = cache.get(paths, compute)
  assert calls[-1] == 1 and (cache.hits, cache.misses) == (4, 1)
  assert np.abs(updated[3] - first[3]).max() > 1e-4
  np.testing.assert_array_equal(updated[[0, 1, 2, 4]], first[[0, 1, 2, 4]])
  assert not list((tmp_path / "cache").rglob("*.tmp"))
