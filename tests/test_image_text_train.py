"""The image–text path end to end: caption batches from the hybrid sampler, the locked image tower's
cached features (LiT) or a trainable tower fed pixels, the train step on 8 fake devices, the
evaluator, resume, export."""
import importlib.util
import json
import logging

import jax
import numpy as np
import pytest

from conftest import ROOT, load_config, tiny_clip
from hbt_jax import checkpoints, config_checks, input_pipeline, sharding, state, train
from hbt_jax.data import captions


def config(**overrides):
  return load_config("tiny_image_text", **overrides)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  """One world + feature cache for the module (HBT_CACHE_DIR is read when a world is generated)."""
  root = tmp_path_factory.mktemp("it_cache")
  mp = pytest.MonkeyPatch()
  mp.setenv("HBT_CACHE_DIR", str(root))
  yield root
  mp.undo()


def _tokens(cfg, n_feat=8):
  corpus = input_pipeline.load_corpus(cfg)
  bundle = state.build_model(cfg)
  feats = np.random.default_rng(0).normal(size=(corpus.num_ids, n_feat)).astype(np.float32)
  return corpus, input_pipeline.tokenize_captions(corpus, bundle.tokenizer, cfg, feats)


def test_caption_batches_follow_the_plan_on_any_number_of_hosts(cache):
  cfg = config(**{"sampler.batch_type": "mixture", "sampler.mixture": "it_mono:1,it_mixed:1,tt_xy:1"})
  corpus, tc = _tokens(cfg)
  smp = input_pipeline.make_sampler(cfg, corpus, tc)
  seen = set()
  for step in range(12):
    plan = smp.plan(step)
    seen.add(plan.batch_type)
    one = input_pipeline.gather_caption_batch(tc, plan, cfg.seed, 1, 0)
    two = [input_pipeline.gather_caption_batch(tc, plan, cfg.seed, 2, h) for h in range(2)]
    for k in one:
      np.testing.assert_array_equal(one[k], np.concatenate([t[k] for t in two]), err_msg=k)
    rows = plan.rows

    def caption_of(ids, r, lang):  # the text row must be one of that (image, language)'s captions
      s, n = tc.start[r, lang], tc.count[r, lang]
      return any((tc.ids[s + j] == ids).all() for j in range(n))

    for i, r in enumerate(rows):
      assert caption_of(one["text_ids"][i], r, plan.q_lang[i] if plan.batch_type != "tt_xy"
                        else plan.p_lang[i])
    if plan.batch_type == "tt_xy":
      assert (plan.q_lang != plan.p_lang).all() and not one["image_features"].any()
      assert all(caption_of(one["src_ids"][i], r, plan.q_lang[i]) for i, r in enumerate(rows))
      assert set(input_pipeline.model_inputs(cfg, {**one, "batch_type": np.int32(2)})) == \
          {"src_ids", "src_mask", "text_ids", "text_mask"}
    else:
      np.testing.assert_array_equal(one["image_features"], tc.features[rows])
      assert not one["src_ids"].any()
    if plan.batch_type == "it_mono":
      assert len(set(plan.q_lang.tolist())) == 1
  assert seen == {"it_mono", "it_mixed", "tt_xy"}


def test_image_text_config_errors_name_the_key(cache):
  for over, key in [({"image.loss": "triplet"}, "config.image.loss"),
                    ({"data.source": "mlqa_r"}, "config.data.source"),
                    ({"sampler.batch_type": "xy"}, "config.sampler")]:
    with pytest.raises(config_checks.ConfigError, match=key.replace(".", r"\.")):
      config_checks.validate(config(**over))
  with pytest.raises(captions.DataError, match="config.data.image_dir"):
    input_pipeline.load_corpus(config(**{"data.source": "xtd10"}))


def _final_params(cfg, workdir):
  mesh = sharding.make_mesh(cfg.mesh.to_dict())
  bundle = state.build_model(cfg)
  st = state.create_train_state(bundle, cfg, mesh, state.make_optimizer(cfg))
  mngr = checkpoints.manager(str(workdir), cfg)
  restored, step, _ = checkpoints.restore_latest(mngr, st)
  mngr.close()
  return step, jax.tree.map(np.asarray, restored)


