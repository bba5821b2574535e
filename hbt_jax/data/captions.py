"""Multilingual image captions: one corpus representation and the readers of XTD10, Multi30K, XM3600
and a generic JSONL format.

A `CaptionCorpus` is a `ParallelCorpus` whose rows are images and whose cells are `CaptionCell`s
(the image file and that language's captions), so everything that works on the availability matrix
(language selection, nested fractions, per-language caps, the sampler's plans) works unchanged.
Language codes are ISO 639-1 as in hbt_jax/languages.py (XTD10's "jp" is read as "ja").

Errors name the file and line: a caption file whose length does not match its image list, an empty
caption, an unknown language, a caption for an image that is not in the image folder. With
`lenient=True` a bad caption or a missing image is skipped instead, counted and logged.
Decoding the images themselves (corrupt files, grayscale / RGBA / CMYK / palette) is the image
pipeline's job.
"""
from __future__ import annotations

import collections
import dataclasses
import gzip
import json
import logging
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from hbt_jax import languages
from hbt_jax.data.corpus import DataError, ParallelCorpus
from hbt_jax.data.text_io import decode_text, read_lines

XTD10_FILES = {"de": "MIC/test_1kcaptions_de.txt", "fr": "MIC/test_1kcaptions_fr.txt",
               "ja": "STAIR/test_1kcaptions_jp.txt",
               **{l: f"XTD10/test_1kcaptions_{l}.txt" for l in "en es it ko pl ru tr zh".split()}}
XTD10_IMAGES = "XTD10/test_image_names.txt"


@dataclasses.dataclass(frozen=True)
class CaptionCell:
  image: str                 # the image file ("" for a captions-only corpus)
  captions: tuple[str, ...]  # this language's captions of the image
  source: str = ""           # file:line of the first caption


