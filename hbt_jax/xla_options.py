"""Per-computation XLA options for the text encoder's jitted computations (train step, encoding).

On CPU, XLA (jaxlib 0.10) sends every matmul to YNNPACK by default. Measured here
(docs/benchmarks.md, "CPU speed"), Eigen's matmuls are faster where the matmuls are large — encoding
(batches of 128 texts x up to 256 tokens): 1.41x sentence-transformers against 1.20x (MiniLM), 1.36x
against 1.10x (multilingual-e5-small) — while YNNPACK is as fast or faster for training steps of a
few thousand tokens (2026-12-02, against a handicapped peer: MiniLM 0.92x either way; e5 at
batch 32 x 32/64 tokens 1.07x against 0.92x).
So `config.model.cpu_dots="auto"` gives encoding Eigen and leaves the train step to XLA's default;
"eigen" / "ynnpack" force one library for both. The option is given to those jits only
(`jax.jit(..., compiler_options=...)`), not through XLA_FLAGS, so it touches no other computation
(the evaluation's search kernel keeps YNNPACK, ~10 % faster at its [1024 x 384] . [384 x 32768]
blocks) and needs nothing set before JAX starts. GPUs and TPUs get no option.
"""
from __future__ import annotations

import jax
from hbt_jax.errors import ConfigError

CPU_DOTS = ("auto", "eigen", "ynnpack")
PURPOSES = ("train", "encode")
# An empty list of YNNPACK fusion types: no dot goes to YNNPACK, XLA:CPU falls back to Eigen.
EIGEN = {"xla_cpu_experimental_ynn_fusion_type": ""}


def encoder_compiler_options(cpu_dots: str) -> dict[str, dict | None]:
  """{purpose: compiler_options or None} for the jits of the train step and of encoding."""
  if cpu_dots not in CPU_DOTS:
    raise ConfigError(f"config.model.cpu_dots={cpu_dots!r}; known: {', '.join(CPU_DOTS)}")
  if jax.default_backend() != "cpu":
    return dict.fromkeys(PURPOSES)
  library = {"train": "ynnpack" if cpu_dots == "auto" else cpu_dots,
             "encode": "eigen" if cpu_dots == "auto" else cpu_dots}
  return {p: (EIGEN if lib == "eigen" else None) for p, lib in library.items()}
