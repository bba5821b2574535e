"""Export a trained hbt_jax model to an HF / sentence-transformers directory.

  python -m hbt_jax.export --workdir RUN_DIR --out OUT_DIR [--step N] [--tower query|passage]

OUT_DIR gets config.json + model.safetensors (a BertModel / XLMRobertaModel), the tokenizer files,
and the sentence-transformers modules (Transformer -> Pooling [-> Dense projection] [-> Normalize]),
so `SentenceTransformer(OUT_DIR)` gives the same embeddings as hbt_jax. The "query: "/"passage: "
prefixes are stored as sentence-transformers prompts ("query", "passage").
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from hbt_jax import hf_io, models
from hbt_jax.errors import CheckpointError

_ST_DENSE_IDENTITY = "torch.nn.modules.linear.Identity"


def hf_config(enc: models.EncoderConfig) -> dict:
  common = dict(vocab_size=enc.vocab_size, hidden_size=enc.hidden_size,
                num_hidden_layers=enc.num_layers, num_attention_heads=enc.num_heads,
                intermediate_size=enc.intermediate_size, max_position_embeddings=enc.max_position,
                type_vocab_size=enc.type_vocab_size, layer_norm_eps=enc.layer_norm_eps,
                pad_token_id=enc.pad_token_id, hidden_act=enc.hidden_act,
                hidden_dropout_prob=enc.dropout, attention_probs_dropout_prob=enc.attention_dropout,
                initializer_range=0.02)
  if enc.arch == "xlm-roberta":
    return dict(common, model_type="xlm-roberta", architectures=["XLMRobertaModel"], bos_token_id=0,
                eos_token_id=2)
  return dict(common, model_type="bert", architectures=["BertModel"])


def encoder_tensors(enc_params: dict) -> dict[str, np.ndarray]:
  """Flax encoder params -> HF tensor names (kernels transposed back to [out, in])."""
  out = {}

  def walk(tree, path=()):
    for k, v in tree.items():
      if isinstance(v, dict):
        walk(v, path + (k,))
      elif path and path[0] != "projection":
        arr = np.asarray(v, np.float32)
        out[hf_io.flax_to_hf_name(path + (k,))] = np.ascontiguousarray(arr.T if k == "kernel" else arr)

  walk(enc_params)
  return out


def export(params: dict, enc: models.EncoderConfig, tokenizer, out_dir: str, tower: str = "query",
           max_seq_length: int = 256, prompts: dict[str, str] | None = None,
           source_dir: Path | None = None) -> Path:
  """`source_dir`: the checkpoint the model was initialised from, whose pooler is carried through."""
  from safetensors.numpy import save_file
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  key = f"{tower}_encoder" if f"{tower}_encoder" in params else "query_encoder"
  enc_params = params[key]
  (out / "config.json").write_text(json.dumps(hf_config(enc), indent=1))
  tensors = dict(encoder_tensors(enc_params), **hf_io.read_pooler(source_dir, enc.hidden_size))
  save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
  tokenizer.save_pretrained(str(out))
  modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
             {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
  pooling = {"word_embedding_dimension": enc.hidden_size,
             "pooling_mode_cls_token": enc.pooling == "cls",
             "pooling_mode_mean_tokens": enc.pooling == "mean",
             "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}
  (out / "1_Pooling").mkdir(exist_ok=True)
  (out / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=1))
  if enc.projection_dim:
    proj = enc_params["projection"]
    dense = out / "2_Dense"
    dense.mkdir(exist_ok=True)
    (dense / "config.json").write_text(json.dumps({
        "in_features": enc.hidden_size, "out_features": enc.projection_dim, "bias": True,
        "activation_function": _ST_DENSE_IDENTITY if enc.projection_activation == "identity"
                               else "torch.nn.modules.activation.Tanh"}))
    save_file({"linear.weight": np.ascontiguousarray(np.asarray(proj["kernel"], np.float32).T),
               "linear.bias": np.asarray(proj["bias"], np.float32)}, str(dense / "model.safetensors"))
    modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
  if enc.normalize:
    modules.append({"idx": len(modules), "name": str(len(modules)), "path": f"{len(modules)}_Normalize",
                    "type": "sentence_transformers.models.Normalize"})
    (out / f"{len(modules) - 1}_Normalize").mkdir(exist_ok=True)
  (out / "modules.json").write_text(json.dumps(modules, indent=1))
  (out / "sentence_bert_config.json").write_text(json.dumps(
      {"max_seq_length": min(max_seq_length, enc.max_position), "do_lower_case": False}))
  (out / "config_sentence_transformers.json").write_text(json.dumps(
      {"prompts": prompts or {}, "default_prompt_name": None, "similarity_fn_name": "cosine"}))
  if "image_projection" in params:
    _export_image_head(params, out)
  logging.info("exported the %s tower to %s", tower, out)
  return out


def _export_image_head(params: dict, out: Path) -> None:
  """Image–text runs: the exported text tower is the caption encoder; the image side is the tower
  (config.json's image.tower; after a trainable-tower run, the weights of image_tower.safetensors)
  followed by image_head.safetensors (`kernel` [D_image, D], `bias`,
  then L2 norm) and the learned `log_scale` (logits = exp(log_scale) * cos [+ `logit_bias`])."""
  from safetensors.numpy import save_file
  if "text_projection" in params:
    raise NotImplementedError("export of a LiT run with config.image.proj_dim > 0 (a text "
                              "projection after the encoder) is not supported; use proj_dim=0")
  head = {k: np.ascontiguousarray(np.asarray(v, np.float32))
          for k, v in params["image_projection"].items()}
  head["log_scale"] = np.asarray(params["log_scale"], np.float32).reshape(1)
  if "bias" in params:
    head["logit_bias"] = np.asarray(params["bias"], np.float32).reshape(1)
  save_file(head, str(out / "image_head.safetensors"))


def export_workdir(workdir: str, out_dir: str, step: int | None = None, tower: str = "query") -> Path:
  """The workdir's (latest or given) checkpoint, with the config the run saved."""
  import jax
  import ml_collections
  from hbt_jax import checkpoints, sharding, state
  cfg = ml_collections.ConfigDict(json.loads((Path(workdir) / "config.json").read_text()))
  mesh = sharding.make_mesh({"data": -1, "fsdp": 1})
  bundle = state.build_model(cfg)
  tx = state.make_optimizer(cfg)
  st = state.abstract_train_state(bundle, cfg, mesh, tx)  # restored into; nothing initialised
  mngr = checkpoints.manager(workdir, cfg)
  if step is not None:
    mngr_steps = mngr.all_steps()
    if step not in mngr_steps:
      raise CheckpointError(f"{workdir}: no checkpoint of step {step} (have {list(mngr_steps)})")
  restored = checkpoints.restore_latest(mngr, st, only_step=step)
  mngr.close()
  if restored is None:
    raise CheckpointError(f"{workdir}/checkpoints: no checkpoint to export")
  params = jax.tree.map(np.asarray, restored[0]["params"])
  prompts = {"query": cfg.model.query_prefix, "passage": cfg.model.passage_prefix}
  out = export(params, bundle.enc_cfg, bundle.tokenizer, out_dir, tower,
               max(cfg.model.max_query_len, cfg.model.max_passage_len),
               {k: v for k, v in prompts.items() if v}, bundle.hf_dir)
  if cfg.get("task") == "image_text":
    trained = "image_tower" in params
    (out / "image_tower.json").write_text(json.dumps(
        {"tower": cfg.image.tower, "preprocess": bundle.image_tower.preprocess.key(),
         "trained_weights": "image_tower.safetensors" if trained else None}, indent=1))
    if trained:
      _export_trained_image_tower(params["image_tower"], bundle.image_consts, out)
  return out


def _export_trained_image_tower(tower_params: dict, consts: dict, out: Path) -> None:
  """A trainable tower's weights after training: its Flax variables flattened with "/" names
  (`params/...`, and `batch_stats/...` for EfficientNet), to be read back with
  `flax.traverse_util.unflatten_dict(safetensors.numpy.load_file(path), sep="/")` and applied with
  the tower module named in image_tower.json."""
  from flax import traverse_util
  from safetensors.numpy import save_file
  variables = {"params": tower_params, **{k: v["image_tower"] for k, v in consts.items()}}
  flat = traverse_util.flatten_dict(variables, sep="/")
  save_file({k: np.ascontiguousarray(np.asarray(v, np.float32)) for k, v in flat.items()},
            str(out / "image_tower.safetensors"))


def main(argv):
  del argv
  from absl import flags
  f = flags.FLAGS
  export_workdir(f.workdir, f.out, f.step, f.tower)


if __name__ == "__main__":
  from absl import flags
  from hbt_jax import cli
  flags.DEFINE_string("workdir", None, "a training run's workdir")
  flags.DEFINE_string("out", None, "output directory (HF + sentence-transformers)")
  flags.DEFINE_integer("step", None, "checkpoint step (default: latest)")
  flags.DEFINE_enum("tower", "query", ["query", "passage"], "which tower (separate towers)")
  flags.mark_flags_as_required(["workdir", "out"])
  cli.run(main)
