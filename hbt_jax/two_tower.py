"""Image–text two-tower models: the checkpoint's own CLIP / SigLIP text tower, the two-tower module,
and the contrastive losses over the global batch.

Any image tower (image_models: EfficientNet-Lite, CLIP / SigLIP ViT) pairs with any text tower
(this module's CLIP / SigLIP text transformer, or the BERT / XLM-R family encoder of models.py);
each side gets an optional projection to the shared dimension, the embeddings are L2-normalized,
and the module owns the log temperature and (SigLIP) the bias.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hbt_jax import image_models
from hbt_jax.errors import CheckpointError, ConfigError


@dataclasses.dataclass(frozen=True)
class TextTowerConfig:
  layout: str = "clip"          # "clip": causal mask, pooled at the first EOS, projection (no bias)
                                # "siglip": bidirectional, pooled at the last position, head (bias)
  vocab_size: int = 49408
  max_position: int = 77
  hidden_size: int = 512
  num_layers: int = 12
  num_heads: int = 8
  intermediate_size: int = 2048
  layer_norm_eps: float = 1e-5
  hidden_act: str = "quick_gelu"
  projection_dim: int = 512     # CLIP text_projection / SigLIP head output
  eos_token_id: int = 2

  @classmethod
  def from_hf(cls, hf: dict) -> "TextTowerConfig":
    mt = hf.get("model_type", "")
    layout = "siglip" if mt.startswith("siglip") else "clip" if mt.startswith("clip") else None
    if layout is None:
      raise CheckpointError(f"unsupported text checkpoint model_type={mt!r}; known: clip, siglip")
    t = hf.get("text_config", hf)
    return cls(layout=layout, vocab_size=t["vocab_size"], max_position=t["max_position_embeddings"],
               hidden_size=t["hidden_size"], num_layers=t["num_hidden_layers"],
               num_heads=t["num_attention_heads"], intermediate_size=t["intermediate_size"],
               layer_norm_eps=t.get("layer_norm_eps", 1e-5 if layout == "clip" else 1e-6),
               hidden_act=t.get("hidden_act", "quick_gelu" if layout == "clip" else
                                "gelu_pytorch_tanh"),
               projection_dim=(hf.get("projection_dim", t["hidden_size"]) if layout == "clip"
                               else t.get("projection_size", t["hidden_size"])),
               eos_token_id=t.get("eos_token_id", 2))


class TextTower(nn.Module):
  """Token ids + mask -> the checkpoint's text embedding (unnormalized)."""
  cfg: TextTowerConfig

  @nn.compact
  def __call__(self, ids, mask):
    c = self.cfg
    n = ids.shape[1]
    emb = nn.Embed(c.vocab_size, c.hidden_size, name="token_embedding")
    pos = nn.Embed(c.max_position, c.hidden_size, name="position_embedding")
    x = emb(ids) + pos(jnp.arange(n))[None]
    keep = mask[:, None, None, :] > 0
    if c.layout == "clip":
      keep = keep & jnp.tril(jnp.ones((n, n), bool))[None, None]
    bias = jnp.where(keep, 0.0, jnp.finfo(jnp.float32).min / 2)
    for i in range(c.num_layers):
      x = image_models.PreLNLayer(c, name=f"layers_{i}")(x, bias)
    x = nn.LayerNorm(epsilon=c.layer_norm_eps, name="final_layer_norm")(x)
    if c.layout == "clip":
      # The first EOS (old checkpoints with eos_token_id 2: the largest id, as transformers does).
      at = ids.argmax(-1) if c.eos_token_id == 2 else (ids == c.eos_token_id).argmax(-1)
      pooled = x[jnp.arange(x.shape[0]), at]
      return nn.Dense(c.projection_dim, use_bias=False, name="text_projection")(pooled)
    return nn.Dense(c.projection_dim, name="head")(x[:, -1])


def text_params_from_hf(tensors: dict[str, np.ndarray], template: dict, cfg: TextTowerConfig,
                        source: str) -> dict:
  """HF CLIPModel / SiglipModel text tensors -> TextTower params (embeddings live under
  text_model.embeddings.* in HF)."""
  renamed = {}
  for k, v in tensors.items():
    for e in ("token_embedding", "position_embedding"):
      k = k.replace(f"text_model.embeddings.{e}.", f"text_model.{e}.")
    renamed[k] = v
  return image_models.params_from_hf(renamed, template, "text_model", source)


def text_params_to_hf(params: dict) -> dict[str, np.ndarray]:
  out = {}
  for k, v in image_models.params_to_hf(params, "text_model").items():
    for e in ("token_embedding", "position_embedding"):
      k = k.replace(f"text_model.{e}.", f"text_model.embeddings.{e}.")
    out[k] = v
  return out


