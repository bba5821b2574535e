#!/usr/bin/env bash
# A Cloud TPU pod slice: the same command on every host; jax.distributed finds the coordinator,
# the process count and each host's id by itself (--multihost=yes). Workdir on GCS (orbax writes it).
#   scripts/launch_tpu_pod.sh TPU_NAME ZONE gs://BUCKET/run configs/paper_xlmr.py [--config.k=v ...]
set -euo pipefail
tpu=$1; zone=$2; wd=$3; cfg=$4; shift 4
gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command \
  "cd ~/hbt_jax && python -m hbt_jax.main --multihost=yes --config $cfg --workdir $wd $*"
