"""Which attention kernel runs where: the one place that knows the backends.

  config.model.attention = "auto" | "explicit" | "fused"

- **explicit**: the softmax written out over [B, H, L, L] scores (models.Layer), tuned for XLA:CPU
  (head-major batched matmuls, deferred normalisation); the only path with attention dropout.
- **fused**: `jax.nn.dot_product_attention` with the padding given as sequence lengths. On GPU it asks
  for cuDNN's fused (flash) attention, which needs a bfloat16 / float16 compute dtype and a head size
  that is a multiple of 8 up to 128; on TPU and CPU it is XLA's implementation of the same function.
- **auto**: fused on GPU and TPU, explicit on CPU (where the explicit path is the faster one).

Where fused attention cannot do what the config asks, the log says so once and the computation falls
back: attention dropout during training (jax.nn.dot_product_attention has none) -> the train step
uses the explicit path, while evaluation encoding (no dropout) stays fused; on GPU a float32 compute
dtype or a head size cuDNN does not take -> XLA's implementation of the fused function.

Padding as lengths assumes right padding (every mask row a prefix of ones), which is how
tokenization.encode pads; a row with no tokens (an absent hard negative) gets length 1, so it stays
finite as on the explicit path, and mean pooling over its empty mask gives zeros either way.
"""
from __future__ import annotations

import logging

import jax
import jax.numpy as jnp

from hbt_jax.errors import ConfigError

MODES = ("auto", "explicit", "fused")
EXPLICIT, XLA, CUDNN = "explicit", "xla", "cudnn"  # what EncoderConfig.attention holds
_said: set[str] = set()


def _say(msg: str) -> None:
  if msg not in _said:
    _said.add(msg)
    logging.info("attention: %s", msg)


def implementation(mode: str, *, backend: str | None = None, dtype: str = "float32",
                   head_dim: int = 64, attention_dropout: float = 0.0) -> str:
  """The kernel for config.model.attention `mode` on `backend` (default: JAX's): "explicit", "xla"
  (jax.nn.dot_product_attention, XLA) or "cudnn" (the same, cuDNN's fused kernel). Logs every
  fallback; raises ConfigError for an unknown mode."""
  if mode not in MODES:
    raise ConfigError(f"config.model.attention={mode!r}; known: {', '.join(MODES)}")
  backend = backend or jax.default_backend()
  if mode == "explicit" or (mode == "auto" and backend == "cpu"):
    return EXPLICIT
  impl = XLA
  if backend in ("gpu", "cuda", "rocm"):
    if dtype not in ("bfloat16", "float16"):
      _say(f"cuDNN fused attention needs a bfloat16 / float16 compute dtype (config.model.dtype is "
           f"{dtype}); using XLA's dot_product_attention instead")
    elif head_dim % 8 or head_dim > 128:
      _say(f"cuDNN fused attention needs a head size that is a multiple of 8 up to 128 (this model's "
           f"is {head_dim}); using XLA's dot_product_attention instead")
    else:
      impl = CUDNN
  if attention_dropout > 0:
    _say(f"fused attention has no attention dropout (config.model.attention_dropout = "
         f"{attention_dropout:g}): the train step falls back to the explicit attention; encoding "
         f"without dropout stays fused ({impl})")
  return impl


def fused_now(impl: str, attention_dropout: float, deterministic: bool) -> bool:
  """Whether this call runs fused: a fused implementation, and no attention dropout to apply."""
  return impl != EXPLICIT and (deterministic or attention_dropout == 0.0)


def lengths(mask):
  """[B] int32 sequence lengths of right-padded [B, L] masks, at least 1 (see the module doc)."""
  return jnp.maximum(mask.sum(-1, dtype=jnp.int32), 1)


def fused(q, k, v, seq_lengths, impl: str):
  """[B, L, H, D] context of [B, L, H, D] q, k, v (q not yet scaled) with padding as lengths."""
  return jax.nn.dot_product_attention(q, k, v, query_seq_lengths=seq_lengths,
                                      key_value_seq_lengths=seq_lengths, implementation=impl)
