"""The paper's setting with LaBSE (CLS pooling + its 768->768 tanh Dense head, loaded from the
sentence-transformers checkpoint). See configs/paper_xlmr.py for the data flags."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("paper_xlmr", Path(__file__).with_name("paper_xlmr.py"))
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)


def get_config(arg=None):
  c = _mod.paper_config("sentence-transformers/LaBSE", pooling="cls", projection_dim=768,
                        activation="tanh")
  c.lock()
  return c
