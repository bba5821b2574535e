"""PyTorch state dicts (`.pth`, `pytorch_model.bin`) read as numpy arrays, without torch.

Both of torch's formats: the zip archive of torch >= 1.6 (`*/data.pkl` + one file per storage) and
the older stream (magic number, protocol, system info, the pickled dict, the storage keys, then
each storage as an int64 element count and its bytes). The pickle is read by a restricted
unpickler that builds only ordered dicts, tensors and storages; any other class in the file is an
error naming it (no code in the file runs).
"""
from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

from hbt_jax.errors import CheckpointError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
_TENSOR_DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16,
                  "int64": np.int64, "int32": np.int32, "int16": np.int16, "int8": np.int8,
                  "uint8": np.uint8, "bool": np.bool_}


class _StorageType:
  def __init__(self, dtype):
    self.dtype = np.dtype(dtype)


class _Storage:
  def __init__(self, dtype, numel):
    self.dtype, self.numel, self.data = np.dtype(dtype), int(numel), None


class _Tensor:
  def __init__(self, storage, offset, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

  def array(self) -> np.ndarray:
    flat = self.storage.data
    if not self.size:
      return flat[self.offset].copy()
    item = flat.itemsize
    return np.lib.stride_tricks.as_strided(flat[self.offset:], self.size,
                                           [s * item for s in self.stride]).copy()


def _rebuild_tensor(storage, offset, size, stride, *unused):
  return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data, *unused):
  return data


class _Unpickler(pickle.Unpickler):
  def __init__(self, f, source: str, storages: dict, load_storage):
    super().__init__(f)
    self.source, self.storages, self.load_storage = source, storages, load_storage

  def find_class(self, module, name):
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
      return _rebuild_tensor
    if module == "torch._utils" and name == "_rebuild_parameter":
      return _rebuild_parameter
    if module == "torch" and name in _STORAGE_DTYPES:
      return _StorageType(_STORAGE_DTYPES[name])
    if module == "torch" and name in _TENSOR_DTYPES:  # dtype objects of UntypedStorage entries
      return _StorageType(_TENSOR_DTYPES[name])
    raise CheckpointError(f"{self.source}: holds {module}.{name}, which a state dict of tensors "
                          "does not need; not loaded (only tensors are read without torch)")

  def persistent_load(self, pid):
    if not isinstance(pid, tuple) or pid[0] != "storage":
      raise CheckpointError(f"{self.source}: unknown persistent id {pid[:1]!r}")
    storage_type, key, _location, numel = pid[1], str(pid[2]), pid[3], pid[4]
    if key not in self.storages:
      self.storages[key] = _Storage(storage_type.dtype, numel)
      self.load_storage(key, self.storages[key])
    return self.storages[key]


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
  """{name: array} of a PyTorch state dict file; a file in neither format is a CheckpointError."""
  path = Path(path)
  try:
    if zipfile.is_zipfile(path):
      tree = _load_zip(path)
    else:
      tree = _load_legacy(path)
  except CheckpointError:
    raise
  except Exception as e:  # noqa: BLE001 - a truncated or foreign file: one message naming it
    raise CheckpointError(f"{path}: not a readable PyTorch state dict ({type(e).__name__}: {e})") from None
  if not isinstance(tree, dict):
    raise CheckpointError(f"{path}: holds a {type(tree).__name__}, not a state dict")
  return {k: v.array() for k, v in tree.items() if isinstance(v, _Tensor)}


def _load_zip(path: Path):
  with zipfile.ZipFile(path) as z:
    pkl = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pkl) != 1:
      raise CheckpointError(f"{path}: a zip without one data.pkl")
    prefix = pkl[0][:-len("data.pkl")]

    def load_storage(key, storage):
      raw = z.read(f"{prefix}data/{key}")
      storage.data = np.frombuffer(raw, storage.dtype, count=storage.numel)

    return _Unpickler(io.BytesIO(z.read(pkl[0])), str(path), {}, load_storage).load()


def _load_legacy(path: Path):
  with open(path, "rb") as f:
    magic = pickle.load(f)
    if magic != _LEGACY_MAGIC:
      raise CheckpointError(f"{path}: not a PyTorch file (no zip, no legacy magic number)")
    pickle.load(f)  # protocol version
    pickle.load(f)  # system info (byte order, type sizes)
    storages: dict[str, _Storage] = {}
    tree = _Unpickler(f, str(path), storages, lambda key, storage: None).load()
    keys = pickle.load(f)
    for key in keys:
      storage = storages[str(key)]
      (numel,) = struct.unpack("<q", f.read(8))
      raw = f.read(numel * storage.dtype.itemsize)
      if len(raw) != numel * storage.dtype.itemsize:
        raise CheckpointError(f"{path}: truncated (storage {key})")
      storage.data = np.frombuffer(raw, storage.dtype)
  return tree
