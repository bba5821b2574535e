"""The trainer, top to bottom: config -> mesh -> data -> model -> sharded state -> jitted step ->
evaluators -> checkpoints -> loop."""
from __future__ import annotations

import json
import logging
import os
import signal
import time

import jax
import jax.numpy as jnp
from jax import lax
import optax
from tqdm import tqdm

from hbt_jax import (checkpoints, compile_cache, config_checks, evaluators, grad_cache, image_features,
                     input_pipeline, losses, sharding, state, two_tower)
from hbt_jax.metric_writers import MetricWriter
from hbt_jax.sampler import BATCH_TYPES


class NonFiniteError(FloatingPointError):
  pass


def make_train_step(bundle: state.ModelBundle, tx, cfg, data_shards: int = 1):
  """One update on the global batch; non-finite loss/grads leave the state unchanged (flagged).
  The loss is the text InfoNCE of query / passage (/ negative) inputs, or for config.task
  'image_text' the LiT loss of the batch's named inputs (`_image_text_loss_fn`).

  With config.loss.grad_cache_chunk > 0 the gradient is computed GradCache-style (grad_cache.py),
  chunk by chunk per data shard (`data_shards` = the mesh's data-parallel size)."""
  module = bundle.module
  methods = ("encode_query", "encode_passage", "encode_passage")

  def encode_chunk(params, group, ids, mask, chunk_index, rng):
    return module.apply({"params": params}, ids, mask, False, method=methods[group],
                        rngs={"dropout": jax.random.fold_in(jax.random.fold_in(rng, group),
                                                            chunk_index)})

  def groups_of(batch):
    groups = [(batch["query_ids"], batch["query_mask"]), (batch["passage_ids"], batch["passage_mask"])]
    if "neg_ids" in batch:
      b, k, length = batch["neg_ids"].shape
      groups.append((batch["neg_ids"].reshape(b * k, length), batch["neg_mask"].reshape(b * k, length)))
    return groups

  def loss_from_embeddings(params, embs, batch):
    neg = embs[2].reshape(batch["neg_ids"].shape[:2] + (-1,)) if len(embs) > 2 else None
    temp = module.apply({"params": params}, method="get_temperature")
    return losses.info_nce(embs[0], embs[1], temp, neg, batch.get("neg_valid"),
                           symmetric=cfg.loss.symmetric)

  def text_loss_fn(params, batch, rng):
    embs = [encode_chunk(params, g, ids, mask, 0, rng) for g, (ids, mask) in enumerate(groups_of(batch))]
    return loss_from_embeddings(params, embs, batch)

  def cached_value_and_grad(params, batch, rng):
    return grad_cache.value_and_grad(
        lambda p, g, i, m, c: encode_chunk(p, g, i, m, c, rng),
        lambda p, e: loss_from_embeddings(p, e, batch), params, groups_of(batch), data_shards,
        cfg.loss.grad_cache_chunk)

  loss_fn = (_image_text_loss_fn(module, cfg, bundle.image_consts) if cfg.task == "image_text"
             else text_loss_fn)

  def train_step(st, batch):
    rng = jax.random.fold_in(jax.random.key(cfg.seed), st["step"])
    if cfg.loss.grad_cache_chunk:
      (_, aux), grads = cached_value_and_grad(st["params"], batch, rng)
    else:
      (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(st["params"], batch, rng)
    gnorm = optax.global_norm(grads)
    finite = jnp.isfinite(aux["loss"]) & jnp.isfinite(gnorm)
    updates, opt_state = tx.update(grads, st["opt_state"], st["params"])
    params = optax.apply_updates(st["params"], updates)
    # A branch, not an elementwise select, so a good step does not pass over the state again.
    params, opt_state = lax.cond(finite, lambda: (params, opt_state),
                                 lambda: (st["params"], st["opt_state"]))
    new = {"params": params, "opt_state": opt_state, "step": st["step"] + 1}
    return new, {**aux, "grad_norm": gnorm, "finite": finite}

  return train_step


def _image_text_loss_fn(module, cfg, image_consts):
  """Image–text loss over the global batch. The batch's inputs say its type: `image_features` (a
  locked tower's cached features, LiT) or `images` (pixels for a trainable tower, with its constant
  `image_consts` such as batch-norm statistics) + `text_*` (it_mono / it_mixed: image–caption), or
  `src_*` + `text_*` (tt_xy: caption_x–caption_y, both through the text tower); jit compiles one
  step per type."""
  def loss_fn(params, batch, rng):
    def text(ids, mask, i):
      return module.apply({"params": params}, ids, mask, False, method="encode_text",
                          rngs={"dropout": jax.random.fold_in(rng, i)})
    if "images" in batch:
      left = module.apply({"params": params, **image_consts}, batch["images"], method="encode_images")
    elif "image_features" in batch:
      left = module.apply({"params": params}, batch["image_features"], method="encode_image_features")
    else:
      left = text(batch["src_ids"], batch["src_mask"], 1)
    right = text(batch["text_ids"], batch["text_mask"], 0)
    scale, bias = module.apply({"params": params}, method="logit_params")
    return two_tower.image_text_loss(cfg.image.loss, left, right, scale, bias)
  return loss_fn


class _Preemption:
  """SIGTERM (what schedulers and TPU maintenance send) asks the loop to save and stop."""

  def __init__(self):
    self.requested = False
    self._old = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    logging.warning("SIGTERM: saving a checkpoint and stopping")
    self.requested = True

  def should_stop(self, step: int, sync_every: int) -> bool:
    """Every process must stop at the same step: with several processes the local SIGTERM flag is
    all-gathered every `sync_every` steps (the TPU preemption notice is already global)."""
    notice = False
    try:  # the TPU/GCE maintenance notice, where JAX exposes it
      from jax.experimental import multihost_utils
      notice = multihost_utils.reached_preemption_sync_point(step)
    except Exception:  # noqa: BLE001 - no preemption service on this platform
      pass
    if jax.process_count() == 1:
      return self.requested or notice
    if step % sync_every:
      return notice
    from jax.experimental import multihost_utils
    flags = multihost_utils.process_allgather(jnp.array(self.requested))
    return bool(jnp.any(flags)) or notice

  def restore(self):
    signal.signal(signal.SIGTERM, self._old)


class _Startup:
  """Wall time from the trainer's start to the end of the first step, by phase; logged, and written
  to WORKDIR/startup.json (scripts/bench_startup.py reads it)."""

  def __init__(self):
    self.t0 = self.last = time.perf_counter()
    self.phases: dict[str, float] = {}
    self.compiles_before = len(compile_cache.compiles())

  def mark(self, phase: str) -> None:
    now = time.perf_counter()
    self.phases[phase] = self.phases.get(phase, 0.0) + now - self.last
    self.last = now

  def first_step_done(self, workdir: str) -> None:
    self.mark("first_step")
    compiles = compile_cache.compiles()[self.compiles_before:]
    step = [c for c in compiles if c.name == "jit(train_step)"]
    out = {"total_s": self.last - self.t0, **{f"{k}_s": v for k, v in self.phases.items()},
           "step_compile_s": sum(c.seconds for c in step),
           "step_from_cache": bool(step) and all(c.from_cache for c in step),
           "compiles": [[c.name, round(c.seconds, 4), c.from_cache] for c in compiles],
           "end_unix_time": time.time()}
    logging.info("time to first step %.1f s (%s; train step compile %.1f s%s)", out["total_s"],
                 ", ".join(f"{k} {v:.1f} s" for k, v in self.phases.items()), out["step_compile_s"],
                 ", from the persistent cache" if out["step_from_cache"] else "")
    if jax.process_index() == 0:
      with open(os.path.join(workdir, "startup.json"), "w") as f:
        json.dump(out, f, indent=1)


def train_and_evaluate(cfg, workdir: str) -> dict:
  config_checks.validate(cfg)
  compile_cache.setup(cfg.compilation_cache)
  startup = _Startup()
  mesh = sharding.make_mesh(cfg.mesh.to_dict())
  dp = sharding.data_parallel_size(mesh)
  config_checks.check_batch_divisible(cfg, dp, jax.process_count())
  logging.info("mesh %s on %d processes", dict(mesh.shape), jax.process_count())

  corpus = None
  if not cfg.eval_only:  # read and check the data before anything expensive
    corpus = input_pipeline.load_corpus(cfg)
    config_checks.check_corpus(cfg, corpus)
    input_pipeline.make_sampler(cfg, corpus)  # batch size vs. ids per language, named errors

  startup.mark("data")
  bundle = state.build_model(cfg)
  startup.mark("model_build")
  evals = evaluators.from_config(cfg, bundle, mesh, workdir)
  startup.mark("evaluators")
  tx = state.make_optimizer(cfg)
  # A checkpoint restores straight into the state's shardings; only a fresh run creates the state
  # (pretrained weights loaded, the rest initialised).
  abstract = state.abstract_train_state(bundle, cfg, mesh, tx)
  mngr = checkpoints.manager(workdir, cfg)
  restored = checkpoints.restore_latest(mngr, abstract)
  start = 0
  if restored is not None:
    st, start, _ = restored
  elif cfg.restore_from:
    other = checkpoints.manager(cfg.restore_from, cfg)
    found = checkpoints.restore_latest(other, abstract)
    other.close()
    if found is None:
      raise config_checks.ConfigError(f"config.restore_from={cfg.restore_from!r}: no checkpoint there")
    st = state.fresh_state(found[0]["params"], tx, abstract)  # weights only: optimizer and sampler start fresh
  else:
    st = state.create_train_state(bundle, cfg, mesh, tx)
  startup.mark("params")
  if cfg.eval_only:
    results = evaluators.run_all(evals, st["params"], int(st["step"]))
    mngr.close()
    return results

  if cfg.task == "image_text" and cfg.image.trainable:  # pixels decoded per batch, per host
    tokens = input_pipeline.tokenize_captions(corpus, bundle.tokenizer, cfg,
                                              preprocess=bundle.image_tower.preprocess)
  elif cfg.task == "image_text":  # LiT: the locked image tower runs once per image (cached on disk)
    feats = image_features.features(bundle.image_tower, [corpus.image(r) for r in range(corpus.num_ids)],
                                    cfg.image.cache_dir, cfg.image.batch_size)
    tokens = input_pipeline.tokenize_captions(corpus, bundle.tokenizer, cfg, feats)
  else:
    tokens = input_pipeline.tokenize_corpus(corpus, bundle.tokenizer, cfg)
  sampler = input_pipeline.make_sampler(cfg, corpus, tokens)
  batches = input_pipeline.HostBatches(sampler, tokens, jax.process_count(), jax.process_index(),
                                       start, cfg.num_steps, pipeline=cfg.data.pipeline)

  startup.mark("batches")
  st_shard = jax.tree.map(lambda x: x.sharding, st)
  step_fn = jax.jit(make_train_step(bundle, tx, cfg, dp), donate_argnums=(0,),
                    out_shardings=(st_shard, sharding.replicated(mesh)),
                    compiler_options=bundle.compiler_options["train"])
  writer = MetricWriter(workdir)
  preempt = _Preemption()
  results, pending, skipped = {}, None, 0
  t0, done_since_log = time.time(), 0
  bar = tqdm(range(start, cfg.num_steps), initial=start, total=cfg.num_steps, desc="train",
             disable=jax.process_index() != 0, mininterval=2.0)
  try:
    for step in bar:
      host = next(batches)
      batch = sharding.host_local_to_global(input_pipeline.model_inputs(cfg, host), mesh)
      st, metrics = step_fn(st, batch)
      if step == start:
        jax.block_until_ready(metrics)
        startup.first_step_done(workdir)
      # Check the previous step's flag now, so the host never waits for the step just dispatched.
      if pending is not None:
        skipped += _check_finite(pending, cfg)
      pending = (step, metrics)
      done_since_log += 1
      if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.num_steps:
        m = {k: float(v) for k, v in jax.device_get(metrics).items()}
        m["pairs_per_s"] = done_since_log * cfg.batch_size / (time.time() - t0)
        m["batch_type/" + sampler.names[BATCH_TYPES[int(host["batch_type"])]]] = 1.0
        m["skipped_steps"] = skipped
        writer.write(step + 1, m)
        bar.set_postfix(loss=f"{m['loss']:.4f}", acc=f"{m['accuracy']:.2f}")
        t0, done_since_log = time.time(), 0
      stop = preempt.should_stop(step + 1, cfg.log_every)
      if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.num_steps or stop:
        skipped += _check_finite(pending, cfg)
        pending = None
        checkpoints.save(mngr, step + 1, st, batches.next_step, force=stop)
      if stop:
        logging.warning("stopped at step %d after a preemption request", step + 1)
        break
      if step + 1 < cfg.num_steps:  # the last step's evaluation is the final one below
        results.update(evaluators.run_due(evals, st["params"], step + 1))
    else:
      results.update(evaluators.run_all(evals, st["params"], cfg.num_steps))
  finally:
    mngr.wait_until_finished()
    mngr.close()
    writer.close()
    preempt.restore()
  return results


def _check_finite(pending, cfg) -> int:
  step, metrics = pending
  if bool(metrics["finite"]):
    return 0
  if cfg.nan_policy == "skip":
    logging.warning("step %d: non-finite loss or gradients; update skipped", step + 1)
    return 1
  raise NonFiniteError(f"step {step + 1}: non-finite loss ({float(metrics['loss'])}) or gradient norm "
                       f"({float(metrics['grad_norm'])}); the update was not applied and the last "
                       "checkpoint is intact (config.nan_policy='skip' skips such steps instead)")
