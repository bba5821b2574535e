"""Flax dual encoder: a BERT-family / XLM-RoBERTa transformer, pooling, optional projection, L2 norm.

Parameter names follow the HF layout (embeddings, layer_i/attention/query, ...) so that safetensors
weights map onto them one to one (hf_import.py). Every kernel carries logical axis names
('vocab', 'embed', 'mlp', 'heads'), which sharding.py maps onto mesh axes.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

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

  @classmethod
  def from_hf(cls, hf: dict, **overrides) -> "EncoderConfig":
    """From an HF config.json dict (model_type bert / xlm-roberta)."""
    mt = hf.get("model_type", "bert")
    arch = {"bert": "bert", "xlm-roberta": "xlm-roberta", "roberta": "xlm-roberta"}.get(mt)
    if arch is None:
      raise ValueError(f"unsupported architecture model_type={mt!r}; hbt_jax supports BERT-layout "
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


def _layer_norm(cfg: EncoderConfig, name: str, dtype) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=dtype, name=name,
                      scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))


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
  raise ValueError(f"unsupported hidden_act {name!r}")


class Dropout(nn.Module):
  """Inverted dropout drawing 16 random bits per element (two per 32-bit threefry word).

  flax's nn.Dropout draws a float32 uniform (one threefry word) per element, which made dropout
  the largest non-matmul cost of a train step on XLA:CPU. The keep probability is quantised to
  1/65536 and the scale uses the quantised value, so the output stays unbiased. The bits have the
  input's leading shape, so they are the same under any sharding (threefry is partitionable).
  """
  rate: float

  @nn.compact
  def __call__(self, x, deterministic: bool):
    if deterministic or self.rate == 0.0:
      return x
    keep_n = round((1.0 - self.rate) * 65536)
    if keep_n <= 0:
      return jnp.zeros_like(x)
    half = -(-x.shape[-1] // 2)
    words = jax.random.bits(self.make_rng("dropout"), x.shape[:-1] + (half,), jnp.uint32)
    bits = jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(x.shape[:-1] + (2 * half,))
    keep = bits[..., :x.shape[-1]] < keep_n
    return jnp.where(keep, x * jnp.asarray(65536 / keep_n, x.dtype), jnp.zeros((), x.dtype))


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
  def __call__(self, x, bias, deterministic: bool):
    cfg, dt = self.cfg, jnp.dtype(self.cfg.dtype)
    h, d = cfg.num_heads, cfg.hidden_size // cfg.num_heads
    # Query, key and value as one [E, 3E] matmul (the parameters keep their HF names), then one
    # transpose to head-major [3, B, H, L, D]: on XLA:CPU head-major batched matmuls run the
    # backward ~1.6x faster than "bqhd" einsums or jax.nn.dot_product_attention.
    qkv_params = [DenseParams((cfg.hidden_size, cfg.hidden_size), ("embed", "heads"), name=n)()
                  for n in ("query", "key", "value")]
    w = jnp.concatenate([k for k, _ in qkv_params], axis=1).astype(dt)
    b = jnp.concatenate([b for _, b in qkv_params]).astype(dt)
    qkv = (x @ w + b).reshape(x.shape[:2] + (3, h, d)).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv[0] / jnp.sqrt(d).astype(dt), qkv[1], qkv[2]
    # Softmax with the normalisation deferred to the [B, H, L, D] context (D << L): the same
    # result, one pass less over the [B, H, L, L] scores. The max is only a shift (no gradient).
    s = (jnp.matmul(q, k.swapaxes(-1, -2)) + bias).astype(jnp.float32)
    e = jnp.exp(s - lax.stop_gradient(s.max(-1, keepdims=True)))
    denom = e.sum(-1, keepdims=True)
    e = Dropout(cfg.attention_dropout)(e.astype(dt), deterministic=deterministic)
    ctx = (jnp.matmul(e, v) / denom.astype(dt)).transpose(0, 2, 1, 3).reshape(x.shape)
    ctx = _dense(cfg.hidden_size, ("heads", "embed"), "attention_output", dt)(ctx)
    ctx = Dropout(cfg.dropout)(ctx, deterministic=deterministic)
    x = _layer_norm(cfg, "attention_LayerNorm", dt)(x + ctx)
    y = _act(cfg.hidden_act)(_dense(cfg.intermediate_size, ("embed", "mlp"), "intermediate", dt)(x))
    y = _dense(cfg.hidden_size, ("mlp", "embed"), "output", dt)(y)
    y = Dropout(cfg.dropout)(y, deterministic=deterministic)
    return _layer_norm(cfg, "output_LayerNorm", dt)(x + y)


class Encoder(nn.Module):
  """Token ids -> pooled (optionally projected, L2-normalised) embedding, float32."""
  cfg: EncoderConfig

  @nn.compact
  def __call__(self, ids, mask, deterministic: bool = True, return_hidden: bool = False):
    cfg, dt = self.cfg, jnp.dtype(self.cfg.dtype)
    x = Embeddings(cfg, name="embeddings")(ids, mask, deterministic)
    # Half of the dtype's min: a fully masked row (an absent hard negative) stays finite, not NaN.
    bias = jnp.where(mask[:, None, None, :] > 0, 0.0, jnp.finfo(dt).min / 2).astype(dt)
    layer_cls = nn.remat(Layer, static_argnums=(3,)) if cfg.remat else Layer
    for i in range(cfg.num_layers):
      x = layer_cls(cfg, name=f"layer_{i}")(x, bias, deterministic)
    hidden = x.astype(jnp.float32)
    if cfg.pooling == "cls":
      pooled = hidden[:, 0]
    elif cfg.pooling == "mean":
      m = mask[..., None].astype(jnp.float32)
      pooled = (hidden * m).sum(1) / jnp.maximum(m.sum(1), 1e-9)
    else:
      raise ValueError(f"config.model.pooling={cfg.pooling!r}; known: mean, cls")
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
    return EncoderConfig.from_hf(hf_config, **over)
  arch = model_cfg.random_init.to_dict()
  return EncoderConfig(**arch, **over)
