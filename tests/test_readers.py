"""LAReQA loader statistics (the LAReQA README's numbers) and strict JSONL validation."""
import json

import numpy as np
import pytest

from hbt_jax.data import jsonl, lareqa
from hbt_jax.data.corpus import DataError

XQUAD_CANDS = dict(ar=1222, de=1276, el=1234, en=1180, es=1215, hi=1244, ru=1219, th=852, tr=1167,
                   vi=1209, zh=1196)
MLQA = dict(en=(1148, 6264), de=(512, 2362), es=(500, 1787), ar=(517, 2545), hi=(507, 2426),
            vi=(511, 2828), zh=(504, 2322))


def test_xquad_r_statistics(data_dir):
  ds = lareqa.read_lareqa("xquad_r", data_dir)
  stats = ds.stats()
  assert {l: s["candidates"] for l, s in stats.items()} == XQUAD_CANDS
  assert all(s["questions"] == 1190 for s in stats.values())
  assert len(ds.candidates) == 13014
  # Fully parallel: every question group has an answer in all 11 languages.
  assert ds.answers.shape == (1190, 11) and (ds.answers >= 0).all()


def test_mlqa_r_statistics(data_dir):
  ds = lareqa.read_lareqa("mlqa_r", data_dir)
  assert {l: (s["questions"], s["candidates"]) for l, s in ds.stats().items()} == MLQA
  per_group = (ds.answers >= 0).sum(1)
  assert per_group.min() == 2 and per_group.max() == 4


def test_answer_sentence_holds_the_answer(data_dir):
  ds = lareqa.read_lareqa("xquad_r", data_dir, langs=["en"])
  raw = json.load(open(f"{data_dir}/lareqa/xquad-r/en.json"))
  answers = {qa["id"]: qa["answers"][0]["text"] for a in raw["data"] for p in a["paragraphs"]
             for qa in p["qas"]}
  hits = [answers[q.qid] in ds.candidates[q.cand].sentence for q in ds.questions]
  # Answers spanning a sentence break are the only misses.
  assert np.mean(hits) > 0.97


def test_lareqa_training_corpus(data_dir):
  corpus = lareqa.training_corpus(lareqa.read_lareqa("mlqa_r", data_dir))
  assert corpus.num_ids == 1148  # MLQA-R question groups (820 + 263 + 65 with 4, 3, 2 langs)
  assert corpus.counts() == {l: q for l, (q, _) in MLQA.items()}


def test_lareqa_bad_json_names_file_and_line(tmp_path):
  d = tmp_path / "lareqa" / "xquad-r"
  d.mkdir(parents=True)
  (d / "en.json").write_text('{"data": [\n{"paragraphs": [}\n]}')
  with pytest.raises(DataError, match=r"en.json:2: invalid JSON"):
    lareqa.read_lareqa("xquad_r", str(tmp_path), langs=["en"])
  (d / "en.json").write_text(json.dumps({"data": [{"paragraphs": [{"context": "x", "qas": []}]}]}))
  with pytest.raises(DataError, match=r"data\[0\].paragraphs\[0\].*sentence_breaks"):
    lareqa.read_lareqa("xquad_r", str(tmp_path), langs=["en"])
  with pytest.raises(DataError, match="missing"):
    lareqa.read_lareqa("xquad_r", str(tmp_path), langs=["de"])


def _write(path, lines, raw=None):
  if raw is not None:
    path.write_bytes(raw)
  else:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  return str(path)


def _rec(i, lang, **kw):
  r = {"id": i, "lang": lang, "query": f"q {i} {lang}", "passage": f"p {i} {lang}"}
  r.update(kw)
  return json.dumps(r, ensure_ascii=False)


def test_jsonl_reads_parallel_data_with_negatives(tmp_path):
  f = _write(tmp_path / "a.jsonl", [_rec("1", "en", negatives=["n1", "n2"]), _rec("1", "de"),
                                    _rec("2", "en", context="ctx"), _rec("2", "fr")])
  c = jsonl.read_jsonl([f])
  assert c.langs == ["de", "en", "fr"] and c.ids == ["1", "2"]
  assert c.available.tolist() == [[True, True, False], [False, True, True]]
  assert c.cell(0, 1).negatives == ("n1", "n2") and c.cell(1, 1).context == "ctx"


@pytest.mark.parametrize("lines,message", [
    ([_rec("1", "en"), '{"id": "2", "lang": "en", "query": "q"'], r"a.jsonl:2: invalid JSON"),
    ([_rec("1", "en"), json.dumps({"id": 3, "lang": "en", "query": "q", "passage": "p"})],
     r"a.jsonl:2: field 'id' must be a string"),
    ([_rec("1", "en"), json.dumps({"id": "3", "lang": "en", "query": " ", "passage": "p"})],
     r"a.jsonl:2: field 'query' is empty"),
    ([_rec("1", "en"), _rec("1", "en")], r"a.jsonl:2: duplicate \(id='1', lang='en'\); first seen at .*a.jsonl:1"),
    ([_rec("1", "en"), json.dumps({"id": "3", "lang": "en", "query": "q"})], r"a.jsonl:2: missing field 'passage'"),
    ([_rec("1", "en"), json.dumps({"id": "3", "lang": "en", "query": "q", "passage": "p", "x": 1})],
     r"a.jsonl:2: unknown fields \['x'\]"),
    ([_rec("1", "en"), _rec("2", "en", negatives="oops")], r"a.jsonl:2: field 'negatives'"),
    ([_rec("1", "en"), "", _rec("2", "en")], r"a.jsonl:2: blank line"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, lines, message):
  f = _write(tmp_path / "a.jsonl", lines)
  with pytest.raises(DataError, match=message):
    jsonl.read_jsonl([f])


def test_jsonl_bom_crlf_are_read_and_invalid_utf8_is_an_error(tmp_path):
  body = (_rec("1", "en") + "\r\n" + _rec("1", "de")).encode("utf-8")
  c = jsonl.read_jsonl([_write(tmp_path / "b.jsonl", None, raw=b"\xef\xbb\xbf" + body)])
  assert c.available.all() and c.cell(0, 0).query == "q 1 de"
  bad = (_rec("1", "en") + "\n").encode() + b'{"id": "2", "lang": "en", "query": "\xff", "passage": "p"}\n'
  with pytest.raises(DataError, match=r"c.jsonl:2: invalid UTF-8"):
    jsonl.read_jsonl([_write(tmp_path / "c.jsonl", None, raw=bad)])


def test_jsonl_non_parallel_ids_are_an_error_when_parallel_data_is_required(tmp_path):
  f = _write(tmp_path / "a.jsonl", [_rec("1", "en"), _rec("1", "de"), _rec("2", "en")])
  with pytest.raises(DataError, match=r"a.jsonl:3: id '2' has only languages \['en'\]"):
    jsonl.read_jsonl([f], min_langs_per_id=2)


def test_jsonl_lenient_mode_counts_and_logs_skips(tmp_path, caplog):
  f = _write(tmp_path / "a.jsonl", [_rec("1", "en"), "{broken", _rec("1", "de"), _rec("1", "de"),
                                    _rec("2", "en")])
  with caplog.at_level("WARNING"):
    c = jsonl.read_jsonl([f], lenient=True)
  assert c.num_ids == 2 and int(c.available.sum()) == 3
  assert sum(c.skipped.values()) == 2
  assert "a.jsonl:2" in caplog.text and "a.jsonl:4" in caplog.text
