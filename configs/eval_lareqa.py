"""Evaluation only: a pretrained (or the workdir's latest checkpoint) model on XQuAD-R and MLQA-R.

  python -m hbt_jax.main --config configs/eval_lareqa.py --workdir DIR [--config.model.init=ID_OR_DIR]
`get_config("quick")` evaluates 100 questions per language instead of the full sets.
"""
from hbt_jax.config_base import base_config, lareqa_eval, use_minilm


def get_config(arg=None):
  c = use_minilm(base_config())
  c.eval_only = True
  quick = 100 if arg == "quick" else 0
  c.evals.xquad_r = lareqa_eval("xquad_r", max_questions=quick)
  c.evals.mlqa_r = lareqa_eval("mlqa_r", max_questions=quick)
  c.lock()
  return c
