"""Flax dual encoder: a BERT-family / XLM-RoBERTa transformer, pooling, optional projection, L2 norm.

Parameter names follow the HF layout (embeddings, layer_i/attention/query, ...) so that safetensors
weights map onto them one to one (hf_import.py). Every kernel carries logical axis names
('vocab', 'embed', 'mlp', 'heads'), which sharding.py maps onto mesh axes.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from hbt_jax import attention
from hbt_jax.errors import CheckpointError, ConfigError

ARCHS = ("bert", "xlm-roberta")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  arch: str = "bert"
  vocab_size: int = 30522
  hidden_size: int = 384
  num_layers: int = 6
  num_heads: int = 12
  intermediate_size: int = 1536
  max_position: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  pad_token_id: int = 0
  hidden_act: str = "gelu"
  pooling: str = "mean"          # "mean" | "cls"
  projection_dim: int = 0        # 0 = no projection
  projection_activation: str = "identity"  # "identity" | "tanh" (LaBSE's sentence-transformers head)
  normalize: bool = True
  dtype: str = "float32"         # compute dtype; parameters stay float32
  dropout: float = 0.1
  attention_dropout: float = 0.1
  remat: bool = False
  attention: str = attention.EXPLICIT  # the kernel: "explicit" | "xla" | "cudnn" (attention.py)

  @classmethod
  def from_hf(cls, hf: dict, **overrides) -> "EncoderConfig":
    """From an HF config.json dict (model_type bert / xlm-roberta)."""
    mt = hf.get("model_type", "bert")
    arch = {"bert": "bert", "xlm-roberta": "xlm-roberta", "roberta": "xlm-roberta"}.get(mt)
    if arch is None:
      raise CheckpointError(f"unsupported architecture model_type={mt!r}; hbt_jax supports BERT-layout "
                       "(bert: MiniLM, LaBSE, mBERT) and xlm-roberta")
    fields = dict(arch=arch, vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
                  num_layers=hf["num_hidden_layers"], num_heads=hf["num_attention_heads"],
                  intermediate_size=hf["intermediate_size"],
                  max_position=hf["max_position_embeddings"],
                  type_vocab_size=hf.get("type_vocab_size", 2),
                  layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
                  pad_token_id=hf.get("pad_token_id", 0) or 0,
                  hidden_act=hf.get("hidden_act", "gelu"),
                  dropout=hf.get("hidden_dropout_prob", 0.1),
                  attention_dropout=hf.get("attention_probs_dropout_prob", 0.1))
    fields.update(overrides)
    return cls(**fields)


def _dense(features: int, axes: tuple[str, str], name: str, dtype) -> nn.Dense:
  return nn.Dense(features, dtype=dtype, name=name,
                  kernel_init=nn.with_logical_partitioning(nn.initializers.normal(0.02), axes),
                  bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (axes[1],)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def layer_norm(x, scale, bias, eps: float):
  """LayerNorm over the last axis in float32 (flax's formula: E[x^2] - E[x]^2, clipped), output
  in x's dtype, with a hand-written backward that keeps the normalised input and 1/sigma: autodiff
  of the forward materialises broadcast [B, L, E] factors and reduces more often (the train step
  4-6 % faster on XLA:CPU, docs/benchmarks.md)."""
  return _layer_norm_fwd(x, scale, bias, eps)[0]


def _layer_norm_fwd(x, scale, bias, eps):
  x32 = x.astype(jnp.float32)
  mean = x32.mean(-1, keepdims=True)
  var = jnp.maximum((x32 * x32).mean(-1, keepdims=True) - mean * mean, 0.0)
  inv = lax.rsqrt(var + eps)
  x_hat = (x32 - mean) * inv
  return (x_hat * scale + bias).astype(x.dtype), (x_hat, inv, scale)


def _layer_norm_bwd(eps, res, g):
  del eps
  x_hat, inv, scale = res
  g32, rows = g.astype(jnp.float32), tuple(range(g.ndim - 1))
  g_hat = g32 * scale
  dx = inv * (g_hat - g_hat.mean(-1, keepdims=True)
              - x_hat * (g_hat * x_hat).mean(-1, keepdims=True))
  return (dx.astype(g.dtype), (g32 * x_hat).sum(rows).astype(scale.dtype),
          g32.sum(rows).astype(scale.dtype))


layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)


class LayerNorm(nn.Module):
  """nn.LayerNorm's parameters (`scale`, `bias`, float32, logical axis 'embed') on `layer_norm`."""
  epsilon: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    shape = (x.shape[-1],)
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)), shape)
    bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)), shape)
    return layer_norm(x.astype(self.dtype), scale, bias, self.epsilon)


