r"""A search judged against ground truth: NAS-Bench-Macro's table as the proxy task.

  python launch.py search --config experiments/nas_bench_macro.py --workdir /tmp/mnas_macro \
      --config.proxy.path=/path/to/nas-bench-macro_cifar10.json
  python launch.py search --config experiments/nas_bench_macro.py:pareto ...   # a whole front
  python launch.py search --config experiments/nas_bench_macro.py:evolution ...  # reinforce, random

The real search (store, resume, latency table, TensorBoard, report) on the `nas_bench_macro`
space, each candidate's CIFAR-10 accuracy looked up in the benchmark's file instead of trained
(mnas/nasbench.py; get the file from github.com/xiusu/NAS-Bench-Macro), so a search of 200
samples takes about 30 s. Latency: mnas's own table of the space, measured on xla-cpu (one
thread, 32x32, 17 entries) on this project's 2-core machine and shipped in benchmarks/tables/,
so that the reward's exact optimum, printed by the report, is the same on every machine
(`--config.latency.table=''` measures this machine's in about 20 s instead; then give a
target in its milliseconds). Every architecture's accuracy and latency being known,
benchmarks/search_quality.py compares the controllers with the exact optimum over many seeds.
"""

import os

import ml_collections

from experiments import search_common

TABLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'benchmarks',
                      'tables')


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  """'' : MnasNet's controller (LSTM + PPO) and soft reward; 'evolution', 'reinforce' (TuNAS),
  'random': that controller instead; 'pareto': a whole accuracy-latency front in one search
  (NSGA-II selection in the evolution controller, benchmarks/pareto_search.py)."""
  c = search_common.base_config()
  c.space = 'nas_bench_macro'
  c.num_classes = 10
  c.proxy.kind = 'nas_bench_macro'
  c.proxy.path = ''  # Required: the benchmark's nas-bench-macro_cifar10.json.
  c.proxy.accuracy = 'mean'  # 'seed': one of the 3 seeds, drawn per architecture (noise).
  # Short-budget hyperparameters (the papers' are meant for thousands of samples; e.g.
  # TuNAS's learning rate 0.0048 does not move the logits in 40 updates), chosen by
  # `benchmarks/search_quality.py --tune` on search seeds it does not report, and judged by it
  # on 100 others: candidates per update and each controller's kwargs.
  c.controller_kwargs.mnasnet.update(learning_rate=0.003, baseline_momentum=0.5)
  c.controller_kwargs.reinforce.update(learning_rate=0.3, baseline_momentum=0.5)
  # Strong selection for a short budget: tournament = population (the paper's population of
  # 100 would spend half of 200 samples filling it).
  c.controller_kwargs.evolution.update(population_size=10, tournament_size=10)
  candidates_per_step = {'mnasnet': 5, 'reinforce': 5, 'evolution': 1, 'random': 1}
  c.controller = variant or 'mnasnet'
  c.reward.kind = 'mnasnet_soft'
  # Milliseconds of the shipped xla-cpu table: about the median of the space's 6,561 (1.88 ms;
  # 0.69-3.31 ms in all).
  c.reward.target_ms = 1.9
  c.latency.target = 'xla-cpu'
  c.latency.resolution = 32
  c.latency.num_classes = 10
  c.latency.scope = 'all'  # 17 entries.
  c.latency.table = os.path.join(TABLES, 'latency_xla-cpu_nas_bench_macro_r32_w1.json')
  c.pareto_every_steps = 5
  if variant == 'pareto':
    c.controller, c.reward.kind = 'evolution', 'pareto'
    # Chosen by benchmarks/pareto_search.py --tune (population 4-32 x batch 1-8).
    c.controller_kwargs.evolution.update(selection='nsga2', population_size=8)
  elif c.controller not in candidates_per_step:
    raise ValueError(f"experiments/nas_bench_macro.py: variant {variant!r}; allowed: '', "
                     "'evolution', 'reinforce', 'random', 'pareto'")
  c.candidates_per_step = candidates_per_step[c.controller]
  c.num_steps = 200 // c.candidates_per_step  # 200 samples.
  return c
