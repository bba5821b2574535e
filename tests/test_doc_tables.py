"""The doc tables built on committed per-run data (scripts/doc_tables.py) equal their sources."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import doc_tables  # noqa: E402


def test_every_marked_table_in_the_docs_equals_its_source(capsys):
  rc = doc_tables.main(["--check"])
  assert rc == 0, capsys.readouterr().out[-4000:]


def test_check_catches_a_changed_cell_and_regeneration_fixes_it(tmp_path, monkeypatch):
  study = tmp_path / "docs" / "study" / "toy"
  study.mkdir(parents=True)
  (study / "summary.csv").write_text(
      "run,seed,sampler.alpha,status,error,m/a\n"
      "r0,0,0,done,,0.5\nr1,1,0,done,,0.7\nr2,0,1,done,,0.2\nr3,1,1,failed,boom,\n", encoding="utf-8")
  (study / "meta.json").write_text(json.dumps({"commit": "abc1234"}), encoding="utf-8")
  monkeypatch.setattr(doc_tables, "ROOT", tmp_path)
  monkeypatch.setattr(doc_tables, "DOCS", ("docs/research.md",))
  monkeypatch.setitem(doc_tables.TABLES, "toy", doc_tables.Table(
      doc_tables.rows_of("toy", "sampler.alpha", [("0", "X-Y"), ("1", "X-X")]), [("A", "m/a")]))
  doc = tmp_path / "docs" / "research.md"
  doc.write_text("intro\n<!-- table toy -->\n| stale |\n<!-- /table -->\nend\n", encoding="utf-8")
  assert doc_tables.main(["--check"]) == 1
  assert doc_tables.main([]) == 0 and doc_tables.main(["--check"]) == 0
  text = doc.read_text(encoding="utf-8")
  assert "| X-Y | 0.600 ± 0.141 |" in text      # mean and sample std of 0.5, 0.7
  assert "| X-X | 0.200 ± 0.000 |" in text      # the failed run is left out
  assert "over 1/2 seeds" in text and "`docs/study/toy/summary.csv` (code abc1234)" in text
  doc.write_text(text.replace("0.600", "0.610"), encoding="utf-8")
  assert doc_tables.main(["--check"]) == 1
  doc.write_text(text.replace("table toy", "table nosuch"), encoding="utf-8")
  assert doc_tables.main(["--check"]) == 1  # a table no source describes