class TwoTower(nn.Module):
  """Image and text towers (any pair), optional projections to a shared dim, L2 norm, the log
  logit scale and (SigLIP) the logit bias.

  `image_tower(images) -> [B, Di]`, `text_tower(ids, mask) -> [B, Dt]`. With `proj_dim` > 0 the
  sides flagged by `project_image` / `project_text` get a Dense to it (a checkpoint that already has
  its own projections, like CLIP, needs none)."""
  image_tower: Any
  text_tower: Any
  proj_dim: int = 0
  project_image: bool = True
  project_text: bool = True
  init_temperature: float = 0.07   # CLIP 0.07; SigLIP 0.1 (logit scale 10)
  init_bias: float | None = None   # SigLIP -10

  def setup(self):
    self.log_scale = self.param("log_scale",
                                lambda *_: jnp.log(1.0 / jnp.float32(self.init_temperature)))
    if self.init_bias is not None:
      self.bias = self.param("bias", lambda *_: jnp.float32(self.init_bias))
    self.image_projection = nn.Dense(self.proj_dim) if self.proj_dim and self.project_image else None
    self.text_projection = nn.Dense(self.proj_dim) if self.proj_dim and self.project_text else None

  @staticmethod
  def _finish(z, proj):
    z = z.astype(jnp.float32)
    z = proj(z) if proj is not None else z
    return z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)

  def encode_image(self, images):
    return self._finish(self.image_tower(images), self.image_projection)

  def encode_text(self, ids, mask):
    return self._finish(self.text_tower(ids, mask), self.text_projection)

  def logit_params(self):
    return jnp.exp(self.log_scale), (self.bias if self.init_bias is not None else jnp.float32(0.0))

  def __call__(self, images, ids, mask):
    return self.encode_image(images), self.encode_text(ids, mask), *self.logit_params()


def clip_loss(za: jax.Array, zb: jax.Array, scale: jax.Array) -> jax.Array:
  """Symmetric softmax InfoNCE over the global batch (row i of za matches row i of zb)."""
  logits = scale * za @ zb.T
  labels = jnp.arange(za.shape[0])
  lsm_a = jax.nn.log_softmax(logits, axis=1)
  lsm_b = jax.nn.log_softmax(logits, axis=0)
  return -(lsm_a[labels, labels].mean() + lsm_b[labels, labels].mean()) / 2


def siglip_loss(za: jax.Array, zb: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
  """Sigmoid loss (Zhai et al. 2023): -log sigmoid(label * (scale * za.zb + bias)), label +1 on the
  diagonal and -1 elsewhere, summed over the pairs of a row and averaged over rows."""
  logits = scale * za @ zb.T + bias
  labels = 2.0 * jnp.eye(za.shape[0]) - 1.0
  return -jax.nn.log_sigmoid(labels * logits).sum(1).mean()


LOSSES = {"clip": clip_loss, "siglip": siglip_loss}


# The published initializations: (temperature, bias).
INIT = {"clip": (0.07, None), "siglip": (0.1, -10.0)}


class ImageTextModel(nn.Module):
  """The image–text model the trainer trains: the project's BERT / XLM-R family text encoder against
  an image side that is either

  - locked (LiT, `image_tower=None`): the tower's features come precomputed (cached once per image)
    and only a learned Dense maps them to the shared width; or
  - trainable (`image_tower` = the Flax tower module, config.image.trainable): pixels go through the
    tower, whose pretrained weights are in the params under `image_tower` and receive gradients
    (batch-norm statistics stay the pretrained ones, passed as a constant `batch_stats` collection).

  The text tower is kept under the name `query_encoder` so pretrained loading and export treat it
  like the text dual encoder's. The image Dense maps to the shared width (the text width when
  `proj_dim` is 0, which leaves the text space of a pretrained multilingual encoder as it is); both
  sides are L2-normalized. Captions on either side of a batch (tt_xy) go through the same text tower."""
  text_cfg: Any                     # models.EncoderConfig
  proj_dim: int = 0
  init_temperature: float = 0.05
  init_bias: float | None = None
  image_tower: Any = None           # a Flax module: pixels [B, S, S, 3] -> features [B, D]

  def setup(self):
    from hbt_jax import models
    self.query_encoder = models.Encoder(self.text_cfg)
    width = self.proj_dim or self.text_cfg.projection_dim or self.text_cfg.hidden_size
    self.image_projection = models._dense(width, (None, "proj"), "image_projection", jnp.float32)
    self.text_projection = (models._dense(width, ("embed", "proj"), "text_projection", jnp.float32)
                            if self.proj_dim else None)
    self.log_scale = self.param("log_scale", nn.with_logical_partitioning(
        lambda *_: jnp.log(1.0 / jnp.float32(self.init_temperature)), ()))
    if self.init_bias is not None:
      self.bias = self.param("bias", nn.with_logical_partitioning(
          lambda *_: jnp.float32(self.init_bias), ()))

  @staticmethod
  def _norm(z):
    return z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)

  def encode_text(self, ids, mask, deterministic: bool = True):
    z = self.query_encoder(ids, mask, deterministic)
    return self._norm(self.text_projection(z) if self.text_projection is not None else z)

  # The text Embedder of evaluation/encode.py calls these two.
  def encode_query(self, ids, mask, deterministic: bool = True):
    return self.encode_text(ids, mask, deterministic)

  def encode_passage(self, ids, mask, deterministic: bool = True):
    return self.encode_text(ids, mask, deterministic)

  def encode_image_features(self, feats):
    return self._norm(self.image_projection(feats.astype(jnp.float32)))

  def encode_images(self, pixels):
    if self.image_tower is None:
      raise ValueError("encode_images needs a trainable image tower (config.image.trainable=True); "
                       "a locked tower's features go through encode_image_features")
    return self.encode_image_features(self.image_tower(pixels))

  def logit_params(self):
    return jnp.exp(self.log_scale), (self.bias if self.init_bias is not None else jnp.float32(0.0))

  def __call__(self, image_input, ids, mask, deterministic: bool = True):
    """`image_input`: cached features [B, D] (locked tower) or pixels [B, S, S, 3] (trainable)."""
    image = (self.encode_images(image_input) if self.image_tower is not None
             else self.encode_image_features(image_input))
    return image, self.encode_text(ids, mask, deterministic)