def _layer_norm(cfg: EncoderConfig, name: str, dtype) -> LayerNorm:
  return LayerNorm(epsilon=cfg.layer_norm_eps, dtype=dtype, name=name)


@jax.custom_vjp
def gelu_erf(x):
  """Exact (erf) GELU with a hand-written backward: the derivative Phi(x) + x phi(x) reuses the
  forward's Phi(x) and needs one exp, where autodiff of erf re-derives it through XLA's erf
  polynomial (on XLA:CPU the GELU was ~10 % of a layer's forward + backward)."""
  return x * _phi_cdf(x)


def _phi_cdf(x):
  return 0.5 * (1.0 + jax.lax.erf(x * jnp.asarray(2 ** -0.5, x.dtype)))


def _gelu_fwd(x):
  cdf = _phi_cdf(x)
  return x * cdf, (x, cdf)


def _gelu_bwd(res, g):
  x, cdf = res
  pdf = jnp.exp(-0.5 * x * x) * jnp.asarray((2 * math.pi) ** -0.5, x.dtype)
  return (g * (cdf + x * pdf),)


gelu_erf.defvjp(_gelu_fwd, _gelu_bwd)


def _act(name: str):
  if name == "gelu":
    return gelu_erf
  if name in ("gelu_new", "gelu_pytorch_tanh"):
    return lambda x: nn.gelu(x, approximate=True)
  if name == "relu":
    return nn.relu
  raise CheckpointError(f"unsupported hidden_act {name!r}")


def _fmix32(h):
  """MurmurHash3's 32-bit finaliser: a bijection of uint32 with full avalanche."""
  h = (h ^ (h >> 16)) * jnp.uint32(0x85EBCA6B)
  h = (h ^ (h >> 13)) * jnp.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


class Dropout(nn.Module):
  """Inverted dropout whose mask is a counter-based hash keyed by threefry, one key per example.

  Drawing the mask with threefry (flax's nn.Dropout: one float32 uniform per element) was ~8-11 %
  of a MiniLM train step on XLA:CPU (docs/benchmarks.md, CPU speed). Here threefry draws one 32-bit
  seed per example (leading axis) and each element's 32 bits are fmix32(fmix32(i * phi + seed) ^
  seed) of its index i within the example: a few integer ops that XLA fuses into the select, as
  fast as no dropout. The keep probability is quantised to 2^-32 and the scale uses the quantised
  value (unbiased). Seeds follow the leading axis and indices are global, so the mask is the same
  under any sharding and on any backend.
  """
  rate: float

  @nn.compact
  def __call__(self, x, deterministic: bool):
    if deterministic or self.rate == 0.0:
      return x
    keep_n = round((1.0 - self.rate) * 2**32)
    if keep_n <= 0:
      return jnp.zeros_like(x)
    if keep_n >= 2**32:  # a rate below 2^-33 rounds to keeping everything
      return x
    if x.ndim < 2 or math.prod(x.shape[1:]) >= 2**32:
      raise ValueError(f"Dropout needs a leading example axis and < 2^32 elements per example; got "
                       f"shape {x.shape}")
    seed = jax.random.bits(self.make_rng("dropout"), x.shape[:1], jnp.uint32)
    seed = seed.reshape(x.shape[:1] + (1,) * (x.ndim - 1))
    index = lax.iota(jnp.uint32, math.prod(x.shape[1:])).reshape(x.shape[1:])
    bits = _fmix32(_fmix32(index * jnp.uint32(0x9E3779B9) + seed) ^ seed)
    keep = bits < jnp.uint32(keep_n)
    return jnp.where(keep, x * jnp.asarray(2**32 / keep_n, x.dtype), jnp.zeros((), x.dtype))


class Embeddings(nn.Module):
  cfg: EncoderConfig

  @nn.compact
  def __call__(self, ids, mask, deterministic: bool):
    cfg, dt = self.cfg, jnp.dtype(self.cfg.dtype)

    def embed(n, name):
      return nn.Embed(n, cfg.hidden_size, dtype=dt, name=name,
                      embedding_init=nn.with_logical_partitioning(nn.initializers.normal(0.02),
                                                                  ("vocab", "embed")))
    if cfg.arch == "xlm-roberta":
      # RoBERTa numbers positions from pad_token_id + 1 and gives padding the pad position.
      pos = jnp.cumsum(mask, axis=1) * mask + cfg.pad_token_id
    else:
      pos = jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape)
    x = (embed(cfg.vocab_size, "word_embeddings")(ids)
         + embed(cfg.max_position, "position_embeddings")(pos)
         + embed(cfg.type_vocab_size, "token_type_embeddings")(jnp.zeros_like(ids)))
    x = _layer_norm(cfg, "LayerNorm", dt)(x)
    return Dropout(cfg.dropout)(x, deterministic=deterministic)


