"""scripts/bench_gpu.py --small runs end to end on this CPU (the script a GPU host runs as is), with
TensorFlow hidden as on the measured GPU host."""
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import WITHOUT_TENSORFLOW

ROOT = Path(__file__).resolve().parents[1]


def test_bench_gpu_small_runs_and_reports_every_section(tmp_path):
  out = tmp_path / "bench.json"
  env = dict(os.environ, HF_HUB_OFFLINE="1", **WITHOUT_TENSORFLOW)
  env.pop("XLA_FLAGS", None)  # one CPU device, as a user runs it
  proc = subprocess.run([sys.executable, str(ROOT / "scripts/bench_gpu.py"), "--small", "--json",
                         str(out), "--screen", "bf16_3x", "--cache_dir", str(tmp_path / "cache")],
                        capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = json.loads(out.read_text())["results"]
  errors = {k: v["error"] for k, v in res.items() if "error" in v}
  assert not errors, errors
  for name in ("train hbt_jax fused ad=0", "train hbt_jax explicit ad=0", "train hbt_jax fused ad=0 remat",
               "train hbt_jax fused ad=0.1", "train torch ad=0", "train torch ad=0.1"):
    assert res[name]["pairs_per_s"] > 0 and res[name]["first_step_s"] > 0, name
  assert res["train hbt_jax fused ad=0"]["train_path"] == "xla"          # forced fused on CPU
  assert res["train hbt_jax fused ad=0.1"]["train_path"] == "explicit"   # dropout: the fallback
  assert res["train hbt_jax fused ad=0"]["program_peak_gb"] > 0
  assert res["encode hbt_jax"]["texts_per_s"] > 0 and res["encode torch"]["texts_per_s"] > 0
  top = res["search hbt_jax top_k"]
  assert top["screen"] == "bf16_3x" and top["exact_share"] == 1.0
  lines = proc.stdout.strip().splitlines()
  assert lines[-1].startswith("encode ratio:")  # the table comes last
  assert any(l.startswith("| search hbt_jax top_k |") for l in lines)
