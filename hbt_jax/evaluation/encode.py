"""Batched, sharded encoding of texts with a tower of the dual encoder.

Texts are tokenized once, sorted by length and cut into batches whose width is their longest text
rounded up to LEN_STEP tokens (length buckets: one compilation per width); the last partial batch is
padded with empty rows whose outputs are dropped (the attention mask keeps them from touching real
rows). The batch is split over the mesh's data axes, parameters keep their training shardings.

Sized per backend: `batch_size=0` is CPU_ROWS rows on CPU, ACCEL_ROWS per data-parallel device on
GPU / TPU; there a batch of short texts also holds more rows (the same token budget as a full-width
batch, up to MAX_ROW_FACTOR x the rows), so that short buckets fill the chip too. Batches are
dispatched ahead of the results (IN_FLIGHT batches queued on the device while the host fetches an
earlier one and prepares the next), so the device never waits for a host round trip.
"""
from __future__ import annotations

import collections
import math
from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh
from tqdm import tqdm

from hbt_jax import sharding, tokenization
from hbt_jax.sampler import host_slice


LEN_STEP = 32
CPU_ROWS = 128       # XLA:CPU: larger batches measured no faster (docs/benchmarks.md, CPU speed)
ACCEL_ROWS = 512     # per data-parallel device on GPU / TPU
MAX_ROW_FACTOR = 8   # short buckets: at most this many times the rows of a full-width batch
IN_FLIGHT = 2        # batches dispatched ahead of the one being fetched


def _unit(mesh: Mesh) -> int:
  return math.lcm(sharding.data_parallel_size(mesh), jax.process_count())


def batch_rows(mesh: Mesh, batch_size: int = 0, backend: str | None = None) -> int:
  """Rows per batch: `batch_size` (0 = the backend's default) rounded down to a multiple of the
  data-parallel devices and processes."""
  unit = _unit(mesh)
  if batch_size == 0:
    cpu = (backend or jax.default_backend()) == "cpu"
    batch_size = CPU_ROWS if cpu else ACCEL_ROWS * sharding.data_parallel_size(mesh)
  return max(unit, (batch_size // unit) * unit)


def bucket_rows(rows: int, width: int, max_len: int, unit: int, token_budget: bool) -> int:
  """Rows of a batch `width` tokens wide: `rows`, or with `token_budget` as many as fit the tokens
  of a full-width batch (a multiple of `unit`, at most MAX_ROW_FACTOR x rows)."""
  if not token_budget or width >= max_len:
    return rows
  fit = min(rows * max_len // width, rows * MAX_ROW_FACTOR)
  return max(rows, fit // unit * unit)



def _named(name: str, fn):
  """`fn` under `name`: the name its jit's compiles are logged with (compile_cache.py)."""
  fn.__name__ = fn.__qualname__ = name
  return fn


class Embedder:
  def __init__(self, module, tokenizer, mesh: Mesh, batch_size: int = 0,
               compiler_options: dict | None = None, token_budget: bool | None = None):
    self.module, self.tokenizer, self.mesh = module, tokenizer, mesh
    self.batch_size = batch_rows(mesh, batch_size)
    self.token_budget = jax.default_backend() != "cpu" if token_budget is None else token_budget
    out = sharding.replicated(mesh)
    self._fns = {m: jax.jit(_named(m, lambda p, i, k, m=m: module.apply({"params": p}, i, k, True,
                                                                        method=m)),
                            out_shardings=out, compiler_options=compiler_options)
                 for m in ("encode_query", "encode_passage")}

  @classmethod
  def of(cls, bundle, mesh: Mesh, batch_size: int = 0) -> "Embedder":
    """The embedder of a state.ModelBundle, with its encoding compiler options."""
    return cls(bundle.module, bundle.tokenizer, mesh, batch_size, bundle.compiler_options.get("encode"))

  def encode(self, params, texts: Sequence[str], max_len: int, tower: str = "query",
             pairs: Sequence[str | None] | None = None, prefix: str = "", desc: str = "encode"
             ) -> np.ndarray:
    """[N, D] embeddings in input order. Texts are sorted by token length and each batch is cut to
    its longest text (rounded up to a multiple of `LEN_STEP`, which bounds recompilations)."""
    if len(texts) == 0:
      return np.zeros((0, 0), np.float32)
    ids, mask = tokenization.encode(self.tokenizer, list(texts), max_len, pairs=pairs, prefix=prefix)
    return self.encode_tokens(params, ids, mask, tower, desc)

  def encode_tokens(self, params, ids: np.ndarray, mask: np.ndarray, tower: str = "query",
                    desc: str = "encode") -> np.ndarray:
    """[N, D] embeddings of right-padded token ids / masks ([N, max_len]) in input order."""
    fn = self._fns["encode_query" if tower == "query" else "encode_passage"]
    max_len, n_texts = ids.shape[1], len(ids)
    lengths = mask.sum(1)
    order = np.argsort(-lengths, kind="stable")
    unit = _unit(self.mesh)
    out = np.zeros((n_texts, 0), np.float32)
    pending = collections.deque()  # (rows, device embeddings) dispatched, not yet fetched
    with tqdm(total=n_texts, desc=desc, disable=jax.process_index() != 0, mininterval=5.0) as bar:

      def fetch():
        nonlocal out
        rows, emb = pending.popleft()
        emb = np.asarray(emb)[:len(rows)]
        if out.shape[1] != emb.shape[1]:
          out = np.zeros((n_texts, emb.shape[1]), np.float32)
        out[rows] = emb
        bar.update(len(rows))

      s = 0
      while s < n_texts:
        width = min(max_len, -(-int(lengths[order[s]]) // LEN_STEP) * LEN_STEP)
        bs = bucket_rows(self.batch_size, width, max_len, unit, self.token_budget)
        rows = order[s:s + bs]
        n = len(rows)
        b_ids = np.zeros((bs, width), np.int32)
        b_mask = np.zeros((bs, width), np.int32)
        b_ids[:n], b_mask[:n] = ids[rows, :width], mask[rows, :width]
        b_mask[n:, 0] = 1  # padded rows (dropped below) stay finite
        # Every process tokenized everything; each hands over its own slice of the batch.
        mine = host_slice(bs, jax.process_count(), jax.process_index())
        batch = sharding.host_local_to_global({"ids": b_ids[mine], "mask": b_mask[mine]}, self.mesh)
        pending.append((rows, fn(params, batch["ids"], batch["mask"])))
        s += n
        if len(pending) > IN_FLIGHT:
          fetch()
      while pending:
        fetch()
    return out


class ImageEmbedder:
  """Batched, sharded image embeddings of a trainable image tower (two_tower.ImageTextModel's
  `encode_images`) with the current params. Every process decodes each batch (images.batches:
  tf.data or threads, in order, prefetched) and hands over its own slice, as Embedder does with
  tokens."""

  def __init__(self, module, consts: dict, mesh: Mesh, batch_size: int = 32):
    self.mesh, self.batch_size = mesh, batch_rows(mesh, batch_size)
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
