"""IR metrics from the ranks of the relevant candidates (1-based, in the whole pool).

The search kernels give, for every query, the exact rank of each relevant candidate; every metric
below follows from those ranks without a sorted run list. Definitions follow trec_eval (and are
cross-checked against pytrec_eval in tests/test_metrics.py):
  AP        (1/R) * sum_i i / r_i over relevant ranks r_1 < ... < r_R (R = relevant in the pool)
  AP@k      the same sum restricted to r_i <= k, still divided by R (trec_eval map_cut_k)
  recall@k  |{r_i <= k}| / R
  nDCG@k    sum_{r_i <= k} g_i / log2(r_i + 1), over the ideal ordering of the gains
  MRR       1 / r_1
Ranks are a [Q, M] array padded with 0 where a query has fewer than M relevant candidates.
"""
from __future__ import annotations

import numpy as np


def _sorted(ranks: np.ndarray, gains: np.ndarray | None = None):
  ranks = np.asarray(ranks, np.float64)
  valid = ranks > 0
  key = np.where(valid, ranks, np.inf)
  order = np.argsort(key, axis=1, kind="stable")
  r = np.take_along_axis(key, order, 1)
  g = None if gains is None else np.take_along_axis(np.asarray(gains, np.float64), order, 1)
  return r, np.isfinite(r), g


def num_relevant(ranks: np.ndarray) -> np.ndarray:
  return (np.asarray(ranks) > 0).sum(1)


def average_precision(ranks: np.ndarray, k: int | None = None) -> np.ndarray:
  r, valid, _ = _sorted(ranks)
  n_rel = valid.sum(1)
  pos = np.cumsum(valid, 1)
  hit = valid & (r <= k) if k else valid
  prec = np.where(hit, pos / np.where(valid, r, 1.0), 0.0)
  return np.where(n_rel > 0, prec.sum(1) / np.maximum(n_rel, 1), 0.0)


def recall_at(ranks: np.ndarray, k: int) -> np.ndarray:
  r, valid, _ = _sorted(ranks)
  n_rel = valid.sum(1)
  return np.where(n_rel > 0, (valid & (r <= k)).sum(1) / np.maximum(n_rel, 1), 0.0)


def reciprocal_rank(ranks: np.ndarray) -> np.ndarray:
  r, valid, _ = _sorted(ranks)
  return np.where(valid[:, 0], 1.0 / np.where(valid[:, 0], r[:, 0], 1.0), 0.0)


def ndcg_at(ranks: np.ndarray, k: int, gains: np.ndarray | None = None) -> np.ndarray:
  """Binary relevance unless `gains` ([Q, M], aligned with ranks) are given."""
  if gains is None:
    gains = (np.asarray(ranks) > 0).astype(np.float64)
  r, valid, g = _sorted(ranks, gains)
  g = np.where(valid, g, 0.0)
  dcg = np.where(valid & (r <= k), g / np.log2(np.where(valid, r, 1.0) + 1.0), 0.0).sum(1)
  ideal = -np.sort(-g, axis=1)[:, :k]
  idcg = (ideal / np.log2(np.arange(2, ideal.shape[1] + 2))).sum(1)
  return np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), 0.0)


def rank_distance(ranks: np.ndarray) -> np.ndarray:
  """Language bias of LAReQA: max rank - min rank of a query's relevant parallel candidates."""
  r = np.asarray(ranks, np.float64)
  valid = r > 0
  hi = np.where(valid, r, -np.inf).max(1)
  lo = np.where(valid, r, np.inf).min(1)
  return np.where(valid.sum(1) > 0, hi - lo, 0.0)


def summary(ranks: np.ndarray, recall_ks=(1, 5, 10), ndcg_k: int = 10) -> dict[str, float]:
  """Means over queries that have >= 1 relevant candidate."""
  keep = num_relevant(ranks) > 0
  r = np.asarray(ranks)[keep]
  if r.shape[0] == 0:
    return {}
  out = {"map": float(average_precision(r).mean()), "mrr": float(reciprocal_rank(r).mean()),
         f"ndcg@{ndcg_k}": float(ndcg_at(r, ndcg_k).mean()), "num_queries": int(r.shape[0])}
  for k in recall_ks:
    out[f"recall@{k}"] = float(recall_at(r, k).mean())
  return out
