"""scripts/study_figures.py draws docs/research.md's image–text figures from the committed study data."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import doc_tables  # noqa: E402
import study_figures  # noqa: E402


def test_figures_are_drawn_from_the_committed_data(tmp_path, capsys):
  assert study_figures.main(["--out", str(tmp_path)]) == 0
  printed = capsys.readouterr().out
  for name, (_, needs) in study_figures.FIGURES.items():
    have = all((ROOT / "docs" / "study" / s / "summary.csv").exists() for s in needs)
    png = tmp_path / f"{name}.png"
    assert png.exists() == have, printed
    if have:
      assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 20_000
    else:
      assert f"{name}: skipped" in printed


def test_a_point_is_the_tables_cell():
  # the figure's point for it_mono's Indo-European bar is the mean and std of the table's cell
  col = f"{doc_tables.IT}/t2i/map@100/by_family/Indo-European"
  mean, std = study_figures._point("it_composition", {"sampler.batch_type": "it_mono"}, col)
  table = doc_tables.render("it_composition_family")
  assert f"| it_mono | {mean:.3f} ± {std:.3f} |" in table


def test_the_figures_paper_rows_are_the_ones_research_md_quotes():
  text = (ROOT / "docs" / "research.md").read_text(encoding="utf-8")
  for alpha, label in ((1.0, "X-X"), (0.0, "X-Y"), (0.5, "hybrid (α 0.5)")):
    cells = [f"{v:.3f}".lstrip("0") for v in study_figures.PAPER_XLMR_XQUAD_R[alpha][:3]]
    assert f"| {label} | {' | '.join(cells)} | {study_figures.PAPER_XLMR_XQUAD_R[alpha][3]} |" in text
