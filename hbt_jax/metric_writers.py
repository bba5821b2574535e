"""Training metrics to DIR/metrics.jsonl and TensorBoard (tensorboardX), from process 0 only."""
from __future__ import annotations

import json
from pathlib import Path

import jax


class MetricWriter:
  def __init__(self, workdir: str):
    self.enabled = jax.process_index() == 0
    if not self.enabled:
      return
    Path(workdir).mkdir(parents=True, exist_ok=True)
    self._jsonl = open(Path(workdir) / "metrics.jsonl", "a", encoding="utf-8")
    from tensorboardX import SummaryWriter
    self._tb = SummaryWriter(str(Path(workdir) / "tensorboard"))

  def write(self, step: int, metrics: dict[str, float]) -> None:
    if not self.enabled:
      return
    clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) or hasattr(v, "item")}
    self._jsonl.write(json.dumps({"step": int(step), **clean}) + "\n")
    self._jsonl.flush()
    for k, v in clean.items():
      self._tb.add_scalar(k, v, step)

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      self._tb.close()
