"""The doc tables that rest on committed per-run data, regenerated from it (issue 22).

  python scripts/doc_tables.py           # rewrite every marked table in docs/ from its source
  python scripts/doc_tables.py --check   # exit 1 and show the difference where a table disagrees

A study's per-run data lives in `docs/study/NAME/`: `summary.csv` (the sweep's one row per run, every
metric, language-group means included) and `meta.json` ({"commit": the code that produced the runs,
"command": how, "machine": where}). A table in a doc sits between

  <!-- table NAME -->
  ...
  <!-- /table -->

and TABLES below says how NAME is built: which runs are its rows (a study and the values of its swept
keys), which metrics are its columns. Each cell is mean ± standard deviation over the runs of its row
(sample std, n - 1), with n (one run's cell shows its value alone); the caption under each table names
its source file, the code's commit and n. A row whose `where` has a "metric" entry is one run read at
that metric: it fills the `{metric}` of its columns (one evaluation laid out as settings × measures,
or measures × languages), and a column that run does not have is left blank (rank distance of mono).

Two older kinds of source, for runs whose per-run folders were not kept (SUMMARY_TABLES): the sweep
summaries of the 2026-11/12 text study (`docs/study/*_summary.md`, cells "mean ± std (n)") and the
reports each HBT run of docs/results.md wrote (`docs/experiment_reports*/TRAIN_VARIANT.md`); their
cells are read as committed, so their spreads can be checked but not recomputed.
tests/test_doc_tables.py runs `--check`.
"""
from __future__ import annotations

