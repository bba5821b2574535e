"""scripts/study.py: the study's sweeps as commands, and the copy of a sweep's data into docs/study/."""
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


def test_collect_copies_the_summary_and_records_the_commit(tmp_path, monkeypatch):
  runs = tmp_path / "runs"
  (runs / "it_composition").mkdir(parents=True)
  (runs / "it_composition" / "summary.csv").write_text("run,seed,status\nr,0,done\n", encoding="utf-8")
  (runs / "it_composition" / "summary.md").write_text("# s\n", encoding="utf-8")
  monkeypatch.setattr(study, "ROOT", tmp_path)
  study.collect("it_composition", runs, "abc1234")
  out = tmp_path / "docs" / "study" / "it_composition"
  meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
  assert meta["commit"] == "abc1234" and "synthetic" in meta["data"]
  assert (out / "summary.csv").read_text(encoding="utf-8").endswith("r,0,done\n")
