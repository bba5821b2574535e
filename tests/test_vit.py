"""CLIP and SigLIP vision towers in Flax against transformers' PyTorch models (random init, saved
with save_pretrained: no download), two image / patch sizes each, and the export round trip."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file

from hbt_jax import image_models as im

torch.manual_seed(0)


def _hf_model(layout, image_size, patch):
  vision = dict(image_size=image_size, patch_size=patch, hidden_size=32, num_hidden_layers=2,
                num_attention_heads=4, intermediate_size=64)
  text = dict(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
              intermediate_size=64)
  if layout == "clip":
    cfg = transformers.CLIPConfig(vision_config=vision, text_config=text, projection_dim=24)
    return transformers.CLIPModel(cfg).eval()
  cfg = transformers.SiglipConfig(vision_config=vision, text_config=text)
  return transformers.SiglipModel(cfg).eval()


def _image_features(model, x):
  with torch.no_grad():
    out = model.get_image_features(pixel_values=torch.tensor(x).permute(0, 3, 1, 2))
  out = getattr(out, "pooler_output", out)
  return out.numpy()


@pytest.mark.parametrize("layout", ["clip", "siglip"])
@pytest.mark.parametrize("image_size,patch", [(32, 8), (48, 16)])
def test_vision_tower_matches_transformers_and_round_trips(tmp_path, layout, image_size, patch):
  model = _hf_model(layout, image_size, patch)
  if layout == "siglip":  # random-init heads start near zero; make the probe path matter
    with torch.no_grad():
      model.vision_model.head.probe.normal_()
  model.save_pretrained(tmp_path)
  hf_cfg = json.loads((tmp_path / "config.json").read_text())
  tensors = load_file(str(tmp_path / "model.safetensors"))
  cfg = im.ViTConfig.from_hf(hf_cfg)
  assert cfg.layout == layout and cfg.image_size == image_size and cfg.patch_size == patch
  module = im.ViT(cfg)
  x = np.random.default_rng(image_size).normal(size=(3, image_size, image_size, 3)).astype(np.float32)
  template = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, image_size, image_size, 3))))
  params = im.vit_params_from_hf(tensors, template["params"], cfg, str(tmp_path))
  ours = np.asarray(module.apply({"params": params}, x))
  theirs = _image_features(model, x)
  assert ours.shape == theirs.shape == (3, 24 if layout == "clip" else 32)
  assert np.abs(theirs).max() > 0.5, np.abs(theirs).max()  # not trivially small
  assert np.abs(ours - theirs).max() <= 1e-4, np.abs(ours - theirs).max()
  back = im.vit_params_to_hf(params, cfg)
  vision_keys = {k for k in tensors if k.startswith("vision_model.") or k == "visual_projection.weight"}
  assert set(back) == vision_keys - {"vision_model.embeddings.position_ids"}
  for k, v in back.items():
    np.testing.assert_array_equal(v, tensors[k], err_msg=k)


def test_missing_tensor_and_wrong_size_are_named(tmp_path):
  model = _hf_model("clip", 32, 8)
  model.save_pretrained(tmp_path)
  tensors = load_file(str(tmp_path / "model.safetensors"))
  cfg = im.ViTConfig.from_hf(json.loads((tmp_path / "config.json").read_text()))
  template = jax.eval_shape(lambda: im.ViT(cfg).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
  del tensors["vision_model.encoder.layers.1.mlp.fc2.weight"]
  with pytest.raises(ValueError, match=r"layers\.1\.mlp\.fc2\.weight"):
    im.vit_params_from_hf(tensors, template["params"], cfg, "ckpt")
  with pytest.raises(ValueError, match="expects 32x32"):
    im.ViT(cfg).init(jax.random.key(0), jnp.zeros((1, 48, 48, 3)))
  with pytest.raises(ValueError, match="model_type"):
    im.ViTConfig.from_hf({"model_type": "vit"})
