"""scripts/study.py: the study's sweeps as commands, and the copy of a sweep's data into docs/study/."""
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import study  # noqa: E402


def test_every_sweep_is_one_sweep_command_or_one_per_seed():
  for name in study.SWEEPS:
    cmds = study.commands(name, Path("R"))
    assert all(c[1:3] == ["-m", "hbt_jax.sweep"] and f"R/{name}" in c for c in cmds), name
  second = study.commands("it_seq_then_tt", Path("R"))
  assert [c[c.index("--set") + 1] for c in second] == ["seed=0", "seed=1", "seed=2"]
  assert second[2][-1] == "--config.restore_from=R/it_seq_it_first/runs/seed=2"
  (text,) = study.commands("text_full", Path("R"))
  assert "configs/hbt_cpu.py:mlqa_r:hybrid:me5:study:full" in text and "sampler.alpha=0,0.5,1" in text
  (zs,) = study.commands("text_full_zeroshot", Path("R"))   # the untrained reference, same protocol
  assert "configs/hbt_cpu.py:mlqa_r:zeroshot:me5:study:full" in zs and zs[zs.index("--set") + 1] == "seed=0"
  for name in study.SWEEPS:   # every sweep's meta.json says what data it ran on
    assert study.DATA["it" if name.startswith("it_") else name]


def test_collect_aggregates_the_finished_runs_and_records_the_commit(tmp_path, monkeypatch):
  """A sweep writes summary.csv only when it ends: --collect aggregates what has finished so far."""
  runs = tmp_path / "runs"
  done = runs / "it_composition" / "runs" / "seed=1__sampler.batch_type=tt_xy"
  done.mkdir(parents=True)
  (done / "sweep_status.json").write_text(json.dumps({"status": "done", "command": "x"}), encoding="utf-8")
  (done / "results.json").write_text(json.dumps({"step": 60, "scenes/t2i/r@1": 0.25}), encoding="utf-8")
  monkeypatch.setattr(study, "ROOT", tmp_path)
  study.collect("it_composition", runs, "abc1234")
  out = tmp_path / "docs" / "study" / "it_composition"
  meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
  assert meta["commit"] == "abc1234" and "synthetic" in meta["data"]
  rows = list(csv.DictReader((out / "summary.csv").open(encoding="utf-8")))
  assert len(rows) == 12  # 3 seeds x 4 batch types, finished or not
  (row,) = [r for r in rows if r["status"] == "done"]
  assert (row["seed"], row["sampler.batch_type"], float(row["scenes/t2i/r@1"])) == ("1", "tt_xy", 0.25)
