"""Batched, sharded encoding of texts with a tower of the dual encoder.

Texts are tokenized per batch; the last partial batch is padded with empty rows whose outputs are
dropped (the attention mask keeps them from touching real rows). The batch is split over the
mesh's data axes, parameters keep their training shardings.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh
from tqdm import tqdm

from hbt_jax import sharding, tokenization
from hbt_jax.sampler import host_slice


LEN_STEP = 32


def _batch_unit(mesh: Mesh, batch_size: int) -> int:
  """The batch size rounded down to a multiple of the data-parallel devices and processes."""
  unit = math.lcm(sharding.data_parallel_size(mesh), jax.process_count())
  return max(unit, (batch_size // unit) * unit)


def _named(name: str, fn):
  """`fn` under `name`: the name its jit's compiles are logged with (compile_cache.py)."""
  fn.__name__ = fn.__qualname__ = name
  return fn


class Embedder:
  def __init__(self, module, tokenizer, mesh: Mesh, batch_size: int = 128,
               compiler_options: dict | None = None):
    self.module, self.tokenizer, self.mesh = module, tokenizer, mesh
    self.batch_size = _batch_unit(mesh, batch_size)
    out = sharding.replicated(mesh)
    self._fns = {m: jax.jit(_named(m, lambda p, i, k, m=m: module.apply({"params": p}, i, k, True,
                                                                        method=m)),
                            out_shardings=out, compiler_options=compiler_options)
                 for m in ("encode_query", "encode_passage")}

  @classmethod
  def of(cls, bundle, mesh: Mesh, batch_size: int = 128) -> "Embedder":
    """The embedder of a state.ModelBundle, with its encoding compiler options."""
    return cls(bundle.module, bundle.tokenizer, mesh, batch_size, bundle.compiler_options.get("encode"))

  def encode(self, params, texts: Sequence[str], max_len: int, tower: str = "query",
             pairs: Sequence[str | None] | None = None, prefix: str = "", desc: str = "encode"
             ) -> np.ndarray:
    """[N, D] embeddings in input order. Texts are sorted by token length and each batch is cut to
    its longest text (rounded up to a multiple of `LEN_STEP`, which bounds recompilations)."""
    fn = self._fns["encode_query" if tower == "query" else "encode_passage"]
    if len(texts) == 0:
      return np.zeros((0, 0), np.float32)
    ids, mask = tokenization.encode(self.tokenizer, list(texts), max_len, pairs=pairs, prefix=prefix)
    order = np.argsort(-mask.sum(1), kind="stable")
    bs = self.batch_size
    mine = host_slice(bs, jax.process_count(), jax.process_index())
    out = None
    for s in tqdm(range(0, len(texts), bs), desc=desc, disable=jax.process_index() != 0,
                  mininterval=5.0):
      rows = order[s:s + bs]
      n = len(rows)
      width = min(max_len, -(-int(mask[rows].sum(1).max()) // LEN_STEP) * LEN_STEP)
      b_ids = np.zeros((bs, width), np.int32)
      b_mask = np.zeros((bs, width), np.int32)
      b_ids[:n], b_mask[:n] = ids[rows, :width], mask[rows, :width]
      b_mask[n:, 0] = 1  # padded rows (dropped below) stay finite
      # Every process tokenized everything; each hands over its own slice of the batch.
      batch = sharding.host_local_to_global({"ids": b_ids[mine], "mask": b_mask[mine]}, self.mesh)
      emb = np.asarray(fn(params, batch["ids"], batch["mask"]))[:n]
      if out is None:
        out = np.zeros((len(texts), emb.shape[1]), np.float32)
      out[rows] = emb
    return out


class ImageEmbedder:
  """Batched, sharded image embeddings of a trainable image tower (two_tower.ImageTextModel's
  `encode_images`) with the current params. Every process decodes each batch (images.batches:
  tf.data or threads, in order, prefetched) and hands over its own slice, as Embedder does with
  tokens."""

  def __init__(self, module, consts: dict, mesh: Mesh, batch_size: int = 32):
    self.mesh, self.batch_size = mesh, _batch_unit(mesh, batch_size)
    self._fn = jax.jit(_named("encode_images", lambda p, x: module.apply(
                           {"params": p, **consts}, x, method="encode_images")),
                       out_shardings=sharding.replicated(mesh))

  def encode(self, params, paths: Sequence[str], preprocess, desc: str = "images") -> np.ndarray:
    from hbt_jax.data import images
    bs = self.batch_size
    mine = host_slice(bs, jax.process_count(), jax.process_index())
    out = None
    batches = images.batches(paths, preprocess, bs)
    for b in tqdm(batches, desc=desc, total=-(-len(paths) // bs), disable=jax.process_index() != 0,
                  mininterval=5.0):
      n = len(b["index"])
      x = np.zeros((bs,) + b["image"].shape[1:], np.float32)  # one shape: one compilation
      x[:n] = b["image"]
      emb = np.asarray(self._fn(params, sharding.host_local_to_global({"x": x[mine]}, self.mesh)["x"]))
      if out is None:
        out = np.zeros((len(paths), emb.shape[1]), np.float32)
      out[b["index"]] = emb[:n]
    return out
