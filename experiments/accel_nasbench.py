r"""Accel-NASBench: a hardware-aware search on ImageNet accuracies and A100 throughputs that
nobody here measured, in minutes on 2 cores.

  python launch.py search --config experiments/accel_nasbench.py --workdir /tmp/mnas_anb \
      --config.proxy.path=/path/to/anb_dataset_jsons.tar.gz
  python launch.py search --config experiments/accel_nasbench.py:pareto ...   # a whole front
  python launch.py surrogate --config experiments/accel_nasbench.py:surrogate --workdir DIR \
      --config.data=/path/to/anb_dataset_jsons.tar.gz [--config.test_data=OTHER_FILES]

The real search (store, resume, TensorBoard, report) on the `accel_nasbench` space
(search_spaces/accel_nasbench.py), each candidate's ImageNet top-1 predicted by a surrogate
fitted on the benchmark's 4,638 result files, and its cost by a surrogate of the throughput
measured on `proxy.metric`'s device (mnas/accel_nasbench.py; files from
github.com/afzalxo/Accel-NASBench). `proxy.target` is the reward's target in the metric's
unit: images/s for a throughput (cost 1000 / throughput ms per image), ms for an FPGA's
latency. The report sets the best found against EfficientNet-B0's point of the space and
against the best measured file.

`:surrogate` is `launch.py surrogate`'s config: fit each target on `data` (80%, 10% to choose
the hyperparameters) and report it on the held-out 10%, or on `test_data`.
"""

import ml_collections

from experiments import search_common

# Chosen by `launch.py surrogate` (select=True) on the validation 10% of the files, split
# seed 0; the search refits with these on every file.
HYPER = {
    'accuracy': {'lengthscale': 12.0, 'noise': 0.03},
    'a100_throughput': {'lengthscale': 16.0, 'noise': 0.0003},
    '3090_throughput': {'lengthscale': 16.0, 'noise': 0.001},
    'tpuv2_throughput': {'lengthscale': 24.0, 'noise': 0.0003},
    'tpuv3_throughput': {'lengthscale': 24.0, 'noise': 0.003},
    'zcu102_throughput': {'lengthscale': 16.0, 'noise': 0.0003},
    'zcu102_latency': {'lengthscale': 16.0, 'noise': 0.0003},
    'vck190_throughput': {'lengthscale': 24.0, 'noise': 0.0003},
    'vck190_latency': {'lengthscale': 24.0, 'noise': 0.0003},
}


def surrogate_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.data = ''  # Required: result files (folder, .tar.gz, or comma-separated list).
  c.test_data = ''  # '': the held-out 10% of `data`; else these files.
  c.targets = ('accuracy', 'a100_throughput', '3090_throughput', 'tpuv2_throughput',
               'tpuv3_throughput', 'zcu102_throughput', 'zcu102_latency',
               'vck190_throughput', 'vck190_latency')
  c.seed = 0  # The 80/10/10 split's.
  c.select = True  # Choose length scale and noise on the validation 10%; False: `hyper`.
  c.hyper = HYPER
  return c


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  """'': MnasNet's controller (LSTM + PPO) and soft reward; 'evolution', 'random': that
  controller; 'pareto': a whole top-1 / throughput front (NSGA-II); 'surrogate': the config
  of `launch.py surrogate`."""
  if variant == 'surrogate':
    return surrogate_config()
  c = search_common.base_config()
  c.space = 'accel_nasbench'
  c.num_classes = 1000
  c.proxy.kind = 'accel_nasbench'
  c.proxy.path = ''  # Required: anb_dataset_jsons.tar.gz, its folder, or a list of files.
  c.proxy.metric = 'a100_throughput'  # mnas.accel_nasbench.METRICS.
  # The reward's target in the metric's unit: 11,000 images/s on the A100, 1.4x
  # EfficientNet-B0's predicted 7,960 (the files' median is 8,246; 4,280-30,275 in all).
  c.proxy.target = 11000.0
  c.proxy.hyper = HYPER  # The surrogates' length scale and noise, by target.
  c.reward.kind = 'mnasnet_soft'
  c.controller_kwargs.mnasnet.update(learning_rate=0.003, baseline_momentum=0.5)
  c.controller_kwargs.evolution.update(population_size=20, tournament_size=10)
  candidates_per_step = {'mnasnet': 10, 'evolution': 1, 'random': 1}
  c.controller = variant if variant in ('evolution', 'random') else 'mnasnet'
  if variant == 'pareto':
    c.controller, c.reward.kind = 'evolution', 'pareto'
    c.controller_kwargs.evolution.update(selection='nsga2', population_size=20)
  elif variant not in ('', 'evolution', 'random'):
    raise ValueError(f"experiments/accel_nasbench.py: variant {variant!r}; allowed: '', "
                     "'evolution', 'random', 'pareto', 'surrogate'")
  c.candidates_per_step = candidates_per_step[c.controller]
  c.num_steps = 500 // c.candidates_per_step  # 500 samples.
  c.pareto_every_steps = 10
  return c