class CaptionCorpus(ParallelCorpus):
  """Rows are images (`ids` are image ids), columns languages, cells `CaptionCell | None`."""

  def image(self, row: int) -> str:
    return next(c.image for c in self.cells[row] if c is not None)

  def flat_captions(self) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every caption in (image row, language) order: (texts, image row, language index)."""
    texts, rows, langs = [], [], []
    for r in range(self.num_ids):
      for l in range(len(self.langs)):
        cell = self.cells[r, l]
        if cell is not None:
          texts += cell.captions
          rows += [r] * len(cell.captions)
          langs += [l] * len(cell.captions)
    return texts, np.array(rows, np.int64), np.array(langs, np.int64)

  def num_captions(self) -> dict[str, int]:
    return {l: sum(len(c.captions) for c in self.cells[:, j] if c is not None)
            for j, l in enumerate(self.langs)}


class _Builder:
  """Collects (image, lang, caption, source); checks languages, captions and image files."""

  def __init__(self, image_dir: str | Path | None, lenient: bool):
    self.image_dir = Path(image_dir) if image_dir else None
    self.lenient = lenient
    self.rows: dict[str, dict[str, list[tuple[str, str]]]] = {}
    self.files: dict[str, str] = {}
    self.skipped: collections.Counter = collections.Counter()

  def _fail(self, where: str, what: str, reason: str) -> None:
    if not self.lenient:
      raise DataError(f"{where}: {what}")
    self.skipped[reason] += 1
    logging.warning("%s: %s (skipped)", where, what)

  def add_image(self, image_id: str, file_name: str, where: str) -> bool:
    path = str(self.image_dir / file_name) if self.image_dir else ""
    if self.image_dir is not None and not Path(path).is_file():
      self._fail(where, f"image {path} does not exist", "missing image")
      return False
    self.files[image_id] = path
    return True

  def add(self, image_id: str, lang: str, caption: str, where: str) -> None:
    lang = languages.ALIASES.get(lang, lang)
    if lang not in languages.LANGUAGES:
      raise DataError(f"{where}: unknown language {lang!r} (known: hbt_jax/languages.py)")
    if image_id not in self.files:
      self._fail(where, f"caption for an unknown image {image_id!r}", "unknown image")
      return
    if not caption.strip():
      self._fail(where, f"empty caption for image {image_id!r} ({lang})", "empty caption")
      return
    self.rows.setdefault(image_id, {}).setdefault(lang, []).append((caption.strip(), where))

  def build(self, name: str) -> CaptionCorpus:
    if self.skipped:
      logging.warning("%s: skipped %s", name, dict(self.skipped))
    langs = sorted({l for r in self.rows.values() for l in r})
    ids = [i for i in self.files if i in self.rows]
    cells = np.empty((len(ids), len(langs)), dtype=object)
    for r, i in enumerate(ids):
      for j, l in enumerate(langs):
        caps = self.rows[i].get(l)
        cells[r, j] = CaptionCell(self.files[i], tuple(c for c, _ in caps), caps[0][1]) if caps else None
    if not ids:
      raise DataError(f"{name}: no captions were read")
    corpus = CaptionCorpus(ids, langs, cells)
    logging.info("%s: %d images, captions per language %s", name, len(ids), corpus.num_captions())
    return corpus


def _want(langs: Sequence[str] | None, available: Iterable[str], name: str) -> list[str]:
  available = list(available)
  if not langs:
    return available
  langs = [languages.ALIASES.get(l, l) for l in langs]
  missing = [l for l in langs if l not in available]
  if missing:
    raise DataError(f"{name}: languages {missing} are not in the data (it has {available})")
  return langs


def _aligned(name: str, names_file: Path, files: dict[str, Path], read, image_dir, lenient
             ) -> CaptionCorpus:
  """An image list and, per language, a caption file whose line i captions image i."""
  if not names_file.exists():
    raise DataError(f"{names_file}: missing (the {name} image list)")
  names = read_lines(names_file)
  b = _Builder(image_dir, lenient)
  for n, image in enumerate(names, 1):
    b.add_image(image, image.strip(), f"{names_file}:{n}")
  for lang, path in files.items():
    if not path.exists():
      raise DataError(f"{path}: missing ({name} captions for {lang!r})")
    lines = read(path)
    if len(lines) != len(names):
      raise DataError(f"{path}: {len(lines)} captions for the {len(names)} images of {names_file}")
    for n, (image, caption) in enumerate(zip(names, lines), 1):
      b.add(image, lang, caption, f"{path}:{n}")
  return b.build(name)


def read_xtd10(captions_dir: str | Path, image_dir: str | Path | None = None,
               langs: Sequence[str] | None = None, lenient: bool = False) -> CaptionCorpus:
  """XTD10: 1000 COCO train2014 images; line i of every language file captions image i of
  XTD10/test_image_names.txt. `image_dir` holds the COCO files (None: captions only)."""
  root = Path(captions_dir)
  files = {l: root / XTD10_FILES[l] for l in _want(langs, XTD10_FILES, "xtd10")}
  return _aligned("xtd10", root / XTD10_IMAGES, files, read_lines, image_dir, lenient)


def _read_gz_lines(path: Path) -> list[str]:
  try:
    with gzip.open(path, "rb") as f:
      lines = decode_text(f.read(), path).split("\n")
  except OSError as e:
    raise DataError(f"{path}: cannot read ({e})") from None
  return lines[:-1] if lines and lines[-1] == "" else lines


def read_multi30k(root: str | Path, split: str = "test_2016_flickr", image_dir: str | Path | None = None,
                  langs: Sequence[str] | None = None, lenient: bool = False) -> CaptionCorpus:
  """Multi30K task 1: image_splits/SPLIT.txt (Flickr30k file names) and raw/SPLIT.LANG.gz (line i
  captions image i). `image_dir` holds the Flickr30k images."""
  root = Path(root)
  names_file = root / "image_splits" / f"{split}.txt"
  if not names_file.exists():
    raise DataError(f"{names_file}: missing (Multi30K split {split!r})")
  found = sorted(p.name.split(".")[-2] for p in (root / "raw").glob(f"{split}.*.gz"))
  files = {l: root / "raw" / f"{split}.{l}.gz" for l in _want(langs, found, f"multi30k {split}")}
  return _aligned(f"multi30k/{split}", names_file, files, _read_gz_lines, image_dir, lenient)


def _json_lines(path: str | Path) -> Iterable[tuple[str, object]]:
  """("file:line", parsed JSON) for every non-empty line; invalid JSON is an error naming it."""
  for n, line in enumerate(read_lines(path), 1):
    if not line.strip():
      continue
    try:
      yield f"{path}:{n}", json.loads(line)
    except json.JSONDecodeError as e:
      raise DataError(f"{path}:{n}: invalid JSON ({e.msg}, column {e.colno})") from None


def read_xm3600(captions_jsonl: str | Path, image_dir: str | Path | None = None,
                langs: Sequence[str] | None = None, lenient: bool = False) -> CaptionCorpus:
  """XM3600's released captions.jsonl: {"image/key": K, "<lang>": {"caption": [...], ...}, ...}
  per line; images are IMAGE_DIR/K.jpg."""
  path = Path(captions_jsonl)
  b = _Builder(image_dir, lenient)
  want = set(_want(langs, languages.DATASETS["xm3600"], "xm3600"))
  for where, rec in _json_lines(path):
    key = rec.get("image/key") if isinstance(rec, dict) else None
    if not isinstance(key, str):
      raise DataError(f"{where}: expected an object with a string 'image/key'")
    if not b.add_image(key, f"{key}.jpg", where):
      continue
    for lang, entry in rec.items():
      if lang == "image/key":
        continue
      if not isinstance(entry, dict) or not isinstance(entry.get("caption"), list):
        raise DataError(f"{where}: language {lang!r} needs {{'caption': [...]}}")
      # Wanted languages are read; an unknown code goes to `add`, which names it as an error.
      if lang in want or lang not in languages.LANGUAGES:
        for cap in entry["caption"]:
          b.add(key, lang, cap if isinstance(cap, str) else "", where)
  return b.build("xm3600")


def read_caption_jsonl(files: Sequence[str | Path], image_dir: str | Path | None = None,
                       lenient: bool = False) -> CaptionCorpus:
  """Users' own captions: one {"image": FILE, "lang": CODE, "caption": TEXT} per line; FILE is
  relative to `image_dir`. Several lines may caption the same image in the same language."""
  b = _Builder(image_dir, lenient)
  for f in files:
    for where, rec in _json_lines(f):
      if not isinstance(rec, dict) or set(rec) != {"image", "lang", "caption"} or \
          not all(isinstance(rec[k], str) for k in rec):
        raise DataError(f"{where}: expected {{\"image\": str, \"lang\": str, \"caption\": str}}")
      if rec["image"] not in b.files and not b.add_image(rec["image"], rec["image"], where):
        continue
      b.add(rec["image"], rec["lang"], rec["caption"], where)
  return b.build("jsonl captions")


def read_captions(source: str, data_dir: str = "", image_dir: str = "", files: str | Sequence[str] = "",
                  langs: str | Sequence[str] | None = None, lenient: bool = False,
                  num_images: int = 600, split: str = "train") -> CaptionCorpus:
  """A caption corpus named the way configs name it (config.data for training, config.evals.<name>
  for evaluation):
    synthetic_scenes  the generated world of synthetic_scenes.py (`num_images`, `split` train / test:
                      disjoint scene compositions), cached; `data_dir` overrides where it lives
    xtd10             captions in DATA_DIR/xtd10, COCO train2014 images in `image_dir`
    multi30k          DATA_DIR/multi30k/task1, Multi30K split `split` ("train" -> train,
                      "test" -> test_2016_flickr), Flickr30k images in `image_dir`
    xm3600            `data_dir` holds captions.jsonl; images in `image_dir` (default data_dir/images)
    caption_jsonl     `files` (comma-separated) of {"image", "lang", "caption"} lines; images in
                      `image_dir`
  DATA_DIR is $HBT_DATA_DIR or ../shared/data. An empty `image_dir` reads captions only (no image
  file checks), which is enough for caption-to-caption work but not for training or image retrieval."""
  from hbt_jax.data.lareqa import default_data_dir
  if isinstance(langs, str):
    langs = [l for l in langs.split(",") if l]
  if source == "synthetic_scenes":
    from hbt_jax.data import synthetic_scenes
    root = synthetic_scenes.cached_world(num_images, split, data_dir or None)
    corpus = read_caption_jsonl([root / "captions.jsonl"], root / "images", lenient)
    return corpus.select_langs(list(langs)) if langs else corpus
  if source == "xtd10":
    return read_xtd10(data_dir or Path(default_data_dir()) / "xtd10", image_dir or None, langs, lenient)
  if source == "multi30k":
    name = {"train": "train", "test": "test_2016_flickr"}.get(split, split)
    return read_multi30k(data_dir or Path(default_data_dir()) / "multi30k" / "task1", name,
                         image_dir or None, langs, lenient)
  if source == "xm3600":
    if not data_dir:
      raise DataError("xm3600: set data_dir to the folder with the released captions.jsonl")
    return read_xm3600(Path(data_dir) / "captions.jsonl", image_dir or Path(data_dir) / "images",
                       langs, lenient)
  if source == "caption_jsonl":
    paths = [f for f in (files.split(",") if isinstance(files, str) else files) if f]
    if not paths:
      raise DataError("caption_jsonl: give the caption files (config.data.files)")
    corpus = read_caption_jsonl(paths, image_dir or None, lenient)
    return corpus.select_langs(list(langs)) if langs else corpus
  raise DataError(f"caption source {source!r}; known: synthetic_scenes, xtd10, multi30k, xm3600, "
                  "caption_jsonl")
