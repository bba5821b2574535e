"""Image–text (LiT) throughput on this machine, in one run:

  python scripts/bench_images.py [--images 256 --batch 32 --steps 6]

I1: the tf.data image pipeline (Pillow decode of 640x480 JPEGs, resize + center crop to 224,
    normalize) on ONE core, images/s — against I3's consumption by the train step.
I2: the locked image tower (EfficientNet-Lite0, 224 px) forward, images/s on all cores, against
    EfficientNet-PyTorch (torch, same weights, same pixels) as the peer; and reading the same
    features back from the LiT embedding cache, images/s.
I3: the LiT train step (multilingual-e5-small text tower, it_mono batch, captions of 32 tokens) with
    cached features, pairs/s, against the same step plus computing the batch's image features
    (what training without the cache would pay, before any image-tower gradient).
I4: the same step with a trainable tower (config.image.trainable: EfficientNet-Lite0 forward and
    backward on the batch's pixels) against I3's cached step; and the one-core pipeline against it.
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from anywhere

import argparse
import json
import os
import subprocess
import tempfile
import time

import numpy as np


def make_jpegs(out: pathlib.Path, n: int) -> list[str]:
  """n 640x480 JPEGs cut from scikit-image's photos (real-photo statistics for the decoder)."""
  from PIL import Image
  from skimage import data
  photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.immunohistochemistry()]
  paths = []
  rng = np.random.default_rng(0)
  for i in range(n):
    im = Image.fromarray(photos[i % len(photos)]).resize((640 + int(rng.integers(0, 64)), 480))
    p = out / f"img_{i:04d}.jpg"
    im.save(p, quality=90)
    paths.append(str(p))
  return paths


def pipeline_one_core(paths, batch):
  os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
  import tensorflow as tf
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  from hbt_jax.data import images
  spec = images.Preprocess(224, "shorter_side")
  list(images.dataset(paths[:batch], spec, batch, parallel=1).as_numpy_iterator())  # warm up
  t = time.perf_counter()
  n = sum(len(b["index"]) for b in images.dataset(paths, spec, batch, parallel=1).as_numpy_iterator())
  return n / (time.perf_counter() - t)


def tower_and_cache(paths, batch, cache_dir):
  from hbt_jax import embedding_cache, image_features
  tower = image_features.load_tower("efficientnet_lite0")
  image_features._compute(tower, paths[:batch], batch)  # compile
  t = time.perf_counter()
  feats = image_features._compute(tower, paths, batch)
  forward = len(paths) / (time.perf_counter() - t)
  torch_rate = torch_peer(paths, batch, tower)
  cache = embedding_cache.EmbeddingCache(cache_dir, tower.key())
  cache.get(paths, lambda ps: feats[[paths.index(p) for p in ps]])
  t = time.perf_counter()
  cache.get(paths, lambda ps: 1 / 0)
  return tower, forward, torch_rate, len(paths) / (time.perf_counter() - t)


def torch_peer(paths, batch, tower):
  """EfficientNet-PyTorch's B0 blocks without squeeze-excitation and with ReLU6 = Lite0."""
  import torch
  from efficientnet_pytorch import EfficientNet
  from efficientnet_pytorch.utils import get_model_params
  from hbt_jax import image_models
  from hbt_jax.data import images
  blocks, gp = get_model_params("efficientnet-b0", {"image_size": 224})
  model = EfficientNet([b._replace(se_ratio=None) for b in blocks], gp)
  for m in model.modules():
    if hasattr(m, "_swish"):
      m._swish = torch.nn.ReLU6()
  model.load_state_dict(torch.load(str(image_models.efficientnet_lite0_file()), map_location="cpu",
                                   weights_only=True))
  model.eval()
  pixels = [torch.tensor(np.stack([images.load(p, tower.preprocess) for p in paths[s:s + batch]])
                         ).permute(0, 3, 1, 2) for s in range(0, len(paths), batch)]
  with torch.no_grad():
    model.extract_features(pixels[0])
    t = time.perf_counter()
    for x in pixels:
      model.extract_features(x).mean(dim=(2, 3))
  return len(paths) / (time.perf_counter() - t)


def _image_text_step(batch, trainable):
  import jax
  from hbt_jax import sharding, state, train
  from hbt_jax.config_base import base_config, use_me5
  cfg = use_me5(base_config())
  cfg.task, cfg.batch_size, cfg.model.max_query_len = "image_text", batch, 32
  cfg.image.trainable = trainable
  cfg.optim.warmup_steps = 0
  mesh = sharding.make_mesh({"data": -1, "fsdp": 1})
  bundle = state.build_model(cfg)
  tx = state.make_optimizer(cfg)
  st = state.create_train_state(bundle, cfg, mesh, tx)
  step = jax.jit(train.make_train_step(bundle, tx, cfg), donate_argnums=(0,),
                 compiler_options=bundle.compiler_options["train"])
  return cfg, mesh, bundle, st, step


