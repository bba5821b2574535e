"""The TFDS caption builders prepare offline from a manual dir and give the readers' captions."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hbt_jax.data import captions


@pytest.mark.slow
def test_xtd10_builder_equals_the_reader(data_dir, tmp_path):
  from hbt_jax.data import tfds_captions
  manual = tmp_path / "xtd10"
  shutil.copytree(Path(data_dir) / "xtd10", manual)
  (manual / "images").mkdir()
  names = (manual / captions.XTD10_IMAGES).read_text().split()
  for i, n in enumerate(names):  # stand-ins for the COCO files, one colour each
    Image.new("RGB", (12, 8), (i % 256, (i // 256) * 40, 7)).save(manual / "images" / n, quality=95)
  corpus, pixels = tfds_captions.load("xtd10", str(manual), data_dir=str(tmp_path / "tfds"))
  ref = captions.read_xtd10(manual)
  assert corpus.langs == ref.langs and sorted(corpus.ids) == sorted(ref.ids)
  row = {i: r for r, i in enumerate(ref.ids)}
  for r, image_id in enumerate(corpus.ids[:50]):
    for j in range(len(ref.langs)):
      assert corpus.cell(r, j).captions == ref.cell(row[image_id], j).captions
  assert pixels[names[300]].shape == (8, 12, 3) and abs(int(pixels[names[300]][0, 0, 0]) - 300 % 256) <= 3


@pytest.mark.slow
def test_xm3600_builder_from_captions_jsonl(tmp_path):
  from hbt_jax.data import tfds_captions
  manual = tmp_path / "xm"
  (manual / "images").mkdir(parents=True)
  recs = []
  for k in ("aa01", "bb02", "cc03"):
    Image.new("L", (10, 10), 99).save(manual / "images" / f"{k}.jpg")  # grayscale: converted
    recs.append({"image/key": k, "en": {"caption": [f"photo {k}", f"picture {k}"]},
                 "sw": {"caption": [f"picha {k}"]}})
  (manual / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
  corpus, pixels = tfds_captions.load("xm3600", str(manual), data_dir=str(tmp_path / "tfds"))
  assert corpus.ids == ["aa01", "bb02", "cc03"] and corpus.langs == ["en", "sw"]
  assert corpus.cell(1, 0).captions == ("photo bb02", "picture bb02")
  assert pixels["cc03"].shape == (10, 10, 3) and np.abs(pixels["cc03"].astype(int) - 99).max() <= 2
