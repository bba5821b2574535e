"""The BEIR/MIRACL-layout evaluator end to end against pytrec_eval on the same embeddings."""
import json

import numpy as np
import pytrec_eval

from hbt_jax import evaluators, sharding, state
from hbt_jax.config_base import beir_eval
from train_test import tiny_config


def _beir_folder(root, rng, n_docs=60, n_q=12):
  words = "river bank money water city music stone light tree road house field".split()
  docs = [{"_id": f"D{i}", "title": words[i % 12], "text": " ".join(rng.choice(words, 6))}
          for i in range(n_docs)]
  queries = [{"_id": f"Q{i}", "text": " ".join(rng.choice(words, 3))} for i in range(n_q)]
  (root / "qrels").mkdir(parents=True)
  (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
  (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
  qrels = {f"Q{i}": {f"D{d}": int(rng.integers(1, 3)) for d in rng.choice(n_docs, 3, replace=False)}
           for i in range(n_q)}
  lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{g}" for q, r in qrels.items() for d, g in r.items()]
  (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
  return docs, queries, qrels


def test_beir_evaluator_matches_pytrec_eval(tmp_path):
  rng = np.random.default_rng(0)
  docs, queries, qrels = _beir_folder(tmp_path / "beir", rng)
  cfg = tiny_config()
  with cfg.unlocked():
    cfg.evals = {"toy": beir_eval(str(tmp_path / "beir"), max_query_len=16, max_candidate_len=32,
                                  batch_size=16)}
  mesh = sharding.make_mesh(cfg.mesh.to_dict())
  bundle = state.build_model(cfg)
  st = state.create_train_state(bundle, cfg, mesh, state.make_optimizer(cfg))
  ev, = evaluators.from_config(cfg, bundle, mesh, str(tmp_path))
  res = ev.run(st["params"], 0)
  m = cfg.model
  q = ev.embedder.encode(st["params"], [x["text"] for x in queries], 16, "query", prefix=m.query_prefix)
  c = ev.embedder.encode(st["params"], [(d["title"] + " " + d["text"]) for d in docs], 32, "passage",
                         prefix=m.passage_prefix)
  scores = q @ c.T
  n = len(docs)
  name = lambda i: f"d{n - 1 - i:05d}"  # trec_eval tie order == lower index first
  run = {x["_id"]: {name(j): float(scores[i, j]) for j in range(n)} for i, x in enumerate(queries)}
  qrel = {qid: {name(int(d[1:])): g for d, g in r.items()} for qid, r in qrels.items()}
  ref = pytrec_eval.RelevanceEvaluator(qrel, {"ndcg_cut_10", "recall_100", "recip_rank"}).evaluate(run)
  np.testing.assert_allclose(res["toy/ndcg@10"], np.mean([v["ndcg_cut_10"] for v in ref.values()]), atol=1e-5)
  np.testing.assert_allclose(res["toy/recall@100"], 1.0)
  np.testing.assert_allclose(res["toy/mrr"], np.mean([v["recip_rank"] for v in ref.values()]), atol=1e-5)


def test_run_due_runs_evaluators_every_n_steps(tmp_path):
  calls = []

  class Fake:
    def __init__(self, every):
      self.every, self.workdir = every, str(tmp_path)

    def run(self, params, step):
      calls.append((self.every, step))
      return {f"e{self.every}/x": float(step)}

  evs = [Fake(2), Fake(0)]
  for step in range(1, 7):
    evaluators.run_due(evs, None, step)
  assert calls == [(2, 2), (2, 4), (2, 6)]
  evaluators.run_all(evs, None, 7)
  assert calls[-2:] == [(2, 7), (0, 7)]
  res = json.loads((tmp_path / "results.json").read_text())
  assert res["step"] == 7 and res["e2/x"] == 7.0
  hist = [json.loads(l) for l in (tmp_path / "results_history.jsonl").read_text().splitlines()]
  assert [h["step"] for h in hist] == [2, 4, 6, 7]