def test_lit_trains_evaluates_and_resumes_exactly(cache, tmp_path, caplog):
  cfg = config()
  caplog.set_level(logging.INFO)
  res = train.train_and_evaluate(cfg, str(tmp_path / "a"))
  for k in ("scenes/t2i/r@1/de", "scenes/i2t/r@5/hi", "scenes/t2i/map@100", "scenes/mean_recall",
            "scenes/multi/i2t/map@100", "scenes/multi/language_bias", "scenes/c2c/map/de-en"):
    assert np.isfinite(res[k]), k
  assert 0 <= res["scenes/t2i/r@1"] <= res["scenes/t2i/r@5"] <= res["scenes/t2i/r@10"] <= 1
  report = (tmp_path / "a" / "report.md").read_text()
  assert "| hi |" in report and "Caption->caption" in report
  assert (tmp_path / "a" / "scenes_c2c_map.png").exists()
  rows = [json.loads(l) for l in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
  assert all(np.isfinite(r["loss"]) for r in rows) and len(rows) == 2
  step, full = _final_params(cfg, tmp_path / "a")
  # LiT: the image tower is not trained (not even in the params); the new heads are.
  assert step == 4 and set(full["params"]) == {"query_encoder", "image_projection", "log_scale"}
  # The features came from the on-disk cache the second time round (train and eval images).
  caplog.clear()
  train.train_and_evaluate(config(**{"num_steps": 2}), str(tmp_path / "b"))
  assert "48 cached, 0 computed" in caplog.text and "20 cached, 0 computed" in caplog.text
  noeval = config()
  with noeval.unlocked():
    noeval.evals = type(noeval.evals)()  # the evaluation does not touch the state
  train.train_and_evaluate(noeval, str(tmp_path / "b"))  # resumes at 2, runs 3 and 4
  step_b, resumed = _final_params(cfg, tmp_path / "b")
  assert step_b == 4
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), full, resumed)
  # Export: the caption tower as a SentenceTransformer dir, plus the image head.
  from safetensors.numpy import load_file
  from sentence_transformers import SentenceTransformer
  from hbt_jax import export, tokenization
  (tmp_path / "a" / "config.json").write_text(cfg.to_json())  # as main.py writes it
  out = export.export_workdir(str(tmp_path / "a"), str(tmp_path / "export"))
  bundle = state.build_model(cfg)
  caps = ["two red circles on a white background", "zwei blaue Dreiecke", "三个绿色的正方形"]
  ids, mask = tokenization.encode(bundle.tokenizer, caps, 32)
  ours = np.asarray(bundle.module.apply({"params": full["params"]}, ids, mask, method="encode_text"))
  st = SentenceTransformer(str(out), device="cpu").encode(caps)
  assert np.abs(st - ours).max() <= 1e-4
  head = load_file(str(out / "image_head.safetensors"))
  feats = np.random.default_rng(0).normal(size=(2, bundle.image_tower.dim)).astype(np.float32)
  z = feats @ head["kernel"] + head["bias"]
  np.testing.assert_allclose(z / np.linalg.norm(z, axis=1, keepdims=True), np.asarray(
      bundle.module.apply({"params": full["params"]}, feats, method="encode_image_features")),
      atol=1e-5)
  assert json.loads((out / "image_tower.json").read_text())["tower"] == cfg.image.tower


def test_hf_clip_vision_tower_as_the_locked_tower(tmp_path):
  """config.image.tower = an HF CLIPModel dir: its preprocessing and projected image features, the
  same as transformers' get_image_features on the same pixels; cached by content."""
  torch = pytest.importorskip("torch")
  import transformers
  from PIL import Image
  from hbt_jax import image_features
  from hbt_jax.data import images
  model = transformers.CLIPModel.from_pretrained(tiny_clip(tmp_path / "clip")).eval()
  rng = np.random.default_rng(0)
  paths = []
  for i, (w, h) in enumerate([(40, 60), (64, 32), (32, 32)]):
    paths.append(str(tmp_path / f"im{i}.png"))
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(paths[-1])
  tower = image_features.load_tower(str(tmp_path / "clip"))
  assert tower.preprocess.resize == "shorter_side" and tower.dim == 24
  ours = image_features.features(tower, paths, str(tmp_path / "cache"), batch_size=2)
  pixels = np.stack([images.load(p, tower.preprocess) for p in paths])
  with torch.no_grad():
    out = model.get_image_features(pixel_values=torch.tensor(pixels).permute(0, 3, 1, 2))
  theirs = getattr(out, "pooler_output", out).numpy()
  assert np.abs(ours - theirs).max() <= 1e-4
  again = image_features.features(tower, paths[::-1], str(tmp_path / "cache"), batch_size=2)
  np.testing.assert_array_equal(again, ours[::-1])
  assert len(list((tmp_path / "cache" / tower.key()).glob("*.npy"))) == 3


