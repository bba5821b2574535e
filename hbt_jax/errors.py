"""Errors a user can cause and fix, as opposed to bugs.

Every one of them names what to fix: the config key, the file (and line), the checkpoint or the
image. The command-line tools print such an error as one line `error: ...` and exit with status 2
(`cli.py`); any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations


class UserError(ValueError):
  """A mistake in what the user gave: a config key or value, data, a checkpoint, an image."""


class ConfigError(UserError):
  """A config key or value (the message names the key: config.optim.lr=...)."""


class DataError(UserError):
  """A data file or folder (the message names the file, and the line where there is one)."""


class CheckpointError(UserError):
  """A model or training checkpoint that is missing or does not fit the config."""
