"""Image–text retrieval metrics against brute force (a full score matrix, stable sort) and
pytrec_eval, on integer embeddings whose scores tie exactly; recall semantics on a hand-made case."""
import numpy as np
import pytrec_eval

from hbt_jax.evaluation import image_text_eval as ite


def _ranks(q, p):
  """[Q, P] 1-based rank of every pool item for every query; ties to the lower index."""
  order = np.argsort(-(q @ p.T), axis=1, kind="stable")
  r = np.empty_like(order)
  np.put_along_axis(r, order, np.arange(1, p.shape[0] + 1)[None].repeat(len(q), 0), 1)
  return r


def _docno(i, n):
  return f"d{n - 1 - i:06d}"  # trec_eval breaks ties by docno descending: equal to lower index first


def _trec(scores, rel_sets, measure):
  n = scores.shape[1]
  qrel = {f"q{i}": {_docno(d, n): 1 for d in rel} for i, rel in enumerate(rel_sets)}
  run = {f"q{i}": {_docno(d, n): float(scores[i, d]) for d in range(n)} for i in range(len(scores))}
  ev = pytrec_eval.RelevanceEvaluator(qrel, {measure}).evaluate(run)
  return np.array([ev[f"q{i}"][measure] for i in range(len(scores))])


def _world(seed=0, n_img=25, langs=("de", "en", "ja")):
  rng = np.random.default_rng(seed)
  img = rng.integers(-2, 3, size=(n_img, 6)).astype(np.float32)
  cap, cap_image, cap_lang = [], [], []
  for i in range(n_img):
    for l in range(len(langs)):
      if rng.random() < 0.8:
        for _ in range(rng.integers(1, 3)):
          cap.append(img[i] + rng.integers(-2, 3, size=6))
          cap_image.append(i)
          cap_lang.append(l)
  return img, np.asarray(cap, np.float32), np.array(cap_image), np.array(cap_lang), list(langs)


def test_metrics_match_brute_force_and_pytrec_eval():
  img, cap, cap_image, cap_lang, langs = _world()
  res = ite.evaluate(img, cap, cap_image, cap_lang, langs)
  for l, lang in enumerate(langs):
    caps = np.flatnonzero(cap_lang == l)
    r = _ranks(cap[caps], img)[np.arange(len(caps)), cap_image[caps]]
    for k in (1, 5, 10):
      np.testing.assert_allclose(res[f"t2i/r@{k}/{lang}"], (r <= k).mean())
    imgs = sorted(set(cap_image[caps].tolist()))
    full = _ranks(img[imgs], cap[caps])
    rel = [np.flatnonzero(cap_image[caps] == i) for i in imgs]
    best = np.array([full[q, rs].min() for q, rs in enumerate(rel)])
    for k in (1, 5, 10):
      np.testing.assert_allclose(res[f"i2t/r@{k}/{lang}"], (best <= k).mean())
    want = _trec(img[imgs] @ cap[caps].T, rel, "map_cut_100").mean()
    np.testing.assert_allclose(res[f"i2t/map@100/{lang}"], want, atol=1e-6)
    t2i_map = _trec(cap[caps] @ img.T, [[i] for i in cap_image[caps]], "map_cut_100").mean()
    np.testing.assert_allclose(res[f"t2i/map@100/{lang}"], t2i_map, atol=1e-6)
  np.testing.assert_allclose(res["t2i/r@5"], np.mean([res[f"t2i/r@5/{l}"] for l in langs]))
  # Multilingual pool: all captions; bias from each language's best caption rank.
  imgs = sorted(set(cap_image.tolist()))
  full = _ranks(img[imgs], cap)
  bias = []
  for q, i in enumerate(imgs):
    per_lang = [full[q, (cap_image == i) & (cap_lang == l)].min() for l in range(len(langs))
                if ((cap_image == i) & (cap_lang == l)).any()]
    if len(per_lang) >= 2:
      bias.append(max(per_lang) - min(per_lang))
  np.testing.assert_allclose(res["multi/language_bias"], np.mean(bias))
  want = _trec(img[imgs] @ cap.T, [np.flatnonzero(cap_image == i) for i in imgs], "map_cut_100")
  np.testing.assert_allclose(res["multi/i2t/map@100"], want.mean(), atol=1e-6)
  # Caption -> caption, de -> ja.
  x, y = 0, 2
  pool = np.flatnonzero(cap_lang == y)
  qs = [c for c in np.flatnonzero(cap_lang == x) if (cap_image[pool] == cap_image[c]).any()]
  rel = [np.flatnonzero(cap_image[pool] == cap_image[c]) for c in qs]
  want = _trec(cap[qs] @ cap[pool].T, rel, "map").mean()
  np.testing.assert_allclose(res["c2c/map/de-ja"], want, atol=1e-6)
  assert len([k for k in res if k.startswith("c2c/map/")]) == 6


def test_image_to_text_recall_is_a_hit_on_any_caption():
  """2 images x 2 captions: image 0's captions rank 1st and 3rd -> i2t R@1 = 1 (not 1/2)."""
  img = np.array([[1, 0], [0, 1]], np.float32)
  cap = np.array([[1, 0], [0.5, 0.6], [0.4, 0.1], [0, 1]], np.float32)
  cap_image, cap_lang = np.array([0, 1, 0, 1]), np.zeros(4, int)
  res = ite.evaluate(img, cap, cap_image, cap_lang, ["en"])
  # image 0 ranks captions 0, 1, 2: its own are 1st and 3rd -> a hit at 1 (a fraction would say 1/2)
  assert res["i2t/r@1/en"] == 1.0
  # AP: image 0 (1/1 + 2/3) / 2, image 1 (captions 3 and 1 rank 1st and 2nd) 1
  np.testing.assert_allclose(res["i2t/map@100/en"], ((1 + 2 / 3) / 2 + 1) / 2)
  assert res["t2i/r@1/en"] == 1.0 and res["mean_recall/en"] == 1.0
