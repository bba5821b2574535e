"""Alternating worker processes for the framework-against-peer benchmarks (bench_train, bench_encode).

Each contender (sentence-transformers, and one or more hbt_jax variants that differ in compute dtype
or XLA flags) lives in its own worker process, built and warmed up once; then they take turns, one
timed unit each per round, 2 s apart, so neither's thread pool spins while another runs and drift in
this shared machine's speed hits all alike. Medians over the rounds are compared.

A variant is `NAME[:DTYPE[:CPU_DOTS]][=XLA_FLAGS]`, e.g. `fp32`, `bf16:bfloat16`,
`ynn:float32:ynnpack` (config.model.cpu_dots), `x=--xla_cpu_enable_fast_math=true`. XLA flags must
be in the environment before JAX starts, hence one process per variant.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time

import numpy as np

import machine_info


@dataclasses.dataclass
class Variant:
  name: str
  dtype: str = "float32"
  cpu_dots: str = "auto"
  xla_flags: str = ""

  @classmethod
  def parse(cls, spec: str, default_dtype: str = "float32") -> "Variant":
    head, _, flags = spec.partition("=")
    name, dtype, dots, *rest = head.split(":") + ["", ""]
    if not name or any(rest):
      raise SystemExit(f"--hbt {spec!r}: expected NAME[:DTYPE[:CPU_DOTS]][=XLA_FLAGS]")
    return cls(name, dtype or default_dtype, dots or "auto", flags)


def add_arguments(ap) -> None:
  ap.add_argument("--rounds", type=int, default=5)
  ap.add_argument("--dtype", default="float32", help="hbt_jax compute dtype of the default variant")
  ap.add_argument("--hbt", action="append", default=[], metavar="NAME[:DTYPE[:CPU_DOTS]][=XLA_FLAGS]",
                  help="an hbt_jax variant (repeatable); default: one variant 'hbt' with --dtype and "
                       "the XLA_FLAGS of the environment")
  ap.add_argument("--worker", default="", help=argparse_suppress())
  ap.add_argument("--worker_dtype", default="", help=argparse_suppress())
  ap.add_argument("--worker_cpu_dots", default="auto", help=argparse_suppress())


def argparse_suppress():
  import argparse
  return argparse.SUPPRESS


def variants(args) -> list[Variant]:
  if not args.hbt:
    return [Variant("hbt", args.dtype, xla_flags=os.environ.get("XLA_FLAGS", ""))]
  out = [Variant.parse(s, args.dtype) for s in args.hbt]
  if len({v.name for v in out}) != len(out):
    raise SystemExit("--hbt: variant names must differ")
  return out


def serve(build, args) -> None:
  """The worker side: build the timed unit, run it once (warm-up, compilations), say 'ready', then
  run it once per line read and print the seconds it took."""
  run = build(args)
  run()
  print("ready", flush=True)
  for _ in sys.stdin:
    t = time.perf_counter()
    run()
    print(time.perf_counter() - t, flush=True)


def race(script: str, argv: list[str], args, units: float) -> dict:
  """Starts the sentence-transformers worker and one worker per hbt_jax variant, alternates them
  for args.rounds rounds and returns {name: median units/s, ...} with per-round ratios to 'st'."""
  print(machine_info.describe(), flush=True)
  clean = _strip(argv, ("--hbt", "--worker", "--worker_dtype", "--worker_cpu_dots", "--dtype"))
  procs = {}
  for v in variants(args):
    env = {**os.environ, "XLA_FLAGS": v.xla_flags}
    procs[v.name] = subprocess.Popen(
        [sys.executable, script, "--worker", "hbt", "--worker_dtype", v.dtype,
         "--worker_cpu_dots", v.cpu_dots] + clean,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
  procs["st"] = subprocess.Popen([sys.executable, script, "--worker", "st"] + clean,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
  for name, p in procs.items():
    line = p.stdout.readline().strip()
    if line != "ready":
      raise SystemExit(f"worker {name} failed to start (said {line!r})")
  rates = {n: [] for n in procs}
  for _ in range(args.rounds):
    for name, p in procs.items():
      time.sleep(2)  # let the previous worker's idle threads stop spinning
      p.stdin.write("go\n")
      p.stdin.flush()
      rates[name].append(units / float(p.stdout.readline()))
  for p in procs.values():
    p.stdin.close()
    p.wait()
  st = float(np.median(rates["st"]))
  out = {"st_per_s": st, "rounds": args.rounds}
  for v in variants(args):
    med = float(np.median(rates[v.name]))
    out[v.name] = {"per_s": med, "ratio_vs_st": med / st, "dtype": v.dtype, "cpu_dots": v.cpu_dots,
                   "xla_flags": v.xla_flags,
                   "ratio_per_round": [round(h / s, 3) for h, s in zip(rates[v.name], rates["st"])]}
  return out


def _strip(argv: list[str], keys: tuple[str, ...]) -> list[str]:
  """argv without the given options (both `--k v` and `--k=v` forms)."""
  out, skip = [], False
  for a in argv:
    if skip:
      skip = False
      continue
    if a in keys:
      skip = True
      continue
    if any(a.startswith(k + "=") for k in keys):
      continue
    out.append(a)
  return out
