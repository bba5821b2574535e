"""Per-computation XLA options for the text encoder's jitted computations (train step, encoding).

On CPU, XLA (jaxlib 0.10) sends every matmul to YNNPACK by default. For the encoder's shapes Eigen's
matmuls are faster on the machines measured here (docs/benchmarks.md, "CPU speed"): a
[8192 x 1536] . [1536 x 384] feed-forward matmul 168-184 against 95-155 GFLOP/s, encoding 1.26-1.40x
sentence-transformers against 1.02-1.09x, the train step 0.98x against 0.92x. The option is given
to those jits only (`jax.jit(..., compiler_options=...)`), not through XLA_FLAGS, so it never
touches other computations (the evaluation's search kernel, where YNNPACK is ~10 % faster at its
[1024 x 384] . [384 x 32768] blocks) and needs nothing set before JAX starts. GPUs and TPUs ignore
it: it is only given when the default backend is the CPU.
"""
from __future__ import annotations

import jax

CPU_DOTS = ("eigen", "ynnpack")


def encoder_compiler_options(cpu_dots: str) -> dict | None:
  if cpu_dots not in CPU_DOTS:
    raise ValueError(f"config.model.cpu_dots={cpu_dots!r}; known: {', '.join(CPU_DOTS)}")
  if cpu_dots == "ynnpack" or jax.default_backend() != "cpu":
    return None
  # An empty list of YNNPACK fusion types: no dot goes to YNNPACK, XLA:CPU falls back to Eigen.
  return {"xla_cpu_experimental_ynn_fusion_type": ""}
