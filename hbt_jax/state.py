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
from hbt_jax.errors import CheckpointError, ConfigError


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
    raise ConfigError("config.model.tokenizer: a random-init model needs a tokenizer (an HF dir or id)")
  tokenizer = tokenization.load_tokenizer(tok_name)
  if len(tokenizer) > enc_cfg.vocab_size:
    raise ConfigError(f"config.model: tokenizer {tok_name} has {len(tokenizer)} tokens but the model "
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


SCHEDULES = ("linear", "cosine", "constant")


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
    raise ConfigError(f"config.optim.schedule={o.schedule!r}; known: {', '.join(SCHEDULES)}")
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


def abstract_train_state(bundle: ModelBundle, cfg, mesh: Mesh, tx):
  """{'params', 'opt_state', 'step'} as ShapeDtypeStructs carrying their shardings: no memory, no
  compile (a checkpoint restores into it directly)."""
  boxed = abstract_params(bundle, cfg)
  p_shard = sharding.param_shardings(boxed, mesh, cfg.sharding_rules)
  params = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        nn.unbox(boxed), p_shard)
  opt_state = _with_opt_shardings(jax.eval_shape(tx.init, params), p_shard, mesh)
  step = jax.ShapeDtypeStruct((), jnp.int32, sharding=sharding.replicated(mesh))
  return {"params": params, "opt_state": opt_state, "step": step}


def create_train_state(bundle: ModelBundle, cfg, mesh: Mesh, tx):
  """{'params', 'opt_state', 'step'} created directly in their shardings.

  Pretrained weights (the HF checkpoint's text tower, a trainable image tower's weights) go
  straight from the file into their shardings; only the leaves they lack (new heads, projections,
  temperatures) are initialised, by a jit whose outputs are just those leaves, so XLA drops the
  rest of the random init and compiles a few small ops. They get the values a full random init
  with the same seed would give them. A random-init model is one jit of the whole init, as before."""
  abstract = abstract_train_state(bundle, cfg, mesh, tx)
  params = init_params(bundle, cfg, abstract["params"])
  return fresh_state(params, tx, abstract)


def fresh_state(params, tx, abstract):
  """The train state at step 0 around `params` (optimizer state initialised in its shardings)."""
  opt_shard = jax.tree.map(lambda x: x.sharding, abstract["opt_state"])
  opt_state = jax.jit(tx.init, out_shardings=opt_shard)(params)
  step = jax.device_put(jnp.zeros((), jnp.int32), abstract["step"].sharding)
  return {"params": params, "opt_state": opt_state, "step": step}


def init_params(bundle: ModelBundle, cfg, abstract_p):
  """Params in their shardings: pretrained where a checkpoint has them, else initialised."""
  p_shard = jax.tree.map(lambda x: x.sharding, abstract_p)
  pretrained = {k: None for k in abstract_p}  # None = nothing pretrained for that subtree
  if bundle.hf_dir is not None:
    pretrained.update(load_pretrained(abstract_p, bundle, cfg, p_shard))
  if "image_tower" in abstract_p:  # trainable image tower: start from the tower's weights
    pretrained["image_tower"] = _image_tower_params(bundle, abstract_p, p_shard)
  missing = list(_missing_paths(pretrained, abstract_p))
  n_leaves = len(jax.tree.leaves(abstract_p))
  if len(missing) == n_leaves:  # nothing pretrained: one jit of the whole random init
    def random_init():
      return _random_init(bundle, cfg)
    return jax.jit(random_init, out_shardings=p_shard)()
  if missing:
    logging.info("initialising %d of %d parameter arrays the checkpoint lacks: %s", len(missing),
                 n_leaves, ", ".join("/".join(p) for p in missing[:8]) + (" ..." if len(missing) > 8 else ""))
    values = _init_only(bundle, cfg, missing, [_at(p_shard, p) for p in missing])
    for path, value in zip(missing, values):
      pretrained = _set(pretrained, path, value)
  return pretrained


def _random_init(bundle: ModelBundle, cfg):
  inputs = _dummy_inputs(cfg, bundle)
  return nn.unbox(bundle.module.init(jax.random.key(cfg.seed), *inputs)["params"])


