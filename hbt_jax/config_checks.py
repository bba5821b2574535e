"""Config validation before anything expensive runs; every error names the config key."""
from __future__ import annotations

from hbt_jax import sampler as sampler_lib


class ConfigError(ValueError):
  pass


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
  try:
    sampler_lib.mixture_weights(cfg.sampler.batch_type, cfg.sampler.alpha,
                                sampler_lib.parse_mixture(cfg.sampler.mixture))
  except sampler_lib.SamplerConfigError as e:
    raise ConfigError(str(e)) from None
  if cfg.model.pooling not in ("mean", "cls"):
    raise ConfigError(f"config.model.pooling={cfg.model.pooling!r}; known: mean, cls")
  if cfg.model.dtype not in ("float32", "bfloat16", "float16"):
    raise ConfigError(f"config.model.dtype={cfg.model.dtype!r}; known: float32, bfloat16, float16")
  if cfg.model.temperature <= 0:
    raise ConfigError(f"config.model.temperature={cfg.model.temperature} must be positive")
  if cfg.data.hard_negatives < 0:
    raise ConfigError(f"config.data.hard_negatives={cfg.data.hard_negatives} must be >= 0")


def check_batch_divisible(cfg, data_parallel: int, processes: int) -> None:
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
