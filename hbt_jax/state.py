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
  image_tower: Any = None  # image_features.ImageTower of the image_text task (locked, LiT)
  compiler_options: dict | None = None  # for the jits of the encoder's computations (xla_options)


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
    module = two_tower.LockedImageText(enc_cfg, im.proj_dim, im.init_temperature,
                                       im.init_bias if im.loss == "siglip" else None)
    return ModelBundle(module, enc_cfg, tokenizer, hf_dir, image_features.load_tower(im.tower, cfg.seed))
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


def _scale_new_heads(factor: float) -> optax.GradientTransformation:
  """Multiplies the updates of everything outside the pretrained text tower (the image projection,
  the logit scale and bias): randomly initialized heads next to a pretrained tower need a larger
  step than the tower's fine-tuning rate. Stateless, so the optimizer state keeps its shardings."""
  def update(updates, state, params=None):
    scaled = jax.tree_util.tree_map_with_path(
        lambda path, u: u if getattr(path[0], "key", "") == "query_encoder" else u * factor, updates)
    return scaled, state
  return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def _dummy_inputs(cfg, bundle: ModelBundle):
  q = jnp.zeros((1, cfg.model.max_query_len), jnp.int32)
  if bundle.image_tower is not None:
    return jnp.zeros((1, bundle.image_tower.dim), jnp.float32), q, jnp.ones_like(q)
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
  opt_state = jax.jit(tx.init, out_shardings=_opt_shardings(tx, params, p_shard, mesh))(params)
  step = jax.device_put(jnp.zeros((), jnp.int32), sharding.replicated(mesh))
  return {"params": params, "opt_state": opt_state, "step": step}


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
