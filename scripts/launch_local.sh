#!/usr/bin/env bash
# N local JAX processes (CPU, gloo collectives) on one machine: a real multi-host run for testing.
#   scripts/launch_local.sh N WORKDIR --config configs/tiny.py [--config.key=value ...]
# Each process gets DEVICES_PER_PROCESS fake CPU devices (default 4). Exits non-zero if any fails.
set -euo pipefail
n=$1; wd=$2; shift 2
port=${PORT:-$((20000 + RANDOM % 20000))}
export XLA_FLAGS="--xla_force_host_platform_device_count=${DEVICES_PER_PROCESS:-4}"
pids=()
for i in $(seq 0 $((n - 1))); do
  python -m hbt_jax.main "$@" --workdir "$wd" --coordinator_address="localhost:$port" \
    --num_processes="$n" --process_id="$i" > "$wd.p$i.log" 2>&1 &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
echo "logs: $wd.p*.log"; exit $rc
