"""CLIP / SigLIP text towers against transformers (random init, no download), the two-tower module,
and the CLIP / SigLIP losses on the global batch of 8 devices against NumPy."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file

from hbt_jax import image_models, sharding, two_tower as tt

torch.manual_seed(0)
VOCAB = 99


def _model(layout, eos=2):
  vision = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                num_attention_heads=4, intermediate_size=64)
  text = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
              intermediate_size=64, max_position_embeddings=16)
  if layout == "clip":
    return transformers.CLIPModel(transformers.CLIPConfig(
        vision_config=vision, text_config=dict(text, eos_token_id=eos), projection_dim=24)).eval()
  return transformers.SiglipModel(transformers.SiglipConfig(vision_config=vision,
                                                            text_config=text)).eval()


def _ids(rng, n=4, length=12, eos=VOCAB - 1):
  """Rows of different lengths: tokens, then EOS, then padding (id 1)."""
  ids = np.ones((n, length), np.int64)
  mask = np.zeros((n, length), np.int64)
  for i, ln in enumerate(rng.integers(3, length + 1, size=n)):
    ids[i, :ln - 1] = rng.integers(3, VOCAB - 1, size=ln - 1)
    ids[i, ln - 1] = eos
    mask[i, :ln] = 1
  return ids, mask


@pytest.mark.parametrize("layout,eos", [("clip", 2), ("clip", VOCAB - 1), ("siglip", 2)])
def test_text_tower_matches_transformers_and_round_trips(tmp_path, layout, eos):
  model = _model(layout, eos)
  model.save_pretrained(tmp_path)
  cfg = tt.TextTowerConfig.from_hf(json.loads((tmp_path / "config.json").read_text()))
  tensors = load_file(str(tmp_path / "model.safetensors"))
  module = tt.TextTower(cfg)
  ids, mask = _ids(np.random.default_rng(eos))
  if layout == "siglip":  # SigLIP is used on full-length sequences (padded to max_length, no mask)
    mask = np.ones_like(mask)
  template = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.asarray(ids), jnp.asarray(mask)))
  params = tt.text_params_from_hf(tensors, template["params"], cfg, "ckpt")
  ours = np.asarray(module.apply({"params": params}, ids, mask))
  with torch.no_grad():
    out = model.get_text_features(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
  theirs = getattr(out, "pooler_output", out).numpy()
  assert np.abs(theirs).max() > 0.1
  assert np.abs(ours - theirs).max() <= 1e-4, np.abs(ours - theirs).max()
  back = tt.text_params_to_hf(params)
  for k, v in back.items():
    np.testing.assert_array_equal(v, tensors[k], err_msg=k)
  want = {k for k in tensors if k.startswith("text_model.") or k == "text_projection.weight"}
  assert set(back) == want - {"text_model.embeddings.position_ids"}


def test_losses_on_the_global_batch_match_numpy():
  rng = np.random.default_rng(0)
  za = rng.normal(size=(16, 8)).astype(np.float32)
  zb = rng.normal(size=(16, 8)).astype(np.float32)
  za /= np.linalg.norm(za, axis=1, keepdims=True)
  zb /= np.linalg.norm(zb, axis=1, keepdims=True)
  scale, bias = 10.0, -3.0
  logits = scale * za @ zb.T
  lsm = lambda x, ax: x - np.log(np.exp(x).sum(ax, keepdims=True))
  want_clip = -(np.diag(lsm(logits, 1)).mean() + np.diag(lsm(logits, 0)).mean()) / 2
  labels = 2 * np.eye(16) - 1
  want_siglip = np.log1p(np.exp(-labels * (logits + bias))).sum(1).mean()
  mesh = sharding.make_mesh({"data": -1})
  shard = sharding.batch_sharding(mesh)
  a, b = jax.device_put(za, shard), jax.device_put(zb, shard)
  assert len(a.sharding.device_set) == 8
  got_clip = jax.jit(tt.clip_loss)(a, b, scale)
  got_siglip = jax.jit(tt.siglip_loss)(a, b, scale, bias)
  np.testing.assert_allclose(got_clip, want_clip, rtol=1e-5)
  np.testing.assert_allclose(got_siglip, want_siglip, rtol=1e-5)


def test_two_tower_any_image_tower_with_any_text_tower():
  """EfficientNet-Lite0 x a CLIP text tower, projected to 16 dims; normalized; SigLIP init."""
  text_cfg = tt.TextTowerConfig(vocab_size=VOCAB, max_position=16, hidden_size=32, num_layers=1,
                                num_heads=4, intermediate_size=64, projection_dim=32)
  t0, b0 = tt.INIT["siglip"]
  model = tt.TwoTower(image_models.EfficientNetLite(), tt.TextTower(text_cfg), proj_dim=16,
                      init_temperature=t0, init_bias=b0)
  ids, mask = _ids(np.random.default_rng(1))
  images = np.random.default_rng(2).normal(size=(4, 64, 64, 3)).astype(np.float32)
  variables = model.init(jax.random.key(0), images, ids, mask)
  assert set(variables) == {"params", "batch_stats"}
  zi, zt, scale, bias = model.apply(variables, images, ids, mask)
  assert zi.shape == zt.shape == (4, 16)
  np.testing.assert_allclose(np.linalg.norm(zi, axis=1), 1, rtol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(zt, axis=1), 1, rtol=1e-5)
  assert float(scale) == pytest.approx(10.0) and float(bias) == -10.0
  # Text alone (the tt_xy batches of hybrid training) does not touch the image tower.
  zt2 = model.apply(variables, ids, mask, method=tt.TwoTower.encode_text)
  np.testing.assert_allclose(zt2, zt, rtol=1e-6)


@pytest.mark.parametrize("layout", ["clip", "siglip"])
def test_whole_hf_model_import_matches_logits_and_exports(tmp_path, layout):
  """A random-init CLIPModel / SiglipModel: both towers, projections, logit scale (and bias) give
  transformers' logits_per_image; the export loads back into transformers unchanged."""
  model = _model(layout)
  with torch.no_grad():  # non-default scale / bias, so a dropped one would show
    model.logit_scale.fill_(2.3)
    if layout == "siglip":
      model.logit_bias.fill_(-3.5)
  model.save_pretrained(tmp_path / "hf")
  module, params = tt.from_hf(tmp_path / "hf")
  rng = np.random.default_rng(1)
  pixels = rng.normal(size=(3, 32, 32, 3)).astype(np.float32)
  ids, mask = _ids(rng, eos=2 if layout == "clip" else VOCAB - 1)
  if layout == "siglip":
    mask = np.ones_like(mask)
  zi, zt, scale, bias = module.apply({"params": params}, pixels, ids, mask)
  ours = np.asarray(scale * zi @ zt.T + bias)
  with torch.no_grad():
    theirs = model(pixel_values=torch.tensor(pixels).permute(0, 3, 1, 2), input_ids=torch.tensor(ids),
                   attention_mask=torch.tensor(mask)).logits_per_image.numpy()
  assert np.abs(ours - theirs).max() <= 1e-4 * max(1.0, np.abs(theirs).max()), np.abs(ours - theirs).max()
  from safetensors.numpy import save_file
  out = tmp_path / "export"
  out.mkdir()
  save_file(tt.to_hf(params, module), str(out / "model.safetensors"))
  (out / "config.json").write_text((tmp_path / "hf" / "config.json").read_text())
  cls = transformers.CLIPModel if layout == "clip" else transformers.SiglipModel
  back, info = cls.from_pretrained(out, output_loading_info=True)
  assert not info["missing_keys"] and not info["unexpected_keys"], info
  with torch.no_grad():
    again = back.eval()(pixel_values=torch.tensor(pixels).permute(0, 3, 1, 2),
                        input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits_per_image
  np.testing.assert_allclose(again.numpy(), theirs, atol=1e-5)
