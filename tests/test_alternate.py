"""The benchmark race's variant parsing (scripts/alternate.py): the default and --hbt variants."""
import argparse
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import alternate  # noqa: E402


def _args(*argv):
  ap = argparse.ArgumentParser()
  alternate.add_arguments(ap)
  return ap.parse_args(list(argv))


def test_default_variant_takes_xla_flags_from_the_environment(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_foo=1")
  [v] = alternate.variants(_args("--dtype", "bfloat16"))
  # The flags once landed in cpu_dots, which the worker rejected: the default race never ran.
  assert (v.name, v.dtype, v.cpu_dots, v.xla_flags) == ("hbt", "bfloat16", "auto", "--xla_cpu_foo=1")


def test_hbt_variants_parse_name_dtype_dots_and_flags():
  a, b, c = alternate.variants(_args("--hbt", "a", "--hbt", "b:bfloat16", "--hbt", "c::eigen=--x=1"))
  assert (a.dtype, a.cpu_dots, a.xla_flags) == ("float32", "auto", "")
  assert (b.dtype, b.cpu_dots) == ("bfloat16", "auto")
  assert (c.dtype, c.cpu_dots, c.xla_flags) == ("float32", "eigen", "--x=1")
  with pytest.raises(SystemExit, match="names must differ"):
    alternate.variants(_args("--hbt", "a", "--hbt", "a:bfloat16"))
  with pytest.raises(SystemExit, match="expected NAME"):
    alternate.variants(_args("--hbt", "a:float32:eigen:extra"))
