"""The one in-memory representation of parallel (query, passage) training data.

Rows are example ids, columns are languages. A cell holds the query, the positive passage (with an
optional context such as its paragraph) and optional hard negatives of that example in that language.
Machine-translated corpora are not always complete (MLQA-R has 2-4 languages per id), so a cell may be
empty; `available[row, lang]` says which cells exist and the sampler only draws from those.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

import numpy as np

from hbt_jax.errors import DataError  # noqa: F401 - malformed input data; the message names the file and line


@dataclasses.dataclass(frozen=True)
class Cell:
  query: str
  passage: str
  context: str | None = None
  negatives: tuple[str, ...] = ()
  source: str = ""  # "file:line" of the record, for error messages


@dataclasses.dataclass
class ParallelCorpus:
  ids: list[str]
  langs: list[str]
  cells: np.ndarray  # object array [n_ids, n_langs] of Cell | None

  def __post_init__(self):
    self.available = np.vectorize(lambda c: c is not None, otypes=[bool])(self.cells) \
        if self.cells.size else np.zeros(self.cells.shape, bool)

  @property
  def num_ids(self) -> int:
    return len(self.ids)

  def lang_index(self, lang: str) -> int:
    return self.langs.index(lang)

  def cell(self, row: int, lang_idx: int) -> Cell:
    return self.cells[row, lang_idx]

  def counts(self) -> dict[str, int]:
    return {l: int(self.available[:, j].sum()) for j, l in enumerate(self.langs)}

  def select_langs(self, langs: Sequence[str], where: str = "config.data.langs") -> "ParallelCorpus":
    """Keeps only `langs` (in that order) and drops ids left with no cell at all."""
    missing = [l for l in langs if l not in self.langs]
    if missing:
      raise DataError(f"{where}: languages {missing} are not in the data (it has {self.langs})")
    cols = [self.langs.index(l) for l in langs]
    return self._rows(np.arange(self.num_ids), self.cells[:, cols], list(langs))

  def take(self, max_ids: int | None) -> "ParallelCorpus":
    """The first `max_ids` ids (in reading order), for subset runs."""
    if max_ids is None or max_ids <= 0 or max_ids >= self.num_ids:
      return self
    return type(self)(self.ids[:max_ids], list(self.langs), self.cells[:max_ids])

  def _order(self, seed: int) -> np.ndarray:
    """A fixed permutation of the rows: the order in which subsets take ids, so that for one seed a
    smaller subset is always contained in a larger one (a scale curve measures data, not a new draw)."""
    return np.random.default_rng(seed).permutation(self.num_ids)

  def _rows(self, rows: np.ndarray, cells: np.ndarray | None = None,
            langs: list[str] | None = None) -> "ParallelCorpus":
    """The given rows (in reading order) of `cells` (default: this corpus's), dropping rows left
    with no cell at all; the same corpus type."""
    rows = np.sort(rows)
    cells = (self.cells if cells is None else cells)[rows]
    keep = np.array([any(c is not None for c in row) for row in cells], bool)
    return type(self)([self.ids[r] for r, k in zip(rows, keep) if k], langs or list(self.langs),
                      cells[keep])

  def fraction(self, frac: float, seed: int = 0, where: str = "config.data.fraction") -> "ParallelCorpus":
    """The first ceil(frac * n) ids of the seed's permutation (nested across fractions)."""
    if not 0.0 < frac <= 1.0:
      raise DataError(f"{where}={frac}: must be in (0, 1]")
    if frac == 1.0:
      return self
    n = int(np.ceil(frac * self.num_ids))
    return self._rows(self._order(seed)[:n])

  def cap_langs(self, caps: dict[str, int], seed: int = 0,
                where: str = "config.data.lang_caps") -> "ParallelCorpus":
    """At most caps[lang] cells of each capped language (a simulated low-resource language): the
    first ids of the seed's permutation that have the language keep it, later ones lose that cell."""
    missing = sorted(set(caps) - set(self.langs))
    if missing:
      raise DataError(f"{where}: languages {missing} are not in the data (it has {self.langs})")
    cells = self.cells.copy()
    order = self._order(seed)
    for lang, cap in caps.items():
      j = self.langs.index(lang)
      have = order[self.available[order, j]]
      cells[have[cap:], j] = None
    return self._rows(np.arange(self.num_ids), cells)

  def summary(self) -> str:
    per_id = self.available.sum(1)
    return (f"{self.num_ids} ids x {len(self.langs)} langs, {int(self.available.sum())} cells; "
            f"per lang {self.counts()}; langs per id min/mean/max "
            f"{per_id.min() if per_id.size else 0}/{per_id.mean() if per_id.size else 0:.2f}/"
            f"{per_id.max() if per_id.size else 0}")


class CorpusBuilder:
  """Collects cells from readers; a duplicate (id, lang) is an error naming both places."""

  def __init__(self):
    self._cells: dict[str, dict[str, Cell]] = {}
    self._langs: list[str] = []

  def add(self, example_id: str, lang: str, cell: Cell) -> None:
    row = self._cells.setdefault(example_id, {})
    if lang in row:
      raise DataError(f"{cell.source}: duplicate (id={example_id!r}, lang={lang!r}); "
                      f"first seen at {row[lang].source}")
    for field in ("query", "passage"):
      if not getattr(cell, field).strip():
        raise DataError(f"{cell.source}: empty {field} for (id={example_id!r}, lang={lang!r})")
    row[lang] = cell
    if lang not in self._langs:
      self._langs.append(lang)

  def build(self, min_langs_per_id: int = 1) -> ParallelCorpus:
    langs = sorted(self._langs)
    ids = list(self._cells)
    for i in ids:
      if len(self._cells[i]) < min_langs_per_id:
        c = next(iter(self._cells[i].values()))
        raise DataError(f"{c.source}: id {i!r} has only languages {sorted(self._cells[i])}; parallel "
                        f"data needs at least {min_langs_per_id} languages per id")
    cells = np.empty((len(ids), len(langs)), dtype=object)
    for r, i in enumerate(ids):
      for j, l in enumerate(langs):
        cells[r, j] = self._cells[i].get(l)
    corpus = ParallelCorpus(ids, langs, cells)
    logging.info("parallel corpus: %s", corpus.summary())
    return corpus
