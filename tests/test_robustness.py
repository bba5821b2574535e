"""Preemption, crash resume, corrupted checkpoints, non-finite losses and bad configs (tiny config)."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import ROOT, WITHOUT_TENSORFLOW, run_cli

def _no_eval(extra=()):
  # The tiny config's evaluator is not what these tests are about; drop it to save time.
  return ["--config", "configs/tiny.py:noeval", *extra]


def _params(wd: Path, step: int):
  tree = ocp.PyTreeCheckpointer().restore(str(wd / "checkpoints" / str(step) / "state"))
  import jax
  return {jax.tree_util.keystr(p): np.asarray(v) for p, v in
          jax.tree_util.tree_leaves_with_path(tree["params"])}


def _start(args, wd, extra_env=None):
  env = {**os.environ, "PYTHONPATH": str(ROOT), **(extra_env or {})}
  return subprocess.Popen([sys.executable, "-m", "hbt_jax.main", *args, "--workdir", str(wd)],
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_step(wd, step, proc, timeout=300):
  t0 = time.time()
  while time.time() - t0 < timeout:
    f = wd / "metrics.jsonl"
    if f.exists():
      rows = [json.loads(l) for l in f.read_text().splitlines() if l.strip()]
      if rows and rows[-1]["step"] >= step:
        return
    if proc.poll() is not None:
      raise AssertionError(f"exited early: {proc.stderr.read()[-2000:]}")
    time.sleep(0.2)
  raise AssertionError("timed out waiting for training to progress")


@pytest.mark.slow
def test_sigkill_then_rerun_equals_uninterrupted_run(data_dir, tmp_path):
  """The reference trains with tf.data; the killed run and its rerun cannot import TensorFlow (the
  thread pipeline): same params and losses. All three share a fresh compilation cache: the rerun
  loads the train step the reference compiled."""
  steps = ["--config.num_steps=40", "--config.log_every=1", "--config.checkpoint_every=10",
           f"--config.compilation_cache={tmp_path / 'jax_cache'}"]
  ref = tmp_path / "ref"
  r = run_cli([*_no_eval(steps)], ref)
  assert r.returncode == 0, r.stderr[-2000:]
  assert re.search(r"compiled jit\(train_step\) in [\d.]+ s \(compiled anew\)", r.stderr)
  wd = tmp_path / "killed"
  p = _start(_no_eval(steps), wd, WITHOUT_TENSORFLOW)
  _wait_for_step(wd, 25, p)
  p.send_signal(signal.SIGKILL)
  p.wait(60)
  r = run_cli(_no_eval(steps), wd, extra_env=WITHOUT_TENSORFLOW)
  assert r.returncode == 0, r.stderr[-2000:]
  assert "restored checkpoint of step" in r.stderr
  assert "TensorFlow is not importable: host batches come from prefetching threads" in r.stderr
  assert re.search(r"compiled jit\(train_step\) in [\d.]+ s \(from the persistent cache\)", r.stderr)
  a, b = _params(ref, 40), _params(wd, 40)
  assert a.keys() == b.keys()
  assert max(float(np.abs(a[k] - b[k]).max()) for k in a) <= 1e-6
  last = {x["step"]: x["loss"] for x in map(json.loads, (wd / "metrics.jsonl").read_text().splitlines())}
  want = {x["step"]: x["loss"] for x in map(json.loads, (ref / "metrics.jsonl").read_text().splitlines())}
  assert sorted(last) == sorted(want) == list(range(1, 41))
  np.testing.assert_allclose([last[k] for k in sorted(last)], [want[k] for k in sorted(want)], atol=1e-5)


@pytest.mark.slow
def test_sigterm_saves_and_exits_cleanly(data_dir, tmp_path):
  wd = tmp_path / "run"
  p = _start(_no_eval(["--config.num_steps=100000", "--config.log_every=1",
                       "--config.checkpoint_every=100000"]), wd)
  _wait_for_step(wd, 5, p)
  t0 = time.time()
  p.send_signal(signal.SIGTERM)
  rc = p.wait(60)
  assert rc == 0 and time.time() - t0 < 60
  saved = [int(x.name) for x in (wd / "checkpoints").iterdir() if x.name.isdigit()]
  assert len(saved) == 1 and saved[0] >= 5
  assert "preemption" in p.stderr.read()


@pytest.mark.slow
def test_truncated_latest_checkpoint_falls_back_to_previous(data_dir, tmp_path):
  wd = tmp_path / "run"
  r = run_cli(_no_eval(["--config.num_steps=20", "--config.checkpoint_every=10"]), wd)
  assert r.returncode == 0, r.stderr[-2000:]
  # Truncate every data file of the latest checkpoint's state.
  for f in (wd / "checkpoints" / "20" / "state").rglob("*"):
    if f.is_file() and f.stat().st_size > 0 and "metadata" not in f.name:
      f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
  r = run_cli(_no_eval(["--config.num_steps=25", "--config.checkpoint_every=10"]), wd)
  assert r.returncode == 0, r.stderr[-2000:]
  assert "checkpoints/20 is unreadable" in r.stderr and "restored checkpoint of step 10" in r.stderr
  assert (wd / "corrupt_checkpoints" / "20").exists()
  assert sorted(int(x.name) for x in (wd / "checkpoints").iterdir() if x.name.isdigit())[-1] == 25


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(data_dir, tmp_path):
  wd = tmp_path / "run"
  # A learning rate of 1e12 without clipping blows the weights up within a few steps.
  r = run_cli(_no_eval(["--config.num_steps=40", "--config.checkpoint_every=1",
                        "--config.optim.lr=1e12", "--config.optim.grad_clip=0",
                        "--config.optim.warmup_steps=0"]), wd)
  assert r.returncode != 0
  assert "non-finite loss" in r.stderr and "last checkpoint is intact" in r.stderr
  last = max(int(x.name) for x in (wd / "checkpoints").iterdir() if x.name.isdigit())
  params = _params(wd, last)
  assert all(np.isfinite(v).all() for v in params.values())


@pytest.mark.parametrize("override,message", [
    ("--config.sampler.alpha=1.5", "config.sampler.alpha=1.5"),
    ("--config.batch_size=12", "config.batch_size=12 must divide by the mesh's data-parallel size 8"),
    ("--config.data.langs=en,xx", r"config.data.langs: languages \['xx'\] are not in the data"),
    ("--config.batch_size=400", "config.batch_size=400 is larger than"),
    ("--config.sampler.batch_type=xx", "config.sampler.batch_type='xx'"),
    ("--config.optim.lr=-1", r"config.optim.lr=-1.0 must be >= 0"),
    ("--config.sampler.alpah=0.3", r"--config.sampler.alpah=0.3: no such config key \(Did you mean \"alpha\""),
    ("--config.data.data_dir=/nonexistent", "/nonexistent/lareqa/mlqa-r/ar.json: missing"),
    ("--config=configs/nope.py", "--config: no such config file: configs/nope.py"),
])
def test_config_errors_are_one_line_naming_the_key(data_dir, tmp_path, override, message):
  """A user's mistake: `error: ...` on one line, exit status 2, no traceback."""
  r = run_cli(_no_eval([override]), tmp_path / "x", timeout=300,
              extra_env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert r.returncode == 2, r.stderr[-1500:]
  errors = [l for l in r.stderr.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr[-1500:]
  assert re.search(message, errors[0]), errors[0]


def test_traceback_flag_shows_the_stack(tmp_path):
  r = run_cli(_no_eval(["--config.optim.lr=-1", "--traceback"]), tmp_path / "x", timeout=300)
  assert r.returncode == 1 and "Traceback (most recent call last)" in r.stderr
  assert "ConfigError: config.optim.lr=-1.0 must be >= 0" in r.stderr


@pytest.mark.slow
def test_nan_policy_skip_counts_skipped_steps(data_dir, tmp_path):
  wd = tmp_path / "run"
  r = run_cli(_no_eval(["--config.num_steps=12", "--config.log_every=4", "--config.nan_policy=skip",
                        "--config.optim.lr=1e12", "--config.optim.grad_clip=0",
                        "--config.optim.warmup_steps=0"]), wd)
  assert r.returncode == 0, r.stderr[-2000:]
  rows = [json.loads(l) for l in (wd / "metrics.jsonl").read_text().splitlines()]
  assert rows[-1]["skipped_steps"] > 0 and "update skipped" in r.stderr
  assert all(np.isfinite(v).all() for v in _params(wd, 12).values())
