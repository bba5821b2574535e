"""Training data: corpus (from config) -> tokens -> this host's shard of each planned global batch.

The corpus is tokenized once into flat arrays (one row per existing cell); the tf.data pipeline maps
a step number to the host's slice of `HybridSampler.plan(step)` and gathers those rows. The iterator's
state is just the next step, which goes into every checkpoint.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np

from hbt_jax import sampler as sampler_lib
from hbt_jax import tokenization
from hbt_jax.data.corpus import DataError, ParallelCorpus


def load_corpus(cfg) -> ParallelCorpus:
  """The training corpus named by config.data."""
  d = cfg.data
  if d.source in ("xquad_r", "mlqa_r"):
    from hbt_jax.data import lareqa
    corpus = lareqa.training_corpus(lareqa.read_lareqa(d.source, d.data_dir or None))
  elif d.source == "jsonl":
    from hbt_jax.data import jsonl
    if not d.files:
      raise DataError("config.data.files: give one or more JSONL files for data.source='jsonl'")
    files = d.files.split(",") if isinstance(d.files, str) else list(d.files)
    corpus = jsonl.read_jsonl(files, lenient=d.lenient, min_langs_per_id=d.min_langs_per_id)
  else:
    raise DataError(f"config.data.source={d.source!r}; known: xquad_r, mlqa_r, jsonl")
  if d.langs:
    langs = d.langs.split(",") if isinstance(d.langs, str) else list(d.langs)
    corpus = corpus.select_langs(langs)
  corpus = corpus.take(d.max_ids).fraction(d.fraction, d.subset_seed)
  if d.lang_caps:
    corpus = corpus.cap_langs(parse_lang_caps(d.lang_caps), d.subset_seed)
  return corpus


def parse_lang_caps(spec: str) -> dict[str, int]:
  """"hi:50,th:50" -> {"hi": 50, "th": 50}; a malformed entry is an error naming the key."""
  caps = {}
  for part in [p.strip() for p in spec.split(",") if p.strip()]:
    lang, _, n = part.partition(":")
    if not lang or not n.strip().isdigit():
      raise DataError(f"config.data.lang_caps={spec!r}: entry {part!r} is not LANG:COUNT")
    caps[lang.strip()] = int(n)
  return caps


@dataclasses.dataclass
class TokenizedCorpus:
  cell_row: np.ndarray    # [n_ids, n_langs] row into the token arrays, -1 where no cell
  q_ids: np.ndarray       # [n_cells, Lq]
  q_mask: np.ndarray
  p_ids: np.ndarray       # [n_cells, Lp]
  p_mask: np.ndarray
  neg_row: np.ndarray     # [n_cells, max_negs] row into neg arrays, -1 = none
  neg_ids: np.ndarray     # [n_negs, Lp]
  neg_mask: np.ndarray

  @property
  def num_negatives(self) -> np.ndarray:
    counts = (self.neg_row >= 0).sum(1)
    return np.where(self.cell_row >= 0, counts[np.maximum(self.cell_row, 0)], 0)


def tokenize_corpus(corpus: ParallelCorpus, tokenizer, cfg) -> TokenizedCorpus:
  m = cfg.model
  d = cfg.data
  cells = [(r, l) for r in range(corpus.num_ids) for l in range(len(corpus.langs))
           if corpus.available[r, l]]
  cell_row = np.full(corpus.available.shape, -1, np.int64)
  for i, (r, l) in enumerate(cells):
    cell_row[r, l] = i
  objs = [corpus.cells[r, l] for r, l in cells]
  q_ids, q_mask = tokenization.encode(tokenizer, [c.query for c in objs], m.max_query_len,
                                      prefix=m.query_prefix)
  contexts = [c.context for c in objs] if d.passage_context else None
  p_ids, p_mask = tokenization.encode(tokenizer, [c.passage for c in objs], m.max_passage_len,
                                      pairs=contexts, prefix=m.passage_prefix)
  negs = [n for c in objs for n in c.negatives]
  max_negs = max((len(c.negatives) for c in objs), default=0)
  neg_row = np.full((len(objs), max_negs), -1, np.int64)
  k = 0
  for i, c in enumerate(objs):
    neg_row[i, :len(c.negatives)] = np.arange(k, k + len(c.negatives))
    k += len(c.negatives)
  n_ids, n_mask = tokenization.encode(tokenizer, negs, m.max_passage_len, prefix=m.passage_prefix)
  logging.info("tokenized %d cells, %d hard negatives", len(objs), len(negs))
  return TokenizedCorpus(cell_row, q_ids, q_mask, p_ids, p_mask, neg_row, n_ids, n_mask)


def make_sampler(cfg, corpus: ParallelCorpus, tokens: TokenizedCorpus | None = None
                 ) -> sampler_lib.HybridSampler:
  s = cfg.sampler
  weights = sampler_lib.mixture_weights(s.batch_type, s.alpha,
                                        sampler_lib.parse_mixture(s.mixture))
  return sampler_lib.HybridSampler(
      corpus.available, cfg.batch_size, cfg.seed, weights, s.lang_sampling_power,
      num_negatives=tokens.num_negatives if tokens is not None else None,
      negatives_per_pair=cfg.data.hard_negatives)


def gather_batch(tokens: TokenizedCorpus, plan: sampler_lib.BatchPlan) -> dict[str, np.ndarray]:
  """Token arrays of the planned slots (this host's slice)."""
  q_cells = tokens.cell_row[plan.rows, plan.q_lang]
  p_cells = tokens.cell_row[plan.rows, plan.p_lang]
  batch = {
      "query_ids": tokens.q_ids[q_cells], "query_mask": tokens.q_mask[q_cells],
      "passage_ids": tokens.p_ids[p_cells], "passage_mask": tokens.p_mask[p_cells],
      "q_lang": plan.q_lang, "p_lang": plan.p_lang, "row": plan.rows,
  }
  if plan.neg_pick.shape[1]:
    valid = plan.neg_pick >= 0
    rows = np.where(valid, tokens.neg_row[p_cells[:, None], np.maximum(plan.neg_pick, 0)], 0)
    batch["neg_ids"] = np.where(valid[..., None], tokens.neg_ids[rows], 0).astype(np.int32)
    batch["neg_mask"] = np.where(valid[..., None], tokens.neg_mask[rows], 0).astype(np.int32)
    batch["neg_mask"][..., 0] = 1  # absent negatives: one visible token keeps them finite (masked in the loss)
    batch["neg_valid"] = valid
  return batch


class HostBatches:
  """tf.data iterator over this host's shards, starting at `start_step`; state = the next step."""

  def __init__(self, sampler: sampler_lib.HybridSampler, tokens: TokenizedCorpus,
               num_hosts: int, host: int, start_step: int, end_step: int, prefetch: int = 2):
    import tensorflow as tf
    self.sampler, self.tokens = sampler, tokens
    self.num_hosts, self.host = num_hosts, host
    self.next_step = start_step
    example = self.host_batch(start_step)
    spec = {k: (tf.as_dtype(v.dtype), v.shape) for k, v in example.items()}
    keys = sorted(spec)

    def py_batch(step):
      b = self.host_batch(int(step))
      return [b[k] for k in keys]

    def tf_batch(step):
      outs = tf.numpy_function(py_batch, [step], [spec[k][0] for k in keys])
      for o, k in zip(outs, keys):
        o.set_shape(spec[k][1])
      return dict(zip(keys, outs))

    ds = tf.data.Dataset.range(start_step, end_step).map(
        tf_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    self._it = iter(ds.prefetch(prefetch).as_numpy_iterator())

  def host_batch(self, step: int) -> dict[str, np.ndarray]:
    plan = sampler_lib.shard_plan(self.sampler.plan(step), self.num_hosts, self.host)
    batch = gather_batch(self.tokens, plan)
    batch["batch_type"] = np.int32(sampler_lib.BATCH_TYPES.index(plan.batch_type))
    return batch

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batch = next(self._it)
    self.next_step += 1
    return batch
