"""orbax CheckpointManager holding the train state and the sampler position (the next step)."""
from __future__ import annotations

import logging
import shutil
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


def restore_latest(mngr: ocp.CheckpointManager, abstract_state, only_step: int | None = None):
  """(state, next_data_step, step) of the newest readable checkpoint, or None when there is none.

  A checkpoint that fails to restore (truncated or corrupted files) is moved aside to
  `corrupt_checkpoints/` with a warning naming it, and the previous one is tried.
  """
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                        abstract_state)
  steps = sorted(mngr.all_steps(), reverse=True) if only_step is None else [only_step]
  for step in steps:
    try:
      out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                                       data=ocp.args.JsonRestore()))
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint: fall back
      bad = Path(mngr.directory) / str(step)
      logging.warning("checkpoint %s is unreadable (%s: %s); falling back to the previous one",
                      bad, type(e).__name__, str(e)[:300])
      _move_aside(bad)
      mngr.reload()
      continue
    logging.info("restored checkpoint of step %d", step)
    return out["state"], int(out["data"]["next_step"]), step
  return None


def _move_aside(path: Path) -> None:
  if jax.process_index() != 0 or not path.exists():
    return
  dest = path.parent.parent / "corrupt_checkpoints" / path.name
  dest.parent.mkdir(parents=True, exist_ok=True)
  if dest.exists():
    shutil.rmtree(dest)
  shutil.move(str(path), str(dest))