import argparse
import csv
import difflib
import functools
import json
import math
import os
import pathlib
import re
import sys
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ("docs/research.md", "docs/results.md", "docs/benchmarks.md", "README.md")
MARK = re.compile(r"(<!-- table (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


@dataclass(frozen=True)
class Ratio:
  """A column that is, per run, the mean of metrics `num` over the mean of metrics `den`."""
  num: tuple[str, ...]
  den: tuple[str, ...]


@dataclass
class Table:
  rows: list[tuple[str, str, dict]]   # (label, study under docs/study/, {swept key: value} its runs have)
  columns: list[tuple[str, str | tuple[str, ...] | Ratio]]  # (header, metric column of summary.csv, or
                                                    # several: their mean within each run, or a Ratio)
  digits: int = 3
  first: str = "run"   # the header of the label column


def rows_of(study: str, key: str, values: list[tuple[str, str]], **fixed) -> list[tuple[str, str, dict]]:
  """One row per (value of the swept `key`, label) of one study."""
  return [(label, study, {key: v, **fixed}) for v, label in values]


IT = "scenes"
FAMILIES = [("Indo-European (de en es fr hi ru)", "Indo-European"), ("Sino-Tibetan (zh)", "Sino-Tibetan"),
            ("Japonic (ja)", "Japonic"), ("Turkic (tr)", "Turkic")]
SCRIPTS = [("Latin (de en es fr tr)", "Latin"), ("Cyrillic (ru)", "Cyrillic"),
           ("Devanagari (hi)", "Devanagari"), ("Han (zh)", "Han"), ("Japanese (ja)", "Japanese")]
COMPOSITION = rows_of("it_composition", "sampler.batch_type",
                      [("it_mono", "it_mono"), ("it_mixed", "it_mixed"), ("tt_xy", "tt_xy"),
                       ("hybrid", "hybrid (α 0.5)")])
HEADLINE = [("t2i R@1", f"{IT}/t2i/r@1"), ("t2i R@10", f"{IT}/t2i/r@10"),
            ("t2i mAP@100", f"{IT}/t2i/map@100"), ("i2t R@1", f"{IT}/i2t/r@1"),
            ("i2t mAP@100", f"{IT}/i2t/map@100"), ("mean recall", f"{IT}/mean_recall"),
            ("multi i2t mAP@100", f"{IT}/multi/i2t/map@100"),
            ("language bias", f"{IT}/multi/language_bias"), ("c2c mAP", f"{IT}/c2c/map")]
ALPHAS = [("0", "0 (tt_xy only)"), ("0.25", "0.25"), ("0.5", "0.5"), ("0.75", "0.75"),
          ("1", "1 (it_mono only)")]
PER_LANG = [(f"{l} t2i mAP@100", f"{IT}/t2i/map@100/{l}") for l in ("en", "de", "zh", "hi", "tr", "ru", "ja")]

LANGS = ("en", "de", "fr", "es", "ru", "hi", "tr", "zh", "ja")
HIGH, LOW, HELD_OUT = ("en", "de", "fr", "es", "zh"), ("hi", "tr"), ("ru", "ja")  # the α study's groups


def t2i(langs) -> tuple[str, ...]:
  return tuple(f"{IT}/t2i/map@100/{l}" for l in langs)


def c2c(keep) -> tuple[str, ...]:
  """c2c mAP over the ordered language pairs (x, y), x != y, that `keep(x, y)` accepts."""
  return tuple(f"{IT}/c2c/map/{x}-{y}" for x in LANGS for y in LANGS if x != y and keep(x, y))


GROUPS = [("t2i, trained (en de fr es zh)", t2i(HIGH)), ("t2i, low-resource (hi tr)", t2i(LOW)),
          ("t2i, held out (ru ja)", t2i(HELD_OUT)),
          ("c2c, pairs of en de fr es zh", c2c(lambda x, y: x in HIGH and y in HIGH)),
          ("c2c, pairs with hi or tr", c2c(lambda x, y: (x in LOW or y in LOW) and x not in HELD_OUT
                                                        and y not in HELD_OUT)),
          ("c2c, pairs with ru or ja", c2c(lambda x, y: x in HELD_OUT or y in HELD_OUT)),
          ("t2i low-resource ÷ trained", Ratio(t2i(LOW), t2i(HIGH))),
          ("t2i held out ÷ trained", Ratio(t2i(HELD_OUT), t2i(HIGH)))]
FRACTIONS = [("0.125", "1/8"), ("0.25", "1/4"), ("0.5", "1/2")]
SCALE = (rows_of("it_scale_hybrid", "data.fraction", [(v, f"hybrid, {l}") for v, l in FRACTIONS])
         + [("hybrid, 1", "it_composition", {"sampler.batch_type": "hybrid"})]
         + rows_of("it_scale_english", "data.fraction", [(v, f"English-only, {l}") for v, l in FRACTIONS + [("1", "1")]]))
SCALE_COLUMNS = [("t2i mAP@100, all 9", f"{IT}/t2i/map@100"), ("t2i mAP@100, en", f"{IT}/t2i/map@100/en"),
                 ("t2i mAP@100, other 8", t2i(LANGS[1:])), ("c2c mAP", f"{IT}/c2c/map"),
                 ("multi i2t mAP@100", f"{IT}/multi/i2t/map@100"), ("language bias", f"{IT}/multi/language_bias")]

TEXT_FULL_ROWS = rows_of("text_full", "sampler.alpha", [("1", "X-X (α 1)"), ("0", "X-Y (α 0)"), ("0.5", "hybrid (α 0.5)")])
XQ_LANGS = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")
ZERO_SHOT_FULL = ("zero-shot e5 (no training)", "text_full_zeroshot", {})  # the same protocol, untrained
MLQA_LANGS = ("ar", "de", "en", "es", "hi", "vi", "zh")


def one_evaluation(study: str, evaluate: str, langs: tuple[str, ...]) -> dict[str, Table]:
  """One (zero-shot) run laid out as its report is: settings × measures (table "") and measures ×
  languages (table "_langs")."""
  measures = [("mAP", "map"), ("R@1", "recall@1"), ("R@5", "recall@5"), ("R@10", "recall@10"), ("MRR", "mrr"),
              ("rank distance", "rank_distance")]
  per_lang = [("mono mAP", "mono/map"), ("multi mAP", "multi/map"), ("rank distance", "multi/rank_distance")]
  return {"": Table([(st, study, {"metric": st}) for st in ("mono", "cross", "multi")],
                    [(h, f"{evaluate}/{{metric}}/{m}") for h, m in measures], digits=4, first="setting"),
          "_langs": Table([(h, study, {"metric": m}) for h, m in per_lang],
                          [(l, f"{evaluate}/{{metric}}/{l}") for l in langs], first="lang")}

TABLES: dict[str, Table] = {
    "it_composition": Table(COMPOSITION, HEADLINE),
    "it_composition_family": Table(COMPOSITION, [(h, f"{IT}/t2i/map@100/by_family/{g}") for h, g in FAMILIES]),
    "it_composition_script": Table(COMPOSITION, [(h, f"{IT}/t2i/map@100/by_script/{g}") for h, g in SCRIPTS]),
    "it_separate": Table([
        ("it_mono alone, 60 steps", "it_composition", {"sampler.batch_type": "it_mono"}),
        ("tt_xy alone, 60 steps", "it_composition", {"sampler.batch_type": "tt_xy"}),
        ("it_mono 30 steps (first stage below)", "it_seq_it_first", {}),
        ("it_mono 30 → tt_xy 30", "it_seq_then_tt", {}),
        ("tt_xy 30 → it_mono 30", "it_seq_then_it", {}),
        ("hybrid α 0.5, 60 steps", "it_composition", {"sampler.batch_type": "hybrid"})], HEADLINE),
    "it_alpha_heldout": Table(rows_of("it_alpha_heldout", "sampler.alpha", ALPHAS), HEADLINE),
    "it_alpha_heldout_langs": Table(rows_of("it_alpha_heldout", "sampler.alpha", ALPHAS), PER_LANG),
    "it_alpha_heldout_groups": Table(rows_of("it_alpha_heldout", "sampler.alpha", ALPHAS), GROUPS),
    "it_scale": Table(SCALE, SCALE_COLUMNS),
    # our side of the paper's Table 1 (research.md §7): the README's protocol on the full XQuAD-R
    "text_full": Table(TEXT_FULL_ROWS + [ZERO_SHOT_FULL],
                       [("mono mAP", "xquad_r/mono/map"), ("cross mAP", "xquad_r/cross/map"),
                        ("multi mAP", "xquad_r/multi/map"), ("rank distance", "xquad_r/multi/rank_distance"),
                        ("mono R@1", "xquad_r/mono/recall@1"), ("cross R@1", "xquad_r/cross/recall@1"),
                        ("multi R@10", "xquad_r/multi/recall@10")]),
    "text_full_multi_langs": Table(TEXT_FULL_ROWS + [ZERO_SHOT_FULL], [(l, f"xquad_r/multi/map/{l}") for l in XQ_LANGS]),
    "text_full_rank_langs": Table(TEXT_FULL_ROWS + [ZERO_SHOT_FULL],
                                  [(l, f"xquad_r/multi/rank_distance/{l}") for l in XQ_LANGS]),
    # research.md §1-§5: zero-shot e5 on the study's slice (300 questions per language, sentence candidates)
    "text_slice_zeroshot": Table([("zero-shot e5 (no training)", "text_slice_zeroshot", {})],
                                 [("mono mAP", "xquad_r/mono/map"), ("cross mAP", "xquad_r/cross/map"),
                                  ("multi mAP", "xquad_r/multi/map"), ("rank distance", "xquad_r/multi/rank_distance"),
                                  ("multi R@10", "xquad_r/multi/recall@10")], digits=4),
}
for _name, _study, _eval, _langs in (  # results.md §5 (e5) and §1 (MiniLM): zero-shot, sentence + paragraph
    ("text_full_zeroshot", "text_full_zeroshot", "xquad_r", XQ_LANGS),
    ("minilm_zeroshot_ctx_xquad_r", "minilm_full_zeroshot", "xquad_r", XQ_LANGS),
    ("minilm_zeroshot_ctx_mlqa_r", "minilm_full_zeroshot", "mlqa_r", MLQA_LANGS)):
  TABLES.update({_name + k: v for k, v in one_evaluation(_study, _eval, _langs).items()})


# --- The 2026-11/12 text study (research.md §1, §2, §4, §5): its per-run folders are gone; what is
# committed are the sweep summaries (docs/study/*_summary.md, mean ± std (n) per cell), so these tables
# are regenerated from those cells. Code: f226844 (the text path was the same for the 11-22 runs).
@dataclass(frozen=True)
class Agg:
  """One cell of a sweep summary: `section` is "" for its first table (rows: the grid's values,
  columns: metrics), "Per family" / "Per script" / "Per resource" (under the bold `sub` metric; rows:
  grid values, columns: groups) or a language's section such as "Hindi (hi)" (rows: metrics, columns:
  grid values). A run's own report (docs/experiment_reports*/NAME.md) reads the same way: section
  "xquad_r" (its "## xquad_r (step N)"), rows "mono" / "cross" / "multi", columns "mAP", "R@1", ….
  `file` is relative to docs/."""
  file: str
  row: tuple[str, ...]
  col: str
  section: str = ""
  sub: str = ""


@dataclass
class SummaryTable:
  rows: list[tuple[str, list[Agg]]]   # (label, one Agg per column)
  headers: list[str]
  digits: int = 3
  source: str = "sweep summaries; the per-run folders of these 2026-11/12 runs are gone; code f226844"
  first: str = "run"   # the header of the label column; another one: rows are one run's settings / measures


TEXT_MAIN = [("mono mAP", "xquad_r/mono/map"), ("cross mAP", "xquad_r/cross/map"),
             ("multi mAP", "xquad_r/multi/map"), ("rank distance", "xquad_r/multi/rank_distance")]
TEXT_R10 = TEXT_MAIN + [("multi R@10", "xquad_r/multi/recall@10")]
XQ_FAMILIES = ["Afro-Asiatic (ar)", "Austro-Asiatic (vi)", "Indo-European (de, el, en, es, hi, ru)",
               "Sino-Tibetan (zh)", "Tai-Kadai (th)", "Turkic (tr)"]
ALPHA_FILE = {"0": "study/alpha_summary.md", "0.25": "study/alpha_025_075_summary.md", "0.5": "study/alpha_summary.md",
              "0.75": "study/alpha_025_075_summary.md", "1": "study/alpha_summary.md"}  # the 3-seed cells of each α
ALPHA_LABEL = {"0": "0 (X-Y)", "0.25": "0.25", "0.5": "0.5 (hybrid)", "0.75": "0.75", "1": "1 (X-X)"}


def _main_row(file: str, row: tuple[str, ...], cols) -> list[Agg]:
  return [Agg(file, row, m) for _, m in cols]


def _lowres(lang: str, group: tuple[str, str]) -> list[tuple[str, list[Agg]]]:
  """§5: per α, the capped runs (the language's own section of lowres_summary.md) and the uncapped
  ones (its family or script row of alpha_summary.md)."""
  metrics = ["xquad_r/mono/map", "xquad_r/multi/map", "xquad_r/multi/rank_distance"]
  name = {"hi": "Hindi (hi)", "vi": "Vietnamese (vi)"}[lang]
  rows = []
  for a in ("0", "0.5", "1"):
    rows.append((f"{lang}, α {a}, capped at 50", [Agg("study/lowres_summary.md", (f"{m}/{lang}",), a, name)
                                                  for m in metrics]))
    rows.append((f"{lang}, α {a}, uncapped", [Agg("study/alpha_summary.md", (a,), group[1], group[0], m)
                                              for m in metrics]))
  return rows


SUMMARY_TABLES: dict[str, SummaryTable] = {
    "text_alpha": SummaryTable(
        [(ALPHA_LABEL[a], _main_row(ALPHA_FILE[a], (a,), TEXT_R10)) for a in ("0", "0.25", "0.5", "0.75", "1")],
        [h for h, _ in TEXT_R10], digits=4),
    "text_alpha_family": SummaryTable(
        [(a, [Agg(ALPHA_FILE[a], (a,), f, "Per family", "xquad_r/multi/map") for f in XQ_FAMILIES])
         for a in ("0", "0.25", "0.5", "0.75", "1")],
        [f"{f} multi mAP" for f in XQ_FAMILIES]),
    "text_xx_mixed": SummaryTable(
        [("xx_mixed (X-X-mixed)", _main_row("study/xx_mixed_summary.md", ("all",), TEXT_R10)),
         ("α 0 (X-Y), from §1", _main_row("study/alpha_summary.md", ("0",), TEXT_R10)),
         ("α 1 (X-X), from §1", _main_row("study/alpha_summary.md", ("1",), TEXT_R10))],
        [h for h, _ in TEXT_R10], digits=4),
    "text_scale": SummaryTable(
        [(f"α {a}, fraction {lab}", _main_row("study/scale_summary.md", (a, f), TEXT_MAIN))
         for a in ("0", "0.5", "1") for f, lab in (("0.125", "1/8"), ("0.25", "1/4"), ("0.5", "1/2"), ("1", "1"))],
        [h for h, _ in TEXT_MAIN]),
    "text_lowres_hi": SummaryTable(_lowres("hi", ("Per script", "Devanagari (hi)")),
                                   ["hi mono mAP", "hi multi mAP", "hi rank distance"]),
    "text_lowres_vi": SummaryTable(_lowres("vi", ("Per family", "Austro-Asiatic (vi)")),
                                   ["vi mono mAP", "vi multi mAP", "vi rank distance"]),
}

REPORT_COLUMNS = [("mono mAP", "mono", "mAP"), ("cross mAP", "cross", "mAP"), ("multi mAP", "multi", "mAP"),
                  ("mono R@1", "mono", "R@1"), ("cross R@1", "cross", "R@1"), ("multi R@1", "multi", "R@1"),
                  ("multi R@10", "multi", "R@10"), ("rank distance", "multi", "rank distance")]
REPORT_VARIANTS = {  # results.md §3 (MiniLM) and §5 (e5): label of each run's report
    "experiment_reports": [("zeroshot", "zeroshot"), ("xx_mono", "xx_mono"), ("xx_mixed", "xx_mixed"),
                           ("xy", "xy"), ("hybrid", "hybrid")],
    "experiment_reports_me5": [("zeroshot", "zero-shot"), ("xx_mono", "xx_mono (X-X)"),
                               ("xx_mixed", "xx_mixed (X-X-mixed)"), ("xy", "xy (X-Y)"),
                               ("hybrid", "hybrid α = 0.5")]}


def _report_table(folder: str, train: str, evaluate: str, code: str) -> SummaryTable:
  rows = [(label, [Agg(f"{folder}/{train}_{v}.md", (setting,), col, evaluate) for _, setting, col in REPORT_COLUMNS])
          for v, label in REPORT_VARIANTS[folder]]
  return SummaryTable(rows, [h for h, _, _ in REPORT_COLUMNS], digits=4,
                      source=f"each run's own report, written by the run; code of {code}")


def _one_report(file: str, evaluate: str, langs: tuple[str, ...], code: str) -> dict[str, SummaryTable]:
  """One zero-shot run's report laid out as the run printed it: settings × measures, and measures ×
  languages (tables NAME and NAME_langs)."""
  cols = ["mAP", "R@1", "R@5", "R@10", "rank distance"]
  source = f"the run's own report; code of {code}"
  return {"": SummaryTable([(st, [Agg(file, (st,), c, evaluate) for c in cols]) for st in ("mono", "cross", "multi")],
                           cols, digits=4, source=source, first="setting"),
          "_langs": SummaryTable([(m, [Agg(file, (l,), m, evaluate) for l in langs])
                                  for m in ("mono mAP", "multi mAP", "rank distance")], list(langs), source=source,
                                 first="lang")}


for _name, _file, _eval, _langs, _code in (  # results.md §1, §4, §5: zero-shot, sentence candidates
    ("minilm_zeroshot_xquad_r", "experiment_reports/mlqa_r_zeroshot.md", "xquad_r", XQ_LANGS,
     "2026-11-21, committed with a47fe36"),
    ("me5_zeroshot_xquad_r", "experiment_reports_me5/mlqa_r_zeroshot.md", "xquad_r", XQ_LANGS,
     "2026-11-22, committed with 6452f31"),
    ("me5_zeroshot_mlqa_r", "experiment_reports_me5/xquad_r_zeroshot.md", "mlqa_r", MLQA_LANGS,
     "2026-11-22, committed with 9868943, 9f29d71 and dd599f5")):
  SUMMARY_TABLES.update({_name + k: v for k, v in _one_report(_file, _eval, _langs, _code).items()})

SUMMARY_TABLES.update({
    "minilm_mlqa_r": _report_table("experiment_reports", "mlqa_r", "xquad_r", "2026-11-21, committed with a47fe36"),
    "minilm_xquad_r": _report_table("experiment_reports", "xquad_r", "mlqa_r", "2026-11-21, committed with a47fe36"),
    "me5_mlqa_r": _report_table("experiment_reports_me5", "mlqa_r", "xquad_r", "2026-11-22, committed with 6452f31"),
    "me5_xquad_r": _report_table("experiment_reports_me5", "xquad_r", "mlqa_r", "2026-11-22, committed with 9868943, 9f29d71 and dd599f5"),
})

CELL = re.compile(r"^(?P<mean>-?[\d.]+)( ± (?P<std>[\d.]+) \((?P<n>\d+)\))?$")  # "m ± s (n)" or one run's "m"


@functools.lru_cache(maxsize=None)
def _summary_md(path: pathlib.Path) -> dict[tuple[str, str], list[tuple[list[str], list[list[str]]]]]:
  """{(section, sub): its tables as (header, rows)}; the first section is ""."""
  out: dict = {}
  section, sub, table = "", "", None
  for line in path.read_text(encoding="utf-8").splitlines():
    if line.startswith("## "):
      section, sub, table = line[3:].split(" (macro")[0].strip(), "", None
    elif line.startswith("**") and line.endswith("**"):
      sub, table = line.strip("*"), None
    elif line.startswith("|"):
      cells = [c.strip() for c in line.strip().strip("|").split("|")]
      if table is None:
        table = (cells, [])
        out.setdefault((section, sub), []).append(table)
      elif not set(line) <= set("|-"):
        table[1].append(cells)
    else:
      table = None
  return out


def agg_value(a: Agg) -> tuple[float, float, int] | None:
  """mean, std, n of one summary cell (None: the cell is there and empty, as a report's mono rank
  distance); a clear error naming the file when it is not there."""
  path = ROOT / "docs" / a.file
  tables = [t for (sec, sub), ts in _summary_md(path).items() for t in ts
            if sub == a.sub and (sec == a.section or sec.startswith(a.section + " (step "))]
  for header, rows in tables:
    if a.col not in header:
      continue
    for r in rows:
      if tuple(r[:len(a.row)]) == a.row:
        if r[header.index(a.col)] == "":
          return None
        m = CELL.match(r[header.index(a.col)])
        if not m:
          raise SystemExit(f"docs/{a.file}: cell {a} is {r[header.index(a.col)]!r}, not 'mean ± std (n)' or a number")
        return float(m["mean"]), float(m["std"] or 0), int(m["n"] or 1)
  raise SystemExit(f"docs/{a.file}: no cell {a}")


def _files(files: list[str]) -> str:
  """Several reports of one folder in one brace group: `docs/a/t_{x,y}.md` for a/t_x.md, a/t_y.md."""
  by_folder: dict[str, list[str]] = {}
  for f in files:
    folder, _, name = f.rpartition("/")
    by_folder.setdefault(folder, []).append(name)
  out = []
  for folder, names in by_folder.items():
    prefix = os.path.commonprefix(names)
    prefix = prefix[:prefix.rfind("_") + 1]
    if len(names) > 2 and prefix and all(n.endswith(".md") for n in names):
      out.append(f"`docs/{folder}/{prefix}{{{','.join(n[len(prefix):-3] for n in names)}}}.md`")
    else:
      out += [f"`docs/{folder}/{n}`" for n in names]
  return ", ".join(out)


def render_summary(name: str) -> str:
  t = SUMMARY_TABLES[name]
  lines = [f"| {t.first} | " + " | ".join(t.headers) + " |", "|---" * (len(t.headers) + 1) + "|"]
  ns, files = set(), {}
  for label, aggs in t.rows:
    cells = []
    for a in aggs:
      files[a.file] = None
      v = agg_value(a)
      if v is None:
        cells.append("")
        continue
      mean, std, n = v
      ns.add(n)
      cells.append(_cell(mean, std, t.digits, n))
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  src = _files(list(files))
  words = "One evaluation, no spread" if t.first != "run" else _spread_words(ns)
  lines += ["", f"*{words}, as committed in {src} ({t.source}); regenerated by `scripts/doc_tables.py`.*", ""]
  return "\n".join(lines)


def _read(study: str) -> tuple[list[dict], dict]:
  return _read_folder(ROOT / "docs" / "study" / study)


@functools.lru_cache(maxsize=None)
def _read_folder(folder: pathlib.Path) -> tuple[list[dict], dict]:
  """A study's rows and meta, read once per run of the script (every cell of every table uses them)."""
  if not (folder / "summary.csv").exists():
    raise SystemExit(f"{folder / 'summary.csv'}: missing; `python scripts/study.py --collect {folder.name} "
                     f"--runs DIR --commit C` copies a sweep's data there")
  with open(folder / "summary.csv", newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
  return rows, meta


def _mean_std(values: list[float]) -> tuple[float, float, int]:
  n = len(values)
  mean = sum(values) / n
  std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
  return mean, std, n


def _cell(mean: float, std: float, digits: int, n: int = 2) -> str:
  """"mean ± std"; one run's value alone (no spread to show)."""
  d = 1 if abs(mean) >= 10 else digits  # ranks and counts: one decimal
  return f"{mean:.{d}f} ± {std:.{d}f}" if n > 1 else f"{mean:.{d}f}"


def _spread_words(ns: set[int]) -> str:
  if ns == {1}:
    return "One run per row (seed 0 where trained), no spread"
  n_txt = "/".join(str(n) for n in sorted(ns - {1}))
  return f"Mean ± standard deviation over {n_txt} seeds" + (" (a cell without ± is one run)" if 1 in ns else "")


def values(study: str, where: dict, col: str | tuple[str, ...] | Ratio, table: str = "",
           blank_ok: bool = False) -> list[float]:
  """One value per finished run of `study` whose swept keys equal `where`: the metric, the mean of
  several, or a Ratio of two such means. `blank_ok`: no value is an empty list, not an error."""
  runs, _ = _read(study)

  def mean(r, cols):
    cells = [r.get(c, "") for c in ((cols,) if isinstance(cols, str) else cols)]
    return sum(float(c) for c in cells) / len(cells) if all(c != "" for c in cells) else None

  out = []
  for r in runs:
    if r.get("status") != "done" or any(r.get(k) != v for k, v in where.items()):
      continue
    if isinstance(col, Ratio):
      num, den = mean(r, col.num), mean(r, col.den)
      v = num / den if num is not None and den else None
    else:
      v = mean(r, col)
    if v is not None:
      out.append(v)
  if not out and not blank_ok:
    raise SystemExit(f"docs/study/{study}/summary.csv: no value of {col!r} for {where}"
                     + (f" (table {table})" if table else ""))
  return out


def render(name: str) -> str:
  t = TABLES[name]
  lines = [f"| {t.first} | " + " | ".join(h for h, _ in t.columns) + " |",
           "|---" * (len(t.columns) + 1) + "|"]
  ns, sources = set(), {}
  for label, study, where in t.rows:
    sources[study] = _read(study)[1]["commit"]
    metric = where.get("metric")
    where = {k: v for k, v in where.items() if k != "metric"}
    cells = []
    for _, col in t.columns:
      if metric is not None:
        col = col.format(metric=metric)
      vals = values(study, where, col, name, blank_ok=metric is not None)
      if not vals:
        cells.append("")
        continue
      mean, std, n = _mean_std(vals)
      ns.add(n)
      cells.append(_cell(mean, std, t.digits, n))
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  src = "; ".join(f"`docs/study/{s}/summary.csv` (code {c})" for s, c in sources.items())
  words = "One evaluation, no spread; its row in" if t.first != "run" else f"{_spread_words(ns)}; one row per run in"
  lines += ["", f"*{words} {src}; "
            f"regenerated by `scripts/doc_tables.py`.*", ""]
  return "\n".join(lines)


def process(text: str) -> str:
  def sub(m):
    name = m.group("name")
    if name in TABLES:
      return m.group(1) + render(name) + m.group(4)
    if name in SUMMARY_TABLES:
      return m.group(1) + render_summary(name) + m.group(4)
    return m.group(0)
  return MARK.sub(sub, text)


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--check", action="store_true", help="report differences, change nothing")
  args = ap.parse_args(argv)
  _read_folder.cache_clear()  # the data as it is now
  _summary_md.cache_clear()
  bad = 0
  for doc in DOCS:
    path = ROOT / doc
    if not path.exists():
      continue
    old = path.read_text(encoding="utf-8")
    for m in MARK.finditer(old):
      if m.group("name") not in TABLES and m.group("name") not in SUMMARY_TABLES:
        print(f"{doc}: table {m.group('name')!r} is not in scripts/doc_tables.py's TABLES")
        bad += 1
    new = process(old)
    if new != old:
      if args.check:
        bad += 1
        sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                   doc, f"{doc} (from its sources)"))
      else:
        path.write_text(new, encoding="utf-8")
        print(f"{doc}: tables regenerated")
  return 1 if bad else 0


if __name__ == "__main__":
  sys.exit(main())
