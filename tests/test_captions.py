"""Caption corpora: XTD10 and Multi30K from ../shared/data, XM3600 and JSONL from files made here;
errors name the file and line, lenient mode counts its skips."""
import json
import shutil
from pathlib import Path

import pytest

from hbt_jax.data import captions
from hbt_jax.data.corpus import DataError


@pytest.fixture(scope="module")
def xtd10_dir(data_dir):
  d = Path(data_dir) / "xtd10"
  if not d.exists():
    pytest.skip("XTD10 captions not found")
  return d


def test_xtd10_captions(xtd10_dir):
  c = captions.read_xtd10(xtd10_dir)
  assert isinstance(c, captions.CaptionCorpus)
  assert c.num_ids == 1000 and c.langs == sorted("de en es fr it ja ko pl ru tr zh".split())
  assert c.available.all()  # every image has a caption in every language (CRLF, no final newline)
  names = (xtd10_dir / captions.XTD10_IMAGES).read_text().split()
  assert c.ids == names
  first_ko = (xtd10_dir / "XTD10/test_1kcaptions_ko.txt").read_bytes().decode().split("\r\n")[0]
  assert c.cell(0, c.lang_index("ko")).captions == (first_ko.strip(),)
  last_zh = (xtd10_dir / "XTD10/test_1kcaptions_zh.txt").read_bytes().decode().split("\r\n")[-1]
  assert c.cell(999, c.lang_index("zh")).captions == (last_zh.strip(),) and "\r" not in last_zh
  assert c.cell(5, c.lang_index("de")).source.endswith("test_1kcaptions_de.txt:6")
  assert captions.read_xtd10(xtd10_dir, langs=["jp", "en"]).langs == ["en", "ja"]
  # Nested subsets keep the caption corpus type.
  small = c.fraction(0.1, seed=0)
  assert isinstance(small, captions.CaptionCorpus) and set(small.ids) < set(c.fraction(0.2).ids)


def test_xtd10_image_folder_missing_images(xtd10_dir, tmp_path):
  names = (xtd10_dir / captions.XTD10_IMAGES).read_text().split()
  for n in names[:3] + names[4:10]:
    (tmp_path / n).write_bytes(b"")
  with pytest.raises(DataError, match=rf"test_image_names.txt:4: image .*{names[3]} does not exist"):
    captions.read_xtd10(xtd10_dir, tmp_path, langs=["en"])
  c = captions.read_xtd10(xtd10_dir, tmp_path, langs=["en", "de"], lenient=True)
  assert c.num_ids == 9 and c.image(0) == str(tmp_path / names[0])
  assert c.num_captions() == {"de": 9, "en": 9}


def test_xtd10_length_mismatch_and_unknown_language(xtd10_dir, tmp_path):
  root = tmp_path / "xtd10"
  shutil.copytree(xtd10_dir, root)
  p = root / "XTD10/test_1kcaptions_es.txt"
  p.write_bytes(b"\r\n".join(p.read_bytes().split(b"\r\n")[:-2]))
  with pytest.raises(DataError, match=r"test_1kcaptions_es.txt: 998 captions for the 1000 images"):
    captions.read_xtd10(root, langs=["es"])
  with pytest.raises(DataError, match=r"\['xx'\]"):
    captions.read_xtd10(root, langs=["xx"])


def test_multi30k_captions(data_dir):
  root = Path(data_dir) / "multi30k" / "task1"
  if not root.exists():
    pytest.skip("Multi30K not found")
  c = captions.read_multi30k(root, "val")
  assert c.num_ids == 1014 and c.langs == ["cs", "de", "en", "fr"] and c.available.all()
  assert c.cell(0, c.lang_index("de")).captions == (
      "Eine Gruppe von Männern lädt Baumwolle auf einen Lastwagen",)
  assert c.ids[0] == "1018148011.jpg"
  assert captions.read_multi30k(root, "test_2017_mscoco").langs == ["de", "en", "fr"]
  with pytest.raises(DataError, match="test_2099"):
    captions.read_multi30k(root, "test_2099")


def _xm3600(tmp_path, lines):
  p = tmp_path / "captions.jsonl"
  p.write_text("\n".join(json.dumps(x) if not isinstance(x, str) else x for x in lines) + "\n",
               encoding="utf-8")
  return p


def test_xm3600_reader_and_errors(tmp_path):
  img = tmp_path / "images"
  img.mkdir()
  for k in ("a1", "b2"):
    (img / f"{k}.jpg").write_bytes(b"")
  ok = [{"image/key": "a1", "en": {"caption": ["a dog", "a brown dog"]}, "quz": {"caption": ["allqu"]}},
        {"image/key": "b2", "en": {"caption": ["a cat"]}, "de": {"caption": ["eine Katze"]}}]
  c = captions.read_xm3600(_xm3600(tmp_path, ok), img)
  assert c.langs == ["de", "en", "quz"] and c.ids == ["a1", "b2"]
  assert c.cell(0, c.lang_index("en")).captions == ("a dog", "a brown dog")
  assert not c.available[0, c.lang_index("de")] and c.image(1) == str(img / "b2.jpg")
  assert captions.read_xm3600(_xm3600(tmp_path, ok), img, langs=["de"]).langs == ["de"]
  bad = {"missing": ok + [{"image/key": "c3", "en": {"caption": ["x"]}}],
         "json": ok + ["{not json"],
         "lang": ok[:1] + [{"image/key": "b2", "xx": {"caption": ["?"]}}],
         "empty": ok[:1] + [{"image/key": "b2", "en": {"caption": ["  "]}}]}
  msgs = {"missing": r"captions.jsonl:3: image .*c3.jpg does not exist",
          "json": r"captions.jsonl:3: invalid JSON", "lang": r"captions.jsonl:2: unknown language 'xx'",
          "empty": r"captions.jsonl:2: empty caption"}
  for name, lines in bad.items():
    with pytest.raises(DataError, match=msgs[name]):
      captions.read_xm3600(_xm3600(tmp_path, lines), img)
  lenient = captions.read_xm3600(_xm3600(tmp_path, bad["missing"]), img, lenient=True)
  assert lenient.ids == ["a1", "b2"]


def test_caption_jsonl(tmp_path):
  (tmp_path / "x.png").write_bytes(b"")
  f = tmp_path / "caps.jsonl"
  rows = [{"image": "x.png", "lang": "en", "caption": "a red square"},
          {"image": "x.png", "lang": "en", "caption": "red square on grey"},
          {"image": "x.png", "lang": "sw", "caption": "mraba mwekundu"},
          {"image": "y.png", "lang": "en", "caption": "missing"}]
  f.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
  with pytest.raises(DataError, match=r"caps.jsonl:4: image .*y.png does not exist"):
    captions.read_caption_jsonl([f], tmp_path)
  c = captions.read_caption_jsonl([f], tmp_path, lenient=True)
  assert c.num_captions() == {"en": 2, "sw": 1}
  f.write_text(json.dumps({"image": "x.png", "lang": "en"}), encoding="utf-8")
  with pytest.raises(DataError, match="caps.jsonl:1: expected"):
    captions.read_caption_jsonl([f], tmp_path)
