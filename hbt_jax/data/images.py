"""Images: decode to RGB, resize / crop / normalize per tower, in a deterministic batched pipeline.

Decoding goes through Pillow — inside tf.data (`tf.numpy_function`) where TensorFlow imports, else on
prefetching threads (input_pipeline.choose_pipeline) — so every mode a photo collection holds is
converted rather than rejected (grayscale, grayscale + alpha, RGBA and palette images with
transparency are composited on white, CMYK and YCbCr are converted), and a missing, truncated or
corrupt file is an error naming it. The order is fixed, each host maps only its slice of the image
list, and batches are prefetched.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from hbt_jax.data.corpus import DataError


@dataclasses.dataclass(frozen=True)
class Preprocess:
  """How a tower wants its pixels. `resize`: "shorter_side" (resize the shorter side to `size`, then
  center-crop, as CLIP does) or "squash" (resize to size x size, as SigLIP does)."""
  size: int = 224
  resize: str = "shorter_side"
  mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
  std: tuple[float, float, float] = (0.5, 0.5, 0.5)

  def key(self) -> str:
    """A string that changes whenever the produced pixels would (for embedding caches)."""
    return f"{self.size}-{self.resize}-{','.join(map(str, self.mean))}-{','.join(map(str, self.std))}"


def decode_rgb(path: str | Path) -> np.ndarray:
  """uint8 [H, W, 3]; transparent pixels are composited on white."""
  from PIL import Image, UnidentifiedImageError
  try:
    with Image.open(path) as im:
      im.load()  # decodes everything now: a truncated file fails here, not later
      if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
      if im.mode in ("RGBA", "LA", "PA"):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
      return np.asarray(im.convert("RGB"), np.uint8)
  except FileNotFoundError:
    raise DataError(f"{path}: image file not found") from None
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
    raise DataError(f"{path}: cannot decode the image ({e})") from None


def preprocess(rgb: np.ndarray, spec: Preprocess) -> np.ndarray:
  """float32 [size, size, 3] normalized with the tower's mean / std (bicubic resampling)."""
  from PIL import Image
  im = Image.fromarray(rgb)
  if spec.resize == "squash":
    im = im.resize((spec.size, spec.size), Image.BICUBIC)
  elif spec.resize == "shorter_side":
    w, h = im.size
    s = spec.size / min(w, h)
    im = im.resize((max(spec.size, round(w * s)), max(spec.size, round(h * s))), Image.BICUBIC)
    left, top = (im.size[0] - spec.size) // 2, (im.size[1] - spec.size) // 2
    im = im.crop((left, top, left + spec.size, top + spec.size))
  else:
    raise DataError(f"image resize {spec.resize!r}; known: shorter_side, squash")
  x = np.asarray(im, np.float32) / 255.0
  return ((x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)).astype(np.float32)


def load(path: str | Path, spec: Preprocess) -> np.ndarray:
  return preprocess(decode_rgb(path), spec)


def host_paths(paths: Sequence[str], num_hosts: int, host: int) -> list[str]:
  """This host's share of an image list: every num_hosts-th image, starting at `host`."""
  return list(paths)[host::num_hosts]


def batches(paths: Sequence[str], spec: Preprocess, batch_size: int, num_hosts: int = 1,
            host: int = 0, parallel: int = 2, pipeline: str = "auto"):
  """Iterator of {'image': [B, size, size, 3] float32, 'index': [B] int32} numpy batches over this
  host's share of `paths` (index = position in `paths`), in order; the last batch may be short.
  tf.data or threads (input_pipeline.choose_pipeline): the same batches either way."""
  from hbt_jax.input_pipeline import choose_pipeline
  if choose_pipeline(pipeline) == "tf.data":
    return dataset(paths, spec, batch_size, num_hosts, host, parallel).as_numpy_iterator()
  return _thread_batches(paths, spec, batch_size, num_hosts, host, parallel)


def _thread_batches(paths, spec, batch_size, num_hosts, host, parallel):
  from hbt_jax.input_pipeline import ordered_prefetch
  mine = host_paths(paths, num_hosts, host)
  index = np.arange(len(paths), dtype=np.int32)[host::num_hosts]

  def batch(start):
    return {"image": np.stack([load(p, spec) for p in mine[start:start + batch_size]]),
            "index": index[start:start + batch_size]}
  return ordered_prefetch(batch, range(0, len(mine), batch_size), parallel, max(parallel, 2))


def dataset(paths: Sequence[str], spec: Preprocess, batch_size: int, num_hosts: int = 1, host: int = 0,
            parallel: int = 2):
  """tf.data of {'image': [B, size, size, 3] float32, 'index': [B] int32} over this host's share of
  `paths` (index = position in `paths`), in order; the last batch may be short."""
  import tensorflow as tf
  mine = host_paths(paths, num_hosts, host)
  index = np.arange(len(paths), dtype=np.int32)[host::num_hosts]

  def _load(p):
    return load(p.decode("utf-8") if isinstance(p, bytes) else str(p), spec)

  def _map(p, i):
    img = tf.numpy_function(_load, [p], tf.float32, stateful=False)
    img.set_shape((spec.size, spec.size, 3))
    return {"image": img, "index": i}

  ds = tf.data.Dataset.from_tensor_slices((tf.constant(mine, tf.string), index))
  ds = ds.map(_map, num_parallel_calls=parallel, deterministic=True)
  return ds.batch(batch_size).prefetch(2)
