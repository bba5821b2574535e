"""On-disk cache of a frozen image tower's embeddings (LiT: the image side is computed once).

An entry is keyed by the tower (its config, every parameter's bytes and the preprocessing spec)
and by the image file's content, so a different tower, other weights, other preprocessing or an
edited image never reuses a stale embedding. Layout: ROOT/<tower key>/<image content key>.npy,
written atomically (a crashed run leaves no half-written entry).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import numpy as np


def tower_key(tower_config: Any, variables: Any, preprocess_key: str) -> str:
  h = hashlib.sha256()
  h.update(repr(tower_config).encode())
  h.update(preprocess_key.encode())
  for path, leaf in sorted(jax.tree_util.tree_leaves_with_path(variables), key=lambda p: str(p[0])):
    arr = np.asarray(leaf)
    h.update(f"{jax.tree_util.keystr(path)}{arr.dtype}{arr.shape}".encode())
    h.update(np.ascontiguousarray(arr).tobytes())
  return h.hexdigest()[:20]


def file_key(path: str | Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()[:24]


class EmbeddingCache:
  def __init__(self, root: str | Path, key: str):
    self.dir = Path(root) / key
    self.dir.mkdir(parents=True, exist_ok=True)
    self.hits = self.misses = 0

  def get(self, paths: Sequence[str], compute: Callable[[list[str]], np.ndarray],
          batch: int = 256) -> np.ndarray:
    """[N, D] embeddings of `paths` in order; the missing ones come from `compute(paths)`."""
    keys = [file_key(p) for p in paths]
    out: list[np.ndarray | None] = [None] * len(paths)
    todo = []
    for i, k in enumerate(keys):
      f = self.dir / f"{k}.npy"
      if f.exists():
        out[i] = np.load(f)
      else:
        todo.append(i)
    self.hits += len(paths) - len(todo)
    self.misses += len(todo)
    for s in range(0, len(todo), batch):
      idx = todo[s:s + batch]
      emb = np.asarray(compute([paths[i] for i in idx]), np.float32)
      if emb.shape[0] != len(idx):
        raise ValueError(f"the image tower returned {emb.shape[0]} embeddings for {len(idx)} images")
      for i, e in zip(idx, emb):
        self._write(self.dir / f"{keys[i]}.npy", e)
        out[i] = e
    return np.stack(out) if out else np.zeros((0, 0), np.float32)

  @staticmethod
  def _write(path: Path, value: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
      np.save(f, value)
    os.replace(tmp, path)
