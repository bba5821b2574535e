"""orbax CheckpointManager holding the train state and the sampler position (the next step)."""
from __future__ import annotations

import logging
from pathlib import Path

import jax
import orbax.checkpoint as ocp


def manager(workdir: str, cfg) -> ocp.CheckpointManager:
  opts = ocp.CheckpointManagerOptions(max_to_keep=cfg.keep_checkpoints, create=True,
                                      enable_async_checkpointing=cfg.async_checkpoints)
  return ocp.CheckpointManager(Path(workdir).absolute() / "checkpoints", options=opts,
                               item_names=("state", "data"))


def save(mngr: ocp.CheckpointManager, step: int, state, next_data_step: int,
         force: bool = False) -> bool:
  return mngr.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      data=ocp.args.JsonSave({"next_step": int(next_data_step)})), force=force)


def restore_latest(mngr: ocp.CheckpointManager, abstract_state):
  """(state, next_data_step, step) of the newest checkpoint, or None when there is none."""
  step = mngr.latest_step()
  if step is None:
    return None
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                        abstract_state)
  out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                                   data=ocp.args.JsonRestore()))
  logging.info("restored checkpoint of step %d", step)
  return out["state"], int(out["data"]["next_step"]), step
