"""Test setup: 8 fake CPU devices (set before JAX starts), the shared data dir, quiet TF."""
import os
import sys
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def data_dir() -> str:
  from hbt_jax.data.lareqa import default_data_dir
  d = default_data_dir()
  if not (Path(d) / "lareqa").exists():
    pytest.skip(f"LAReQA data not found at {d} (set HBT_DATA_DIR)")
  return d


def load_config(name: str, arg=None, **overrides):
  """configs/NAME.py's get_config(arg) with dotted-key overrides ("optim.lr": 1e-3), as tests use it."""
  import importlib.util
  spec = importlib.util.spec_from_file_location(name, ROOT / "configs" / f"{name}.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  cfg = mod.get_config(arg) if arg is not None else mod.get_config()
  with cfg.unlocked():
    for k, v in overrides.items():
      node = cfg
      *path, last = k.split(".")
      for p in path:
        node = node[p]
      node[last] = v
  return cfg


# Environment of a subprocess that cannot import TensorFlow (tests/no_tensorflow/sitecustomize.py).
WITHOUT_TENSORFLOW = {"PYTHONPATH": f"{ROOT / 'tests' / 'no_tensorflow'}{os.pathsep}{ROOT}"}


def run_cli(args, workdir, timeout=600, extra_env=None):
  """python -m hbt_jax.main ... in a subprocess; returns CompletedProcess."""
  import subprocess
  env = dict(os.environ, **(extra_env or {}))
  env.setdefault("PYTHONPATH", str(ROOT))
  return subprocess.run([sys.executable, "-m", "hbt_jax.main", *args, "--workdir", str(workdir)],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def tiny_clip(path):
  """A random-init HF CLIPModel (32 px, 8 px patches, one layer) saved to `path`."""
  import torch
  import transformers
  torch.manual_seed(0)
  transformers.CLIPModel(transformers.CLIPConfig(
      vision_config=dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=4, intermediate_size=64),
      text_config=dict(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                       intermediate_size=64), projection_dim=24)).save_pretrained(path)
  return str(path)
