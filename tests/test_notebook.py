"""notebooks/quickstart.ipynb runs top to bottom (tiny config, a few steps), so it cannot rot."""
import os

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_quickstart_notebook_executes(tmp_path, data_dir):
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  nb = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
  env = {"QUICKSTART_STEPS": "3", "QUICKSTART_WORKDIR": str(tmp_path / "qs"),
         "PYTHONPATH": str(ROOT)}
  old = {k: os.environ.get(k) for k in env}
  os.environ.update(env)  # the kernel inherits this process's environment
  try:
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
  finally:
    for k, v in old.items():
      os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
  assert not [o for o in outputs if o.get("output_type") == "error"]
  images = [o for o in outputs if "image/png" in o.get("data", {})]
  assert len(images) >= 3  # the report's heatmap and bars, the sweep's figure
  assert (tmp_path / "qs" / "sweep" / "summary.csv").exists()
  text = "".join(str(o.get("data", {}).get("text/markdown", "")) for o in outputs)
  assert "mono" in text and "sampler.alpha" in text
