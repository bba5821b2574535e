"""The research workflow: sweep runner (grid, resume, failures, summary), nested data fractions,
per-language caps, and the language metadata table."""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from hbt_jax import languages, sweep
from hbt_jax.data.corpus import DataError
from hbt_jax.errors import ConfigError


def _sweep(tmp_path, *extra):
  cmd = [sys.executable, "-m", "hbt_jax.sweep", "--config", "configs/tiny.py", "--workdir",
         str(tmp_path / "sw"), "--set", "sampler.alpha=0.5,7", "--set", "seed=0,1",
         "--config.num_steps=3", "--config.checkpoint_every=3", "--config.log_every=1",
         "--config.evals.xquad_r.max_questions=8", *extra]
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.slow
def test_sweep_runs_the_grid_resumes_and_reports_failures(tmp_path, data_dir):
  r = _sweep(tmp_path)
  assert r.returncode == 1, r.stdout + r.stderr  # two points fail (alpha=7)
  out = tmp_path / "sw"
  rows = list(csv.DictReader(open(out / "summary.csv")))
  assert [(x["sampler.alpha"], x["seed"], x["status"]) for x in rows] == [
      ("0.5", "0", "done"), ("0.5", "1", "done"), ("7", "0", "failed"), ("7", "1", "failed")]
  assert all("sampler.alpha" in x["error"] for x in rows if x["status"] == "failed")
  # Two seeds of alpha=0.5: the summary's mean and std are those of the two runs' results.json.
  vals = [json.loads((out / "runs" / f"sampler.alpha=0.5__seed={s}" / "results.json").read_text())
          ["xquad_r/multi/map"] for s in (0, 1)]
  assert vals[0] != vals[1]  # the seeds differ
  md = (out / "summary.md").read_text()
  cell = f"{np.mean(vals):.4f} ± {np.std(vals, ddof=1):.4f} (2)"
  assert cell in md, md
  assert "## Runs not done" in md and "sampler.alpha=7__seed=0" in md
  assert "Per family" in md and "Indo-European (de, en, es)" in md
  assert (out / "summary_xquad_r_multi_map.png").exists()
  # Resumed: finished runs are skipped (their results untouched), failed ones are tried again.
  mtime = (out / "runs" / "sampler.alpha=0.5__seed=0" / "results.json").stat().st_mtime
  r2 = _sweep(tmp_path)
  assert r2.stdout.count("done before, skipped") == 2, r2.stdout
  assert r2.stdout.count(": failed") == 2
  assert (out / "runs" / "sampler.alpha=0.5__seed=0" / "results.json").stat().st_mtime == mtime
  # The same workdir with a changed override would mix two experiments: refused.
  r3 = _sweep(tmp_path, "--config.optim.lr=0.1")
  assert r3.returncode != 0 and "finished with another command" in r3.stderr


