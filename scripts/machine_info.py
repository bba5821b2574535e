"""What a benchmark ran on, printed at its top so a ratio is tied to a machine: CPU model, the ISA
flags that matter to XLA:CPU and oneDNN (AVX2, AVX-512, AVX512_BF16, AMX), cores visible to this
process, thread settings and library versions."""
import importlib.metadata
import os
import platform

FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile")
LIBS = ("jax", "jaxlib", "flax", "optax", "torch", "sentence-transformers", "transformers",
        "tensorflow", "tensorflow-cpu", "numpy")


def cpu() -> dict:
  model, flags = platform.processor() or "?", set()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name") and model in ("?", "x86_64", ""):
          model = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
          flags = set(line.split(":", 1)[1].split())
          break
  except OSError:
    pass
  return {"cpu": model, "isa": {f: f in flags for f in FLAGS},
          "cores_visible": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}


def versions() -> dict:
  out = {}
  for lib in LIBS:
    try:
      out[lib] = importlib.metadata.version(lib)
    except importlib.metadata.PackageNotFoundError:
      pass
  return out


def threads() -> dict:
  keys = ("XLA_FLAGS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")
  out = {k: os.environ.get(k, "") for k in keys}
  try:
    import torch
    out["torch.get_num_threads"] = torch.get_num_threads()
  except ImportError:
    pass
  return out


def describe() -> str:
  c = cpu()
  isa = " ".join(f"{k}={'yes' if v else 'no'}" for k, v in c["isa"].items())
  return (f"machine: {c['cpu']}; {c['cores_visible']} cores visible; {isa}\n"
          f"python {platform.python_version()}; " +
          ", ".join(f"{k} {v}" for k, v in versions().items()) + "\n"
          "threads: " + ", ".join(f"{k}={v}" for k, v in threads().items() if v != ""))


if __name__ == "__main__":
  print(describe())
