"""Model + tokenizer from config.model, the optimizer, and the train state created already sharded."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from hbt_jax import hf_io, models, sharding, tokenization, xla_options


@dataclasses.dataclass
class ModelBundle:
  module: models.DualEncoder
  enc_cfg: models.EncoderConfig
  tokenizer: Any
  hf_dir: Path | None  # where pretrained weights come from, None = random init
  image_tower: Any = None  # image_features.ImageTower of the image_text task
  # The trainable image tower's non-parameter variables (batch-norm statistics), as the constant
  # collections every module.apply of the image side takes besides {"params": ...}.
  image_consts: dict = dataclasses.field(default_factory=dict)
  # {"train": ..., "encode": ...}: compiler_options for the encoder's jits (xla_options.py)
  compiler_options: dict = dataclasses.field(default_factory=dict)


def build_model(cfg) -> ModelBundle:
  bundle = _build_model(cfg)
  bundle.compiler_options = xla_options.encoder_compiler_options(cfg.model.cpu_dots)
  return bundle


def _build_model(cfg) -> ModelBundle:
  m = cfg.model
  hf_dir = None if m.init == "random" else hf_io.locate(m.init)
  hf_cfg = hf_io.read_hf_config(hf_dir) if hf_dir is not None else None
  enc_cfg = models.encoder_config(m, hf_cfg)
  tok_name = m.tokenizer or (str(hf_dir) if hf_dir is not None else "")
  if not tok_name:
    raise ValueError("config.model.tokenizer: a random-init model needs a tokenizer (an HF dir or id)")
  tokenizer = tokenization.load_tokenizer(tok_name)
  if len(tokenizer) > enc_cfg.vocab_size:
    raise ValueError(f"config.model: tokenizer {tok_name} has {len(tokenizer)} tokens but the model "
                     f"vocab_size is {enc_cfg.vocab_size}")
  if cfg.task == "image_text":
    from hbt_jax import image_features, two_tower
    im = cfg.image
    tower = image_features.load_tower(im.tower, cfg.seed)
    module = two_tower.ImageTextModel(enc_cfg, im.proj_dim, im.init_temperature,
                                      im.init_bias if im.loss == "siglip" else None,
                                      tower.module if im.trainable else None)
    consts = ({k: {"image_tower": v} for k, v in tower.variables.items() if k != "params"}
              if im.trainable else {})
    return ModelBundle(module, enc_cfg, tokenizer, hf_dir, tower, consts)
  module = models.DualEncoder(enc_cfg, shared=m.shared_towers, temperature=m.temperature,
                              learn_temperature=m.learn_temperature)
  return ModelBundle(module, enc_cfg, tokenizer, hf_dir)


def make_optimizer(cfg) -> optax.GradientTransformation:
  o = cfg.optim
  decay_steps = max(cfg.num_steps, o.warmup_steps + 1)
  if o.schedule == "cosine":
    lr = optax.warmup_cosine_decay_schedule(0.0, o.lr, o.warmup_steps, decay_steps, o.lr * o.end_lr_factor)
  elif o.schedule == "linear":
    lr = optax.join_schedules([optax.linear_schedule(0.0, o.lr, max(o.warmup_steps, 1)),
                               optax.linear_schedule(o.lr, o.lr * o.end_lr_factor,
                                                     decay_steps - o.warmup_steps)],
                              [o.warmup_steps])
  elif o.schedule == "constant":
    lr = optax.constant_schedule(o.lr)
  else:
    raise ValueError(f"config.optim.schedule={o.schedule!r}; known: linear, cosine, constant")
  # LayerNorm scales/biases and biases are not decayed (as in BERT fine-tuning).
  decay_mask = lambda p: jax.tree_util.tree_map_with_path(
      lambda path, x: getattr(path[-1], "key", "") in ("kernel", "embedding"), p)
  tx = optax.adamw(lr, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay, mask=decay_mask)
  if cfg.task == "image_text" and cfg.image.head_lr_multiplier != 1.0:
    tx = optax.chain(tx, _scale_new_heads(cfg.image.head_lr_multiplier))
  if o.grad_clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(o.grad_clip), tx)
  return tx


PRETRAINED_TOWERS = ("query_encoder", "image_tower")


def _scale_new_heads(factor: float) -> optax.GradientTransformation:
  """Multiplies the updates of everything outside the pretrained towers (the image projection, the
  logit scale and bias): randomly initialized heads next to a pretrained tower need a larger step
  than the towers' fine-tuning rate. Stateless, so the optimizer state keeps its shardings."""
  def update(updates, state, params=None):
    scaled = jax.tree_util.tree_map_with_path(
        lambda path, u: u if getattr(path[0], "key", "") in PRETRAINED_TOWERS else u * factor,
        updates)
    return scaled, state
  return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def _dummy_inputs(cfg, bundle: ModelBundle):
  q = jnp.zeros((1, cfg.model.max_query_len), jnp.int32)
  if bundle.image_tower is not None:
    size = bundle.image_tower.preprocess.size
    image = (jnp.zeros((1, size, size, 3), jnp.float32) if bundle.module.image_tower is not None
             else jnp.zeros((1, bundle.image_tower.dim), jnp.float32))
    return image, q, jnp.ones_like(q)
  p = jnp.zeros((1, cfg.model.max_passage_len), jnp.int32)
  return q, jnp.ones_like(q), p, jnp.ones_like(p)


