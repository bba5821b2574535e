"""How the command-line tools end: a user's mistake is one line, a bug keeps its traceback.

`run(main)` is absl's `app.run(main)` with two differences. A mistake the user can fix — a flag or
config override that does not parse or names no config key, a config value that `config_checks`
rejects, a data file or folder, a checkpoint, an image (`errors.UserError`), a file the system
cannot open (`OSError` naming it) — prints `error: ...` on stderr, one line, and exits with status
2. `--traceback` (or the environment variable HBT_TRACEBACK=1) shows the full stack instead. Every
other exception is a bug and is raised as usual.
"""
from __future__ import annotations

import ast
import os
import re
import sys

from absl import app, flags

from hbt_jax.errors import UserError

USAGE_EXIT = 2


class CommandLineError(UserError):
  """A flag or a --config.key=value override that does not parse."""


def run(main) -> None:
  argv = list(sys.argv)
  show_stack = "--traceback" in argv or os.environ.get("HBT_TRACEBACK", "") not in ("", "0")
  argv = [a for a in argv if a != "--traceback"]
  try:
    app.run(main, argv=argv, flags_parser=_parse_flags)
  except Exception as e:  # noqa: BLE001 - sorted into the user's mistakes and bugs below
    message = user_message(e)
    if message is None or show_stack:
      raise
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    sys.exit(USAGE_EXIT)


def user_message(e: BaseException) -> str | None:
  """The one-line message of a user's mistake, or None for a bug."""
  if isinstance(e, UserError):
    return _one_line(str(e))
  if isinstance(e, OSError) and getattr(e, "filename", None):
    return _one_line(f"{e.filename}: {e.strerror or e}")
  return None


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    raise CommandLineError(_flag_error(str(e))) from e
  except Exception as e:  # noqa: BLE001 - ml_collections raises plain errors for overrides
    raise CommandLineError(_override_error(e, argv)) from e
  if "config" in flags.FLAGS:  # ml_collections loads the config file lazily: load it now
    try:
      flags.FLAGS.config.to_dict()
    except Exception as e:  # noqa: BLE001 - the file's own exception, whatever it is
      path = str(getattr(flags.FLAGS["config"], "config_filename", "") or "").split(":")[0]
      if path and not os.path.exists(path):
        raise CommandLineError(f"--config: no such config file: {path}") from e
      raise CommandLineError(f"--config={path}: could not load the config file: "
                             f"{type(e).__name__}: {_one_line(str(e))}") from e
  return rest


def _flag_error(text: str) -> str:
  """absl's message; a config file that failed to load gets its exception's last line."""
  first = text.splitlines()[0] if text else text
  if "Error whilst parsing config file" in text:
    last = [l.strip() for l in text.splitlines() if l.strip()][-1]
    return f"{first.split(':')[0]}: could not load the config file: {last}"
  return first


def _override_error(e: Exception, argv: list[str]) -> str:
  text = str(e)
  try:  # KeyError / AttributeError messages arrive as quoted literals
    value = ast.literal_eval(text)
    text = value if isinstance(value, str) else text
  except (ValueError, SyntaxError):
    pass
  text = " ".join(text.split())
  name = re.match(r"^'?([\w.-]+)'?", text)
  overrides = [a for a in argv if a.startswith("--config.")]
  culprit = next((a for a in overrides if name and re.search(rf"\.{re.escape(name.group(1))}(=|$)",
                                                             a.split("=")[0] + "=")), None)
  if isinstance(e, (KeyError, AttributeError)) and culprit:
    hint = text[name.end():].strip() if name else ""
    return f"{culprit}: no such config key{' (' + hint + ')' if hint else ''}"
  return f"{culprit or 'command line'}: {text}"


def _one_line(text: str) -> str:
  return " ".join(text.split())