def trainable_step(paths, batch, steps):
  """pairs/s of the it_mono step with the EfficientNet-Lite0 tower trained (pixels ready)."""
  import jax
  from hbt_jax import sharding
  from hbt_jax.data import images
  cfg, mesh, bundle, st, step = _image_text_step(batch, True)
  rng = np.random.default_rng(0)
  ids = rng.integers(1000, 200000, (batch, 32)).astype(np.int32)
  pixels = np.stack([images.load(p, bundle.image_tower.preprocess) for p in paths[:batch]])
  glob = sharding.host_local_to_global({"images": pixels, "text_ids": ids,
                                        "text_mask": np.ones_like(ids)}, mesh)
  st, m = step(st, glob)
  jax.block_until_ready(m)
  return _timed_steps(step, st, glob, batch, steps)[1]


def _timed_steps(step, st, glob, batch, steps, each=None):
  """(state, pairs/s) of `steps` warm steps on one global batch; `each()` runs before every step."""
  import jax
  t = time.perf_counter()
  for _ in range(steps):
    if each is not None:
      each()
    st, m = step(st, glob)
  jax.block_until_ready(m)
  return st, steps * batch / (time.perf_counter() - t)


def lit_step(tower, paths, batch, steps):
  import jax
  from hbt_jax import sharding
  from hbt_jax.data import images
  cfg, mesh, bundle, st, step = _image_text_step(batch, False)
  rng = np.random.default_rng(0)
  ids = rng.integers(1000, 200000, (batch, 32)).astype(np.int32)
  host = {"image_features": rng.normal(size=(batch, tower.dim)).astype(np.float32),
          "text_ids": ids, "text_mask": np.ones_like(ids)}
  glob = sharding.host_local_to_global(host, mesh)
  forward = jax.jit(lambda x: tower.module.apply(tower.variables, x))
  pixels = np.stack([images.load(p, tower.preprocess) for p in paths[:batch]])
  st, m = step(st, glob)
  jax.block_until_ready((m, forward(pixels)))
  st, cached = _timed_steps(step, st, glob, batch, steps)
  _, recompute = _timed_steps(step, st, glob, batch, steps,
                              each=lambda: jax.block_until_ready(forward(pixels)))
  return cached, recompute


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--images", type=int, default=256)
  ap.add_argument("--batch", type=int, default=32)
  ap.add_argument("--steps", type=int, default=6)
  ap.add_argument("--part", default="all", help=argparse.SUPPRESS)
  ap.add_argument("--dir", default="", help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.part == "pipeline":  # the one-core worker
    paths = sorted(str(p) for p in pathlib.Path(args.dir).glob("*.jpg"))
    print(json.dumps({"pipeline": pipeline_one_core(paths, args.batch)}))
    return
  from machine_info import describe
  print(describe())
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    paths = make_jpegs(tmp, args.images)
    out = subprocess.run([sys.executable, __file__, "--part", "pipeline", "--dir", str(tmp),
                          "--batch", str(args.batch)], capture_output=True, text=True, check=True)
    pipe = json.loads(out.stdout.strip().splitlines()[-1])["pipeline"]
    tower, fwd, torch_fwd, cache_read = tower_and_cache(paths, args.batch, tmp / "cache")
    cached, recompute = lit_step(tower, paths, args.batch, args.steps)
    trained = trainable_step(paths, args.batch, args.steps)
  print(f"I1 tf.data decode+preprocess, 1 core: {pipe:.1f} images/s = {pipe / cached:.1f}x the "
        f"LiT step's {cached:.1f} pairs/s")
  print(f"I2 EfficientNet-Lite0 forward: hbt_jax {fwd:.1f} images/s (incl. tf.data decoding), "
        f"EfficientNet-PyTorch {torch_fwd:.1f} images/s (pixels ready): {fwd / torch_fwd:.2f}x; "
        f"cache read: {cache_read:.0f} images/s ({cache_read / fwd:.0f}x the forward)")
  print(f"I3 LiT step, cached features: {cached:.2f} pairs/s; + image forward per step: "
        f"{recompute:.2f} pairs/s; cached / recompute = {cached / recompute:.2f}x")
  print(f"I4 trainable-tower step: {trained:.2f} pairs/s = {trained / cached:.2f}x the LiT step; "
        f"the 1-core pipeline is {pipe / trained:.1f}x its consumption")


if __name__ == "__main__":
  main()
