"""The paper's setting (Elmahdy et al. 2024) on an accelerator: XLM-R base, hybrid batches (alpha=0.5),
batch 100, AdamW lr 3e-5, weight decay 0.01, "query: "/"passage: " prefixes, XQuAD-R + MLQA-R evals.

Training data: your machine-translated QA pairs in the JSONL format of hbt_jax/data/jsonl.py:
  python -m hbt_jax.main --config configs/paper_xlmr.py --workdir gs://.../run \
      --config.data.files=/data/train.de.jsonl,/data/train.en.jsonl,...
Set num_steps to your data size (the paper does not fix it here; 10k steps ~ 1M pairs).
"""
from hbt_jax.config_base import base_config, lareqa_eval


def paper_config(init: str, pooling: str, projection_dim: int = 0, activation: str = "identity"):
  c = base_config()
  c.batch_size = 100
  c.num_steps = 10000
  c.log_every = 50
  c.checkpoint_every = 1000
  c.data.source = "jsonl"
  c.data.files = ""              # required: comma-separated JSONL files
  c.data.passage_context = True
  c.sampler.batch_type = "hybrid"
  c.sampler.alpha = 0.5
  c.model.init = init
  c.model.pooling = pooling
  c.model.projection_dim = projection_dim
  c.model.projection_activation = activation
  c.model.dtype = "bfloat16"
  c.model.max_query_len = 64
  c.model.max_passage_len = 256
  c.model.query_prefix = "query: "
  c.model.passage_prefix = "passage: "
  c.optim.lr = 3e-5
  c.optim.weight_decay = 0.01
  c.optim.warmup_steps = 500
  c.evals.xquad_r = lareqa_eval("xquad_r", every=2000, batch_size=256)
  c.evals.mlqa_r = lareqa_eval("mlqa_r", every=2000, batch_size=256)
  return c


def get_config(arg=None):
  c = paper_config("FacebookAI/xlm-roberta-base", pooling="mean")
  c.lock()
  return c
