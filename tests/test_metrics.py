"""Metrics from ranks == pytrec_eval (trec_eval) on random runs with ties; rank distance by hand."""
import numpy as np
import pytest
import pytrec_eval

from hbt_jax.evaluation import metrics, search


def _docno(i, n):
  # trec_eval breaks score ties by docno, descending; naming docs this way makes that order equal
  # hbt_jax's rule (lower candidate index first), so tied runs are comparable.
  return f"d{n - 1 - i:06d}"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parity_with_pytrec_eval_on_random_runs_with_ties(seed):
  rng = np.random.default_rng(seed)
  nq, nc = 40, 300
  scores = np.round(rng.normal(size=(nq, nc)), 1).astype(np.float32)  # many ties
  n_rel = rng.integers(1, 6, size=nq)
  rel = np.full((nq, 5), -1)
  for i in range(nq):
    rel[i, :n_rel[i]] = rng.choice(nc, n_rel[i], replace=False)
  # Ranks from the kernel, with queries/candidates that reproduce the score matrix exactly.
  q = np.eye(nq, nq, dtype=np.float32)
  c = np.ascontiguousarray(scores.T)
  ranks = search.relevant_ranks(q, c, rel, c_block=64, q_block=16)

  qrel = {f"q{i}": {_docno(d, nc): 1 for d in rel[i] if d >= 0} for i in range(nq)}
  run = {f"q{i}": {_docno(d, nc): float(scores[i, d]) for d in range(nc)} for i in range(nq)}
  measures = {"map", "map_cut_10", "recip_rank", "ndcg_cut_10", "recall_1", "recall_5", "recall_100"}
  ref = pytrec_eval.RelevanceEvaluator(qrel, measures).evaluate(run)
  got = {"map": metrics.average_precision(ranks), "map_cut_10": metrics.average_precision(ranks, 10),
         "recip_rank": metrics.reciprocal_rank(ranks), "ndcg_cut_10": metrics.ndcg_at(ranks, 10),
         "recall_1": metrics.recall_at(ranks, 1), "recall_5": metrics.recall_at(ranks, 5),
         "recall_100": metrics.recall_at(ranks, 100)}
  for m, values in got.items():
    want = np.array([ref[f"q{i}"][m] for i in range(nq)])
    np.testing.assert_allclose(values, want, atol=1e-6, err_msg=m)


def test_graded_ndcg_matches_pytrec_eval():
  rng = np.random.default_rng(5)
  nq, nc = 20, 100
  scores = rng.normal(size=(nq, nc)).astype(np.float32)
  rel = np.stack([rng.choice(nc, 4, replace=False) for _ in range(nq)])
  gains = rng.integers(1, 4, size=rel.shape).astype(float)
  ranks = search.relevant_ranks(np.eye(nq, dtype=np.float32), np.ascontiguousarray(scores.T), rel)
  qrel = {f"q{i}": {_docno(d, nc): int(g) for d, g in zip(rel[i], gains[i])} for i in range(nq)}
  run = {f"q{i}": {_docno(d, nc): float(scores[i, d]) for d in range(nc)} for i in range(nq)}
  ref = pytrec_eval.RelevanceEvaluator(qrel, {"ndcg_cut_10"}).evaluate(run)
  np.testing.assert_allclose(metrics.ndcg_at(ranks, 10, gains),
                             [ref[f"q{i}"]["ndcg_cut_10"] for i in range(nq)], atol=1e-6)


def test_rank_distance_hand_made():
  # Query 0: its parallel answers rank 1, 4, 10 -> 9; query 1: 2 and 3 (third absent) -> 1;
  # query 2: one answer -> 0.
  ranks = np.array([[1, 4, 10], [3, 0, 2], [7, 0, 0]])
  np.testing.assert_array_equal(metrics.rank_distance(ranks), [9, 1, 0])
  np.testing.assert_allclose(metrics.average_precision(ranks), [(1 + 2 / 4 + 3 / 10) / 3,
                                                                (1 / 2 + 2 / 3) / 2, 1 / 7])
