"""On PYTHONPATH, hides TensorFlow (and TFDS) from the interpreter, as on a GPU host that does not
have it: `import tensorflow` fails and importlib finds no spec (conftest.WITHOUT_TENSORFLOW)."""
import importlib.machinery
import sys

HIDDEN = ("tensorflow", "tensorflow_datasets")


class _PathFinderWithoutTF(importlib.machinery.PathFinder):
  @classmethod
  def find_spec(cls, name, path=None, target=None):
    if name.split(".")[0] in HIDDEN:
      return None
    return super().find_spec(name, path, target)


sys.meta_path[:] = [_PathFinderWithoutTF if f is importlib.machinery.PathFinder else f
                    for f in sys.meta_path]
