"""One train step on 8 fake devices, a checkpoint round trip, and the CLI end to end (tiny config)."""
import json

import jax
import numpy as np
import pytest

from conftest import load_config, run_cli
from hbt_jax import checkpoints, input_pipeline, sharding, state, train


def tiny_config(**overrides):
  return load_config("tiny", **overrides)


@pytest.fixture(scope="module")
def setup(data_dir):
  cfg = tiny_config(**{"data.max_ids": 120, "optim.warmup_steps": 0})
  mesh = sharding.make_mesh(cfg.mesh.to_dict())
  bundle = state.build_model(cfg)
  tx = state.make_optimizer(cfg)
  corpus = input_pipeline.load_corpus(cfg)
  tokens = input_pipeline.tokenize_corpus(corpus, bundle.tokenizer, cfg)
  smp = input_pipeline.make_sampler(cfg, corpus, tokens)
  return cfg, mesh, bundle, tx, tokens, smp


def test_one_train_step(setup):
  cfg, mesh, bundle, tx, tokens, smp = setup
  st = state.create_train_state(bundle, cfg, mesh, tx)
  before = jax.tree.map(np.asarray, st["params"])
  host = input_pipeline.HostBatches(smp, tokens, 1, 0, 0, 1)
  batch = next(host)
  assert batch["query_ids"].shape == (cfg.batch_size, cfg.model.max_query_len)
  glob = sharding.host_local_to_global({k: batch[k] for k in input_pipeline.TEXT_INPUTS if k in batch}, mesh)
  assert len(glob["query_ids"].sharding.device_set) == 8
  step = jax.jit(train.make_train_step(bundle, tx, cfg), donate_argnums=(0,))
  st, m = step(st, glob)
  assert int(st["step"]) == 1 and bool(m["finite"])
  # At random init every passage is about as likely: loss ~ log(batch).
  assert abs(float(m["loss"]) - np.log(cfg.batch_size)) < 0.5
  changed = jax.tree.map(lambda a, b: not np.allclose(a, np.asarray(b)), before, st["params"])
  assert all(jax.tree.leaves(changed))


def test_checkpoint_round_trip(setup, tmp_path):
  cfg, mesh, bundle, tx, tokens, smp = setup
  st = state.create_train_state(bundle, cfg, mesh, tx)
  st["step"] = st["step"] + 7
  mngr = checkpoints.manager(str(tmp_path), cfg)
  checkpoints.save(mngr, 7, st, next_data_step=7)
  mngr.wait_until_finished()
  fresh = state.create_train_state(bundle, tiny_config(seed=1), mesh, tx)
  restored, next_step, step = checkpoints.restore_latest(mngr, fresh)
  mngr.close()
  assert (next_step, step, int(restored["step"])) == (7, 7, 7)
  same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)), st, restored)
  assert all(jax.tree.leaves(same))
  shardings = jax.tree.map(lambda a, b: a.sharding == b.sharding, st, restored)
  assert all(jax.tree.leaves(shardings))


def test_thread_pipeline_gives_the_tf_data_batches(setup):
  """config.data.pipeline=threads (no TensorFlow) yields tf.data's batches, in order, per host."""
  cfg, mesh, bundle, tx, tokens, smp = setup
  for host in (0, 1):
    a = input_pipeline.HostBatches(smp, tokens, 2, host, 3, 9, pipeline="tf.data")
    b = input_pipeline.HostBatches(smp, tokens, 2, host, 3, 9, pipeline="threads")
    assert (a.pipeline, b.pipeline) == ("tf.data", "threads")
    for x, y in zip(list(a), list(b), strict=True):
      assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
    assert a.next_step == b.next_step == 9


def test_host_batches_resume_at_the_same_position(setup):
  cfg, mesh, bundle, tx, tokens, smp = setup
  full = list(input_pipeline.HostBatches(smp, tokens, 1, 0, 0, 6))
  resumed = list(input_pipeline.HostBatches(smp, tokens, 1, 0, 4, 6))
  for a, b in zip(full[4:], resumed):
    assert all(np.array_equal(a[k], b[k]) for k in a)
  # Two simulated hosts together give the one-host global batch.
  h = [next(input_pipeline.HostBatches(smp, tokens, 2, i, 3, 4)) for i in range(2)]
  for k in ("query_ids", "passage_ids", "row"):
    assert np.array_equal(np.concatenate([h[0][k], h[1][k]]), full[3][k])


