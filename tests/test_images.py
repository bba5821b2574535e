"""Image decoding (every mode converted, bad files named), preprocessing, and the tf.data pipeline
(deterministic, host shards)."""
import numpy as np
import pytest
from PIL import Image

from hbt_jax.data import images
from hbt_jax.data.corpus import DataError


def _save(tmp_path, name, mode, size=(40, 30), color=None, **kw):
  im = Image.new(mode, size, color)
  path = tmp_path / name
  im.save(path, **kw)
  return path


def test_every_mode_decodes_to_rgb(tmp_path):
  red = (255, 0, 0)
  cases = {
      _save(tmp_path, "rgb.png", "RGB", color=red): red,
      _save(tmp_path, "gray.jpg", "L", color=128, quality=100): (128, 128, 128),
      _save(tmp_path, "cmyk.jpg", "CMYK", color=(0, 255, 255, 0), quality=100): red,
      _save(tmp_path, "rgba.png", "RGBA", color=(255, 0, 0, 0)): (255, 255, 255),  # transparent
      _save(tmp_path, "la.png", "LA", color=(0, 255)): (0, 0, 0),
  }
  pal = Image.new("P", (20, 10))
  pal.putpalette([0, 0, 255] + [0, 0, 0] * 255)
  pal.save(tmp_path / "pal.png")
  cases[tmp_path / "pal.png"] = (0, 0, 255)
  pal.save(tmp_path / "pal_t.png", transparency=0)  # index 0 transparent -> white
  cases[tmp_path / "pal_t.png"] = (255, 255, 255)
  for path, want in cases.items():
    rgb = images.decode_rgb(path)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3, path
    assert np.abs(rgb.reshape(-1, 3).mean(0) - want).max() <= 3, (path.name, rgb[0, 0])


def test_bad_files_are_named(tmp_path):
  good = _save(tmp_path, "ok.jpg", "RGB", size=(64, 64), color=(10, 200, 30))
  trunc = tmp_path / "truncated.jpg"
  trunc.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
  (tmp_path / "text.jpg").write_text("not an image")
  for name in ("truncated.jpg", "text.jpg", "absent.jpg"):
    with pytest.raises(DataError, match=name):
      images.decode_rgb(tmp_path / name)
  # Inside tf.data, and on the TF-free threads, the error still names the file.
  for pipeline in ("tf.data", "threads"):
    batches = images.batches([str(good), str(trunc)], images.Preprocess(size=32), batch_size=2,
                             pipeline=pipeline)
    with pytest.raises(Exception, match="truncated.jpg"):
      list(batches)


def test_preprocess_crop_and_normalize(tmp_path):
  im = np.zeros((200, 300, 3), np.uint8)
  im[:, :, 0] = 255
  im[:, :30] = 0  # a black band at the left, cut away by the center crop
  spec = images.Preprocess(size=100, resize="shorter_side")
  x = images.preprocess(im, spec)
  assert x.shape == (100, 100, 3) and x.dtype == np.float32
  np.testing.assert_allclose(x[50, 50], [1.0, -1.0, -1.0], atol=1e-6)
  assert x[:, 0, 0].min() > 0.9  # the band is outside the 200 x 200 center
  squash = images.preprocess(im, images.Preprocess(size=100, resize="squash"))
  assert squash[50, 5, 0] < -0.9  # the band is kept when squashing
  assert images.Preprocess(size=224).key() != images.Preprocess(size=256).key()


@pytest.mark.parametrize("pipeline", ["tf.data", "threads"])
def test_batches_are_ordered_and_sharded_over_hosts(tmp_path, pipeline):
  paths = [str(_save(tmp_path, f"{i}.png", "RGB", size=(20 + i, 20), color=(i * 20, 0, 0)))
           for i in range(7)]
  spec = images.Preprocess(size=16, resize="squash")
  one = list(images.batches(paths, spec, batch_size=3, pipeline=pipeline))
  assert [len(b["index"]) for b in one] == [3, 3, 1]
  idx = np.concatenate([b["index"] for b in one])
  assert idx.tolist() == list(range(7))
  full = np.concatenate([b["image"] for b in one])
  np.testing.assert_allclose(full[:, 0, 0, 0], [(i * 20 / 255 - 0.5) / 0.5 for i in range(7)], atol=1e-5)
  seen = []
  for host in range(2):
    for b in images.batches(paths, spec, batch_size=2, num_hosts=2, host=host, pipeline=pipeline):
      np.testing.assert_array_equal(b["image"], full[b["index"]])
      seen += b["index"].tolist()
  assert sorted(seen) == list(range(7))
