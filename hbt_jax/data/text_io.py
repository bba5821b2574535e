"""Reading text files strictly: invalid UTF-8 is an error with file:line; a BOM is removed, CRLF is
read as LF (both are common in translated data and harmless once normalised)."""
from __future__ import annotations

import logging
from pathlib import Path

from hbt_jax.data.corpus import DataError


def read_text(path: str | Path) -> str:
  return decode_text(Path(path).read_bytes(), path)


def decode_text(raw: bytes, path: str | Path) -> str:
  """The bytes of `path` (read from disk or decompressed) as text; errors name the file and line."""
  if raw.startswith(b"\xef\xbb\xbf"):
    logging.info("%s: removed a UTF-8 byte order mark", path)
    raw = raw[3:]
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    line = raw[:e.start].count(b"\n") + 1
    raise DataError(f"{path}:{line}: invalid UTF-8 ({e.reason} at byte {e.start})") from None
  return text.replace("\r\n", "\n")


def read_lines(path: str | Path) -> list[str]:
  """Lines without their end-of-line; a missing final newline is fine."""
  text = read_text(path)
  lines = text.split("\n")
  if lines and lines[-1] == "":
    lines.pop()
  return lines
