"""The doc tables built on committed per-run data (scripts/doc_tables.py) equal their sources."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import doc_tables  # noqa: E402


def test_every_marked_table_in_the_docs_equals_its_source(capsys):
  rc = doc_tables.main(["--check"])
  assert rc == 0, capsys.readouterr().out[-4000:]


def _study(tmp_path, monkeypatch, name: str, csv_text: str, commit: str, doc: str) -> None:
  """A study folder `docs/study/NAME` (summary.csv, meta.json) under tmp_path, the only doc `doc`."""
  study = tmp_path / "docs" / "study" / name
  study.mkdir(parents=True)
  (study / "summary.csv").write_text(csv_text, encoding="utf-8")
  (study / "meta.json").write_text(json.dumps({"commit": commit}), encoding="utf-8")
  monkeypatch.setattr(doc_tables, "ROOT", tmp_path)
  monkeypatch.setattr(doc_tables, "DOCS", (doc,))
  doc_tables._read_folder.cache_clear()


def test_check_catches_a_changed_cell_and_regeneration_fixes_it(tmp_path, monkeypatch):
  _study(tmp_path, monkeypatch, "toy", "run,seed,sampler.alpha,status,error,m/a\n"
         "r0,0,0,done,,0.5\nr1,1,0,done,,0.7\nr2,0,1,done,,0.2\nr3,1,1,failed,boom,\n", "abc1234", "docs/research.md")
  monkeypatch.setitem(doc_tables.TABLES, "toy", doc_tables.Table(
      doc_tables.rows_of("toy", "sampler.alpha", [("0", "X-Y"), ("1", "X-X")]), [("A", "m/a")]))
  doc = tmp_path / "docs" / "research.md"
  doc.write_text("intro\n<!-- table toy -->\n| stale |\n<!-- /table -->\nend\n", encoding="utf-8")
  assert doc_tables.main(["--check"]) == 1
  assert doc_tables.main([]) == 0 and doc_tables.main(["--check"]) == 0
  text = doc.read_text(encoding="utf-8")
  assert "| X-Y | 0.600 ± 0.141 |" in text      # mean and sample std of 0.5, 0.7
  assert "| X-X | 0.200 |" in text             # the failed run is left out; one run: no "± 0"
  assert "over 2 seeds (a cell without ± is one run)" in text and "`docs/study/toy/summary.csv` (code abc1234)" in text
  doc.write_text(text.replace("0.600", "0.610"), encoding="utf-8")
  assert doc_tables.main(["--check"]) == 1
  doc.write_text(text.replace("table toy", "table nosuch"), encoding="utf-8")
  assert doc_tables.main(["--check"]) == 1  # a table no source describes


def test_one_evaluation_laid_out_as_settings_by_measures_leaves_missing_cells_blank(tmp_path, monkeypatch):
  """A zero-shot reference (results.md §5) is one run read row by row at a `{metric}`."""
  _study(tmp_path, monkeypatch, "zs", "run,seed,status,error,x/mono/map,x/multi/map,x/multi/rank_distance\n"
         "r0,0,done,,0.77771,0.17049,1104.33\n", "def5678", "docs/results.md")
  monkeypatch.setitem(doc_tables.TABLES, "zs", doc_tables.Table(
      [(m, "zs", {"metric": m}) for m in ("mono", "multi")],
      [("mAP", "x/{metric}/map"), ("rank distance", "x/{metric}/rank_distance")], digits=4, first="setting"))
  doc = tmp_path / "docs" / "results.md"
  doc.write_text("<!-- table zs -->\n<!-- /table -->\n", encoding="utf-8")
  assert doc_tables.main([]) == 0
  text = doc.read_text(encoding="utf-8")
  assert "| setting | mAP | rank distance |" in text
  assert "| mono | 0.7777 |  |" in text and "| multi | 0.1705 | 1104.3 |" in text
  assert "One evaluation, no spread; its row in `docs/study/zs/summary.csv` (code def5678)" in text
  monkeypatch.setitem(doc_tables.TABLES, "zs", doc_tables.Table(   # an ordinary row still needs its value
      [("zero-shot", "zs", {})], [("cross mAP", "x/cross/map")]))
  doc_tables._read_folder.cache_clear()
  with pytest.raises(SystemExit, match="docs/study/zs/summary.csv: no value of 'x/cross/map'"):
    doc_tables.main(["--check"])


SUMMARY_MD = """# Sweep summary: runs/toy

| sampler.alpha | m/a | m/b |
|---|---|---|
| 0 | 0.6000 ± 0.0100 (3) | 81.2345 ± 2.0000 (3) |
| 1 | 0.5000 ± 0.0000 (1) | 90.0000 ± 0.0000 (1) |

## Per family (macro average over the group's languages)

**m/a**

| sampler.alpha | Turkic (tr) |
|---|---|
| 0 | 0.4000 ± 0.0200 (3) |

## Hindi (hi)

| metric \\ sampler.alpha | 0 | 1 |
|---|---|---|
| m/a/hi | 0.7000 ± 0.0300 (3) | 0.7100 ± 0.0400 (3) |
"""


def test_summary_tables_read_main_group_and_language_cells_and_fail_loudly(tmp_path, monkeypatch):
  """The 2026-11/12 text tables rest on committed sweep summaries (mean ± std (n) cells)."""
  study = tmp_path / "docs" / "study"
  study.mkdir(parents=True)
  (study / "toy_summary.md").write_text(SUMMARY_MD, encoding="utf-8")
  monkeypatch.setattr(doc_tables, "ROOT", tmp_path)
  monkeypatch.setattr(doc_tables, "DOCS", ("docs/research.md",))
  A = doc_tables.Agg
  f = "study/toy_summary.md"
  monkeypatch.setitem(doc_tables.SUMMARY_TABLES, "toy", doc_tables.SummaryTable(
      [("α 0", [A(f, ("0",), "m/a"), A(f, ("0",), "m/b"), A(f, ("0",), "Turkic (tr)", "Per family", "m/a"),
                A(f, ("m/a/hi",), "0", "Hindi (hi)")])], ["a", "b", "tr", "hi"]))
  monkeypatch.setitem(doc_tables.SUMMARY_TABLES, "one", doc_tables.SummaryTable(
      [("α 1", [A(f, ("1",), "m/a")])], ["a"]))
  doc = tmp_path / "docs" / "research.md"
  doc.write_text("<!-- table toy -->\n<!-- /table -->\n<!-- table one -->\n<!-- /table -->\n", encoding="utf-8")
  doc_tables._summary_md.cache_clear()
  assert doc_tables.main(["--check"]) == 1 and doc_tables.main([]) == 0
  text = doc.read_text(encoding="utf-8")
  assert "| α 0 | 0.600 ± 0.010 | 81.2 ± 2.0 | 0.400 ± 0.020 | 0.700 ± 0.030 |" in text
  assert "| α 1 | 0.500 |" in text and "One run per row (seed 0 where trained), no spread" in text  # n = 1: no "± 0"
  assert "`docs/study/toy_summary.md`" in text
  (study / "toy_summary.md").write_text(SUMMARY_MD.replace("0.4000 ± 0.0200", "0.4100 ± 0.0200"), encoding="utf-8")
  assert doc_tables.main(["--check"]) == 1   # the source moved: the doc no longer equals it
  monkeypatch.setitem(doc_tables.SUMMARY_TABLES, "toy", doc_tables.SummaryTable(
      [("α 0", [A(f, ("0",), "Turkic (tr)", "Per script", "m/a")])], ["tr"]))
  with pytest.raises(SystemExit, match="study/toy_summary.md: no cell"):
    doc_tables.main(["--check"])