def image_text_loss(name: str, za: jax.Array, zb: jax.Array, scale: jax.Array, bias: jax.Array):
  """(loss, aux) for a batch whose row i of `za` matches row i of `zb` (image–caption or
  caption–caption), over the global batch."""
  if name not in LOSSES:
    raise ConfigError(f"config.image.loss={name!r}; known: {sorted(LOSSES)}")
  loss = clip_loss(za, zb, scale) if name == "clip" else siglip_loss(za, zb, scale, bias)
  acc = jnp.mean(jnp.argmax(za @ zb.T, axis=1) == jnp.arange(za.shape[0]))
  return loss, {"loss": loss, "accuracy": acc, "temperature": 1.0 / scale}


# ---------------------------------------------------------------------- whole HF CLIP / SigLIP models
def from_hf(model_dir, tensors: dict[str, np.ndarray] | None = None):
  """(TwoTower, params) of a Hugging Face CLIPModel / SiglipModel dir: both towers, CLIP's
  projections (inside the towers, as in HF), the logit scale (HF stores its log, as `log_scale`
  here) and SigLIP's logit bias."""
  import json
  from pathlib import Path
  from hbt_jax import hf_io
  model_dir = Path(model_dir)
  hf = json.loads((model_dir / "config.json").read_text())
  vcfg, tcfg = image_models.ViTConfig.from_hf(hf), TextTowerConfig.from_hf(hf)
  siglip = tcfg.layout == "siglip"
  module = TwoTower(image_models.ViT(vcfg), TextTower(tcfg), proj_dim=0,
                    init_bias=INIT["siglip"][1] if siglip else None)
  tensors = hf_io.read_tensors(model_dir) if tensors is None else tensors
  template = jax.eval_shape(lambda: module.init(
      jax.random.key(0), jnp.zeros((1, vcfg.image_size, vcfg.image_size, 3)),
      jnp.zeros((1, 4), jnp.int32), jnp.ones((1, 4), jnp.int32)))["params"]
  src = str(model_dir)
  params = {"image_tower": image_models.vit_params_from_hf(tensors, template["image_tower"], vcfg, src),
            "text_tower": text_params_from_hf(tensors, template["text_tower"], tcfg, src)}
  for ours, theirs in (("log_scale", "logit_scale"), ("bias", "logit_bias")):
    if ours in template:
      if theirs not in tensors:
        raise CheckpointError(f"{src}: {theirs} is missing from the checkpoint")
      params[ours] = np.asarray(tensors[theirs], np.float32).reshape(())
  return module, params


def to_hf(params: dict, module: TwoTower) -> dict[str, np.ndarray]:
  """The inverse of `from_hf`: the state dict of the same CLIPModel / SiglipModel."""
  out = {**image_models.vit_params_to_hf(params["image_tower"], module.image_tower.cfg),
         **text_params_to_hf(params["text_tower"])}
  siglip = "bias" in params  # SigLIP keeps both as shape [1], CLIP its scale as a scalar
  out["logit_scale"] = np.asarray(params["log_scale"], np.float32).reshape((1,) if siglip else ())
  if siglip:
    out["logit_bias"] = np.asarray(params["bias"], np.float32).reshape((1,))
  return out
