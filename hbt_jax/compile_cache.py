"""JAX's persistent compilation cache, on by default, and a log line for every compile.

`setup(cfg.compilation_cache)` points JAX's persistent cache at `$HBT_CACHE_DIR/jax_compilation`
(default `~/.cache/hbt_jax/jax_compilation`), at another folder, or turns it off ("off"). A sweep's
later runs, a resumed run and the evaluators' jits then load what an earlier run compiled instead of
compiling it again.

Every compile (of the train step, an encoder, a search kernel, ...) is recorded from JAX's own
monitoring events: the function's name, the seconds it took and whether the executable came from
the persistent cache. Compiles that took `LOG_MIN_SECONDS` or more (those worth caching: the
steps, encoders, search kernels and inits), or that came from the cache, are logged at INFO; `compiles()` returns them all, from the import of this module on (tests read it).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
from pathlib import Path

import jax
from jax import monitoring

OFF = ("off", "none", "false", "0")
LOG_MIN_SECONDS = 0.1  # also the shortest compile that is cached (setup)
_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
_CACHE_HIT = "/jax/compilation_cache/cache_hits"


@dataclasses.dataclass(frozen=True)
class Compile:
  name: str
  seconds: float
  from_cache: bool


_log: list[Compile] = []
_hits = threading.local()  # cache hits seen on this thread since its last compile ended


def cache_root() -> Path:
  return Path(os.environ.get("HBT_CACHE_DIR") or Path.home() / ".cache" / "hbt_jax")


def setup(setting: str = "") -> str | None:
  """Turns the persistent cache on (setting "" = the default folder, or a folder) or off ("off").
  Returns the folder in use, or None. Safe to call again with another setting (tests, sweeps)."""
  folder = None if str(setting).strip().lower() in OFF else (
      Path(setting) if setting else cache_root() / "jax_compilation")
  current = jax.config.jax_compilation_cache_dir
  wanted = str(folder) if folder is not None else None
  if current != wanted:
    from jax.experimental.compilation_cache import compilation_cache as cc
    if folder is not None:
      folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", wanted)
    cc.reset_cache()  # the cache is bound at the first compile; rebind it to the new setting
  # Cache every executable that took a tenth of a second or more to compile (JAX's default, 1 s,
  # would leave out the encoders of small models, whose compiles still add up over a sweep).
  jax.config.update("jax_persistent_cache_min_compile_time_secs", LOG_MIN_SECONDS)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  logging.info("JAX compilation cache: %s", wanted or "off")
  return wanted


def compiles() -> list[Compile]:
  """Every compile recorded in this process so far, oldest first."""
  return list(_log)


def _on_event(event: str, **kwargs) -> None:
  if event == _CACHE_HIT:
    _hits.count = getattr(_hits, "count", 0) + 1


def _on_duration(event: str, seconds: float, **kwargs) -> None:
  if event != _BACKEND_COMPILE:
    return
  hit = getattr(_hits, "count", 0) > 0
  _hits.count = 0
  c = Compile(str(kwargs.get("fun_name", "?")), float(seconds), hit)
  _log.append(c)
  if hit or seconds >= LOG_MIN_SECONDS:
    logging.info("compiled %s in %.2f s (%s)", c.name, c.seconds,
                 "from the persistent cache" if hit else "compiled anew")


monitoring.register_event_listener(_on_event)
monitoring.register_event_duration_secs_listener(_on_duration)
