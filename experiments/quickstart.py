r"""The README's main command: a few-minute MnasNet-style search on a CPU.

  python launch.py search --config experiments/quickstart.py --workdir /tmp/mnas_quickstart

The `tiny` MobileNetV3-like space at 32x32, the embedded `mnas_shapes` dataset (generated on
first use), a latency table measured on this machine's CPU (`xla-cpu`, one thread; built on
first use into workdir/latency), MnasNet's LSTM controller with PPO and the soft reward
(Tan et al. 2019, Eq. 2: alpha = beta = -0.07). Each candidate trains a few hundred steps
on the proxy task and reports accuracy on images held out of the training split.
"""

import ml_collections

from experiments import search_common


def get_config() -> ml_collections.ConfigDict:
  c = search_common.base_config()
  c.space = 'tiny'
  c.resolution = 32  # CPU-sized: the tiny space's candidates at 32x32.
  c.controller = 'mnasnet'
  # Short-budget hyperparameters (the papers' are meant for thousands of samples), chosen on
  # a synthetic reward at a few dozen samples (benchmarks/search_vs_random.py --tune).
  c.controller_kwargs.mnasnet.learning_rate = 0.03  # MnasNet: 3.5e-4 for 8,000 samples.
  c.controller_kwargs.reinforce.learning_rate = 0.4  # TuNAS: 0.0048 per training step.
  c.controller_kwargs.evolution.population_size = 8  # Real et al.: 100.
  c.controller_kwargs.evolution.tournament_size = 3  # Real et al.: 25.
  c.num_steps = 4
  c.candidates_per_step = 3
  c.reward.kind = 'mnasnet_soft'
  c.reward.target_ms = 0.15  # Predicted ms on the xla-cpu table at 32x32; ~ the space's median.
  c.latency.target = 'xla-cpu'
  c.latency.resolution = 32
  c.latency.num_classes = 10
  c.latency.scope = 'on_demand'  # Measure the entries candidates need as they come.
  c.latency.calibration_archs = 4
  c.latency.repeats = 20
  c.train.dataset = 'mnas_shapes'
  c.train.batch_size = 32
  c.train.num_train_steps = 400
  c.train.min_area = 1.0  # No random-crop zoom at 32x32: the shapes must stay whole.
  c.train.log_every_steps = 100
  return c
