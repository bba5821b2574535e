"""TFDS builders for multilingual image–caption test sets: `xtd10` and `xm3600` (one `test` split;
one example per image with all its captions).

Both need a manual dir (`download_config=tfds.download.DownloadConfig(manual_dir=DIR)`):
  xtd10   DIR holds the XTD10 caption folders (XTD10/, MIC/, STAIR/ as released) and images/ with the
          1000 COCO train2014 files named in XTD10/test_image_names.txt.
  xm3600  DIR holds the released captions.jsonl and images/<key>.jpg.
The captions are read by hbt_jax/data/captions.py (the same checks and file:line errors); images are
stored as they are (re-encoded only if Pillow has to convert their mode).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
try:
  import tensorflow_datasets as tfds
except ImportError as e:  # the lean install has no TensorFlow
  raise ImportError(f"hbt_jax.data.tfds_captions (TFDS builders) needs TensorFlow and tensorflow-datasets: "
                    f"pip install -r requirements-tf.txt ({e})") from None

from hbt_jax.data import captions, images


class CaptionsConfig(tfds.core.BuilderConfig):
  pass


class MultilingualCaptions(tfds.core.GeneratorBasedBuilder):
  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [CaptionsConfig(name="xtd10", description="XTD10: 1000 COCO images, 11 languages"),
                     CaptionsConfig(name="xm3600", description="Crossmodal-3600: 3600 images, 36 languages")]
  MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__

  def _info(self):
    f = tfds.features
    return tfds.core.DatasetInfo(
        builder=self, description="Multilingual image captions for retrieval evaluation",
        features=f.FeaturesDict({
            "image/id": f.Text(), "image": f.Image(shape=(None, None, 3)),
            "captions": f.Sequence({"lang": f.Text(), "text": f.Text()})}))

  def _corpus(self, dl_manager) -> captions.CaptionCorpus:
    manual = Path(dl_manager.manual_dir)
    if self.builder_config.name == "xtd10":
      return captions.read_xtd10(manual, manual / "images")
    return captions.read_xm3600(manual / "captions.jsonl", manual / "images")

  def _split_generators(self, dl_manager):
    return {"test": self._generate_examples(self._corpus(dl_manager))}

  def _generate_examples(self, corpus: captions.CaptionCorpus):
    for row, image_id in enumerate(corpus.ids):
      caps = [{"lang": lang, "text": text} for j, lang in enumerate(corpus.langs)
              if (cell := corpus.cell(row, j)) is not None for text in cell.captions]
      yield image_id, {"image/id": image_id, "image": images.decode_rgb(corpus.image(row)),
                       "captions": caps}


def load(name: str, manual_dir: str, data_dir: str | None = None):
  """(CaptionCorpus whose image fields are 'tfds:NAME:ID', {image id: uint8 [H, W, 3]})."""
  builder = MultilingualCaptions(config=name, data_dir=data_dir)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  rows = {}
  pixels = {}
  for ex in tfds.as_numpy(builder.as_dataset(split="test", shuffle_files=False)):
    image_id = ex["image/id"].decode()
    pixels[image_id] = ex["image"]
    caps = ex["captions"]
    rows[image_id] = [(l.decode(), t.decode()) for l, t in zip(caps["lang"], caps["text"])]
  langs = sorted({l for caps in rows.values() for l, _ in caps})
  ids = sorted(rows)
  cells = np.empty((len(ids), len(langs)), dtype=object)
  for r, i in enumerate(ids):
    for j, lang in enumerate(langs):
      texts = tuple(t for l, t in rows[i] if l == lang)
      cells[r, j] = captions.CaptionCell(f"tfds:{name}:{i}", texts, f"tfds:{name}:{i}") if texts else None
  return captions.CaptionCorpus(ids, langs, cells), pixels
