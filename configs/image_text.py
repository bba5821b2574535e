"""Image–text hybrid batch training (LiT): a locked image tower, multilingual-e5-small as the text
tower, trained with image–caption (it_mono) and caption–caption (tt_xy) batches.

  get_config("scenes:VARIANT")   the offline demo world (hbt_jax/data/synthetic_scenes.py: 9 caption
                                 languages, hi and tr low-resource; evaluated on 200 unseen scenes)
                                 with EfficientNet-Lite0 ImageNet features. VARIANT:
                                   hybrid (alpha 0.5, default) | it_mono | it_mixed | tt_xy |
                                   english (it_mono on English captions only: the CLIP-style baseline)
  get_config("xtd10")            real data for users with the images (for accelerators): the locked
                                 tower is multilingual SigLIP's vision tower
                                 (google/siglip-base-patch16-256-multilingual, downloaded) with the
                                 SigLIP loss; trains on Multi30K (en de fr cs, Flickr30k images in
                                 --config.data.image_dir), evaluates on XTD10 (COCO train2014
                                 images in --config.evals.xtd10.image_dir)
  get_config("xm3600")           the same training, evaluated on XM3600 (--config.evals.xm3600.data_dir
                                 with captions.jsonl and images/)
  ":minilm" after any            English MiniLM text tower instead (faster, not multilingual)

Any HF CLIP / SigLIP vision tower: --config.image.tower=DIR_OR_HUB_ID (efficientnet_lite0 offline).
The synthetic world is synthetic: it shows what the batch types do to the code's learning, not how a
model does on real photos.
"""
from hbt_jax.config_base import base_config, image_text_eval, use_me5, use_minilm

VARIANTS = {"hybrid": ("hybrid", ""), "it_mono": ("it_mono", ""), "it_mixed": ("it_mixed", ""),
            "tt_xy": ("tt_xy", ""), "english": ("it_mono", "en")}


def get_config(arg="scenes"):
  opts = [o for o in (arg or "scenes").split(":") if o]
  data = opts[0]
  variant = next((o for o in opts[1:] if o in VARIANTS), "hybrid")
  unknown = set(opts[1:]) - set(VARIANTS) - {"minilm"}
  if data not in ("scenes", "xtd10", "xm3600") or unknown:
    raise ValueError(f"configs/image_text.py:{arg}: data is one of scenes, xtd10, xm3600, then an "
                     f"optional variant {sorted(VARIANTS)} and ':minilm'")
  c = (use_minilm if "minilm" in opts else use_me5)(base_config())
  c.task = "image_text"
  c.seed = 0
  c.batch_size = 32
  c.num_steps = 60
  c.log_every = 10
  c.checkpoint_every = 30
  c.image.tower = "efficientnet_lite0"
  c.image.loss = "clip"
  c.model.max_query_len = 32         # captions (both sides of a tt_xy pair)
  c.model.max_passage_len = 32
  c.optim.lr = 3e-5
  c.optim.warmup_steps = 6
  batch_type, langs = VARIANTS[variant]
  c.sampler.batch_type = batch_type
  c.sampler.alpha = 0.5
  c.data.langs = langs
  if data == "scenes":
    c.data.source = "synthetic_scenes"
    c.data.num_images = 600
    c.evals.scenes = image_text_eval("synthetic_scenes", num_images=200, split="test",
                                     max_caption_len=32)
  else:
    c.num_steps = 1000
    c.batch_size = 128
    c.data.source = "multi30k"
    c.data.image_dir = ""            # the Flickr30k images (required)
    c.image.tower = "google/siglip-base-patch16-256-multilingual"
    c.image.loss = "siglip"
    c.image.init_temperature, c.image.init_bias = 0.1, -10.0
    name = data
    c.evals[name] = image_text_eval(data, max_caption_len=64)
  c.lock()
  return c