class DenseParams(nn.Module):
  """A Dense layer's `kernel` / `bias` (same names, shapes and logical axes as nn.Dense) returned
  instead of applied, so that several of them can run as one matmul."""
  shape: tuple[int, int]
  axes: tuple[str, str]

  @nn.compact
  def __call__(self):
    kernel = self.param("kernel", nn.with_logical_partitioning(nn.initializers.normal(0.02), self.axes),
                        self.shape)
    bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, self.axes[1:]),
                      self.shape[1:])
    return kernel, bias


class Layer(nn.Module):
  cfg: EncoderConfig

  @nn.compact
  def __call__(self, x, attn_in, deterministic: bool):
    """`attn_in`: the [B, 1, 1, L] additive mask bias on the explicit path, [B] sequence lengths on
    the fused one (Encoder builds the one that attention.fused_now asks for)."""
    cfg, dt = self.cfg, jnp.dtype(self.cfg.dtype)
    h, d = cfg.num_heads, cfg.hidden_size // cfg.num_heads
    # Query, key and value as one [E, 3E] matmul (the parameters keep their HF names).
    qkv_params = [DenseParams((cfg.hidden_size, cfg.hidden_size), ("embed", "heads"), name=n)()
                  for n in ("query", "key", "value")]
    w = jnp.concatenate([k for k, _ in qkv_params], axis=1).astype(dt)
    b = jnp.concatenate([b for _, b in qkv_params]).astype(dt)
    # Every dense matmul runs on [B * L, E] rows, so that its bias gradient reduces the very array
    # the backward matmul reads (on [B, L, E] XLA:CPU built that gradient twice; the train step
    # 9 % faster); q, k, v split, not indexed: the backward of indexing pads dq, dk, dv to
    # [3, ...] each and adds them, that of split is one concatenate (6 %; docs/benchmarks.md).
    rows = lambda t: t.reshape(-1, t.shape[-1])
    qkv = (rows(x) @ w + b).reshape(x.shape[:2] + (3, h, d))
    if attention.fused_now(cfg.attention, cfg.attention_dropout, deterministic):
      q, k, v = (t[:, :, 0] for t in jnp.split(qkv, 3, axis=2))  # [B, L, H, D] each
      ctx = attention.fused(q, k, v, attn_in, cfg.attention).reshape(-1, x.shape[-1])
    else:
      ctx = self._explicit(qkv, attn_in, deterministic).reshape(-1, x.shape[-1])
    ctx = _dense(cfg.hidden_size, ("heads", "embed"), "attention_output", dt)(ctx).reshape(x.shape)
    ctx = Dropout(cfg.dropout)(ctx, deterministic=deterministic)  # [B, L, E]: masks per example
    x = _layer_norm(cfg, "attention_LayerNorm", dt)(x + ctx)
    y = _dense(cfg.intermediate_size, ("embed", "mlp"), "intermediate", dt)(rows(x))
    y = _act(cfg.hidden_act)(y)
    y = _dense(cfg.hidden_size, ("mlp", "embed"), "output", dt)(y).reshape(x.shape)
    y = Dropout(cfg.dropout)(y, deterministic=deterministic)
    return _layer_norm(cfg, "output_LayerNorm", dt)(x + y)

  def _explicit(self, qkv, bias, deterministic: bool):
    """The XLA:CPU-tuned attention: one transpose to head-major [3, B, H, L, D] (on XLA:CPU
    head-major batched matmuls run the backward ~1.6x faster than "bqhd" einsums or
    jax.nn.dot_product_attention), and the softmax with its normalisation deferred to the
    [B, H, L, D] context (D << L): the same result, one pass less over the [B, H, L, L] scores.
    The max is only a shift (no gradient). Returns the [B, L, H, D] context."""
    cfg, dt = self.cfg, jnp.dtype(self.cfg.dtype)
    d = cfg.hidden_size // cfg.num_heads
    q, k, v = (t[0] for t in jnp.split(qkv.transpose(2, 0, 3, 1, 4), 3))
    q = q / jnp.sqrt(d).astype(dt)
    s = (jnp.matmul(q, k.swapaxes(-1, -2)) + bias).astype(jnp.float32)
    e = jnp.exp(s - lax.stop_gradient(s.max(-1, keepdims=True)))
    denom = e.sum(-1, keepdims=True)
    e = Dropout(cfg.attention_dropout)(e.astype(dt), deterministic=deterministic)
    return (jnp.matmul(e, v) / denom.astype(dt)).transpose(0, 2, 1, 3)


