"""A synthetic image–caption world for offline demos and tests: procedural scenes (coloured shapes,
counts, backgrounds) with captions in 9 languages from templates and word lists written here.

A scene is a background and one or two groups of identical shapes ("two red circles and a blue
triangle on a white background"); scenes are distinct, so retrieval is instance-level. Languages:
en de fr es ru hi (Indo-European; Latin, Cyrillic, Devanagari), tr (Turkic), zh (Sino-Tibetan, Han),
ja (Japonic). `low_resource` keeps captions for only a fraction of the images in some languages.
The world is synthetic: numbers measured on it say whether the code learns, not how a model does on
real photos.

  write_world(out_dir, num_images=600, seed=0) -> out_dir/images/*.png + out_dir/captions.jsonl
  (the generic caption JSONL of hbt_jax/data/captions.py).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from hbt_jax.errors import ConfigError

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 30, 30), "green": (30, 170, 50), "blue": (40, 70, 220),
           "yellow": (240, 210, 20), "purple": (140, 40, 170), "orange": (250, 130, 0)}
BACKGROUNDS = {"white": (250, 250, 250), "grey": (128, 128, 128), "black": (15, 15, 15)}
COUNTS = (1, 2, 3, 4)
LANGS = ("en", "de", "fr", "es", "ru", "hi", "tr", "zh", "ja")


@dataclasses.dataclass(frozen=True)
class Group:
  count: int
  colour: str
  shape: str


@dataclasses.dataclass(frozen=True)
class Scene:
  background: str
  groups: tuple[Group, ...]


# ------------------------------------------------------------------------------- captions
def _en(s: Scene) -> str:
  num = {1: "one", 2: "two", 3: "three", 4: "four"}
  g = [f"{num[x.count]} {x.colour} {x.shape}{'s' if x.count > 1 else ''}" for x in s.groups]
  return f"{' and '.join(g)} on a {s.background} background"


_DE_NOUN = {"circle": ("Kreis", "Kreise", "m"), "square": ("Quadrat", "Quadrate", "n"),
            "triangle": ("Dreieck", "Dreiecke", "n")}
_DE_ADJ = {"red": "rot", "green": "grün", "blue": "blau", "yellow": "gelb", "purple": "violett",
           "orange": "orangefarben"}


def _de(s: Scene) -> str:
  num = {2: "zwei", 3: "drei", 4: "vier"}
  parts = []
  for x in s.groups:
    sg, pl, gender = _DE_NOUN[x.shape]
    adj = _DE_ADJ[x.colour]
    parts.append(f"ein {adj}{'er' if gender == 'm' else 'es'} {sg}" if x.count == 1
                 else f"{num[x.count]} {adj}e {pl}")
  bg = {"white": "weißem", "grey": "grauem", "black": "schwarzem"}[s.background]
  text = " und ".join(parts) + f" auf {bg} Hintergrund"
  return text[0].upper() + text[1:]


def _fr(s: Scene) -> str:
  num = {1: "un", 2: "deux", 3: "trois", 4: "quatre"}
  noun = {"circle": "cercle", "square": "carré", "triangle": "triangle"}  # all masculine
  adj = {"red": "rouge", "green": "vert", "blue": "bleu", "yellow": "jaune", "purple": "violet",
         "orange": "orange"}
  parts = []
  for x in s.groups:
    pl = "s" if x.count > 1 else ""
    a = adj[x.colour] + ("" if x.colour in ("orange",) or adj[x.colour].endswith("s") else pl)
    parts.append(f"{num[x.count]} {noun[x.shape]}{pl} {a}")
  bg = {"white": "blanc", "grey": "gris", "black": "noir"}[s.background]
  return " et ".join(parts) + f" sur fond {bg}"


def _es(s: Scene) -> str:
  num = {1: "un", 2: "dos", 3: "tres", 4: "cuatro"}
  noun = {"circle": ("círculo", "círculos"), "square": ("cuadrado", "cuadrados"),
          "triangle": ("triángulo", "triángulos")}  # all masculine
  adj = {"red": ("rojo", "rojos"), "green": ("verde", "verdes"), "blue": ("azul", "azules"),
         "yellow": ("amarillo", "amarillos"), "purple": ("morado", "morados"),
         "orange": ("naranja", "naranja")}
  parts = [f"{num[x.count]} {noun[x.shape][x.count > 1]} {adj[x.colour][x.count > 1]}"
           for x in s.groups]
  bg = {"white": "blanco", "grey": "gris", "black": "negro"}[s.background]
  return " y ".join(parts) + f" sobre fondo {bg}"


def _ru(s: Scene) -> str:
  num = {1: "один", 2: "два", 3: "три", 4: "четыре"}
  noun = {"circle": ("круг", "круга"), "square": ("квадрат", "квадрата"),
          "triangle": ("треугольник", "треугольника")}  # masculine: nom. sg, gen. sg after 2-4
  adj = {"red": ("красный", "красных"), "green": ("зелёный", "зелёных"), "blue": ("синий", "синих"),
         "yellow": ("жёлтый", "жёлтых"), "purple": ("фиолетовый", "фиолетовых"),
         "orange": ("оранжевый", "оранжевых")}  # nom. sg masc., gen. pl after 2-4
  parts = [f"{num[x.count]} {adj[x.colour][x.count > 1]} {noun[x.shape][x.count > 1]}"
           for x in s.groups]
  bg = {"white": "белом", "grey": "сером", "black": "чёрном"}[s.background]
  text = " и ".join(parts) + f" на {bg} фоне"
  return text[0].upper() + text[1:]


def _hi(s: Scene) -> str:
  num = {1: "एक", 2: "दो", 3: "तीन", 4: "चार"}
  noun = {"circle": "वृत्त", "square": "वर्ग", "triangle": "त्रिभुज"}  # masculine, same in plural
  adj = {"red": ("लाल", "लाल"), "green": ("हरा", "हरे"), "blue": ("नीला", "नीले"),
         "yellow": ("पीला", "पीले"), "purple": ("बैंगनी", "बैंगनी"), "orange": ("नारंगी", "नारंगी")}
  parts = [f"{num[x.count]} {adj[x.colour][x.count > 1]} {noun[x.shape]}" for x in s.groups]
  bg = {"white": "सफ़ेद", "grey": "स्लेटी", "black": "काली"}[s.background]
  return f"{bg} पृष्ठभूमि पर " + " और ".join(parts)


def _tr(s: Scene) -> str:
  num = {1: "bir", 2: "iki", 3: "üç", 4: "dört"}
  noun = {"circle": "daire", "square": "kare", "triangle": "üçgen"}  # no plural after numbers
  adj = {"red": "kırmızı", "green": "yeşil", "blue": "mavi", "yellow": "sarı", "purple": "mor",
         "orange": "turuncu"}
  bg = {"white": "Beyaz", "grey": "Gri", "black": "Siyah"}[s.background]
  return f"{bg} zemin üzerinde " + " ve ".join(
      f"{num[x.count]} {adj[x.colour]} {noun[x.shape]}" for x in s.groups)


def _zh(s: Scene) -> str:
  num = {1: "一", 2: "两", 3: "三", 4: "四"}
  noun = {"circle": "圆形", "square": "正方形", "triangle": "三角形"}
  adj = {"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "purple": "紫色",
         "orange": "橙色"}
  bg = {"white": "白色", "grey": "灰色", "black": "黑色"}[s.background]
  return f"{bg}背景上有" + "和".join(f"{num[x.count]}个{adj[x.colour]}的{noun[x.shape]}"
                                    for x in s.groups)


def _ja(s: Scene) -> str:
  num = {1: "一つ", 2: "二つ", 3: "三つ", 4: "四つ"}
  noun = {"circle": "丸", "square": "四角", "triangle": "三角"}
  adj = {"red": "赤い", "green": "緑の", "blue": "青い", "yellow": "黄色い", "purple": "紫の",
         "orange": "オレンジ色の"}
  bg = {"white": "白い", "grey": "灰色の", "black": "黒い"}[s.background]
  return f"{bg}背景に" + "と".join(f"{adj[x.colour]}{noun[x.shape]}が{num[x.count]}"
                                  for x in s.groups)


CAPTIONERS = {"en": _en, "de": _de, "fr": _fr, "es": _es, "ru": _ru, "hi": _hi, "tr": _tr,
              "zh": _zh, "ja": _ja}


def caption(scene: Scene, lang: str) -> str:
  return CAPTIONERS[lang](scene)


# ------------------------------------------------------------------------------- scenes
def all_scenes() -> list[Scene]:
  """Every distinct scene: a background and one group, or two groups of different colour+shape."""
  groups = [Group(n, c, s) for n in COUNTS for c in COLOURS for s in SHAPES]
  out = []
  for bg in BACKGROUNDS:
    for g1 in groups:
      out.append(Scene(bg, (g1,)))
      out.extend(Scene(bg, (g1, g2)) for g2 in groups if (g2.colour, g2.shape) != (g1.colour, g1.shape)
                 and (g2.colour, g2.shape) > (g1.colour, g1.shape))
  return out


SPLITS = ("all", "train", "test")


def sample_scenes(n: int, seed: int, split: str = "all") -> list[Scene]:
  """`n` distinct scenes; "train" and "test" draw from disjoint compositions (every fifth scene of
  `all_scenes()` is a test scene), so a test world measures retrieval of unseen scenes."""
  if split not in SPLITS:
    raise ConfigError(f"synthetic scenes split {split!r}; known {SPLITS}")
  scenes = [s for i, s in enumerate(all_scenes())
            if split == "all" or (i % 5 == 0) == (split == "test")]
  if n > len(scenes):
    raise ConfigError(f"the synthetic world ({split}) has {len(scenes)} distinct scenes; asked for {n}")
  return [scenes[i] for i in np.random.default_rng(seed).choice(len(scenes), n, replace=False)]


def render(scene: Scene, size: int, rng: np.random.Generator) -> np.ndarray:
  """uint8 [size, size, 3]: the shapes at random non-overlapping places, sizes and rotations."""
  from PIL import Image, ImageDraw
  im = Image.new("RGB", (size, size), BACKGROUNDS[scene.background])
  draw = ImageDraw.Draw(im)
  placed: list[tuple[float, float, float]] = []
  for g in scene.groups:
    for _ in range(g.count):
      for _attempt in range(200):
        r = rng.uniform(0.06, 0.10) * size
        x, y = rng.uniform(r, size - r, 2)
        if all((x - px) ** 2 + (y - py) ** 2 > (r + pr + 2) ** 2 for px, py, pr in placed):
          break
      placed.append((x, y, r))
      colour = COLOURS[g.colour]
      if g.shape == "circle":
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
      else:
        k = 4 if g.shape == "square" else 3
        a0 = rng.uniform(0, 2 * np.pi)
        rr = r * (1.15 if k == 4 else 1.25)
        draw.polygon([(x + rr * np.cos(a0 + 2 * np.pi * i / k), y + rr * np.sin(a0 + 2 * np.pi * i / k))
                      for i in range(k)], fill=colour)
  return np.asarray(im)


def write_world(out_dir: str | Path, num_images: int = 600, seed: int = 0, size: int = 128,
                langs: tuple[str, ...] = LANGS, low_resource: dict[str, float] | None = None,
                split: str = "all") -> Path:
  """Images and captions.jsonl; returns the captions file. `low_resource` = {lang: fraction of the
  images that get a caption in lang} (a nested, seeded choice)."""
  from PIL import Image
  out = Path(out_dir)
  (out / "images").mkdir(parents=True, exist_ok=True)
  low_resource = {"hi": 0.15, "tr": 0.15} if low_resource is None else low_resource
  rng = np.random.default_rng(seed)
  scenes = sample_scenes(num_images, seed, split)
  keep_order = np.random.default_rng(seed + 1).permutation(num_images)
  keep = {l: set(keep_order[:int(round(f * num_images))].tolist()) for l, f in low_resource.items()}
  lines = []
  for i, scene in enumerate(scenes):
    name = f"scene_{i:05d}.png"
    Image.fromarray(render(scene, size, rng)).save(out / "images" / name)
    for lang in langs:
      if lang in keep and i not in keep[lang]:
        continue
      lines.append(json.dumps({"image": name, "lang": lang, "caption": caption(scene, lang)},
                              ensure_ascii=False))
  path = out / "captions.jsonl"
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  return path


def cached_world(num_images: int, split: str = "train", root: str | Path | None = None) -> Path:
  """The default world of a split (seed 0 for train, 1 for test; 128 px; hi and tr low-resource),
  written once under $HBT_CACHE_DIR/synthetic_scenes (or `root`) and reused; returns its folder."""
  import os
  import shutil
  import tempfile
  base = Path(root) if root else Path(os.environ.get("HBT_CACHE_DIR") or
                                      Path.home() / ".cache" / "hbt_jax") / "synthetic_scenes"
  out = base / f"{split}-{num_images}-v1"
  if (out / "captions.jsonl").exists():
    return out
  base.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(dir=base, prefix=".tmp-"))
  write_world(tmp, num_images, seed=0 if split == "train" else 1, split=split)
  try:
    tmp.rename(out)  # atomic: a concurrent writer's finished copy wins, ours is dropped
  except OSError:
    shutil.rmtree(tmp, ignore_errors=True)
  return out
