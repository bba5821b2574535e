"""Training data: corpus (from config) -> tokens -> this host's shard of each planned global batch.

The corpus is tokenized once into flat arrays (one row per existing cell); the tf.data pipeline maps
a step number to the host's slice of `HybridSampler.plan(step)` and gathers those rows. The iterator's
state is just the next step, which goes into every checkpoint.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from hbt_jax import sampler as sampler_lib
from hbt_jax import tokenization
from hbt_jax.data.corpus import DataError, ParallelCorpus


CAPTION_SOURCES = ("synthetic_scenes", "xtd10", "multi30k", "xm3600", "caption_jsonl")


def load_corpus(cfg) -> ParallelCorpus:
  """The training corpus named by config.data."""
  d = cfg.data
  if d.source in CAPTION_SOURCES:
    from hbt_jax.data import captions
    corpus = captions.read_captions(d.source, d.data_dir, d.image_dir, d.files,
                                    d.langs or None, d.lenient, d.num_images, "train")
    if not corpus.image(0):
      raise DataError(f"config.data.image_dir: training on {d.source} needs its images (the folder "
                      "that holds them)")
  elif d.source in ("xquad_r", "mlqa_r"):
    from hbt_jax.data import lareqa
    corpus = lareqa.training_corpus(lareqa.read_lareqa(d.source, d.data_dir or None))
  elif d.source == "jsonl":
    from hbt_jax.data import jsonl
    if not d.files:
      raise DataError("config.data.files: give one or more JSONL files for data.source='jsonl'")
    files = d.files.split(",") if isinstance(d.files, str) else list(d.files)
    corpus = jsonl.read_jsonl(files, lenient=d.lenient, min_langs_per_id=d.min_langs_per_id)
  else:
    raise DataError(f"config.data.source={d.source!r}; known: xquad_r, mlqa_r, jsonl, "
                    f"{', '.join(CAPTION_SOURCES)}")
  if d.langs:
    langs = d.langs.split(",") if isinstance(d.langs, str) else list(d.langs)
    corpus = corpus.select_langs(langs)
  corpus = corpus.take(d.max_ids).fraction(d.fraction, d.subset_seed)
  if d.lang_caps:
    corpus = corpus.cap_langs(parse_lang_caps(d.lang_caps), d.subset_seed)
  if d.max_ids or d.fraction < 1 or d.lang_caps:  # the corpus as built was logged before the cut
    logging.info("training subset (max_ids=%s, fraction=%s, lang_caps=%r): %s", d.max_ids,
                 d.fraction, d.lang_caps, corpus.summary())
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


def make_sampler(cfg, corpus: ParallelCorpus, tokens=None
                 ) -> sampler_lib.HybridSampler:
  s = cfg.sampler
  modality = "image_text" if cfg.task == "image_text" else "text"
  weights = sampler_lib.mixture_weights(s.batch_type, s.alpha, sampler_lib.parse_mixture(s.mixture),
                                        modality)
  negatives = tokens.num_negatives if isinstance(tokens, TokenizedCorpus) else None
  return sampler_lib.HybridSampler(
      corpus.available, cfg.batch_size, cfg.seed, weights, s.lang_sampling_power,
      num_negatives=negatives, negatives_per_pair=cfg.data.hard_negatives, modality=modality)


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


# ------------------------------------------------------------------------------------ image–text
@dataclasses.dataclass
class TokenizedCaptions:
  """Every caption tokenized once, the caption rows of each (image, language) cell, and per image
  (row) either the locked tower's features (LiT) or, for a trainable tower, the image file and how
  the tower wants its pixels (decoded per batch, on the host that feeds that part of the batch)."""
  start: np.ndarray      # [n_ids, n_langs] first caption row of the cell, -1 where none
  count: np.ndarray      # [n_ids, n_langs] captions in the cell
  ids: np.ndarray        # [n_captions, L]
  mask: np.ndarray
  features: np.ndarray | None = None     # [n_ids, D] (locked tower)
  image_paths: list[str] | None = None   # [n_ids] (trainable tower)
  preprocess: Any = None                 # data.images.Preprocess (trainable tower)

  def pixels(self, rows: np.ndarray) -> np.ndarray:
    from hbt_jax.data import images
    return np.stack([images.load(self.image_paths[r], self.preprocess) for r in rows])


def tokenize_captions(corpus, tokenizer, cfg, features: np.ndarray | None = None,
                      preprocess=None) -> TokenizedCaptions:
  """Captions get config.model.query_prefix on both sides of a caption–caption pair. Give the
  locked tower's `features`, or the trainable tower's `preprocess` (pixels are loaded per batch)."""
  texts, rows, langs = corpus.flat_captions()
  count = np.zeros(corpus.available.shape, np.int64)
  np.add.at(count, (rows, langs), 1)
  # Captions come in row-major cell order, so a cell's first caption follows all earlier cells'.
  start = np.where(count > 0, (np.cumsum(count) - count.ravel()).reshape(count.shape), -1)
  ids, mask = tokenization.encode(tokenizer, texts, cfg.model.max_query_len,
                                  prefix=cfg.model.query_prefix)
  logging.info("tokenized %d captions of %d images", len(texts), corpus.num_ids)
  if (features is None) == (preprocess is None):
    raise ValueError("tokenize_captions: give the locked tower's features or a trainable tower's "
                     "preprocessing, one of the two")
  if features is None:
    return TokenizedCaptions(start, count, ids, mask, image_paths=[corpus.image(r) for r in
                                                                   range(corpus.num_ids)],
                             preprocess=preprocess)
  if len(features) != corpus.num_ids:
    raise ValueError(f"{len(features)} image features for {corpus.num_ids} images")
  return TokenizedCaptions(start, count, ids, mask, np.asarray(features, np.float32))


def gather_caption_batch(tc: TokenizedCaptions, plan: sampler_lib.BatchPlan, seed: int,
                         num_hosts: int, host: int) -> dict[str, np.ndarray]:
  """This host's slice of a planned global image–text batch.

  it_mono / it_mixed: `image_features` of the row's image (locked tower) or its decoded `images`
  (trainable tower), and `text_*` = one of its captions in q_lang. tt_xy: `src_*` = a caption in q_lang, `text_*` = a caption of the same image in p_lang.
  Which caption of a cell is drawn from (seed, step) over the *global* batch before slicing, so the
  batch is the same for any number of hosts. The unused side is zeros (fixed shapes for tf.data;
  the trainer passes only the inputs of the batch's type to the step)."""
  b = len(plan.rows)
  u = np.random.default_rng(np.random.SeedSequence([seed, plan.step, 0x1C])).random((2, b))
  rows = plan.rows

  def pick(lang, col):
    c = tc.count[rows, lang]
    if (c == 0).any():
      raise ValueError(f"step {plan.step}: the plan chose a cell with no caption")
    return tc.start[rows, lang] + np.minimum((u[col] * c).astype(np.int64), c - 1)

  q_cap = pick(plan.q_lang, 0)
  image_side = plan.batch_type != "tt_xy"
  text_cap = q_cap if image_side else pick(plan.p_lang, 1)
  s = sampler_lib.host_slice(b, num_hosts, host)
  zeros_ids = np.zeros_like(tc.ids[q_cap[s]])
  if tc.features is not None:
    image = {"image_features": (tc.features[rows[s]] if image_side else
                                np.zeros((s.stop - s.start, tc.features.shape[1]), np.float32))}
  else:  # only this host's images are decoded; caption–caption batches decode none
    size = tc.preprocess.size
    image = {"images": tc.pixels(rows[s]) if image_side else
             np.zeros((s.stop - s.start, size, size, 3), np.float32)}
  return {
      **image,
      "src_ids": zeros_ids if image_side else tc.ids[q_cap[s]],
      "src_mask": zeros_ids if image_side else tc.mask[q_cap[s]],
      "text_ids": tc.ids[text_cap[s]], "text_mask": tc.mask[text_cap[s]],
      "q_lang": plan.q_lang[s], "p_lang": plan.p_lang[s], "row": rows[s],
  }


IMAGE_TEXT_INPUTS = {True: ("text_ids", "text_mask"),   # it_mono / it_mixed, + the image input
                     False: ("src_ids", "src_mask", "text_ids", "text_mask")}  # tt_xy
IMAGE_INPUTS = ("image_features", "images")  # locked tower's features | trainable tower's pixels


def model_inputs(cfg, host_batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The arrays the train step takes from a host batch (its pytree structure picks the loss)."""
  if cfg.task == "image_text":
    image_side = sampler_lib.BATCH_TYPES[int(host_batch["batch_type"])] != "xy"
    keys = IMAGE_TEXT_INPUTS[image_side] + (IMAGE_INPUTS if image_side else ())
    return {k: host_batch[k] for k in keys if k in host_batch}
  return {k: host_batch[k] for k in TEXT_INPUTS if k in host_batch}


TEXT_INPUTS = ("query_ids", "query_mask", "passage_ids", "passage_mask", "neg_ids", "neg_mask",
               "neg_valid")


PIPELINES = ("auto", "tf.data", "threads")


def ordered_prefetch(fn, items, workers: int, ahead: int):
  """fn(item) for each item, in order, computed on `workers` threads with up to `ahead` + 1 results
  in flight (numpy and Pillow release the GIL for the heavy parts): the TF-free pipeline."""
  import collections
  import concurrent.futures
  pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="prefetch")
  pending = collections.deque()
  try:
    for item in items:
      pending.append(pool.submit(fn, item))
      if len(pending) > ahead:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()
  finally:
    for f in pending:
      f.cancel()
    pool.shutdown(wait=False)


def choose_pipeline(name: str) -> str:
  """config.data.pipeline: "tf.data" (the default where TensorFlow is importable), "threads"
  (prefetching Python threads, no TensorFlow), or "auto" = tf.data if TensorFlow imports, else
  threads. Both run the same `host_batch`, so they yield the same batches in the same order."""
  if name not in PIPELINES:
    raise DataError(f"config.data.pipeline={name!r}; known: {', '.join(PIPELINES)}")
  if name == "threads":
    return name
  try:
    import tensorflow  # noqa: F401
  except ImportError as e:
    if name == "tf.data":
      raise DataError(f"config.data.pipeline='tf.data' needs TensorFlow, which does not import here "
                      f"({e}); install tensorflow-cpu or set config.data.pipeline=threads") from None
    logging.info("TensorFlow is not importable: host batches come from prefetching threads "
                 "(config.data.pipeline=threads)")
    return "threads"
  return "tf.data"


class HostBatches:
  """Iterator over this host's shards of the planned global batches, from `start_step` on; its
  state is just the next step (checkpointed). `tokens` is a TokenizedCorpus (query–passage pairs) or
  TokenizedCaptions (image–text). `pipeline` (choose_pipeline) picks tf.data or prefetching threads;
  either maps step -> `host_batch(step)`, in order."""

  def __init__(self, sampler: sampler_lib.HybridSampler, tokens,
               num_hosts: int, host: int, start_step: int, end_step: int, prefetch: int = 2,
               pipeline: str = "auto"):
    self.sampler, self.tokens = sampler, tokens
    self.num_hosts, self.host = num_hosts, host
    self.next_step = start_step
    self.pipeline = choose_pipeline(pipeline)
    self._it = (self._tf_data(start_step, end_step, prefetch) if self.pipeline == "tf.data"
                else self._threads(start_step, end_step, prefetch))

  def _tf_data(self, start_step: int, end_step: int, prefetch: int):
    import tensorflow as tf
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
    return iter(ds.prefetch(prefetch).as_numpy_iterator())

  def _threads(self, start_step: int, end_step: int, prefetch: int):
    return ordered_prefetch(self.host_batch, range(start_step, end_step), max(prefetch, 1), prefetch)

  def host_batch(self, step: int) -> dict[str, np.ndarray]:
    plan = self.sampler.plan(step)
    if isinstance(self.tokens, TokenizedCaptions):
      batch = gather_caption_batch(self.tokens, plan, self.sampler.seed, self.num_hosts, self.host)
    else:
      batch = gather_batch(self.tokens, sampler_lib.shard_plan(plan, self.num_hosts, self.host))
    plan_type = sampler_lib.IMAGE_TEXT_TYPES.get(plan.batch_type, plan.batch_type)
    batch["batch_type"] = np.int32(sampler_lib.BATCH_TYPES.index(plan_type))
    return batch

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batch = next(self._it)
    self.next_step += 1
    return batch
