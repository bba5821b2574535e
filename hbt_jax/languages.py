"""Language metadata for reports: ISO code -> name, family, genus, script, resource class.

Covers every language of XQuAD-R, MLQA-R, XTD10, XM3600 (36 languages) and Multi30K. Family and genus
follow WALS / Glottolog top-level groupings; `resource` is the class of Joshi et al. (2020, "The State
and Fate of Linguistic Diversity and Inclusion in the NLP World"), 0 (left behind) to 5 (winners),
from their published lang2tax list. Codes are those the data sets use (XTD10's Japanese file says
"jp"; it is an alias of "ja").
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping


@dataclasses.dataclass(frozen=True)
class Language:
  code: str
  name: str
  family: str
  genus: str
  script: str
  resource: int  # Joshi et al. 2020 class, 0-5


_ROWS = [
    # code, name, family, genus, script, Joshi class
    ("ar", "Arabic", "Afro-Asiatic", "Semitic", "Arabic", 5),
    ("bn", "Bengali", "Indo-European", "Indic", "Bengali", 3),
    ("cs", "Czech", "Indo-European", "Slavic", "Latin", 4),
    ("da", "Danish", "Indo-European", "Germanic", "Latin", 3),
    ("de", "German", "Indo-European", "Germanic", "Latin", 5),
    ("el", "Greek", "Indo-European", "Greek", "Greek", 3),
    ("en", "English", "Indo-European", "Germanic", "Latin", 5),
    ("es", "Spanish", "Indo-European", "Romance", "Latin", 5),
    ("fa", "Persian", "Indo-European", "Iranian", "Arabic", 4),
    ("fi", "Finnish", "Uralic", "Finnic", "Latin", 4),
    ("fil", "Filipino", "Austronesian", "Greater Central Philippine", "Latin", 3),
    ("fr", "French", "Indo-European", "Romance", "Latin", 5),
    ("he", "Hebrew", "Afro-Asiatic", "Semitic", "Hebrew", 3),
    ("hi", "Hindi", "Indo-European", "Indic", "Devanagari", 4),
    ("hr", "Croatian", "Indo-European", "Slavic", "Latin", 4),
    ("hu", "Hungarian", "Uralic", "Ugric", "Latin", 4),
    ("id", "Indonesian", "Austronesian", "Malayo-Sumbawan", "Latin", 3),
    ("it", "Italian", "Indo-European", "Romance", "Latin", 4),
    ("ja", "Japanese", "Japonic", "Japanese", "Japanese", 5),
    ("ko", "Korean", "Koreanic", "Korean", "Hangul", 4),
    ("mi", "Maori", "Austronesian", "Oceanic", "Latin", 1),
    ("nl", "Dutch", "Indo-European", "Germanic", "Latin", 4),
    ("no", "Norwegian", "Indo-European", "Germanic", "Latin", 1),
    ("pl", "Polish", "Indo-European", "Slavic", "Latin", 4),
    ("pt", "Portuguese", "Indo-European", "Romance", "Latin", 4),
    ("quz", "Cusco Quechua", "Quechuan", "Quechuan", "Latin", 1),
    ("ro", "Romanian", "Indo-European", "Romance", "Latin", 3),
    ("ru", "Russian", "Indo-European", "Slavic", "Cyrillic", 4),
    ("sv", "Swedish", "Indo-European", "Germanic", "Latin", 4),
    ("sw", "Swahili", "Niger-Congo", "Bantoid", "Latin", 2),
    ("te", "Telugu", "Dravidian", "South-Central Dravidian", "Telugu", 1),
    ("th", "Thai", "Tai-Kadai", "Kam-Tai", "Thai", 3),
    ("tr", "Turkish", "Turkic", "Turkic", "Latin", 4),
    ("uk", "Ukrainian", "Indo-European", "Slavic", "Cyrillic", 3),
    ("vi", "Vietnamese", "Austro-Asiatic", "Viet-Muong", "Latin", 4),
    ("zh", "Chinese", "Sino-Tibetan", "Chinese", "Han", 5),
]
LANGUAGES: dict[str, Language] = {r[0]: Language(*r) for r in _ROWS}
ALIASES = {"jp": "ja"}

# The languages of each benchmark the project reads or configures.
DATASETS = {
    "xquad_r": "ar de el en es hi ru th tr vi zh".split(),
    "mlqa_r": "ar de en es hi vi zh".split(),
    "xtd10": "de en es fr it jp ko pl ru tr zh".split(),
    "multi30k": "cs de en fr".split(),
    "xm3600": ("ar bn cs da de el en es fa fi fil fr he hi hr hu id it ja ko mi nl no pl pt quz ro "
               "ru sv sw te th tr uk vi zh").split(),
}
GROUPINGS = ("family", "script", "resource")


def get(code: str) -> Language:
  c = ALIASES.get(code, code)
  if c not in LANGUAGES:
    raise KeyError(f"language {code!r} has no metadata in hbt_jax/languages.py; add a row there")
  return LANGUAGES[c]


def groups(codes: Iterable[str], by: str) -> dict[str, list[str]]:
  """{group label: [codes]} for `by` in family | script | resource (labels like 'class 4')."""
  if by not in GROUPINGS:
    raise ValueError(f"grouping {by!r}; known: {GROUPINGS}")
  out: dict[str, list[str]] = {}
  for c in codes:
    v = getattr(get(c), by)
    out.setdefault(f"class {v}" if by == "resource" else v, []).append(c)
  return dict(sorted(out.items()))


def group_means(per_lang: Mapping[str, float], by: str) -> dict[str, tuple[float, list[str]]]:
  """Macro average over the languages of each group: {label: (mean, [codes])}."""
  return {g: (sum(per_lang[c] for c in cs) / len(cs), cs)
          for g, cs in groups(per_lang, by).items()}
