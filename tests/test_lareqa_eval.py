"""The mono / cross / multi settings against an independent pytrec_eval computation."""
import itertools

import numpy as np
import pytrec_eval

from hbt_jax.data.lareqa import Candidate, ParallelRetrievalSet, Question
from hbt_jax.evaluation import lareqa_eval


def _dataset(rng, langs=("de", "en", "xx"), groups=12, extra=5):
  """Partially parallel: group g lacks language 'xx' when g % 3 == 0 (like MLQA-R)."""
  questions, cands = [], []
  for l in langs:
    for g in range(groups):
      if l == "xx" and g % 3 == 0:
        continue
      cands.append(Candidate(l, f"a{g}{l}", "", ""))
      questions.append(Question(f"g{g}", l, f"q{g}{l}", len(cands) - 1))
    for e in range(extra):
      cands.append(Candidate(l, f"x{e}{l}", "", ""))
  return ParallelRetrievalSet("toy", list(langs), questions, cands)


def _trec_map(scores, rel_sets, pool):
  qrel = {f"q{i}": {f"c{c}": 1 for c in r} for i, r in enumerate(rel_sets) if r}
  run = {f"q{i}": {f"c{c}": float(scores[i, c]) for c in pool} for i in range(len(rel_sets))
         if rel_sets[i]}
  ev = pytrec_eval.RelevanceEvaluator(qrel, {"map", "recall_1"}).evaluate(run)
  return np.mean([v["map"] for v in ev.values()]), np.mean([v["recall_1"] for v in ev.values()])


def test_settings_match_pytrec_eval():
  rng = np.random.default_rng(0)
  ds = _dataset(rng)
  q = rng.normal(size=(len(ds.questions), 8)).astype(np.float32)
  c = rng.normal(size=(len(ds.candidates), 8)).astype(np.float32)
  res, tables = lareqa_eval.evaluate(ds, q, c, recall_ks=(1,))
  scores = q @ c.T
  langs = ds.langs
  by_lang = {l: [i for i, x in enumerate(ds.questions) if x.lang == l] for l in langs}
  pool = {l: [i for i, x in enumerate(ds.candidates) if x.lang == l] for l in langs}
  answer = {(x.qid, x.lang): x.cand for x in ds.questions}

  monos, crosses = [], []
  for x, y in itertools.product(langs, langs):
    qs = by_lang[x]
    rels = [[answer[(ds.questions[i].qid, y)]] if (ds.questions[i].qid, y) in answer else []
            for i in qs]
    m, r1 = _trec_map(scores[qs], rels, pool[y])
    if x == y:
      monos.append(m)
      np.testing.assert_allclose(res[f"mono/map/{x}"], m, atol=1e-6)
    else:
      crosses.append(m)
      np.testing.assert_allclose(res[f"cross/map/{x}-{y}"], m, atol=1e-6)
  np.testing.assert_allclose(res["mono/map"], np.mean(monos), atol=1e-6)
  np.testing.assert_allclose(res["cross/map"], np.mean(crosses), atol=1e-6)

  multi = []
  all_c = list(range(len(ds.candidates)))
  for x in langs:
    qs = by_lang[x]
    rels = [[answer[(ds.questions[i].qid, y)] for y in langs if (ds.questions[i].qid, y) in answer]
            for i in qs]
    m, r1 = _trec_map(scores[qs], rels, all_c)
    np.testing.assert_allclose(res[f"multi/map/{x}"], m, atol=1e-6)
    multi.append(m)
  np.testing.assert_allclose(res["multi/map"], np.mean(multi), atol=1e-6)
  # Rank distance from an explicit full sort.
  order = np.argsort(-scores, axis=1, kind="stable")
  pos = np.argsort(order, axis=1) + 1
  dists = {l: [] for l in langs}
  for i, x in enumerate(ds.questions):
    r = [pos[i, answer[(x.qid, y)]] for y in langs if (x.qid, y) in answer]
    dists[x.lang].append(max(r) - min(r))
  for l in langs:
    np.testing.assert_allclose(res[f"multi/rank_distance/{l}"], np.mean(dists[l]), atol=1e-9)
  assert tables["map_matrix"].shape == (3, 3)


def test_perfect_embeddings_give_perfect_scores_and_zero_bias():
  rng = np.random.default_rng(1)
  ds = _dataset(rng, extra=3)
  groups = sorted({x.qid for x in ds.questions})
  basis = np.eye(len(groups) + 10, dtype=np.float32)
  q = np.stack([basis[groups.index(x.qid)] for x in ds.questions])
  owner = {x.cand: x.qid for x in ds.questions}
  c = np.stack([basis[groups.index(owner[i])] if i in owner else basis[len(groups) + i % 10] * 0.1
                for i in range(len(ds.candidates))])
  res, _ = lareqa_eval.evaluate(ds, q, c)
  for k in ("mono/map", "cross/map", "multi/map", "mono/recall@1"):
    assert res[k] == 1.0, k
  assert res["multi/rank_distance"] <= 2.0  # tied parallel answers sit next to each other
