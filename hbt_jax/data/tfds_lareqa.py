"""TFDS builder for LAReQA (configs `xquad_r`, `mlqa_r`).

Online it downloads the json files from the LAReQA repository; offline it reads them from the manual
dir (`download_config=tfds.download.DownloadConfig(manual_dir=DIR)` with DIR holding
`xquad-r/*.json` / `mlqa-r/*.json`), by default `$HBT_DATA_DIR/lareqa`. Two splits:
  questions   id, lang, question, answer (global candidate index)
  candidates  index, lang, sentence, context
`load(name)` turns a prepared dataset back into the ParallelRetrievalSet the evaluators use.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
try:
  import tensorflow_datasets as tfds
except ImportError as e:  # the lean install has no TensorFlow
  raise ImportError(f"hbt_jax.data.tfds_lareqa (TFDS builders) needs TensorFlow and tensorflow-datasets: "
                    f"pip install -r requirements-tf.txt ({e})") from None

from hbt_jax.data import lareqa


class LareqaConfig(tfds.core.BuilderConfig):
  pass


class Lareqa(tfds.core.GeneratorBasedBuilder):
  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [LareqaConfig(name="xquad_r", description="XQuAD-R, 11 languages"),
                     LareqaConfig(name="mlqa_r", description="MLQA-R, 7 languages")]
  MANUAL_DOWNLOAD_INSTRUCTIONS = ("Offline: a folder with xquad-r/{lang}.json and mlqa-r/{lang}.json "
                                  "from https://github.com/google-research-datasets/lareqa")

  def _info(self):
    f = tfds.features
    return tfds.core.DatasetInfo(
        builder=self, description="LAReQA: language-agnostic answer retrieval (Roy et al. 2020)",
        features=f.FeaturesDict({
            "id": f.Text(), "lang": f.Text(), "question": f.Text(), "answer": f.Scalar(np.int64),
            "index": f.Scalar(np.int64), "sentence": f.Text(), "context": f.Text()}),
        homepage="https://github.com/google-research-datasets/lareqa")

  def _files(self, dl_manager) -> dict[str, Path]:
    name = self.builder_config.name
    sub = lareqa._DIRNAMES[name]
    langs = lareqa.LAREQA_LANGS[name]
    manual = None
    try:
      manual = Path(dl_manager.manual_dir) / sub
    except (AssertionError, AttributeError, tfds.core.utils.NonMatchingChecksumError):
      manual = None
    if manual is None or not (manual / f"{langs[0]}.json").exists():
      local = Path(lareqa.default_data_dir()) / "lareqa" / sub
      manual = local if (local / f"{langs[0]}.json").exists() else None
    if manual is not None:
      return {l: manual / f"{l}.json" for l in langs}
    urls = {l: lareqa.DOWNLOAD_URL.format(dir=sub, lang=l) for l in langs}
    return {l: Path(p) for l, p in dl_manager.download(urls).items()}

  def _split_generators(self, dl_manager):
    ds = lareqa.read_files(self.builder_config.name, self._files(dl_manager))
    return {"questions": self._generate_examples(ds, "questions"),
            "candidates": self._generate_examples(ds, "candidates")}

  def _generate_examples(self, ds, split):
    if split == "questions":
      for i, q in enumerate(ds.questions):
        yield f"q{i}", {"id": q.qid, "lang": q.lang, "question": q.text, "answer": q.cand,
                        "index": i, "sentence": "", "context": ""}
      return
    for i, c in enumerate(ds.candidates):
      yield f"c{i}", {"id": "", "lang": c.lang, "question": "", "answer": -1, "index": i,
                      "sentence": c.sentence, "context": c.context}


def load(name: str, data_dir: str | None = None, manual_dir: str | None = None
         ) -> lareqa.ParallelRetrievalSet:
  builder = Lareqa(config=name, data_dir=data_dir)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=manual_dir or str(Path(lareqa.default_data_dir()) / "lareqa")))

  def rows(split):
    out = [{k: (v.decode() if isinstance(v, bytes) else int(v)) for k, v in ex.items()}
           for ex in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False))]
    return sorted(out, key=lambda r: r["index"])

  cands = [lareqa.Candidate(r["lang"], r["sentence"], r["context"], f"tfds:{name}:c{r['index']}")
           for r in rows("candidates")]
  questions = [lareqa.Question(r["id"], r["lang"], r["question"], r["answer"])
               for r in rows("questions")]
  return lareqa.ParallelRetrievalSet(name, lareqa.LAREQA_LANGS[name], questions, cands)
