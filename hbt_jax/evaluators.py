"""Evaluators built from `config.evals.<name>`: each encodes with the current params, scores with the
search kernels, and writes results.json / report.md / figures into the workdir.

  type="lareqa"  XQuAD-R / MLQA-R: mono, cross, multi mAP, recall@k, MRR, nDCG@10, rank distance.
  type="beir"    any corpus.jsonl + queries.jsonl + qrels/<split>.tsv (BEIR / MIRACL layout):
                 nDCG@10, Recall@100, MRR, mAP.
  type="image_text"  XTD10 / XM3600 / Multi30K / caption JSONL / synthetic scenes: t2i and i2t R@k
                 and mAP@100 per language, multilingual pool + language bias, caption->caption.
`every` > 0 runs it every that many steps during training; every evaluator runs at the end.
"""
from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path

import jax
import numpy as np

from hbt_jax import sharding
from hbt_jax.data.corpus import DataError
from hbt_jax.data.text_io import read_lines
from hbt_jax.evaluation import encode, lareqa_eval, metrics, report, search
from hbt_jax.errors import ConfigError


def _ints(spec) -> tuple[int, ...]:
  return tuple(int(x) for x in str(spec).split(",") if str(x).strip())


def _save_embeddings(evaluator, step: int, **arrays) -> None:
  """With config.evals.NAME.save_embeddings: WORKDIR/NAME_embeddings.npz holds the embeddings the
  evaluation ranks (the last evaluation's), for analysis and for comparing runs."""
  if evaluator.ecfg.get("save_embeddings") and jax.process_index() == 0:
    np.savez(Path(evaluator.workdir) / f"{evaluator.name}_embeddings.npz", step=step, **arrays)


class LareqaEvaluator:
  def __init__(self, name, ecfg, cfg, bundle, mesh, workdir):
    self.name, self.ecfg, self.cfg, self.workdir = name, ecfg, cfg, workdir
    self.every = int(ecfg.every)
    self.embedder = encode.Embedder.of(bundle, mesh, ecfg.batch_size)
    self.mesh = mesh
    self.recall_ks = _ints(ecfg.recall_at)
    self._ds = None

  @property
  def dataset(self):
    if self._ds is None:
      from hbt_jax.data import lareqa
      langs = [l for l in self.ecfg.langs.split(",") if l] if self.ecfg.langs else None
      ds = lareqa.read_lareqa(self.ecfg.dataset, self.ecfg.data_dir or self.cfg.data.data_dir or None,
                              langs)
      self._ds = ds.subset(self.ecfg.max_questions)
    return self._ds

  def run(self, params, step: int) -> dict[str, float]:
    ds, m = self.dataset, self.cfg.model
    t0 = time.time()
    q = self.embedder.encode(params, [x.text for x in ds.questions], self.ecfg.max_query_len, "query",
                             prefix=m.query_prefix, desc=f"{self.name} questions")
    ctx = [c.context for c in ds.candidates] if self.ecfg.candidate_context else None
    c = self.embedder.encode(params, [x.sentence for x in ds.candidates], self.ecfg.max_candidate_len,
                             "passage", pairs=ctx, prefix=m.passage_prefix,
                             desc=f"{self.name} candidates")
    t1 = time.time()
    _save_embeddings(self, step, questions=q, candidates=c)
    res, tables = lareqa_eval.evaluate(ds, q, c, self.mesh, self.recall_ks)
    t2 = time.time()
    timing = {"encode": t1 - t0, "search+metrics": t2 - t1}
    out = {f"{self.name}/{k}": v for k, v in res.items() if k != "search_seconds"}
    out[f"{self.name}/seconds/encode"] = timing["encode"]
    out[f"{self.name}/seconds/search_metrics"] = timing["search+metrics"]
    if jax.process_index() == 0:
      report.write_lareqa(self.workdir, self.name, out, tables, self.recall_ks, step, timing)
    logging.info("%s step %d: mono %.4f cross %.4f multi %.4f rank distance %.1f (%s)", self.name,
                 step, out[f"{self.name}/mono/map"], out.get(f"{self.name}/cross/map", float("nan")),
                 out[f"{self.name}/multi/map"], out[f"{self.name}/multi/rank_distance"], timing)
    return out


