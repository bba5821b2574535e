"""LAReQA readers (XQuAD-R, MLQA-R): SQuAD json with `sentences` and `sentence_breaks` per paragraph.

The protocol (Roy et al. 2020): every sentence of every paragraph is a candidate, encoded with its
paragraph as context; the answer of a question is the sentence that holds `answer_start`; the same
question id in another language is a parallel question whose answer sentence is relevant too.
Answer rule: the last sentence whose start offset is <= answer_start (so an answer that starts in the
whitespace between two sentences belongs to the earlier one).
"""
from __future__ import annotations

import bisect
import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from hbt_jax.data.corpus import Cell, CorpusBuilder, DataError, ParallelCorpus
from hbt_jax.data.text_io import read_text

LAREQA_LANGS = {
    "xquad_r": ["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"],
    "mlqa_r": ["ar", "de", "en", "es", "hi", "vi", "zh"],
}
_DIRNAMES = {"xquad_r": "xquad-r", "mlqa_r": "mlqa-r"}
DOWNLOAD_URL = "https://github.com/google-research-datasets/lareqa/raw/master/{dir}/{lang}.json"


def default_data_dir() -> str:
  """`HBT_DATA_DIR` (a folder holding `lareqa/`), else `../shared/data` next to the checkout."""
  env = os.environ.get("HBT_DATA_DIR")
  if env:
    return env
  return str(Path(__file__).resolve().parents[3] / "shared" / "data")


def dataset_dir(name: str, data_dir: str | None = None) -> Path:
  if name not in LAREQA_LANGS:
    raise DataError(f"unknown LAReQA dataset {name!r}; known: {sorted(LAREQA_LANGS)}")
  return Path(data_dir or default_data_dir()) / "lareqa" / _DIRNAMES[name]


@dataclasses.dataclass(frozen=True)
class Question:
  qid: str
  lang: str
  text: str
  cand: int  # index of the answer sentence in the candidate list


@dataclasses.dataclass(frozen=True)
class Candidate:
  lang: str
  sentence: str
  context: str
  source: str


def _load_json(path: Path) -> dict:
  text = read_text(path)
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg}, column {e.colno})") from None


def _expect(cond: bool, where: str, what: str) -> None:
  if not cond:
    raise DataError(f"{where}: {what}")


def parse_file(path: Path, lang: str, cand_offset: int = 0
               ) -> tuple[list[Question], list[Candidate]]:
  """One language file: its questions and candidates (candidate indices start at cand_offset)."""
  doc = _load_json(path)
  _expect(isinstance(doc, dict) and isinstance(doc.get("data"), list), str(path),
          "expected an object with a 'data' list (SQuAD format)")
  questions, cands = [], []
  for a, article in enumerate(doc["data"]):
    for p, para in enumerate(article.get("paragraphs", [])):
      where = f"{path}: data[{a}].paragraphs[{p}]"
      sents, breaks = para.get("sentences"), para.get("sentence_breaks")
      _expect(isinstance(sents, list) and isinstance(breaks, list) and len(sents) == len(breaks)
              and len(sents) > 0, where, "needs non-empty 'sentences' and 'sentence_breaks' of "
              "equal length (LAReQA format)")
      context = para.get("context", "")
      _expect(isinstance(context, str), where, "'context' must be a string")
      first = cand_offset + len(cands)
      for s, sent in enumerate(sents):
        _expect(isinstance(sent, str) and sent.strip() != "", f"{where}.sentences[{s}]",
                "empty or non-string sentence")
        cands.append(Candidate(lang, sent, context, f"{where}.sentences[{s}]"))
      starts = [int(b[0]) for b in breaks]
      for k, qa in enumerate(para.get("qas", [])):
        qwhere = f"{where}.qas[{k}]"
        _expect(isinstance(qa.get("id"), str) and isinstance(qa.get("question"), str)
                and qa["question"].strip() != "", qwhere, "needs string 'id' and non-empty 'question'")
        answers = qa.get("answers")
        _expect(isinstance(answers, list) and len(answers) >= 1, qwhere, "needs >= 1 answer")
        start = answers[0].get("answer_start")
        _expect(isinstance(start, int) and start >= starts[0], qwhere,
                f"answer_start {start!r} is not inside the paragraph's sentences")
        sent_idx = bisect.bisect_right(starts, start) - 1
        questions.append(Question(qa["id"], lang, qa["question"], first + sent_idx))
  return questions, cands


