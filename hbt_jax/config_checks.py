"""Config validation before anything expensive runs; every error names the config key."""
from __future__ import annotations

from hbt_jax import sampler as sampler_lib
from hbt_jax.errors import ConfigError  # noqa: F401 - raised here; callers import it from here


def validate(cfg) -> None:
  if cfg.batch_size <= 0:
    raise ConfigError(f"config.batch_size={cfg.batch_size} must be positive")
  if cfg.num_steps < 0:
    raise ConfigError(f"config.num_steps={cfg.num_steps} must be >= 0")
  for key in ("log_every", "checkpoint_every", "keep_checkpoints"):
    if cfg[key] <= 0:
      raise ConfigError(f"config.{key}={cfg[key]} must be positive")
  if cfg.nan_policy not in ("stop", "skip"):
    raise ConfigError(f"config.nan_policy={cfg.nan_policy!r}; known: stop, skip")
  if cfg.task not in ("text", "image_text"):
    raise ConfigError(f"config.task={cfg.task!r}; known: text, image_text")
  if cfg.task == "image_text":
    _validate_image_text(cfg)
  try:
    sampler_lib.mixture_weights(cfg.sampler.batch_type, cfg.sampler.alpha,
                                sampler_lib.parse_mixture(cfg.sampler.mixture),
                                "image_text" if cfg.task == "image_text" else "text")
  except sampler_lib.SamplerConfigError as e:
    raise ConfigError(str(e)) from None
  if cfg.model.pooling not in ("mean", "cls"):
    raise ConfigError(f"config.model.pooling={cfg.model.pooling!r}; known: mean, cls")
  if cfg.model.dtype not in ("auto", "float32", "bfloat16", "float16"):
    raise ConfigError(f"config.model.dtype={cfg.model.dtype!r}; known: auto, float32, bfloat16, float16")
  if cfg.model.temperature <= 0:
    raise ConfigError(f"config.model.temperature={cfg.model.temperature} must be positive")
  if cfg.data.hard_negatives < 0:
    raise ConfigError(f"config.data.hard_negatives={cfg.data.hard_negatives} must be >= 0")
  for key, ok, rule in _RANGES:
    value = cfg
    for part in key.split("."):
      value = value[part]
    if not ok(value):
      raise ConfigError(f"config.{key}={value!r} {rule}")
  from hbt_jax.input_pipeline import PIPELINES
  from hbt_jax.state import SCHEDULES
  if cfg.data.pipeline not in PIPELINES:
    raise ConfigError(f"config.data.pipeline={cfg.data.pipeline!r}; known: {', '.join(PIPELINES)}")
  from hbt_jax.attention import MODES
  if cfg.model.attention not in MODES:
    raise ConfigError(f"config.model.attention={cfg.model.attention!r}; known: {', '.join(MODES)}")
  if cfg.optim.schedule not in SCHEDULES:
    raise ConfigError(f"config.optim.schedule={cfg.optim.schedule!r}; known: {', '.join(SCHEDULES)}")
  for name, ecfg in cfg.evals.items():
    for key in ("every", "batch_size", "max_questions", "max_images"):
      if key in ecfg and ecfg[key] < 0:
        raise ConfigError(f"config.evals.{name}.{key}={ecfg[key]} must be >= 0"
                          + (" (0 = the backend's size)" if key == "batch_size" else ""))


# (key, test, what the value must be): plain range checks, made before any work starts.
_RANGES = (
    ("optim.lr", lambda v: v >= 0, "must be >= 0 (0 freezes the weights)"),
    ("optim.weight_decay", lambda v: v >= 0, "must be >= 0"),
    ("optim.warmup_steps", lambda v: v >= 0, "must be >= 0"),
    ("optim.b1", lambda v: 0 <= v < 1, "must be in [0, 1)"),
    ("optim.b2", lambda v: 0 <= v < 1, "must be in [0, 1)"),
    ("optim.eps", lambda v: v > 0, "must be positive"),
    ("optim.end_lr_factor", lambda v: v >= 0, "must be >= 0"),
    ("optim.grad_clip", lambda v: v >= 0, "must be >= 0 (0 = no clipping)"),
    ("data.max_ids", lambda v: v >= 0, "must be >= 0 (0 = all)"),
    ("data.fraction", lambda v: 0 < v <= 1, "must be in (0, 1]"),
    ("data.min_langs_per_id", lambda v: v >= 1, "must be >= 1"),
    ("data.num_images", lambda v: v > 0, "must be positive"),
    ("sampler.lang_sampling_power", lambda v: v >= 0, "must be >= 0"),
    ("model.max_query_len", lambda v: v > 0, "must be positive"),
    ("model.max_passage_len", lambda v: v > 0, "must be positive"),
    ("model.projection_dim", lambda v: v >= 0, "must be >= 0 (0 = no projection)"),
    ("model.dropout", lambda v: v == -1 or 0 <= v < 1, "must be in [0, 1), or -1 (the checkpoint's)"),
    ("model.attention_dropout", lambda v: v == -1 or 0 <= v < 1,
     "must be in [0, 1), or -1 (the checkpoint's)"),
    ("loss.grad_cache_chunk", lambda v: v >= 0, "must be >= 0 (0 = off)"),
    ("image.batch_size", lambda v: v > 0, "must be positive"),
    ("image.proj_dim", lambda v: v >= 0, "must be >= 0"),
    ("image.head_lr_multiplier", lambda v: v > 0, "must be positive"),
)


def _validate_image_text(cfg) -> None:
  im = cfg.image
  if im.loss not in ("clip", "siglip"):
    raise ConfigError(f"config.image.loss={im.loss!r}; known: clip, siglip")
  if im.init_temperature <= 0:
    raise ConfigError(f"config.image.init_temperature={im.init_temperature} must be positive")
  if cfg.loss.grad_cache_chunk:
    raise ConfigError("config.loss.grad_cache_chunk: GradCache is for the text task only")
  if cfg.data.hard_negatives:
    raise ConfigError("config.data.hard_negatives: image-text batches have no hard negatives")
  from hbt_jax.input_pipeline import CAPTION_SOURCES
  if cfg.data.source not in CAPTION_SOURCES:
    raise ConfigError(f"config.data.source={cfg.data.source!r} is not a caption source; "
                      f"config.task='image_text' needs one of {list(CAPTION_SOURCES)}")


def check_batch_divisible(cfg, data_parallel: int, processes: int) -> None:
  if cfg.batch_size < data_parallel:
    raise ConfigError(f"config.batch_size={cfg.batch_size} is smaller than the mesh's {data_parallel} "
                      "data-parallel devices: every device needs at least one pair (config.mesh)")
  if cfg.batch_size % data_parallel:
    raise ConfigError(f"config.batch_size={cfg.batch_size} must divide by the mesh's data-parallel "
                      f"size {data_parallel} (config.mesh)")
  if cfg.batch_size % processes:
    raise ConfigError(f"config.batch_size={cfg.batch_size} must divide by the {processes} processes")


def check_corpus(cfg, corpus) -> None:
  """Languages against the data actually read (batch size vs ids: HybridSampler checks)."""
  if len(corpus.langs) < 2 and cfg.sampler.batch_type in ("xy", "hybrid", "mixture"):
    raise ConfigError(f"config.data.langs: cross-language batches need >= 2 languages; the data has "
                      f"{corpus.langs}")
