"""The TFDS builder prepares LAReQA offline from a manual dir and gives the json reader's data."""
import pytest

from hbt_jax.data import lareqa


@pytest.mark.slow
def test_tfds_builder_offline_equals_json_reader(data_dir, tmp_path):
  from hbt_jax.data import tfds_lareqa
  ds = tfds_lareqa.load("mlqa_r", data_dir=str(tmp_path), manual_dir=f"{data_dir}/lareqa")
  ref = lareqa.read_lareqa("mlqa_r", data_dir)
  assert ds.stats() == ref.stats()
  assert [q.cand for q in ds.questions[:50]] == [q.cand for q in ref.questions[:50]]
  assert ds.candidates[123].sentence == ref.candidates[123].sentence
  assert (ds.answers == ref.answers).all()
