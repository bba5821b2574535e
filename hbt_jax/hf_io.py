"""HF checkpoints in: a local dir or hub id with config.json + model.safetensors -> encoder params.

The mapping is name by name (`hf_to_flax_name`); a tensor the encoder needs that the checkpoint
lacks, or one with the wrong shape, is an error naming it. The BERT pooler (dense + tanh over [CLS])
is not used by sentence-embedding models and is ignored, as sentence-transformers does; the export
carries the checkpoint's pooler through unchanged (`read_pooler`).
A pickle `pytorch_model.bin` is refused unless `allow_pickle=True` (it can run code when loaded).
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np

from hbt_jax import tokenization
from hbt_jax.errors import CheckpointError

_PREFIXES = ("bert.", "roberta.", "model.", "xlm_roberta.")
_IGNORED = re.compile(r"^(pooler\..*|embeddings\.position_ids|lm_head\..*|cls\..*)$")
_LAYER = {
    "attention.self.query": "query", "attention.self.key": "key", "attention.self.value": "value",
    "attention.output.dense": "attention_output", "attention.output.LayerNorm": "attention_LayerNorm",
    "intermediate.dense": "intermediate", "output.dense": "output",
    "output.LayerNorm": "output_LayerNorm",
}
_LEAF = {"weight": "kernel", "bias": "bias", "gamma": "scale", "beta": "bias"}


class CheckpointImportError(CheckpointError):
  pass


def _strip_prefix(name: str) -> str:
  """'bert.encoder.layer.0...' -> 'encoder.layer.0...' (task heads wrap the base model's names)."""
  for p in _PREFIXES:
    if name.startswith(p):
      name = name[len(p):]
  return name


def hf_to_flax_name(name: str) -> tuple[str, ...] | None:
  """'encoder.layer.3.attention.self.query.weight' -> ('layer_3', 'query', 'kernel'); None = unused."""
  name = _strip_prefix(name)
  if _IGNORED.match(name):
    return None
  m = re.match(r"^embeddings\.(word_embeddings|position_embeddings|token_type_embeddings)\.weight$",
               name)
  if m:
    return ("embeddings", m.group(1), "embedding")
  m = re.match(r"^embeddings\.LayerNorm\.(weight|bias|gamma|beta)$", name)
  if m:
    return ("embeddings", "LayerNorm", "scale" if m.group(1) in ("weight", "gamma") else "bias")
  m = re.match(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias|gamma|beta)$", name)
  if m and m.group(2) in _LAYER:
    module = _LAYER[m.group(2)]
    leaf = _LEAF[m.group(3)]
    if module.endswith("LayerNorm") and leaf == "kernel":
      leaf = "scale"
    return (f"layer_{m.group(1)}", module, leaf)
  return ()  # unknown: reported by the caller


def flax_to_hf_name(path: tuple[str, ...]) -> str:
  inv = {v: k for k, v in _LAYER.items()}
  if path[0] == "embeddings":
    if path[1] == "LayerNorm":
      return f"embeddings.LayerNorm.{'weight' if path[2] == 'scale' else 'bias'}"
    return f"embeddings.{path[1]}.weight"
  i = path[0].split("_")[1]
  leaf = "bias" if path[2] == "bias" else "weight"
  return f"encoder.layer.{i}.{inv[path[1]]}.{leaf}"


def locate(name_or_path: str) -> Path:
  """A local directory for a model dir, the offline MiniLM alias, or a hub id (downloaded)."""
  resolved = tokenization.resolve_model_dir(name_or_path)
  if Path(resolved).is_dir():
    return Path(resolved)
  from huggingface_hub import snapshot_download
  try:
    return Path(snapshot_download(resolved, allow_patterns=["*.json", "*.safetensors", "*.txt",
                                                            "*.model", "tokenizer*"]))
  except Exception as e:  # noqa: BLE001 - any hub failure becomes one clear message
    raise CheckpointImportError(f"config.model.init={name_or_path!r}: not a local directory and the "
                                f"hub could not provide it ({type(e).__name__}: {e})") from None


def read_hf_config(model_dir: Path) -> dict:
  path = model_dir / "config.json"
  if not path.exists():
    raise CheckpointImportError(f"{path}: missing (an HF model directory needs config.json)")
  return json.loads(path.read_text())


def read_tensors(model_dir: Path, allow_pickle: bool = False) -> dict[str, np.ndarray]:
  st = sorted(model_dir.glob("*.safetensors"))
  if st:
    from safetensors.numpy import load_file
    tensors = {}
    for f in st:
      tensors.update(load_file(str(f)))
    return tensors
  binf = model_dir / "pytorch_model.bin"
  if binf.exists():
    if not allow_pickle:
      raise CheckpointImportError(f"{binf}: pickle checkpoints can run code when loaded; convert it to "
                                  "safetensors or set config.model.allow_pickle=True")
    from hbt_jax import torch_pickle  # a restricted unpickler: tensors only, no torch needed
    return {k: v.astype(np.float32) for k, v in torch_pickle.load_state_dict(binf).items()}
  raise CheckpointImportError(f"{model_dir}: no model.safetensors (or pytorch_model.bin)")


def encoder_params_from_hf(tensors: dict[str, np.ndarray], template: dict, source: str) -> dict:
  """Fills a params template (nested dict of arrays/ShapeDtypeStructs) of one Encoder from HF."""
  flat: dict[tuple[str, ...], np.ndarray] = {}
  unknown = []
  for name, value in tensors.items():
    path = hf_to_flax_name(name)
    if path is None:
      continue
    if path == ():
      unknown.append(name)
      continue
    flat[path] = value.T if path[-1] == "kernel" else value
  if unknown:
    logging.warning("%s: tensors not used by the encoder: %s", source, unknown[:10])

  def fill(tree, prefix=()):
    out = {}
    for k, v in tree.items():
      if isinstance(v, dict):
        out[k] = fill(v, prefix + (k,))
        continue
      path = prefix + (k,)
      if path[0] == "projection":
        out[k] = None  # not in HF checkpoints: keeps its random init
        continue
      if path not in flat:
        raise CheckpointImportError(f"{source}: missing tensor {flax_to_hf_name(path)!r} "
                                    f"(for {'/'.join(path)})")
      arr = np.asarray(flat[path], np.float32)
      if tuple(arr.shape) != tuple(v.shape):
        raise CheckpointImportError(f"{source}: tensor {flax_to_hf_name(path)!r} has shape "
                                    f"{arr.shape}, the model config needs {tuple(v.shape)}")
      out[k] = arr
    return out

  return fill(template)


def read_pooler(model_dir: Path | None, hidden: int) -> dict[str, np.ndarray]:
  """The checkpoint's BERT pooler tensors (HF names), or zeros when it has none (random init): hbt_jax
  never uses or trains the pooler, and an export with it loads in transformers with no missing weight."""
  if model_dir is not None:
    from safetensors import safe_open
    tensors = {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
      with safe_open(str(f), "numpy") as st:
        for k in st.keys():
          short = _strip_prefix(k)
          if short in ("pooler.dense.weight", "pooler.dense.bias"):
            tensors[short] = st.get_tensor(k).astype(np.float32)
    if len(tensors) == 2 and tensors["pooler.dense.bias"].shape == (hidden,):
      return tensors
  return {"pooler.dense.weight": np.zeros((hidden, hidden), np.float32),
          "pooler.dense.bias": np.zeros((hidden,), np.float32)}


def read_st_dense(model_dir: Path, allow_pickle: bool = False) -> dict[str, np.ndarray] | None:
  """The sentence-transformers Dense head of a model dir (e.g. LaBSE's 768->768 tanh), if any:
  {'kernel': [in, out], 'bias': [out]}."""
  modules = model_dir / "modules.json"
  if not modules.exists():
    return None
  for m in json.loads(modules.read_text()):
    if m.get("type", "").endswith("models.Dense"):
      d = model_dir / m["path"]
      t = read_tensors(d, allow_pickle=allow_pickle)
      return {"kernel": np.ascontiguousarray(t["linear.weight"].T), "bias": t["linear.bias"]}
  return None