def abstract_params(bundle: ModelBundle, cfg):
  """Boxed (logically annotated) abstract params: shapes + partitioning, no memory."""
  return jax.eval_shape(
      lambda: bundle.module.init(jax.random.key(0), *_dummy_inputs(cfg, bundle))["params"])


def create_train_state(bundle: ModelBundle, cfg, mesh: Mesh, tx):
  """{'params', 'opt_state', 'step'} created directly in their shardings; pretrained weights loaded."""
  boxed = abstract_params(bundle, cfg)
  p_shard = sharding.param_shardings(boxed, mesh, cfg.sharding_rules)

  def init_params():
    inputs = _dummy_inputs(cfg, bundle)
    return nn.unbox(bundle.module.init(jax.random.key(cfg.seed), *inputs)["params"])

  params = jax.jit(init_params, out_shardings=p_shard)()
  if bundle.hf_dir is not None:
    params = load_pretrained(params, bundle, cfg, p_shard)
  if "image_tower" in params:  # trainable image tower: start from the tower's (pretrained) weights
    params = {**params, "image_tower": _image_tower_params(bundle, params, p_shard)}
  opt_state = jax.jit(tx.init, out_shardings=_opt_shardings(tx, params, p_shard, mesh))(params)
  step = jax.device_put(jnp.zeros((), jnp.int32), sharding.replicated(mesh))
  return {"params": params, "opt_state": opt_state, "step": step}


def _image_tower_params(bundle: ModelBundle, params, p_shard):
  """The tower's weights for the model's `image_tower` params (weights the features do not use,
  such as EfficientNet's ImageNet classifier, stay out)."""
  def pick(ours, theirs, path):
    if isinstance(ours, dict):
      if not isinstance(theirs, dict) or set(ours) - set(theirs):
        raise ValueError(f"config.image.tower={bundle.image_tower.name}: {path or 'the tower'} lacks "
                         f"{sorted(set(ours) - set(theirs or {}))} that the model's image tower has")
      return {k: pick(v, theirs[k], f"{path}/{k}") for k, v in ours.items()}
    if tuple(ours.shape) != tuple(theirs.shape):
      raise ValueError(f"config.image.tower={bundle.image_tower.name}: {path} has shape "
                       f"{tuple(theirs.shape)}, the model's image tower {tuple(ours.shape)}")
    return np.asarray(theirs, np.float32)
  picked = pick(params["image_tower"], bundle.image_tower.variables["params"], "")
  return jax.tree.map(jax.device_put, picked, p_shard["image_tower"])


def _opt_shardings(tx, params, p_shard, mesh):
  """Optimizer moments follow their parameter's sharding; scalars (counts) are replicated."""
  abstract = jax.eval_shape(tx.init, params)
  flat_p = {tuple(str(k) for k in path): s for path, s in
            jax.tree_util.tree_leaves_with_path(p_shard)}

  def pick(path, leaf):
    keys = tuple(str(k) for k in path)
    for n in range(len(keys)):
      if keys[n:] in flat_p:
        return flat_p[keys[n:]]
    return sharding.replicated(mesh)

  return jax.tree_util.tree_map_with_path(pick, abstract)


def load_pretrained(params, bundle: ModelBundle, cfg, p_shard):
  tensors = hf_io.read_tensors(bundle.hf_dir, allow_pickle=cfg.model.allow_pickle)
  out = dict(params)
  for tower in ("query_encoder", "passage_encoder"):
    if tower not in params:
      continue
    template = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params[tower])
    filled = hf_io.encoder_params_from_hf(tensors, template, str(bundle.hf_dir))
    dense = hf_io.read_st_dense(bundle.hf_dir, cfg.model.allow_pickle) if "projection" in template else None
    if dense is not None:
      for k in ("kernel", "bias"):
        if dense[k].shape != template["projection"][k].shape:
          raise hf_io.CheckpointImportError(
              f"{bundle.hf_dir}: sentence-transformers Dense {k} has shape {dense[k].shape}; "
              f"config.model.projection_dim needs {template['projection'][k].shape}")
      filled["projection"] = {k: np.asarray(v, np.float32) for k, v in dense.items()}
    merged = jax.tree.map(lambda new, old: old if new is None else new, filled, params[tower],
                          is_leaf=lambda x: x is None)
    out[tower] = jax.tree.map(lambda x, s: jax.device_put(x, s), merged, p_shard[tower])
  logging.info("loaded pretrained weights from %s", bundle.hf_dir)
  return out
