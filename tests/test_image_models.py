"""EfficientNet-Lite0 in Flax with the packaged ImageNet weights, against EfficientNet-PyTorch (an
independent implementation: its B0 blocks with ReLU6 and no squeeze-excitation are Lite0) on the
same weights, and on real photos (scikit-image)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hbt_jax import image_models

torch = pytest.importorskip("torch")
efficientnet_pytorch = pytest.importorskip("efficientnet_pytorch")


def _reference(image_size):
  from efficientnet_pytorch import EfficientNet
  from efficientnet_pytorch.utils import get_model_params
  blocks, gp = get_model_params("efficientnet-b0", {"image_size": image_size})
  model = EfficientNet([b._replace(se_ratio=None) for b in blocks], gp)
  for m in model.modules():
    if hasattr(m, "_swish"):
      m._swish = torch.nn.ReLU6()
  sd = torch.load(str(image_models.efficientnet_lite0_file()), map_location="cpu", weights_only=True)
  model.load_state_dict(sd, strict=True)
  return model.eval()


@pytest.fixture(scope="module")
def flax_lite0():
  module = image_models.EfficientNetLite()
  template = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), True))
  sd = image_models.read_torch_state_dict(image_models.efficientnet_lite0_file())
  variables = image_models.efficientnet_params_from_torch(sd, template, "lite0")
  return module, variables


@pytest.mark.parametrize("size", [224, 160])
def test_pooled_features_and_logits_match_efficientnet_pytorch(flax_lite0, size):
  module, variables = flax_lite0
  ref = _reference(size)
  x = np.random.default_rng(size).normal(size=(2, size, size, 3)).astype(np.float32)
  with torch.no_grad():
    t = torch.tensor(x).permute(0, 3, 1, 2)
    feats = ref.extract_features(t).mean(dim=(2, 3)).numpy()
    logits = ref(t).numpy()
  ours = np.asarray(module.apply(variables, x))
  ours_logits = np.asarray(module.apply(variables, x, True))
  assert ours.shape == (2, 1280)
  assert np.abs(ours - feats).max() <= 1e-4, np.abs(ours - feats).max()
  assert np.abs(ours_logits - logits).max() <= 1e-3 * max(1.0, np.abs(logits).max())


def test_imagenet_classes_of_real_photos(flax_lite0):
  skimage_data = pytest.importorskip("skimage.data")
  from PIL import Image
  module, variables = flax_lite0
  mean, std = np.asarray(image_models.EFFICIENTNET_LITE_MEAN), np.asarray(image_models.EFFICIENTNET_LITE_STD)
  photos = {"chelsea": (skimage_data.chelsea(), {281, 282, 285}),  # tabby / tiger / Egyptian cat
            "coffee": (skimage_data.coffee(), {967, 968})}         # espresso / cup
  for name, (img, classes) in photos.items():
    x = np.asarray(Image.fromarray(img).resize((224, 224), Image.BICUBIC), np.float32) / 255.0
    logits = np.asarray(module.apply(variables, ((x - mean) / std)[None].astype(np.float32), True))
    assert int(logits.argmax()) in classes, (name, int(logits.argmax()))


def test_bad_weight_files_are_named(tmp_path, flax_lite0):
  module, variables = flax_lite0
  bad = tmp_path / "truncated.pth"
  bad.write_bytes(image_models.efficientnet_lite0_file().read_bytes()[:1000])
  with pytest.raises(ValueError, match="truncated.pth"):
    image_models.read_torch_state_dict(bad)
  sd = image_models.read_torch_state_dict(image_models.efficientnet_lite0_file())
  template = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), variables)
  del sd["_blocks.7._depthwise_conv.weight"]
  with pytest.raises(ValueError, match=r"_blocks\.7\._depthwise_conv\.weight"):
    image_models.efficientnet_params_from_torch(sd, template, "x")
