"""The synthetic image–caption world: distinct scenes and captions, rendering, files, determinism."""
import hashlib

import numpy as np

from hbt_jax import languages
from hbt_jax.data import captions, synthetic_scenes as ss


def test_every_language_gives_distinct_captions_for_distinct_scenes():
  scenes = ss.all_scenes()
  assert len(scenes) == len(set(scenes)) == 3 * (72 + 4 * 4 * (18 * 17 // 2))  # bg x (one / two groups)
  for lang in ss.LANGS:
    caps = [ss.caption(s, lang) for s in scenes]
    assert len(set(caps)) == len(scenes), lang
  fams = {languages.get(l).family for l in ss.LANGS}
  scripts = {languages.get(l).script for l in ss.LANGS}
  assert len(ss.LANGS) >= 8 and len(fams) >= 3 and {"Latin", "Cyrillic", "Han"} <= scripts
  s = ss.Scene("white", (ss.Group(2, "red", "circle"), ss.Group(1, "blue", "triangle")))
  assert ss.caption(s, "en") == "two red circles and one blue triangle on a white background"
  assert ss.caption(s, "de") == "Zwei rote Kreise und ein blaues Dreieck auf weißem Hintergrund"
  assert ss.caption(s, "ru") == "Два красных круга и один синий треугольник на белом фоне"
  assert ss.caption(s, "zh") == "白色背景上有两个红色的圆形和一个蓝色的三角形"


def test_rendered_scene_shows_its_colours():
  s = ss.Scene("grey", (ss.Group(3, "yellow", "square"), ss.Group(1, "purple", "circle")))
  img = ss.render(s, 128, np.random.default_rng(0))
  px = img.reshape(-1, 3).astype(int)
  share = lambda rgb: (np.abs(px - rgb).sum(1) < 10).mean()
  assert share(ss.BACKGROUNDS["grey"]) > 0.6
  assert share(ss.COLOURS["yellow"]) > 3 * share(ss.COLOURS["purple"]) > 0  # 3 squares vs 1 circle
  assert share(ss.COLOURS["red"]) == 0


def test_world_files_are_deterministic_and_low_resource_is_partial(tmp_path):
  p1 = ss.write_world(tmp_path / "a", num_images=40, seed=3)
  p2 = ss.write_world(tmp_path / "b", num_images=40, seed=3)
  assert p1.read_bytes() == p2.read_bytes()
  digest = lambda d: hashlib.sha256(b"".join(f.read_bytes() for f in sorted(d.glob("*.png")))).digest()
  assert digest(tmp_path / "a" / "images") == digest(tmp_path / "b" / "images")
  corpus = captions.read_caption_jsonl([p1], tmp_path / "a" / "images")
  assert corpus.num_ids == 40 and sorted(corpus.langs) == sorted(ss.LANGS)
  counts = corpus.counts()
  assert counts["en"] == 40 and counts["hi"] == counts["tr"] == 6  # 15 % of 40
  hi = corpus.available[:, corpus.lang_index("hi")]
  assert (hi <= corpus.available[:, corpus.lang_index("tr")]).all()  # the same nested choice
