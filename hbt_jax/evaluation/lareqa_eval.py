"""The LAReQA protocol on parallel benchmarks: mono, cross and multi settings from one encoding.

  mono   queries of language x against the candidates of x; relevant: the answer in x.
  cross  queries of x against the candidates of y, for every ordered pair x != y; relevant: the answer
         in y; questions with no answer in y are skipped (MLQA-R has 2-4 languages per question).
  multi  queries of every language against one pool of all candidates; relevant: the answer in every
         language. Also gives the language-bias rank distance (max - min rank of those answers).
Per-language (mono, multi) and per-pair (cross) means over queries, then macro averages.
"""
from __future__ import annotations

import time

import numpy as np

from hbt_jax.data.lareqa import ParallelRetrievalSet
from hbt_jax.evaluation import metrics, search


def _pool_ranks(q_emb, c_emb, pool: np.ndarray, rel_global: np.ndarray, mesh, **kw) -> np.ndarray:
  """Ranks of relevant candidates (global indices, -1 pad) within the candidate subset `pool`."""
  local = np.full(int(c_emb.shape[0]), -1, np.int64)
  local[pool] = np.arange(len(pool))
  rel = np.where(rel_global >= 0, local[np.maximum(rel_global, 0)], -1)
  return search.relevant_ranks(q_emb, c_emb[pool], rel, mesh=mesh, **kw)


def evaluate(ds: ParallelRetrievalSet, q_emb: np.ndarray, c_emb: np.ndarray, mesh=None,
             recall_ks=(1, 5, 10), **kernel_kw) -> tuple[dict[str, float], dict]:
  """Flat results {'mono/map': ..., 'cross/map/de-en': ...} and the tables for the report."""
  t0 = time.time()
  langs, n = ds.langs, len(ds.langs)
  res: dict[str, float] = {}
  matrix = np.full((n, n), np.nan)
  recall = {}

  def put(prefix, summ):
    for k, v in summ.items():
      if k not in ("num_queries", "map"):  # per-language mAP has its own key: mono/map/<lang>
        res[f"{prefix}/{k}"] = v

  # mono and cross: queries of x, pool of y.
  per_setting: dict[str, list[dict]] = {"mono": [], "cross": []}
  for y in range(n):
    pool = np.flatnonzero(ds.c_lang == y)
    for x in range(n):
      qs = np.flatnonzero(ds.q_lang == x)
      rel = ds.answers[ds.q_group[qs], y][:, None]
      keep = rel[:, 0] >= 0
      if not keep.any():
        continue
      ranks = _pool_ranks(q_emb[qs[keep]], c_emb, pool, rel[keep], mesh, **kernel_kw)
      summ = metrics.summary(ranks, recall_ks)
      setting = "mono" if x == y else "cross"
      per_setting[setting].append(summ)
      matrix[x, y] = summ["map"]
      recall[(x, y)] = summ
      if setting == "mono":
        put(f"mono/{langs[x]}", summ)
        res[f"mono/map/{langs[x]}"] = summ["map"]
      else:
        res[f"cross/map/{langs[x]}-{langs[y]}"] = summ["map"]
  for setting, summs in per_setting.items():
    if summs:
      for key in summs[0]:
        if key != "num_queries":
          res[f"{setting}/{key}"] = float(np.mean([s[key] for s in summs]))

  # multi: one pool of every language; all parallel answers relevant.
  rel_all = ds.answers[ds.q_group]  # [Q, n_langs] candidate indices, -1 where absent
  ranks = search.relevant_ranks(q_emb, c_emb, rel_all, mesh=mesh, **kernel_kw)
  dist = metrics.rank_distance(ranks)
  multi_by_lang = {}
  for x in range(n):
    sel = ds.q_lang == x
    summ = metrics.summary(ranks[sel], recall_ks)
    multi_by_lang[langs[x]] = summ
    res[f"multi/map/{langs[x]}"] = summ["map"]
    multi_with_answers = (ranks[sel] > 0).sum(1) >= 2
    res[f"multi/rank_distance/{langs[x]}"] = float(dist[sel][multi_with_answers].mean())
    for key, v in summ.items():
      if key not in ("map", "num_queries"):
        res[f"multi/{langs[x]}/{key}"] = v
  for key in multi_by_lang[langs[0]]:
    if key != "num_queries":
      res[f"multi/{key}"] = float(np.mean([multi_by_lang[l][key] for l in langs]))
  res["multi/rank_distance"] = float(np.mean([res[f"multi/rank_distance/{l}"] for l in langs]))
  res["search_seconds"] = time.time() - t0
  tables = {"langs": langs, "map_matrix": matrix, "multi_ranks": ranks, "stats": ds.stats()}
  return res, tables
