"""Multilingual image–text retrieval from one encoding of images and captions.

Pools and averaging (stated, as the XTD10 / XM3600 papers leave them implicit):
  t2i/L     each caption of language L is a query against the pool of all images; relevant: its image.
  i2t/L     each image with a caption in L is a query against the pool of all captions of L;
            relevant: its captions in L. Recall@k is a hit if any of them is in the top k.
  mean_recall/L  the mean of t2i and i2t R@1, R@5, R@10 (the usual "mean recall").
  multi     each image against one pool of every language's captions; relevant: all its captions.
            language_bias = mean over images with captions in >= 2 languages of (max - min) over
            languages of the rank of that language's best caption.
  c2c/x-y   each caption of x (whose image has a caption in y) against all captions of y; relevant:
            the image's captions in y (cross-lingual caption retrieval).
mAP@100 is trec_eval's map_cut_100 (precision at each relevant rank <= 100, divided by the number of
relevant). Setting keys are unweighted means over languages (or language pairs). Ranks are exact,
ties go to the lower index (search.relevant_ranks).
"""
from __future__ import annotations

import numpy as np

from hbt_jax.evaluation import metrics, search


def success_at(ranks: np.ndarray, k: int) -> np.ndarray:
  """1 where the best-ranked relevant item is within the top k (big_vision's image->text recall)."""
  r = np.where(np.asarray(ranks) > 0, ranks, np.iinfo(np.int64).max)
  return (r.min(1) <= k).astype(np.float64)


def _relevant_lists(groups: list[np.ndarray]) -> np.ndarray:
  """[Q, M] index lists padded with -1."""
  m = max((len(g) for g in groups), default=1)
  out = np.full((len(groups), max(m, 1)), -1, np.int64)
  for i, g in enumerate(groups):
    out[i, :len(g)] = g
  return out


def _scores(ranks: np.ndarray, ks) -> dict[str, float]:
  out = {f"r@{k}": float(success_at(ranks, k).mean()) for k in ks}
  out["map@100"] = float(metrics.average_precision(ranks, k=100).mean())
  return out


def evaluate(img_emb: np.ndarray, cap_emb: np.ndarray, cap_image: np.ndarray, cap_lang: np.ndarray,
             langs: list[str], mesh=None, ks=(1, 5, 10)) -> dict[str, float]:
  """Flat results: 't2i/r@1/de', 't2i/r@1', 'i2t/map@100/de', 'mean_recall', 'multi/i2t/r@5',
  'multi/language_bias', 'c2c/map/de-en', ... `cap_image[j]` is the image row of caption j and
  `cap_lang[j]` the index of its language in `langs`."""
  cap_image, cap_lang = np.asarray(cap_image), np.asarray(cap_lang)
  n_img = len(img_emb)
  res: dict[str, float] = {}
  caps_of = [[np.flatnonzero((cap_image == i) & (cap_lang == l)) for l in range(len(langs))]
             for i in range(n_img)]

  def ranks(queries, pool_emb, rel):
    return search.relevant_ranks(queries, pool_emb, rel, mesh=mesh)

  for l, lang in enumerate(langs):
    caps = np.flatnonzero(cap_lang == l)
    if not len(caps):
      continue
    t2i = _scores(ranks(cap_emb[caps], img_emb, cap_image[caps][:, None]), ks)
    imgs = [i for i in range(n_img) if len(caps_of[i][l])]
    local = {c: j for j, c in enumerate(caps)}  # caption index -> position in the language pool
    rel = _relevant_lists([np.array([local[c] for c in caps_of[i][l]]) for i in imgs])
    i2t = _scores(ranks(img_emb[imgs], cap_emb[caps], rel), ks)
    for name, s in (("t2i", t2i), ("i2t", i2t)):
      for k, v in s.items():
        res[f"{name}/{k}/{lang}"] = v
    res[f"mean_recall/{lang}"] = float(np.mean([t2i[f"r@{k}"] for k in ks] +
                                               [i2t[f"r@{k}"] for k in ks]))
  for base in ["t2i", "i2t"]:
    for k in [*(f"r@{k}" for k in ks), "map@100"]:
      vals = [res[f"{base}/{k}/{l}"] for l in langs if f"{base}/{k}/{l}" in res]
      res[f"{base}/{k}"] = float(np.mean(vals))
  res["mean_recall"] = float(np.mean([res[f"mean_recall/{l}"] for l in langs
                                      if f"mean_recall/{l}" in res]))
  res.update(_multi(img_emb, cap_emb, cap_lang, caps_of, langs, ranks, ks))
  res.update(_caption_to_caption(cap_emb, cap_image, cap_lang, caps_of, langs, ranks))
  return res


def _multi(img_emb, cap_emb, cap_lang, caps_of, langs, ranks, ks) -> dict[str, float]:
  imgs = [i for i in range(len(img_emb)) if any(len(c) for c in caps_of[i])]
  rel = _relevant_lists([np.concatenate(caps_of[i]) for i in imgs])
  r = ranks(img_emb[imgs], cap_emb, rel)
  out = {f"multi/i2t/{k}": v for k, v in _scores(r, ks).items()}
  # Best rank per language of each image's captions, then max - min over its languages.
  rank_of = np.zeros(len(cap_emb), np.int64)
  bias = []
  for q, i in enumerate(imgs):
    valid = rel[q] >= 0
    rank_of[rel[q][valid]] = r[q][valid]
    best = [rank_of[c].min() for c in caps_of[i] if len(c)]
    if len(best) >= 2:
      bias.append(max(best) - min(best))
  out["multi/language_bias"] = float(np.mean(bias)) if bias else float("nan")
  return out


def _caption_to_caption(cap_emb, cap_image, cap_lang, caps_of, langs, ranks) -> dict[str, float]:
  out, maps, r1 = {}, [], []
  for x in range(len(langs)):
    for y in range(len(langs)):
      if x == y:
        continue
      pool = np.flatnonzero(cap_lang == y)
      local = {c: j for j, c in enumerate(pool)}
      queries = [c for c in np.flatnonzero(cap_lang == x) if len(caps_of[cap_image[c]][y])]
      if not queries or not len(pool):
        continue
      rel = _relevant_lists([np.array([local[c] for c in caps_of[cap_image[q]][y]]) for q in queries])
      r = ranks(cap_emb[queries], cap_emb[pool], rel)
      pair = f"{langs[x]}-{langs[y]}"
      out[f"c2c/map/{pair}"] = float(metrics.average_precision(r).mean())
      out[f"c2c/r@1/{pair}"] = float(success_at(r, 1).mean())
      maps.append(out[f"c2c/map/{pair}"])
      r1.append(out[f"c2c/r@1/{pair}"])
  if maps:
    out["c2c/map"], out["c2c/r@1"] = float(np.mean(maps)), float(np.mean(r1))
  return out