@pytest.mark.slow
def test_cli_tiny_trains_checkpoints_evaluates_and_resumes(data_dir, tmp_path):
  wd = tmp_path / "run"
  r = run_cli(["--config", "configs/tiny.py"], wd)
  assert r.returncode == 0, r.stderr[-3000:]
  rows = [json.loads(l) for l in (wd / "metrics.jsonl").read_text().splitlines()]
  losses = [x["loss"] for x in rows]
  assert rows[-1]["step"] == 40 and len(losses) == 8
  assert np.mean(losses[-3:]) < np.mean(losses[:2]) - 0.05, losses
  assert sorted(int(p.name) for p in (wd / "checkpoints").iterdir() if p.name.isdigit()) == [20, 30, 40]
  res = json.loads((wd / "results.json").read_text())
  for k in ("xquad_r/mono/map", "xquad_r/cross/map", "xquad_r/multi/map", "xquad_r/cross/map/de-en",
            "xquad_r/multi/rank_distance", "xquad_r/mono/recall@1"):
    assert 0 <= res[k] <= (1 if "rank" not in k else 1e9), k
  assert (wd / "report.md").exists() and (wd / "xquad_r_map_matrix.png").exists()
  # Rerun with more steps: resumes from 40, not from 0.
  r2 = run_cli(["--config", "configs/tiny.py", "--config.num_steps=50"], wd)
  assert r2.returncode == 0, r2.stderr[-3000:]
  assert "restored checkpoint of step 40" in r2.stderr
  rows = [json.loads(l) for l in (wd / "metrics.jsonl").read_text().splitlines()]
  assert [x["step"] for x in rows[8:]] == [45, 50]


def test_jsonl_hard_negatives_reach_the_batch(tmp_path):
  """User JSONL with hard negatives -> tokens -> sampler -> batch: each pair gets its own negatives."""
  import json as _json
  from hbt_jax import tokenization
  lines = []
  for i in range(12):
    for lang in ("de", "en"):
      lines.append(_json.dumps({"id": f"e{i}", "lang": lang, "query": f"question {i} {lang}",
                                "passage": f"answer {i} {lang}",
                                "negatives": [f"wrong {i} {lang} {j}" for j in range(i % 3)]}))
  f = tmp_path / "train.jsonl"
  f.write_text("\n".join(lines) + "\n")
  cfg = tiny_config(**{"data.source": "jsonl", "data.files": str(f), "data.hard_negatives": 2,
                       "batch_size": 8, "data.min_langs_per_id": 2, "data.max_ids": 0})
  bundle = state.build_model(cfg)
  corpus = input_pipeline.load_corpus(cfg)
  tokens = input_pipeline.tokenize_corpus(corpus, bundle.tokenizer, cfg)
  smp = input_pipeline.make_sampler(cfg, corpus, tokens)
  b = next(input_pipeline.HostBatches(smp, tokens, 1, 0, 0, 1))
  assert b["neg_ids"].shape == (8, 2, cfg.model.max_passage_len)
  tok = tokenization.load_tokenizer(cfg.model.tokenizer)
  for i in range(8):
    row, lang = b["row"][i], corpus.langs[b["p_lang"][i]]
    own = set(corpus.cell(row, b["p_lang"][i]).negatives)
    assert int(b["neg_valid"][i].sum()) == min(2, len(own))
    for j in np.flatnonzero(b["neg_valid"][i]):
      text = tok.decode(b["neg_ids"][i, j], skip_special_tokens=True)
      assert text.replace("passage : ", "").strip() in {n.lower() for n in own}, (text, own)
  # ... and the step trains on them (finite loss over 8 + 16 candidates).
  mesh = sharding.make_mesh(cfg.mesh.to_dict())
  tx = state.make_optimizer(cfg)
  st = state.create_train_state(bundle, cfg, mesh, tx)
  glob = sharding.host_local_to_global({k: b[k] for k in input_pipeline.TEXT_INPUTS if k in b}, mesh)
  _, m = jax.jit(train.make_train_step(bundle, tx, cfg))(st, glob)
  assert bool(m["finite"])


@pytest.mark.parametrize("over", [{"model.shared_towers": False}, {"model.dtype": "bfloat16"}])
def test_separate_towers_and_bf16_train(setup, over):
  cfg, mesh, _, _, tokens, smp = setup
  cfg = tiny_config(**{"data.max_ids": 120, "optim.warmup_steps": 0, **over})
  bundle = state.build_model(cfg)
  tx = state.make_optimizer(cfg)
  st = state.create_train_state(bundle, cfg, mesh, tx)
  if "model.shared_towers" in over:
    assert set(st["params"]) == {"query_encoder", "passage_encoder"}
  b = next(input_pipeline.HostBatches(smp, tokens, 1, 0, 0, 1))
  glob = sharding.host_local_to_global({k: b[k] for k in input_pipeline.TEXT_INPUTS if k in b}, mesh)
  st2, m = jax.jit(train.make_train_step(bundle, tx, cfg))(st, glob)
  assert bool(m["finite"]) and abs(float(m["loss"]) - np.log(cfg.batch_size)) < 0.6
  # Parameters stay float32 whatever the compute dtype.
  assert all(x.dtype == np.float32 for x in jax.tree.leaves(st2["params"]))