def test_print_commands_and_grid():
  r = subprocess.run([sys.executable, "-m", "hbt_jax.sweep", "--config", "configs/tiny.py",
                      "--workdir", "W", "--set", "sampler.alpha=0,0.5,1", "--set", "seed=0,1",
                      "--config.num_steps=7", "--print_commands"], cwd=ROOT, capture_output=True,
                     text=True, timeout=120, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
  lines = r.stdout.strip().splitlines()
  assert r.returncode == 0 and len(lines) == 6
  assert all("-m hbt_jax.main --config configs/tiny.py" in ln and "--config.num_steps=7" in ln
             for ln in lines)
  assert "--workdir W/runs/sampler.alpha=0.5__seed=1" in lines[3]
  assert lines[3].endswith("--config.sampler.alpha=0.5 --config.seed=1")
  with pytest.raises(ConfigError, match="expected KEY=V1,V2"):
    sweep.parse_sets(["sampler.alpha"])


def test_per_language_keys_and_group_means():
  m = {"x/mono/map/de": 0.5, "x/mono/map/en": 0.7, "x/mono/map/hi": 0.1, "x/mono/de/recall@1": 0.2,
       "x/mono/en/recall@1": 0.4, "x/cross/map/de-en": 0.3, "x/mono/map": 0.43}
  per = sweep.per_language(m)
  assert per == {"x/mono/map": {"de": 0.5, "en": 0.7, "hi": 0.1},
                 "x/mono/recall@1": {"de": 0.2, "en": 0.4}}
  g = sweep.group_metrics(m)
  assert g["x/mono/map/by_family/Indo-European"] == pytest.approx((0.5 + 0.7 + 0.1) / 3)
  assert g["x/mono/map/by_script/Latin"] == pytest.approx(0.6)
  assert g["x/mono/map/by_resource/class 4"] == pytest.approx(0.1)
  assert g["x/mono/map/by_resource/class 5"] == pytest.approx(0.6)
  assert sweep.headline_keys(m) == ["x/mono/map"]


def test_languages_table_for_a_low_resource_study(tmp_path):
  """--languages hi: per-language rows and, for pair metrics, means over the pairs with hi as the
  query and as the pool language, mean ± std over seeds."""
  grid = [("sampler.alpha", ["0", "1"]), ("seed", ["0", "1"])]
  for p in sweep.grid_points(grid):
    wd = tmp_path / "runs" / sweep.run_name(p)
    wd.mkdir(parents=True)
    a, s = float(p["sampler.alpha"]), float(p["seed"])
    res = {"x/mono/map": 0.5, "x/mono/map/hi": a + s, "x/mono/map/en": 9.0,
           "x/cross/map/hi-en": 1 + a, "x/cross/map/hi-de": 3 + a, "x/cross/map/en-hi": 5 + s}
    (wd / "results.json").write_text(json.dumps(res))
    (wd / sweep.STATUS).write_text(json.dumps({"status": "done", "command": "x"}))
  assert sweep.pair_metrics({"x/cross/map/hi-en": 1.0, "x/cross/map/hi-de": 3.0,
                             "x/cross/map/en-de": 7.0}, ["hi"]) == {"x/cross/map/query_lang/hi": 2.0}
  out = sweep.aggregate(tmp_path, grid, ["hi"])
  assert out["summary"][("1",)]["x/cross/map/query_lang/hi"] == (3.0, 0.0, 2)
  md = (tmp_path / "summary.md").read_text()
  assert "## Hindi (hi)" in md
  assert "| x/mono/map/hi | 0.5000 ± 0.7071 (2) | 1.5000 ± 0.7071 (2) |" in md, md
  assert "| x/cross/map/pool_lang/hi | 5.5000 ± 0.7071 (2) | 5.5000 ± 0.7071 (2) |" in md
  assert "x/mono/map/en |" not in md
  with pytest.raises(ConfigError, match="'th'"):
    sweep.aggregate(tmp_path, grid, ["th"])


def test_nested_fractions_and_language_caps(data_dir):
  from hbt_jax import input_pipeline
  from hbt_jax.data import lareqa
  corpus = lareqa.training_corpus(lareqa.read_lareqa("mlqa_r", data_dir))
  sets = [set(corpus.fraction(f, seed=3).ids) for f in (1 / 8, 1 / 4, 1 / 2, 1.0)]
  assert [len(s) for s in sets] == [int(np.ceil(f * corpus.num_ids)) for f in (1 / 8, 1 / 4, 1 / 2, 1)]
  assert sets[0] < sets[1] < sets[2] < sets[3]
  assert set(corpus.fraction(1 / 8, seed=4).ids) != sets[0]
  with pytest.raises(DataError, match="config.data.fraction"):
    corpus.fraction(0.0)
  caps = input_pipeline.parse_lang_caps("hi:50, vi:20")
  capped = corpus.cap_langs(caps, seed=1)
  before, after = corpus.counts(), capped.counts()
  assert after["hi"] == 50 and after["vi"] == 20
  assert all(after[l] == before[l] for l in before if l not in caps)
  small = corpus.cap_langs({"hi": 10}, seed=1)
  hi = lambda c: {i for i, ok in zip(c.ids, c.available[:, c.lang_index("hi")]) if ok}
  assert hi(small) < hi(capped)  # nested
  with pytest.raises(DataError, match="lang_caps"):
    input_pipeline.parse_lang_caps("hi=50")
  with pytest.raises(DataError, match=r"\['xx'\]"):
    corpus.cap_langs({"xx": 5})


def test_language_table_covers_every_dataset():
  for name, codes in languages.DATASETS.items():
    for c in codes:
      lang = languages.get(c)
      assert lang.name and lang.family and lang.script and 0 <= lang.resource <= 5, (name, c)
  assert len(languages.DATASETS["xm3600"]) == 36
  assert languages.get("jp").name == "Japanese"
  assert languages.groups(["en", "hi", "th"], "script") == {"Devanagari": ["hi"], "Latin": ["en"],
                                                            "Thai": ["th"]}
  with pytest.raises(KeyError, match="xx"):
    languages.get("xx")