def read_beir(root: str, split: str = "test"):
  """(doc ids, doc texts, query ids, query texts, qrels {qid: {docid: grade}}) of a BEIR folder."""
  root = Path(root)

  def jsonl(path):
    rows = []
    for n, line in enumerate(read_lines(path), 1):
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError as e:
        raise DataError(f"{path}:{n}: invalid JSON ({e.msg})") from None
    return rows

  docs = jsonl(root / "corpus.jsonl")
  queries = jsonl(root / "queries.jsonl")
  qrels: dict[str, dict[str, int]] = {}
  path = root / "qrels" / f"{split}.tsv"
  with open(path, encoding="utf-8") as f:
    for n, row in enumerate(csv.reader(f, delimiter="\t"), 1):
      if n == 1 and not row[-1].lstrip("-").isdigit():
        continue  # header
      if len(row) != 3:
        raise DataError(f"{path}:{n}: expected 'query-id<TAB>corpus-id<TAB>score'")
      qrels.setdefault(row[0], {})[row[1]] = int(row[2])
  doc_ids = [d["_id"] for d in docs]
  doc_text = [((d.get("title") or "") + " " + d["text"]).strip() for d in docs]
  qs = [q for q in queries if q["_id"] in qrels]
  return doc_ids, doc_text, [q["_id"] for q in qs], [q["text"] for q in qs], qrels


class BeirEvaluator:
  def __init__(self, name, ecfg, cfg, bundle, mesh, workdir):
    self.name, self.ecfg, self.cfg, self.workdir, self.mesh = name, ecfg, cfg, workdir, mesh
    self.every = int(ecfg.every)
    self.embedder = encode.Embedder.of(bundle, mesh, ecfg.batch_size)

  def run(self, params, step: int) -> dict[str, float]:
    m = self.cfg.model
    doc_ids, docs, qids, qtexts, qrels = read_beir(self.ecfg.path, self.ecfg.split)
    pos = {d: i for i, d in enumerate(doc_ids)}
    q = self.embedder.encode(params, qtexts, self.ecfg.max_query_len, "query", prefix=m.query_prefix)
    c = self.embedder.encode(params, docs, self.ecfg.max_candidate_len, "passage",
                             prefix=m.passage_prefix)
    width = max(sum(1 for g in qrels[i].values() if g > 0) for i in qids)
    rel = np.full((len(qids), width), -1, np.int64)
    gains = np.zeros((len(qids), width))
    for r, qid in enumerate(qids):
      judged = [(pos[d], g) for d, g in qrels[qid].items() if g > 0 and d in pos]
      for j, (d, g) in enumerate(judged):
        rel[r, j], gains[r, j] = d, g
    ranks = search.relevant_ranks(q, c, rel, mesh=self.mesh)
    out = {f"{self.name}/ndcg@10": float(metrics.ndcg_at(ranks, 10, gains).mean()),
           f"{self.name}/recall@100": float(metrics.recall_at(ranks, 100).mean()),
           f"{self.name}/mrr": float(metrics.reciprocal_rank(ranks).mean()),
           f"{self.name}/map": float(metrics.average_precision(ranks).mean())}
    logging.info("%s step %d: %s", self.name, step, out)
    return out