@dataclasses.dataclass
class ParallelRetrievalSet:
  """Questions and candidates of all languages of one parallel benchmark."""
  name: str
  langs: list[str]
  questions: list[Question]
  candidates: list[Candidate]

  def __post_init__(self):
    self.q_lang = np.array([self.langs.index(q.lang) for q in self.questions], np.int32)
    self.c_lang = np.array([self.langs.index(c.lang) for c in self.candidates], np.int32)
    groups = sorted({q.qid for q in self.questions})
    gidx = {g: i for i, g in enumerate(groups)}
    self.q_group = np.array([gidx[q.qid] for q in self.questions], np.int32)
    # answers[g, l] = candidate index of question g's answer in language l, or -1.
    self.answers = np.full((len(groups), len(self.langs)), -1, np.int64)
    for q, g, l in zip(self.questions, self.q_group, self.q_lang):
      self.answers[g, l] = q.cand

  def stats(self) -> dict[str, dict[str, int]]:
    return {l: {"questions": int((self.q_lang == i).sum()), "candidates": int((self.c_lang == i).sum())}
            for i, l in enumerate(self.langs)}

  def subset(self, max_questions_per_lang: int | None) -> "ParallelRetrievalSet":
    """Keeps the question groups of the first N questions of the first language, and their
    paragraphs' candidates in every language (so the set stays parallel); for quick runs."""
    if not max_questions_per_lang:
      return self
    keep_groups = set(self.q_group[:max_questions_per_lang].tolist())
    keep_q = [i for i, g in enumerate(self.q_group) if g in keep_groups]
    # Keep every candidate whose paragraph (context) holds a kept answer.
    keep_ctx = {(self.candidates[self.questions[i].cand].lang,
                 self.candidates[self.questions[i].cand].context) for i in keep_q}
    keep_c = [i for i, c in enumerate(self.candidates) if (c.lang, c.context) in keep_ctx]
    remap = {old: new for new, old in enumerate(keep_c)}
    qs = [dataclasses.replace(self.questions[i], cand=remap[self.questions[i].cand]) for i in keep_q]
    return ParallelRetrievalSet(self.name, self.langs, qs, [self.candidates[i] for i in keep_c])


def read_lareqa(name: str, data_dir: str | None = None, langs: list[str] | None = None
                ) -> ParallelRetrievalSet:
  langs = list(langs or LAREQA_LANGS[name])
  root = dataset_dir(name, data_dir)
  unknown = sorted(set(langs) - set(LAREQA_LANGS[name]))
  if unknown:
    raise DataError(f"{name}: unknown languages {unknown}; it has {LAREQA_LANGS[name]}")
  paths = {}
  for lang in langs:
    paths[lang] = root / f"{lang}.json"
    if not paths[lang].exists():
      raise DataError(f"{paths[lang]}: missing. Set HBT_DATA_DIR (or config data_dir) to a folder "
                      f"with lareqa/{_DIRNAMES[name]}/, or download "
                      f"{DOWNLOAD_URL.format(dir=_DIRNAMES[name], lang=lang)}")
  return read_files(name, paths)


def read_files(name: str, paths: dict[str, Path]) -> ParallelRetrievalSet:
  """One benchmark from {lang: json file} (used by the TFDS builder for downloaded files too)."""
  questions, cands = [], []
  for lang, path in paths.items():
    q, c = parse_file(Path(path), lang, cand_offset=len(cands))
    questions += q
    cands += c
  ds = ParallelRetrievalSet(name, list(paths), questions, cands)
  logging.info("%s: %s", name, ds.stats())
  return ds


def training_corpus(ds: ParallelRetrievalSet) -> ParallelCorpus:
  """LAReQA as parallel training data: question_x with its answer sentence (and paragraph) in x."""
  builder = CorpusBuilder()
  for q in ds.questions:
    c = ds.candidates[q.cand]
    builder.add(q.qid, q.lang, Cell(q.text, c.sentence, c.context, (), c.source))
  return builder.build()


def iter_raw_files(name: str, data_dir: str | None = None) -> Iterator[tuple[str, Path]]:
  root = dataset_dir(name, data_dir)
  for lang in LAREQA_LANGS[name]:
    yield lang, root / f"{lang}.json"
