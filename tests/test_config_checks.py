"""Config values are checked before any work starts; each error names its key (in-process, fast).
The command line's one-line `error:` and exit status 2: test_robustness.py."""
from pathlib import Path

import pytest

from conftest import load_config
from hbt_jax import cli, config_checks, errors


@pytest.mark.parametrize("key,value,message", [
    ("optim.lr", -1e-5, "config.optim.lr=-1e-05 must be >= 0"),
    ("sampler.alpha", -0.1, r"config.sampler.alpha=-0.1 must be in \[0, 1\]"),
    ("sampler.alpha", 1.5, r"config.sampler.alpha=1.5 must be in \[0, 1\]"),
    ("num_steps", -3, "config.num_steps=-3 must be >= 0"),
    ("batch_size", 0, "config.batch_size=0 must be positive"),
    ("sampler.batch_type", "xx_max", "config.sampler.batch_type='xx_max'"),
    ("model.temperature", 0.0, "config.model.temperature=0.0 must be positive"),
    ("optim.warmup_steps", -1, "config.optim.warmup_steps=-1 must be >= 0"),
    ("optim.weight_decay", -0.01, "config.optim.weight_decay=-0.01 must be >= 0"),
    ("optim.schedule", "step", "config.optim.schedule='step'"),
    ("data.fraction", 0.0, r"config.data.fraction=0.0 must be in \(0, 1\]"),
    ("data.pipeline", "grain", "config.data.pipeline='grain'"),
    ("model.dropout", 1.0, r"config.model.dropout=1.0 must be in \[0, 1\)"),
    ("model.max_query_len", 0, "config.model.max_query_len=0 must be positive"),
    ("nan_policy", "ignore", "config.nan_policy='ignore'"),
    ("evals.xquad_r.every", -1, "config.evals.xquad_r.every=-1 must be >= 0"),
])
def test_bad_values_are_config_errors_naming_the_key(key, value, message):
  cfg = load_config("tiny", **{key: value})
  with pytest.raises(config_checks.ConfigError, match=message) as e:
    config_checks.validate(cfg)
  assert cli.user_message(e.value) is not None  # the CLI prints it as one line, exit 2


@pytest.mark.parametrize("key,value", [("optim.lr", 0.0), ("sampler.alpha", 0.0),
                                        ("sampler.alpha", 1.0), ("num_steps", 0),
                                        ("model.dropout", -1.0)])
def test_edge_values_stay_valid(key, value):
  config_checks.validate(load_config("tiny", **{key: value}))  # lr 0 freezes the weights (parity)


def test_batch_smaller_than_the_data_parallel_devices():
  with pytest.raises(config_checks.ConfigError, match="smaller than the mesh's 8 data-parallel"):
    config_checks.check_batch_divisible(load_config("tiny", batch_size=4), 8, 1)


def test_user_errors_and_bugs_are_told_apart():
  assert cli.user_message(errors.DataError("a.jsonl:3: bad\nline")) == "a.jsonl:3: bad line"
  assert cli.user_message(FileNotFoundError(2, "No such file or directory", "/x/y.png")) == \
      "/x/y.png: No such file or directory"
  assert cli.user_message(KeyError("query_ids")) is None  # a bug: keeps its traceback
  assert cli.user_message(ValueError("shapes do not match")) is None


def test_hbt_cpu_full_option_is_the_readme_protocol():
  import importlib.util
  spec = importlib.util.spec_from_file_location("hbt_cpu", Path(__file__).resolve().parents[1] / "configs/hbt_cpu.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  slice_cfg = mod.get_config("mlqa_r:hybrid:me5:study")
  full = mod.get_config("mlqa_r:hybrid:me5:study:full")
  assert slice_cfg.evals.xquad_r.max_questions == 300 and not slice_cfg.evals.xquad_r.candidate_context
  assert full.evals.xquad_r.max_questions == 0 and full.evals.xquad_r.candidate_context
  assert full.num_steps == slice_cfg.num_steps == 60
  with pytest.raises(ValueError, match="options after VARIANT"):
    mod.get_config("mlqa_r:hybrid:me5:fast")
