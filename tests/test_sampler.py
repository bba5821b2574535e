"""Sampler semantics over thousands of steps, host sharding, determinism."""
import collections
import math

import numpy as np
import pytest

from hbt_jax import sampler as S


def _availability(n_ids=400, n_langs=6, seed=0):
  """Partially parallel data like MLQA-R: every id has 2..n_langs languages."""
  rng = np.random.default_rng(seed)
  avail = np.zeros((n_ids, n_langs), bool)
  for r in range(n_ids):
    k = rng.integers(2, n_langs + 1)
    avail[r, rng.choice(n_langs, k, replace=False)] = True
  return avail


def test_hybrid_semantics_over_2000_steps():
  avail = _availability()
  alpha, steps, b = 0.5, 2000, 32
  smp = S.HybridSampler(avail, b, seed=3, weights=S.mixture_weights("hybrid", alpha, None))
  n_mono = 0
  langs_seen = np.zeros(avail.shape[1])
  for t in range(steps):
    p = smp.plan(t)
    assert len(np.unique(p.rows)) == b, "an id appears twice in a global batch"
    assert avail[p.rows, p.q_lang].all() and avail[p.rows, p.p_lang].all()
    if p.batch_type == "xx_mono":
      n_mono += 1
      assert len(np.unique(p.q_lang)) == 1 and (p.q_lang == p.p_lang).all()
      langs_seen[p.q_lang[0]] += 1
    else:
      assert p.batch_type == "xy"
      assert (p.q_lang != p.p_lang).all()
  # Binomial bound: |k - n alpha| <= 4 sigma.
  sigma = math.sqrt(steps * alpha * (1 - alpha))
  assert abs(n_mono - steps * alpha) <= 4 * sigma, n_mono
  # Uniform language choice for xx_mono (chi-square-ish bound).
  expected = n_mono / avail.shape[1]
  assert np.all(np.abs(langs_seen - expected) <= 5 * math.sqrt(expected))


def test_xy_varies_languages_within_batch_and_xx_mixed_is_same_language():
  avail = _availability()
  xy = S.HybridSampler(avail, 64, 0, S.mixture_weights("xy", 0.5, None))
  p = xy.plan(5)
  assert len(set(zip(p.q_lang.tolist(), p.p_lang.tolist()))) > 5
  mixed = S.HybridSampler(avail, 64, 0, S.mixture_weights("xx_mixed", 0.5, None))
  for t in range(200):
    p = mixed.plan(t)
    assert (p.q_lang == p.p_lang).all() and len(np.unique(p.rows)) == 64
  assert len(np.unique(mixed.plan(0).q_lang)) > 1


def test_mixture_fractions():
  avail = _availability()
  w = S.mixture_weights("mixture", 0, S.parse_mixture("xx_mono:0.2,xy:0.5,xx_mixed:0.3"))
  smp = S.HybridSampler(avail, 16, 1, w)
  counts = {t: 0 for t in S.BATCH_TYPES}
  for t in range(3000):
    counts[smp.plan(t).batch_type] += 1
  for name, p in (("xx_mono", 0.2), ("xy", 0.5), ("xx_mixed", 0.3)):
    assert abs(counts[name] - 3000 * p) <= 4 * math.sqrt(3000 * p * (1 - p)), counts


def test_plan_is_pure_function_of_seed_and_step():
  avail = _availability()
  w = S.mixture_weights("hybrid", 0.5, None)
  a, b = S.HybridSampler(avail, 32, 7, w), S.HybridSampler(avail, 32, 7, w)
  for t in (0, 1, 999, 5):  # any order
    pa, pb = a.plan(t), b.plan(t)
    assert pa.batch_type == pb.batch_type and (pa.rows == pb.rows).all()
    assert (pa.q_lang == pb.q_lang).all() and (pa.p_lang == pb.p_lang).all()
  assert not (a.plan(0).rows == S.HybridSampler(avail, 32, 8, w).plan(0).rows).all()