def _init_only(bundle: ModelBundle, cfg, paths, shardings):
  """The random init of the leaves at `paths` only: the jit's outputs are those leaves, so XLA
  removes the initialisation of every other parameter before compiling."""
  return jax.jit(init_only_fn(bundle, cfg, paths), out_shardings=shardings)()


def init_only_fn(bundle: ModelBundle, cfg, paths):
  def init_missing():
    full = _random_init(bundle, cfg)
    return [_at(full, p) for p in paths]
  return init_missing


def _missing_paths(tree, template, prefix=()):
  """The path of every template leaf that `tree` has no value for (the leaf or a subtree is None)."""
  if isinstance(template, dict):
    for k, v in template.items():
      yield from _missing_paths(None if tree is None else tree.get(k), v, prefix + (k,))
  elif tree is None:
    yield prefix


def _at(tree, path):
  for k in path:
    tree = tree[k]
  return tree


def _set(tree, path, value):
  """A copy of nested dict `tree` (None = empty) with `value` at `path`."""
  out = dict(tree or {})
  out[path[0]] = value if len(path) == 1 else _set(out.get(path[0]), path[1:], value)
  return out


def _image_tower_params(bundle: ModelBundle, abstract_p, p_shard):
  """The tower's weights for the model's `image_tower` params (weights the features do not use,
  such as EfficientNet's ImageNet classifier, stay out)."""
  def pick(ours, theirs, path):
    if isinstance(ours, dict):
      if not isinstance(theirs, dict) or set(ours) - set(theirs):
        raise CheckpointError(f"config.image.tower={bundle.image_tower.name}: {path or 'the tower'} lacks "
                         f"{sorted(set(ours) - set(theirs or {}))} that the model's image tower has")
      return {k: pick(v, theirs[k], f"{path}/{k}") for k, v in ours.items()}
    if tuple(ours.shape) != tuple(theirs.shape):
      raise CheckpointError(f"config.image.tower={bundle.image_tower.name}: {path} has shape "
                       f"{tuple(theirs.shape)}, the model's image tower {tuple(ours.shape)}")
    return np.asarray(theirs, np.float32)
  picked = pick(abstract_p["image_tower"], bundle.image_tower.variables["params"], "")
  return jax.tree.map(jax.device_put, picked, p_shard["image_tower"])


def _with_opt_shardings(abstract, p_shard, mesh):
  """The abstract optimizer state with shardings: moments follow their parameter's sharding;
  scalars (counts) are replicated."""
  flat_p = {tuple(str(k) for k in path): s for path, s in
            jax.tree_util.tree_leaves_with_path(p_shard)}

  def pick(path, leaf):
    keys = tuple(str(k) for k in path)
    s = next((flat_p[keys[n:]] for n in range(len(keys)) if keys[n:] in flat_p),
             sharding.replicated(mesh))
    return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=s)

  return jax.tree_util.tree_map_with_path(pick, abstract)


def load_pretrained(abstract_p, bundle: ModelBundle, cfg, p_shard) -> dict:
  """{tower: params} of the text towers from the HF checkpoint, each array put straight into its
  sharding; leaves the checkpoint lacks (a projection it has no Dense for) are None."""
  tensors = hf_io.read_tensors(bundle.hf_dir, allow_pickle=cfg.model.allow_pickle)
  out = {}
  for tower in ("query_encoder", "passage_encoder"):
    if tower not in abstract_p:
      continue
    template = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), abstract_p[tower])
    filled = hf_io.encoder_params_from_hf(tensors, template, str(bundle.hf_dir))
    dense = hf_io.read_st_dense(bundle.hf_dir, cfg.model.allow_pickle) if "projection" in template else None
    if dense is not None:
      for k in ("kernel", "bias"):
        if dense[k].shape != template["projection"][k].shape:
          raise hf_io.CheckpointImportError(
              f"{bundle.hf_dir}: sentence-transformers Dense {k} has shape {dense[k].shape}; "
              f"config.model.projection_dim needs {template['projection'][k].shape}")
      filled["projection"] = {k: np.asarray(v, np.float32) for k, v in dense.items()}
    out[tower] = jax.tree.map(lambda x, s: None if x is None else jax.device_put(x, s), filled,
                              p_shard[tower], is_leaf=lambda x: x is None)
  logging.info("loaded pretrained weights from %s", bundle.hf_dir)
  return out