class ImageTextEvaluator:
  """Multilingual image–text retrieval (image_text_eval.py): images through the locked tower's cached
  features projected by the current params (LiT), or through the trainable tower in the params;
  captions through the text tower."""

  def __init__(self, name, ecfg, cfg, bundle, mesh, workdir):
    if bundle.image_tower is None:
      raise ConfigError(f"config.evals.{name}: type='image_text' needs config.task='image_text'")
    self.name, self.ecfg, self.cfg, self.workdir, self.mesh = name, ecfg, cfg, workdir, mesh
    self.every = int(ecfg.every)
    self.tower = bundle.image_tower
    self.embedder = encode.Embedder.of(bundle, mesh, ecfg.batch_size)
    self.ks = _ints(ecfg.recall_at)
    self.trainable = bundle.module.image_tower is not None
    self._project = jax.jit(encode._named(
        "project_image_features",
        lambda p, f: bundle.module.apply({"params": p}, f, method="encode_image_features")),
        out_shardings=sharding.replicated(mesh))
    self._images = encode.ImageEmbedder(bundle.module, bundle.image_consts, mesh,
                                        cfg.image.batch_size) if self.trainable else None
    self._data = None

  @property
  def data(self):
    """(corpus, image features, (caption texts, image rows, language indices)), read and computed
    once."""
    if self._data is None:
      from hbt_jax import image_features
      from hbt_jax.data import captions
      e = self.ecfg
      corpus = captions.read_captions(e.dataset, e.data_dir, e.image_dir, e.files, e.langs or None,
                                      False, e.num_images, e.split).take(e.max_images)
      paths = [corpus.image(r) for r in range(corpus.num_ids)]
      if not all(paths):
        raise DataError(f"config.evals.{self.name}.image_dir: {e.dataset} images are needed "
                        "(give the folder that holds them)")
      # A trainable tower changes with the params: its images are encoded at every evaluation.
      feats = paths if self.trainable else image_features.features(
          self.tower, paths, self.cfg.image.cache_dir, self.cfg.image.batch_size)
      self._data = corpus, feats, corpus.flat_captions()
    return self._data

  def run(self, params, step: int) -> dict[str, float]:
    from hbt_jax.evaluation import image_text_eval
    corpus, feats, (texts, cap_image, cap_lang) = self.data
    t0 = time.time()
    if self.trainable:
      img = self._images.encode(params, feats, self.tower.preprocess, f"{self.name} images")
    else:
      rep = sharding.replicated(self.mesh)
      img = np.asarray(self._project(params, jax.make_array_from_callback(feats.shape, rep,
                                                                          lambda i: feats[i])))
    cap = self.embedder.encode(params, texts, self.ecfg.max_caption_len, "query",
                               prefix=self.cfg.model.query_prefix, desc=f"{self.name} captions")
    t1 = time.time()
    _save_embeddings(self, step, images=img, captions=cap, caption_image=cap_image,
                     caption_lang=cap_lang, langs=np.array(corpus.langs))
    res = image_text_eval.evaluate(img, cap, cap_image, cap_lang, corpus.langs,
                                   self.mesh, self.ks)
    timing = {"encode": t1 - t0, "search+metrics": time.time() - t1}
    if jax.process_index() == 0:
      report.write_image_text(self.workdir, self.name, res, corpus.langs, self.ks, step, timing)
    out = {f"{self.name}/{k}": v for k, v in res.items()}
    out[f"{self.name}/seconds/encode"] = timing["encode"]
    logging.info("%s step %d: t2i R@1 %.4f i2t R@1 %.4f mean recall %.4f bias %.1f (%s)", self.name,
                 step, res["t2i/r@1"], res["i2t/r@1"], res["mean_recall"],
                 res["multi/language_bias"], timing)
    return out


_TYPES = {"lareqa": LareqaEvaluator, "beir": BeirEvaluator, "image_text": ImageTextEvaluator}


def _check_lengths(name, ecfg, bundle):
  limit = bundle.enc_cfg.max_position - (bundle.enc_cfg.pad_token_id + 1
                                         if bundle.enc_cfg.arch == "xlm-roberta" else 0)
  for key in ("max_query_len", "max_candidate_len", "max_caption_len"):
    if key in ecfg and ecfg[key] > limit:
      raise ConfigError(f"config.evals.{name}.{key}={ecfg[key]} exceeds the model's {limit} positions")


def from_config(cfg, bundle, mesh, workdir) -> list:
  evals = []
  for name, ecfg in cfg.evals.items():
    if ecfg.type not in _TYPES:
      raise ConfigError(f"config.evals.{name}.type={ecfg.type!r}; known: {sorted(_TYPES)}")
    _check_lengths(name, ecfg, bundle)
    evals.append(_TYPES[ecfg.type](name, ecfg, cfg, bundle, mesh, workdir))
  return evals


def run_due(evals, params, step: int) -> dict[str, float]:
  out = {}
  for e in evals:
    if e.every > 0 and step % e.every == 0:
      out.update(e.run(params, step))
  if out and jax.process_index() == 0:
    report.write_results(evals[0].workdir, out, step)
  return out


def run_all(evals, params, step: int) -> dict[str, float]:
  out = {}
  for e in evals:
    out.update(e.run(params, step))
  if out and jax.process_index() == 0:
    report.write_results(evals[0].workdir, out, step)
  return out
