"""The generic parallel-data format for users' own translated QA data.

One JSON object per line, one line per (id, language):

    {"id": "q17", "lang": "de", "query": "...", "passage": "...",
     "context": "optional paragraph", "negatives": ["optional hard negative", ...]}

Lines with the same `id` are translations of each other. Every line is validated; an error names the
file and line. With `lenient=True` a bad line is skipped instead, and every skip is counted and logged
with its reason (never silently).
"""
from __future__ import annotations

import collections
import json
import logging
from typing import Sequence

from hbt_jax.data.corpus import Cell, CorpusBuilder, DataError, ParallelCorpus
from hbt_jax.data.text_io import read_lines

_REQUIRED = ("id", "lang", "query", "passage")
_OPTIONAL = ("context", "negatives")


def _parse_line(line: str, where: str) -> tuple[str, str, Cell]:
  try:
    rec = json.loads(line)
  except json.JSONDecodeError as e:
    raise DataError(f"{where}: invalid JSON ({e.msg}, column {e.colno})") from None
  if not isinstance(rec, dict):
    raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
  unknown = sorted(set(rec) - set(_REQUIRED) - set(_OPTIONAL))
  if unknown:
    raise DataError(f"{where}: unknown fields {unknown}; allowed {list(_REQUIRED + _OPTIONAL)}")
  for key in _REQUIRED:
    if key not in rec:
      raise DataError(f"{where}: missing field {key!r}")
    if not isinstance(rec[key], str):
      raise DataError(f"{where}: field {key!r} must be a string, got {type(rec[key]).__name__}")
    if not rec[key].strip():
      raise DataError(f"{where}: field {key!r} is empty")
  context = rec.get("context")
  if context is not None and not isinstance(context, str):
    raise DataError(f"{where}: field 'context' must be a string")
  negs = rec.get("negatives", [])
  if not isinstance(negs, list) or not all(isinstance(n, str) and n.strip() for n in negs):
    raise DataError(f"{where}: field 'negatives' must be a list of non-empty strings")
  return rec["id"], rec["lang"], Cell(rec["query"], rec["passage"], context, tuple(negs), where)


def read_jsonl(paths: Sequence[str], lenient: bool = False, min_langs_per_id: int = 1
               ) -> ParallelCorpus:
  builder = CorpusBuilder()
  skipped: collections.Counter = collections.Counter()
  read = 0
  for path in paths:
    for n, line in enumerate(read_lines(path), start=1):
      where = f"{path}:{n}"
      if not line.strip():
        if lenient:
          skipped["blank line"] += 1
          logging.warning("%s: skipped blank line", where)
          continue
        raise DataError(f"{where}: blank line")
      try:
        ex_id, lang, cell = _parse_line(line, where)
        builder.add(ex_id, lang, cell)
        read += 1
      except DataError as e:
        if not lenient:
          raise
        reason = str(e).split(": ", 1)[1].split(" (")[0]
        skipped[reason] += 1
        logging.warning("skipped %s", e)
  corpus = builder.build(min_langs_per_id=min_langs_per_id)
  logging.info("read %d lines from %s; skipped %d %s", read, list(paths), sum(skipped.values()),
               dict(skipped))
  corpus.skipped = dict(skipped)
  return corpus