class Encoder(nn.Module):
  """Token ids -> pooled (optionally projected, L2-normalised) embedding, float32."""
  cfg: EncoderConfig

  @nn.compact
  def __call__(self, ids, mask, deterministic: bool = True, return_hidden: bool = False):
    cfg, dt = self.cfg, jnp.dtype(self.cfg.dtype)
    x = Embeddings(cfg, name="embeddings")(ids, mask, deterministic)
    # Half of the dtype's min: a fully masked row (an absent hard negative) stays finite, not NaN.
    if attention.fused_now(cfg.attention, cfg.attention_dropout, deterministic):
      attn_in = attention.lengths(mask)
    else:
      attn_in = jnp.where(mask[:, None, None, :] > 0, 0.0, jnp.finfo(dt).min / 2).astype(dt)
    layer_cls = nn.remat(Layer, static_argnums=(3,)) if cfg.remat else Layer
    for i in range(cfg.num_layers):
      x = layer_cls(cfg, name=f"layer_{i}")(x, attn_in, deterministic)
    hidden = x.astype(jnp.float32)
    if cfg.pooling == "cls":
      pooled = hidden[:, 0]
    elif cfg.pooling == "mean":
      m = mask[..., None].astype(jnp.float32)
      pooled = (hidden * m).sum(1) / jnp.maximum(m.sum(1), 1e-9)
    else:
      raise ConfigError(f"config.model.pooling={cfg.pooling!r}; known: mean, cls")
    if cfg.projection_dim:
      pooled = _dense(cfg.projection_dim, ("embed", "proj"), "projection", jnp.float32)(pooled)
      if cfg.projection_activation == "tanh":
        pooled = jnp.tanh(pooled)
    if cfg.normalize:
      pooled = pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
    return (pooled, hidden) if return_hidden else pooled


class DualEncoder(nn.Module):
  """Query and passage towers (one shared encoder by default) and the contrastive temperature."""
  cfg: EncoderConfig
  shared: bool = True
  temperature: float = 0.05
  learn_temperature: bool = False

  def setup(self):
    self.query_encoder = Encoder(self.cfg)
    self.passage_encoder = self.query_encoder if self.shared else Encoder(self.cfg)
    if self.learn_temperature:
      self.log_temperature = self.param(
          "log_temperature", nn.with_logical_partitioning(
              lambda *_: jnp.log(jnp.float32(self.temperature)), ()))

  def get_temperature(self):
    if self.learn_temperature:
      return jnp.exp(self.log_temperature)
    return jnp.float32(self.temperature)

  def encode_query(self, ids, mask, deterministic: bool = True):
    return self.query_encoder(ids, mask, deterministic)

  def encode_passage(self, ids, mask, deterministic: bool = True):
    return self.passage_encoder(ids, mask, deterministic)

  def __call__(self, q_ids, q_mask, p_ids, p_mask, deterministic: bool = True):
    return (self.encode_query(q_ids, q_mask, deterministic),
            self.encode_passage(p_ids, p_mask, deterministic), self.get_temperature())


def compute_dtype(name: str) -> str:
  """config.model.dtype: "auto" is bfloat16 on GPU / TPU and float32 on CPU, where XLA's bf16 matmuls
  (no AMX) measured slower than its float32 ones (docs/benchmarks.md, CPU speed)."""
  if name == "auto":
    return "float32" if jax.default_backend() == "cpu" else "bfloat16"
  return name


def encoder_config(model_cfg: Any, hf_config: dict | None) -> EncoderConfig:
  """EncoderConfig from config.model (+ the HF config.json when weights come from a checkpoint)."""
  over = dict(pooling=model_cfg.pooling, projection_dim=model_cfg.projection_dim,
              projection_activation=model_cfg.projection_activation,
              normalize=model_cfg.normalize, dtype=compute_dtype(model_cfg.dtype), remat=model_cfg.remat)
  if model_cfg.dropout >= 0:
    over["dropout"] = model_cfg.dropout
  if model_cfg.attention_dropout >= 0:
    over["attention_dropout"] = model_cfg.attention_dropout
  if hf_config is not None:
    cfg = EncoderConfig.from_hf(hf_config, **over)
  else:
    cfg = EncoderConfig(**model_cfg.random_init.to_dict(), **over)
  impl = attention.implementation(model_cfg.attention, dtype=cfg.dtype,
                                  head_dim=cfg.hidden_size // cfg.num_heads,
                                  attention_dropout=cfg.attention_dropout)
  return dataclasses.replace(cfg, attention=impl)