def test_real_data_config_evaluates_xtd10_from_an_image_folder(cache, tmp_path, data_dir):
  """configs/image_text.py:xtd10 as a user runs it, with the COCO folder replaced by generated JPEGs
  under the XTD10 file names (the real images are not offline); tiny towers, 12 images."""
  from PIL import Image
  from hbt_jax import evaluators
  from hbt_jax.data import text_io
  spec = importlib.util.spec_from_file_location("it_cfg", ROOT / "configs" / "image_text.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  cfg = mod.get_config("xtd10")
  config_checks.validate(cfg)
  assert cfg.data.source == "multi30k" and cfg.evals.xtd10.type == "image_text"
  assert cfg.image.tower == "google/siglip-base-patch16-256-multilingual" and cfg.image.loss == "siglip"
  with pytest.raises(captions.DataError, match="config.data.image_dir"):
    input_pipeline.load_corpus(cfg)
  names = text_io.read_lines(f"{data_dir}/xtd10/XTD10/test_image_names.txt")
  coco = tmp_path / "coco"
  coco.mkdir()
  for i, n in enumerate(names):
    Image.new("RGB", (8 + i % 5, 8), (i % 256, 3 * i % 256, 7 * i % 256)).save(coco / n.strip())
  tiny = config()
  with cfg.unlocked():
    cfg.model = tiny.model
    cfg.image.tower = "efficientnet_lite0:random"
    cfg.evals.xtd10.image_dir = str(coco)
    cfg.evals.xtd10.max_images = 12
  mesh = sharding.make_mesh(cfg.mesh.to_dict())
  bundle = state.build_model(cfg)
  st = state.create_train_state(bundle, cfg, mesh, state.make_optimizer(cfg))
  (ev,) = evaluators.from_config(cfg, bundle, mesh, str(tmp_path / "w"))
  res = ev.run(st["params"], 0)
  langs = "de en es fr it ja ko pl ru tr zh".split()
  assert all(np.isfinite(res[f"xtd10/t2i/r@10/{l}"]) for l in langs)
  assert res["xtd10/c2c/r@1/ja-en"] >= 0 and "| ko |" in (tmp_path / "w" / "report.md").read_text()


def test_siglip_loss_trains_its_bias_on_both_batch_types(cache):
  """config.image.loss='siglip': the learned logit bias is a parameter, and one it_mono step and
  one tt_xy step (two compilations of the same step function) both update it."""
  from hbt_jax import image_features
  cfg = config(**{"image.loss": "siglip", "sampler.batch_type": "mixture",
                  "sampler.mixture": "it_mono:1,tt_xy:1", "optim.warmup_steps": 0,
                  "optim.schedule": "constant"})
  mesh = sharding.make_mesh(cfg.mesh.to_dict())
  bundle = state.build_model(cfg)
  tx = state.make_optimizer(cfg)
  st = state.create_train_state(bundle, cfg, mesh, tx)
  assert float(st["params"]["bias"]) == cfg.image.init_bias
  corpus = input_pipeline.load_corpus(cfg)
  feats = image_features.features(bundle.image_tower, [corpus.image(r) for r in range(corpus.num_ids)],
                                  cfg.image.cache_dir, 16)  # cached by the tests above
  tc = input_pipeline.tokenize_captions(corpus, bundle.tokenizer, cfg, feats)
  smp = input_pipeline.make_sampler(cfg, corpus, tc)
  batches = input_pipeline.HostBatches(smp, tc, 1, 0, 0, 8)
  step = jax.jit(train.make_train_step(bundle, tx, cfg), donate_argnums=(0,))
  types = set()
  for host in batches:
    types.add(smp.names[train.BATCH_TYPES[int(host["batch_type"])]])
    before = float(st["params"]["bias"])
    st, m = step(st, sharding.host_local_to_global(input_pipeline.model_inputs(cfg, host), mesh))
    assert bool(m["finite"]) and float(st["params"]["bias"]) != before
    if len(types) == 2:
      break
  assert types == {"it_mono", "tt_xy"}


def test_data_fraction_and_language_caps_apply_to_captions(cache):
  full = input_pipeline.load_corpus(config())
  half = input_pipeline.load_corpus(config(**{"data.fraction": 0.5}))
  capped = input_pipeline.load_corpus(config(**{"data.lang_caps": "de:5,ja:3"}))
  assert half.num_ids == 24 and set(half.ids) < set(full.ids)  # nested: a subset of the images
  counts = capped.counts()
  assert counts["de"] == 5 and counts["ja"] == 3 and counts["en"] == full.counts()["en"]


def test_trainable_tower_pixels_equal_the_locked_features(cache):
  """config.image.trainable=True with EfficientNet-Lite0: at init the pixel path (tower in the
  params, batch-norm statistics as constants) gives what LiT's cached features give, and the pixel
  batches of 2 hosts put together are the 1-host batch."""
  from hbt_jax import image_features
  from hbt_jax.data import images
  cfg = config(**{"image.trainable": True})
  mesh = sharding.make_mesh(cfg.mesh.to_dict())
  bundle = state.build_model(cfg)
  assert set(bundle.image_consts) == {"batch_stats"}
  params = state.create_train_state(bundle, cfg, mesh, state.make_optimizer(cfg))["params"]
  corpus = input_pipeline.load_corpus(cfg)
  paths = [corpus.image(r) for r in range(3)]
  feats = image_features.features(bundle.image_tower, paths, cfg.image.cache_dir, 16)
  pixels = np.stack([images.load(p, bundle.image_tower.preprocess) for p in paths])
  apply = jax.jit(lambda p, x: bundle.module.apply({"params": p, **bundle.image_consts}, x,
                                                   method="encode_images"))
  project = lambda p, f: bundle.module.apply({"params": p}, f, method="encode_image_features")
  np.testing.assert_allclose(apply(params, pixels), project(params, feats), atol=1e-5)
  tc = input_pipeline.tokenize_captions(corpus, bundle.tokenizer, cfg,
                                        preprocess=bundle.image_tower.preprocess)
  smp = input_pipeline.make_sampler(cfg, corpus, tc)
  plan = next(smp.plan(t) for t in range(20) if smp.plan(t).batch_type == "it_mono")
  one = input_pipeline.gather_caption_batch(tc, plan, cfg.seed, 1, 0)
  two = [input_pipeline.gather_caption_batch(tc, plan, cfg.seed, 2, h) for h in range(2)]
  np.testing.assert_array_equal(one["images"], np.concatenate([t["images"] for t in two]))
  np.testing.assert_array_equal(one["images"][0], images.load(corpus.image(plan.rows[0]),
                                                             bundle.image_tower.preprocess))
  assert set(input_pipeline.model_inputs(cfg, {**one, "batch_type": np.int32(0)})) == \
      {"images", "text_ids", "text_mask"}


def test_trainable_vit_tower_trains_evaluates_and_exports(cache, tmp_path):
  """config.image.trainable=True with an HF CLIP vision tower: its weights are params and change
  (image–caption and caption–caption steps), the evaluator encodes images with the trained tower,
  and the export's image_tower.safetensors + image head reproduce the trained image embeddings."""
  from flax import traverse_util
  from safetensors.numpy import load_file
  from hbt_jax import export
  from hbt_jax.data import images
  cfg = config(**{"image.trainable": True, "image.tower": tiny_clip(tmp_path / "clip"),
                  "sampler.batch_type": "mixture", "sampler.mixture": "it_mono:1,tt_xy:1"})
  bundle = state.build_model(cfg)
  assert bundle.image_consts == {}
  init = jax.tree.map(np.asarray, bundle.image_tower.variables["params"])
  res = train.train_and_evaluate(cfg, str(tmp_path / "a"))
  assert np.isfinite(res["scenes/t2i/r@1"]) and np.isfinite(res["scenes/multi/language_bias"])
  step, full = _final_params(cfg, tmp_path / "a")
  assert step == 4
  moved = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(full["params"]["image_tower"]),
                                                 jax.tree.leaves(init))]
  assert sum(moved) > len(moved) // 2  # the tower was trained, not just its head
  (tmp_path / "a" / "config.json").write_text(cfg.to_json())
  out = export.export_workdir(str(tmp_path / "a"), str(tmp_path / "export"))
  variables = traverse_util.unflatten_dict(load_file(str(out / "image_tower.safetensors")), sep="/")
  corpus = input_pipeline.load_corpus(cfg)
  pixels = np.stack([images.load(corpus.image(r), bundle.image_tower.preprocess) for r in range(3)])
  z = np.asarray(bundle.image_tower.module.apply(variables, pixels))
  head = load_file(str(out / "image_head.safetensors"))
  z = z @ head["kernel"] + head["bias"]
  ours = bundle.module.apply({"params": full["params"]}, pixels, method="encode_images")
  np.testing.assert_allclose(z / np.linalg.norm(z, axis=1, keepdims=True), ours, atol=1e-5)