@pytest.mark.parametrize("hosts", [1, 2, 4])
def test_union_of_host_shards_is_the_global_batch(hosts):
  avail = _availability()
  smp = S.HybridSampler(avail, 32, 0, S.mixture_weights("hybrid", 0.5, None))
  for t in range(50):
    full = smp.plan(t)
    shards = [S.shard_plan(smp.plan(t), hosts, h) for h in range(hosts)]
    assert {s.batch_type for s in shards} == {full.batch_type}
    assert (np.concatenate([s.rows for s in shards]) == full.rows).all()
    assert (np.concatenate([s.q_lang for s in shards]) == full.q_lang).all()
    assert (np.concatenate([s.p_lang for s in shards]) == full.p_lang).all()


def test_hard_negative_picks_are_within_each_pairs_own_negatives():
  avail = _availability(100, 4)
  nneg = np.random.default_rng(0).integers(0, 4, size=avail.shape) * avail
  smp = S.HybridSampler(avail, 16, 0, S.mixture_weights("hybrid", 0.5, None), num_negatives=nneg,
                        negatives_per_pair=2)
  for t in range(100):
    p = smp.plan(t)
    have = nneg[p.rows, p.p_lang]
    for i in range(16):
      picks = p.neg_pick[i][p.neg_pick[i] >= 0]
      assert len(picks) == min(2, have[i]) and len(set(picks.tolist())) == len(picks)
      assert (picks < have[i]).all()


def test_config_errors_name_the_key():
  avail = _availability(20, 3)
  with pytest.raises(S.SamplerConfigError, match="config.sampler.alpha"):
    S.mixture_weights("hybrid", 1.5, None)
  with pytest.raises(S.SamplerConfigError, match="config.sampler.batch_type"):
    S.mixture_weights("mono", 0.5, None)
  with pytest.raises(S.SamplerConfigError, match="config.batch_size"):
    S.HybridSampler(avail, 64, 0, S.mixture_weights("hybrid", 0.5, None))
  with pytest.raises(S.SamplerConfigError, match="config.batch_size=32 must divide"):
    S.host_slice(32, 3, 0)


def test_image_text_batch_types_plan_like_their_text_analogues():
  """it_mono / tt_xy / hybrid over a caption availability matrix (images x caption languages)."""
  rng = np.random.default_rng(5)
  avail = rng.random((400, 6)) < 0.7
  avail[:, 0] = True  # every image has an English caption
  w = S.mixture_weights("hybrid", 0.3, None, modality="image_text")
  assert w == {"xx_mono": pytest.approx(0.3), "xx_mixed": 0.0, "xy": pytest.approx(0.7)}
  smp = S.HybridSampler(avail, 32, 1, w, modality="image_text")
  text = S.HybridSampler(avail, 32, 1, S.mixture_weights("hybrid", 0.3, None))
  kinds = collections.Counter()
  for t in range(400):
    p, q = smp.plan(t), text.plan(t)
    kinds[p.batch_type] += 1
    assert {"it_mono": "xx_mono", "tt_xy": "xy"}[p.batch_type] == q.batch_type
    np.testing.assert_array_equal(p.rows, q.rows)  # the same plan, another name
    assert avail[p.rows, p.q_lang].all()
    if p.batch_type == "it_mono":
      assert len(set(p.q_lang.tolist())) == 1
    else:
      assert (p.q_lang != p.p_lang).all() and avail[p.rows, p.p_lang].all()
  assert set(kinds) == {"it_mono", "tt_xy"} and abs(kinds["it_mono"] / 400 - 0.3) < 4 * (0.21 / 400) ** 0.5
  mixed = S.mixture_weights("mixture", 0, S.parse_mixture("it_mixed:1,tt_xy:1"), modality="image_text")
  assert mixed["xx_mixed"] == mixed["xy"] == 0.5
  with pytest.raises(S.SamplerConfigError, match="image-text batch types"):
    S.mixture_weights("xx_mono", 0.5, None, modality="image_text")
