"""The two attention paths (attention.py) against each other, and the per-backend choice."""
import logging

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hbt_jax import attention, config_base, models
from hbt_jax.errors import ConfigError


def _encoder(arch: str, impl: str, dropout: float = 0.0, **kw):
  cfg = models.EncoderConfig(arch=arch, vocab_size=97, hidden_size=64, num_layers=2, num_heads=4,
                             intermediate_size=128, max_position=40, pad_token_id=1,
                             dropout=dropout, attention_dropout=dropout, attention=impl, **kw)
  return models.Encoder(cfg)


def _batch():
  """Right-padded rows of several lengths, one full row and one with no tokens at all (an absent
  hard negative)."""
  rng = np.random.default_rng(0)
  lens = np.array([17, 5, 1, 0, 11, 17])
  mask = (np.arange(17)[None] < lens[:, None]).astype(np.int32)
  ids = np.where(mask > 0, rng.integers(2, 97, mask.shape), 1).astype(np.int32)
  return jnp.asarray(ids), jnp.asarray(mask)


@pytest.mark.parametrize("arch", ["bert", "xlm-roberta"])
@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_fused_attention_matches_explicit_forward_and_gradients(arch, pooling):
  ids, mask = _batch()
  explicit, fused = (_encoder(arch, impl, pooling=pooling) for impl in ("explicit", "xla"))
  params = nn.unbox(explicit.init(jax.random.key(0), ids, mask))["params"]
  real = np.asarray(mask).sum(1) > 0

  def run(m):
    pooled, hidden = m.apply({"params": params}, ids, mask, True, True)
    return np.asarray(pooled), np.asarray(hidden)

  (pe, he), (pf, hf) = run(explicit), run(fused)
  np.testing.assert_allclose(pf[real], pe[real], atol=2e-5)
  valid = np.asarray(mask) > 0  # the fused path zeroes padded positions; they are never read
  np.testing.assert_allclose(hf[valid], he[valid], atol=5e-5)
  assert np.isfinite(pf).all() and np.isfinite(hf).all()

  weights = jnp.asarray(np.random.default_rng(1).normal(size=pe.shape).astype(np.float32))

  def loss(p, m):  # a contrastive-style scalar over the real rows
    out = m.apply({"params": p}, ids, mask, True)
    return jnp.sum(jnp.where(jnp.asarray(real)[:, None], out * weights, 0.0) ** 2)

  ge, gf = (jax.grad(loss)(params, m) for m in (explicit, fused))
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(ge), jax.tree.leaves(gf)):
    np.testing.assert_allclose(b, a, atol=2e-5, rtol=2e-4, err_msg=jax.tree_util.keystr(path))


def test_attention_dropout_in_training_falls_back_to_the_explicit_path():
  """With attention dropout, a training call of a fused-configured model is the explicit path (same
  dropout masks, the same numbers); without dropout (deterministic) it runs fused."""
  ids, mask = _batch()
  explicit, fused = (_encoder("bert", impl, dropout=0.1) for impl in ("explicit", "xla"))
  params = explicit.init(jax.random.key(0), ids, mask)
  rngs = {"dropout": jax.random.key(5)}
  train = [np.asarray(m.apply(params, ids, mask, False, rngs=rngs)) for m in (explicit, fused)]
  np.testing.assert_array_equal(train[0], train[1])
  calls = []
  real_fused = attention.fused
  try:
    attention.fused = lambda *a: calls.append(a[-1]) or real_fused(*a)
    fused.apply(params, ids, mask, False, rngs=rngs)
    assert calls == []
    fused.apply(params, ids, mask, True)
    assert calls == ["xla", "xla"]  # one per layer
  finally:
    attention.fused = real_fused
  assert attention.fused_now("xla", 0.1, True) and not attention.fused_now("xla", 0.1, False)
  assert attention.fused_now("cudnn", 0.0, False) and not attention.fused_now("explicit", 0.0, True)


def test_the_choice_per_backend_and_its_log(caplog):
  attention._said.clear()
  with caplog.at_level(logging.INFO):
    assert attention.implementation("auto", backend="cpu") == "explicit"
    assert attention.implementation("fused", backend="cpu") == "xla"
    assert attention.implementation("auto", backend="tpu", dtype="bfloat16") == "xla"
    assert attention.implementation("auto", backend="gpu", dtype="bfloat16", head_dim=64) == "cudnn"
    assert attention.implementation("explicit", backend="gpu", dtype="bfloat16") == "explicit"
    assert caplog.text == ""
    assert attention.implementation("auto", backend="gpu", dtype="float32") == "xla"
    assert "needs a bfloat16 / float16 compute dtype" in caplog.text
    assert attention.implementation("fused", backend="gpu", dtype="bfloat16", head_dim=160) == "xla"
    assert "multiple of 8 up to 128" in caplog.text
    assert attention.implementation("auto", backend="gpu", dtype="bfloat16",
                                    attention_dropout=0.1) == "cudnn"
    assert "falls back to the explicit attention" in caplog.text
  with pytest.raises(ConfigError, match="config.model.attention='flash'"):
    attention.implementation("flash")


def test_encoder_config_resolves_the_switch_from_the_config():
  c = config_base.base_config()
  c.model.attention = "fused"
  assert models.encoder_config(c.model, None).attention == "xla"  # on this CPU
  c.model.attention = "auto"
  assert models.encoder_config(c.model, None).attention == "explicit"
