"""PyTorch state dicts read without torch (hbt_jax/torch_pickle.py), checked against torch.load."""
import pickle

import numpy as np
import pytest
import torch

from hbt_jax import image_models, torch_pickle
from hbt_jax.errors import CheckpointError


def _state_dict():
  torch.manual_seed(0)
  return {"w": torch.randn(3, 4), "view": torch.arange(10)[2:8:2], "t": torch.randn(4, 5).t(),
          "scalar": torch.tensor(3), "half": torch.randn(2).half(), "flag": torch.tensor([True, False]),
          "param": torch.nn.Parameter(torch.randn(2, 2))}


@pytest.mark.parametrize("zip_format", [True, False])
def test_both_formats_equal_torch_load(tmp_path, zip_format):
  sd = _state_dict()
  path = tmp_path / "sd.pth"
  torch.save(sd, path, _use_new_zipfile_serialization=zip_format)
  ours = torch_pickle.load_state_dict(path)
  assert ours.keys() == sd.keys()
  for k, v in sd.items():
    want = v.detach().numpy()
    assert ours[k].dtype == want.dtype and ours[k].shape == want.shape, k
    np.testing.assert_array_equal(ours[k], want, err_msg=k)


def test_efficientnet_lite0_weights_equal_torch_load():
  path = image_models.efficientnet_lite0_file()
  ours = image_models.read_torch_state_dict(path)
  ref = torch.load(str(path), map_location="cpu", weights_only=True)
  assert ours.keys() == {k for k, v in ref.items() if v.ndim}
  assert all(np.array_equal(ours[k], ref[k].float().numpy()) for k in ours)


def test_anything_but_tensors_is_refused_and_named(tmp_path):
  class Payload:
    def __reduce__(self):
      return (print, ("this must not run",))
  path = tmp_path / "evil.pth"
  torch.save({"w": torch.ones(2), "x": Payload()}, path)
  with pytest.raises(CheckpointError, match=r"evil.pth: holds (builtins|__builtin__).print"):
    torch_pickle.load_state_dict(path)
  (tmp_path / "junk.pth").write_bytes(pickle.dumps([1, 2]) + b"rest")
  with pytest.raises(CheckpointError, match="junk.pth: not a PyTorch file"):
    torch_pickle.load_state_dict(tmp_path / "junk.pth")
  truncated = tmp_path / "cut.pth"
  torch.save(_state_dict(), truncated, _use_new_zipfile_serialization=False)
  truncated.write_bytes(truncated.read_bytes()[:-8])
  with pytest.raises(CheckpointError, match="cut.pth"):
    torch_pickle.load_state_dict(truncated)
