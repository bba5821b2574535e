"""models: Dropout (rate, unbiased scale, the same mask under any sharding), the layer against the textbook
computation, the exact GELU gradient, and the XLA:CPU dot-library option."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from hbt_jax import models, sharding


def _apply(x, rate, seed=0, deterministic=False):
  return models.Dropout(rate).apply({}, x, deterministic, rngs={"dropout": jax.random.key(seed)})


def test_dropout_rate_and_scale():
  x = jnp.ones((64, 128, 385), jnp.float32)
  y = np.asarray(_apply(x, 0.1))
  kept = y != 0
  n = kept.size
  assert abs(kept.mean() - 0.9) < 4 * np.sqrt(0.09 / n)  # 4 sigma of a binomial proportion
  np.testing.assert_allclose(np.unique(y[kept]), 2**32 / round(0.9 * 2**32), rtol=1e-6)
  assert abs(y.mean() - 1.0) < 4 * np.sqrt(0.1 / 0.9 / n) + 1e-6  # unbiased
  assert not np.array_equal(y, np.asarray(_apply(x, 0.1, seed=1)))
  np.testing.assert_array_equal(np.asarray(_apply(x, 0.1, deterministic=True)), np.asarray(x))
  np.testing.assert_array_equal(np.asarray(_apply(x, 0.0)), np.asarray(x))
  assert not np.asarray(_apply(x, 1.0)).any()


def _corr(a, b):
  return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_dropout_masks_look_independent():
  """The hashed masks: no correlation between neighbouring elements, examples, seeds, or the
  same position of examples (4 sigma of a correlation estimate, 1/sqrt(n)), rate right per example."""
  x = jnp.ones((256, 64, 96), jnp.float32)
  keep = np.asarray(_apply(x, 0.5)) != 0
  keep2 = np.asarray(_apply(x, 0.5, seed=1)) != 0
  tol = 4 / np.sqrt(keep.size / 2)
  assert abs(_corr(keep[..., :-1], keep[..., 1:])) < tol  # neighbours along the last axis
  assert abs(_corr(keep[:, :-1], keep[:, 1:])) < tol      # along the middle axis
  assert abs(_corr(keep[:-1], keep[1:])) < tol            # the next example, same position
  assert abs(_corr(keep, keep2)) < tol                    # another seed
  per_example = keep.reshape(256, -1).mean(1)
  assert np.abs(per_example - 0.5).max() < 5 * np.sqrt(0.25 / keep[0].size)
  # pairs of bits: all four patterns equally likely (chi-square, 3 d.o.f., p ~ 1e-6 at 30)
  pairs = (2 * keep[..., 0::2] + keep[..., 1::2]).ravel()
  counts = np.bincount(pairs, minlength=4)
  assert ((counts - pairs.size / 4) ** 2 / (pairs.size / 4)).sum() < 30


def test_dropout_rejects_inputs_without_an_example_axis():
  with pytest.raises(ValueError, match="leading example axis"):
    _apply(jnp.ones((5,), jnp.float32), 0.1)


def test_dropout_mask_is_the_same_under_sharding():
  mesh = sharding.make_mesh({"data": 8})
  x = jnp.asarray(np.random.default_rng(0).normal(size=(16, 8, 6)).astype(np.float32))
  one = jax.jit(lambda x: _apply(x, 0.3))(x)
  xs = jax.device_put(x, NamedSharding(mesh, P("data")))
  many = jax.jit(lambda x: _apply(x, 0.3), out_shardings=NamedSharding(mesh, P("data")))(xs)
  np.testing.assert_array_equal(np.asarray(one), np.asarray(many))


def _tiny_layer_inputs():
  cfg = models.EncoderConfig(hidden_size=48, num_heads=4, intermediate_size=96, dropout=0.0,
                             attention_dropout=0.0)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(3, 7, 48)).astype(np.float32))
  mask = np.ones((3, 7), np.int32)
  mask[1, 4:] = 0
  bias = jnp.where(jnp.asarray(mask)[:, None, None, :] > 0, 0.0, jnp.finfo(jnp.float32).min / 2)
  return cfg, x, bias


def test_layer_matches_the_textbook_computation():
  """The fused QKV matmul and the deferred softmax normalisation compute the textbook BERT layer
  (separate Q/K/V denses, softmax, then context), forward and gradients."""
  cfg, x, bias = _tiny_layer_inputs()
  layer = models.Layer(cfg)
  p = nn.unbox(layer.init(jax.random.key(0), x, bias, True))["params"]

  def reference(p, x):
    h, d = cfg.num_heads, cfg.hidden_size // cfg.num_heads
    dense = lambda t, q: t @ q["kernel"] + q["bias"]
    heads = lambda t: t.reshape(t.shape[:2] + (h, d)).transpose(0, 2, 1, 3)
    q, k, v = (heads(dense(x, p[n])) for n in ("query", "key", "value"))
    att = jax.nn.softmax(q @ k.swapaxes(-1, -2) / np.sqrt(d) + bias, axis=-1)
    ctx = (att @ v).transpose(0, 2, 1, 3).reshape(x.shape)
    ln = lambda t, q: ((t - t.mean(-1, keepdims=True)) / jnp.sqrt(t.var(-1, keepdims=True) + cfg.layer_norm_eps)
                       * q["scale"] + q["bias"])
    x = ln(x + dense(ctx, p["attention_output"]), p["attention_LayerNorm"])
    y = dense(jax.nn.gelu(dense(x, p["intermediate"]), approximate=False), p["output"])
    return ln(x + y, p["output_LayerNorm"])

  ours = lambda p, x: layer.apply({"params": p}, x, bias, True)
  np.testing.assert_allclose(ours(p, x), reference(p, x), atol=2e-5)
  loss = lambda f: (lambda p, x: (f(p, x) ** 3).sum())
  g_ours, g_ref = jax.grad(loss(ours), (0, 1))(p, x), jax.grad(loss(reference), (0, 1))(p, x)
  for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_ref)):
    np.testing.assert_allclose(a, b, atol=2e-4, rtol=2e-4)


def test_gelu_gradient_is_exact():
  x = jnp.linspace(-6.0, 6.0, 1001)
  ours = jax.grad(lambda t: models.gelu_erf(t).sum())(x)
  ref = jax.grad(lambda t: jax.nn.gelu(t, approximate=False).sum())(x)
  np.testing.assert_allclose(ours, ref, atol=1e-6)
  np.testing.assert_allclose(models.gelu_erf(x), jax.nn.gelu(x, approximate=False), atol=1e-6)


def test_layer_norm_matches_flax_forward_and_gradients():
  x = jax.random.normal(jax.random.key(0), (3, 5, 32)) * 4.0 + 2.0
  ref, ours = nn.LayerNorm(epsilon=1e-6), models.LayerNorm(epsilon=1e-6)
  params = ref.init(jax.random.key(1), x)
  assert (jax.tree.map(jnp.shape, nn.unbox(ours.init(jax.random.key(1), x)))
          == jax.tree.map(jnp.shape, params))
  params = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(jax.random.key(2), a.shape), params)
  w = jax.random.normal(jax.random.key(3), x.shape)  # a loss whose gradient is not constant

  def loss(module):
    return lambda p, x: (module.apply(p, x) * w).sum() + (module.apply(p, x) ** 2).sum()
  np.testing.assert_allclose(ours.apply(params, x), ref.apply(params, x), atol=1e-5)
  got, want = (jax.grad(loss(m), argnums=(0, 1))(params, x) for m in (ours, ref))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5), got, want)
  half = models.LayerNorm(epsilon=1e-6, dtype=jnp.bfloat16).apply(params, x.astype(jnp.bfloat16))
  assert half.dtype == jnp.bfloat16
  np.testing.assert_allclose(half.astype(jnp.float32), ref.apply(params, x), atol=0.05)


def test_cpu_dots_option_reaches_the_compiled_step():
  """config.model.cpu_dots: 'eigen' keeps every matmul of the jitted layer out of YNNPACK on CPU,
  'ynnpack' leaves XLA's default, 'auto' is Eigen for encoding and YNNPACK for the train step; the
  libraries give the same numbers."""
  from hbt_jax import xla_options
  cfg, x, bias = _tiny_layer_inputs()
  layer = models.Layer(cfg)
  params = layer.init(jax.random.key(0), x, bias, True)
  fn = lambda p, x: layer.apply(p, x, bias, True)
  out = {}
  for lib, purpose, ynn in [("eigen", "train", False), ("ynnpack", "encode", True),
                            ("auto", "encode", False), ("auto", "train", True)]:
    opts = xla_options.encoder_compiler_options(lib)[purpose]
    jitted = jax.jit(fn, compiler_options=opts)
    hlo = jitted.lower(params, x).compile().as_text()
    assert ("__ynn_fusion" in hlo) == ynn, (lib, purpose)
    out[ynn] = np.asarray(jitted(params, x))
  np.testing.assert_allclose(out[False], out[True], atol=1e-5)
  import pytest
  with pytest.raises(ValueError, match="config.model.cpu_dots"):
    xla_options.encoder_compiler_options("mkl")


def test_auto_dtype_is_float32_on_cpu_and_bfloat16_elsewhere(monkeypatch):
  assert models.compute_dtype("auto") == "float32"  # the tests run on the CPU
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert models.compute_dtype("auto") == "bfloat16"
  assert models.compute_dtype("float32") == "float32"
