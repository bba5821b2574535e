"""The hybrid batch sampler: which (id, query language, passage language) fills each slot of step t.

Everything about step t is a pure function of (seed, t): the batch type, the languages and the ids of
the *global* batch. Every host computes the same plan and keeps only its slice of the slots, so hosts
agree without talking, the union of the host shards is the global batch for any number of hosts, and
resuming at step t needs nothing but t.

Batch types (LAReQA / Elmahdy et al. 2024):
  xx_mono   one language per batch (uniform, or p(lang) ~ size**lang_sampling_power); query and passage
            in that language.
  xx_mixed  query and passage in the same language, the language drawn per pair.
  xy        query and passage in two different languages, drawn per pair among the id's languages.
  hybrid    xx_mono with probability alpha, else xy; `mixture` gives any weighted mix of the types.
No id appears twice in a global batch: a second copy would be a false in-batch negative.

Image–text (modality="image_text"; rows are images, languages those of their captions) plans the
same way under the names of the image–text study:
  it_mono   image–caption pairs, one caption language per batch (the X-X analogue: xx_mono's plan;
            the passage side is the row's image, so p_lang is not used).
  it_mixed  image–caption pairs, the caption language drawn per pair (xx_mixed's plan).
  tt_xy     caption_x–caption_y of the same image, two different languages per pair, both through
            the text tower (the X-Y analogue: xy's plan).
  hybrid    it_mono with probability alpha, else tt_xy; `mixture` over these three names.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from hbt_jax.errors import ConfigError

BATCH_TYPES = ("xx_mono", "xx_mixed", "xy")
IMAGE_TEXT_TYPES = {"it_mono": "xx_mono", "it_mixed": "xx_mixed", "tt_xy": "xy"}  # name -> plan
MODALITIES = ("text", "image_text")


class SamplerConfigError(ConfigError):
  pass


@dataclasses.dataclass(frozen=True)
class BatchPlan:
  step: int
  batch_type: str
  rows: np.ndarray   # [B] corpus rows (example ids), distinct
  q_lang: np.ndarray  # [B] language index of the query
  p_lang: np.ndarray  # [B] language index of the passage
  neg_pick: np.ndarray  # [B, K] which hard negative of the passage cell, -1 = none


def parse_mixture(spec: str | dict) -> dict[str, float]:
  """"xx_mono:0.4,xy:0.6" -> {"xx_mono": 0.4, "xy": 0.6}."""
  if isinstance(spec, dict):
    return dict(spec)
  out = {}
  for part in filter(None, (p.strip() for p in spec.split(","))):
    name, _, w = part.partition(":")
    try:
      out[name.strip()] = float(w)
    except ValueError:
      raise SamplerConfigError(f"config.sampler.mixture: {part!r} is not 'type:weight'") from None
  return out


def mixture_weights(batch_type: str, alpha: float, mixture: dict | None,
                    modality: str = "text") -> dict[str, float]:
  """The weights over BATCH_TYPES that a config asks for (image–text names are mapped onto them)."""
  if modality == "image_text":
    names = list(IMAGE_TEXT_TYPES)
    bad = sorted(set(mixture or {}) - set(names))
    if batch_type not in names + ["hybrid", "mixture"] or bad:
      raise SamplerConfigError(f"config.sampler: image-text batch types are {names} + ['hybrid', "
                               f"'mixture'] (got batch_type={batch_type!r}, mixture keys {bad})")
    return mixture_weights(IMAGE_TEXT_TYPES.get(batch_type, batch_type), alpha,
                           {IMAGE_TEXT_TYPES[k]: w for k, w in (mixture or {}).items()})
  if modality != "text":
    raise SamplerConfigError(f"sampler modality {modality!r}; known {list(MODALITIES)}")
  if batch_type == "hybrid":
    if not 0.0 <= alpha <= 1.0:
      raise SamplerConfigError(f"config.sampler.alpha={alpha} must be in [0, 1]")
    weights = {"xx_mono": alpha, "xy": 1.0 - alpha}
  elif batch_type == "mixture":
    weights = dict(mixture or {})
    bad = sorted(set(weights) - set(BATCH_TYPES))
    if bad:
      raise SamplerConfigError(f"config.sampler.mixture has unknown batch types {bad}; "
                               f"known {list(BATCH_TYPES)}")
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
      raise SamplerConfigError(f"config.sampler.mixture={weights} needs weights >= 0 with a "
                               "positive sum")
  elif batch_type in BATCH_TYPES:
    weights = {batch_type: 1.0}
  else:
    raise SamplerConfigError(f"config.sampler.batch_type={batch_type!r}; known "
                             f"{list(BATCH_TYPES) + ['hybrid', 'mixture']}")
  total = sum(weights.values())
  return {t: weights.get(t, 0.0) / total for t in BATCH_TYPES}


class HybridSampler:
  """Plans global batches over a corpus' availability matrix [n_ids, n_langs]."""

  def __init__(self, available: np.ndarray, global_batch: int, seed: int,
               weights: dict[str, float], lang_sampling_power: float = 0.0,
               num_negatives: np.ndarray | None = None, negatives_per_pair: int = 0,
               modality: str = "text"):
    self.available = np.asarray(available, bool)
    # The name each plan reports: the text study's, or the image-text study's.
    self.names = ({v: k for k, v in IMAGE_TEXT_TYPES.items()} if modality == "image_text"
                  else {t: t for t in BATCH_TYPES})
    self.batch = int(global_batch)
    self.seed = int(seed)
    self.weights = weights
    self.types = [t for t in BATCH_TYPES if weights[t] > 0]
    self.cum = np.cumsum([weights[t] for t in self.types])
    self.num_negatives = num_negatives if num_negatives is not None else \
        np.zeros(self.available.shape, np.int32)
    self.k = int(negatives_per_pair)
    n_per_lang = self.available.sum(0)
    self.rows_by_lang = [np.flatnonzero(self.available[:, l]) for l in range(self.available.shape[1])]
    self.multi_rows = np.flatnonzero(self.available.sum(1) >= 2)
    self.all_rows = np.flatnonzero(self.available.any(1))
    # xx_mono draws a language first; only languages with a full batch of ids can be drawn.
    eligible = n_per_lang >= self.batch
    p = np.where(eligible, np.power(n_per_lang.astype(np.float64), lang_sampling_power), 0.0)
    self.lang_p = p / p.sum() if p.sum() > 0 else p
    self._check()

  def _check(self) -> None:
    b = self.batch
    if b <= 0:
      raise SamplerConfigError(f"config.batch_size={b} must be positive")
    if "xx_mono" in self.types and self.lang_p.sum() == 0:
      raise SamplerConfigError(
          f"config.batch_size={b} is larger than the number of distinct ids of every language "
          f"({dict(enumerate(self.available.sum(0).tolist()))}); xx_mono batches cannot be built")
    if "xy" in self.types and len(self.multi_rows) < b:
      raise SamplerConfigError(f"config.batch_size={b} is larger than the {len(self.multi_rows)} ids "
                               "that have >= 2 languages; xy batches cannot be built")
    if "xx_mixed" in self.types and len(self.all_rows) < b:
      raise SamplerConfigError(f"config.batch_size={b} is larger than the {len(self.all_rows)} "
                               "distinct ids")

  def rng(self, step: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([self.seed, int(step)]))

  def plan(self, step: int) -> BatchPlan:
    rng = self.rng(step)
    btype = self.types[int(np.searchsorted(self.cum, rng.random() * self.cum[-1], side="right"))
                       if len(self.types) > 1 else 0]
    if btype == "xx_mono":
      lang = int(rng.choice(len(self.lang_p), p=self.lang_p))
      rows = rng.choice(self.rows_by_lang[lang], self.batch, replace=False)
      q_lang = p_lang = np.full(self.batch, lang, np.int32)
    elif btype == "xx_mixed":
      rows = rng.choice(self.all_rows, self.batch, replace=False)
      q_lang = p_lang = self._pick_lang(rng, self.available[rows])
    else:  # xy
      rows = rng.choice(self.multi_rows, self.batch, replace=False)
      avail = self.available[rows]
      q_lang = self._pick_lang(rng, avail)
      avail = avail.copy()
      avail[np.arange(self.batch), q_lang] = False
      p_lang = self._pick_lang(rng, avail)
    return BatchPlan(int(step), self.names[btype], rows.astype(np.int64), q_lang, p_lang,
                     self._pick_negatives(rng, rows, p_lang))

  @staticmethod
  def _pick_lang(rng: np.random.Generator, avail: np.ndarray) -> np.ndarray:
    """A uniformly random available language per row (argmax of random keys over the mask)."""
    keys = np.where(avail, rng.random(avail.shape), -1.0)
    return keys.argmax(1).astype(np.int32)

  def _pick_negatives(self, rng, rows, p_lang) -> np.ndarray:
    if self.k == 0:
      return np.zeros((len(rows), 0), np.int32)
    have = self.num_negatives[rows, p_lang]
    # A random subset of each pair's own hard negatives, -1 where it has fewer than k.
    keys = rng.random((len(rows), max(int(have.max(initial=0)), self.k)))
    keys[np.arange(keys.shape[1])[None, :] >= have[:, None]] = 2.0
    order = np.argsort(keys, 1)[:, :self.k]
    return np.where(np.arange(self.k)[None, :] < have[:, None], order, -1).astype(np.int32)


def host_slice(global_batch: int, num_hosts: int, host: int) -> slice:
  if global_batch % num_hosts:
    raise SamplerConfigError(f"config.batch_size={global_batch} must divide by the number of "
                             f"processes ({num_hosts})")
  per = global_batch // num_hosts
  return slice(host * per, (host + 1) * per)


def shard_plan(plan: BatchPlan, num_hosts: int, host: int) -> BatchPlan:
  s = host_slice(len(plan.rows), num_hosts, host)
  return dataclasses.replace(plan, rows=plan.rows[s], q_lang=plan.q_lang[s], p_lang=plan.p_lang[s],
                             neg_pick=plan.neg_pick[s])
