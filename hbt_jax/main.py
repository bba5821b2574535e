"""Entry point: python -m hbt_jax.main --config configs/NAME.py --workdir DIR [--config.key=value].

A mistake in the flags, the config or the data prints one line `error: ...` and exits with status 2
(`--traceback` shows the stack; hbt_jax/cli.py).

Multi-host: on a TPU pod pass --multihost=yes on every host (jax.distributed detects the rest); on
GPU/CPU clusters give --coordinator_address, --num_processes and --process_id (or the environment
variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID).
"""
from __future__ import annotations

import json
import logging
import os

from absl import flags
from ml_collections import config_flags

from hbt_jax import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (configs/NAME.py[:arg]).", lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, metrics, results and reports go here.")
flags.DEFINE_enum("multihost", "auto", ["auto", "yes", "no"],
                  "jax.distributed: yes = initialize (auto-detects TPU pods / SLURM); auto = only when "
                  "a coordinator is given by flag or environment; no = single process.")
flags.DEFINE_string("coordinator_address", os.environ.get("JAX_COORDINATOR_ADDRESS"), "host:port")
flags.DEFINE_integer("num_processes", int(os.environ.get("JAX_NUM_PROCESSES", 0)) or None, "")
flags.DEFINE_integer("process_id", int(os.environ["JAX_PROCESS_ID"]) if "JAX_PROCESS_ID" in os.environ
                     else None, "")
flags.DEFINE_integer("heartbeat_timeout_s", 60,
                     "A process whose peers stop answering exits with an error after this long.")
flags.mark_flags_as_required(["config", "workdir"])


def init_distributed() -> None:
  import jax
  want = FLAGS.multihost == "yes" or (FLAGS.multihost == "auto" and FLAGS.coordinator_address)
  if not want:
    return
  if jax.config.jax_platforms in (None, "", "cpu") and FLAGS.coordinator_address:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  kwargs = {}
  if FLAGS.coordinator_address:
    kwargs = dict(coordinator_address=FLAGS.coordinator_address, num_processes=FLAGS.num_processes,
                  process_id=FLAGS.process_id)
  jax.distributed.initialize(heartbeat_timeout_seconds=FLAGS.heartbeat_timeout_s,
                             initialization_timeout=FLAGS.heartbeat_timeout_s * 5, **kwargs)
  logging.info("process %d of %d", jax.process_index(), jax.process_count())


class _QuietLibraries(logging.Filter):
  """orbax and tensorstore log every checkpoint step at INFO; keep their warnings only."""

  def filter(self, record):
    noisy = any(s in record.pathname for s in ("orbax", "tensorstore", "etils"))
    return record.levelno >= logging.WARNING or not noisy


def main(argv):
  del argv
  logging.getLogger().setLevel(logging.INFO)
  for h in logging.getLogger().handlers:
    h.addFilter(_QuietLibraries())
  init_distributed()
  from hbt_jax import train
  cfg = FLAGS.config
  os.makedirs(FLAGS.workdir, exist_ok=True)
  with open(os.path.join(FLAGS.workdir, "config.json"), "w") as f:
    f.write(cfg.to_json(indent=1))
  results = train.train_and_evaluate(cfg, FLAGS.workdir)
  if results:
    print(json.dumps({k: round(v, 4) for k, v in sorted(results.items())
                      if "/map" in k and k.count("/") <= 2 or "rank_distance" in k and k.count("/") == 2},
                     indent=1))


if __name__ == "__main__":
  cli.run(main)
