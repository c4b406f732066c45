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
from experiments import train as train_config


def get_config() -> ml_collections.ConfigDict:
  c = search_common.base_config()
  c.space = 'tiny'
  c.resolution = 32  # CPU-sized: the tiny space's candidates at 32x32.
  c.controller = 'mnasnet'
  # Short-budget hyperparameters (the papers' are meant for thousands of samples), chosen on
  # a synthetic reward at a few dozen samples (benchmarks/search_vs_random.py --tune).
  c.controller_kwargs.mnasnet.learning_rate = 0.03  # MnasNet: 3.5e-4 for 8,000 samples.
  # Greedy on purpose at this budget: an update moves the policy by up to 7 nats
  # (`controller/kl`: 0.3-7.3 over the first 4; one Adam step alone up to 3.3), far past PPO's
  # trust region (target_kl 0.01 would stop the epochs after the first).
  c.controller_kwargs.mnasnet.target_kl = None
  c.controller_kwargs.reinforce.learning_rate = 0.4  # TuNAS: 0.0048 per training step.
  c.controller_kwargs.evolution.population_size = 8  # Real et al.: 100.
  c.controller_kwargs.evolution.tournament_size = 3  # Real et al.: 25.
  c.num_steps = 3
  c.candidates_per_step = 2
  c.reward.kind = 'mnasnet_soft'
  # T: the median predicted latency of the space on this machine's table (mnas/search/
  # target.py), so the target means the same on every machine; the log prints it in ms.
  c.reward.target_quantile = 0.5
  # Of 5 uniform samples: each needs its table entries measured on first use (~0.5 s an
  # entry here; 200 samples would measure the space's ~500 entries, ~4 minutes).
  c.reward.target_samples = 5
  c.latency.target = 'xla-cpu'
  c.latency.resolution = 32
  c.latency.num_classes = 10
  c.latency.scope = 'on_demand'  # Measure the entries candidates need as they come.
  c.latency.calibration_archs = 4  # A few: measured before the search starts.
  c.latency.repeats = 20
  # A proxy task that learns in 400 steps at 32x32 (experiments/train.py's `short_proxy`,
  # on mnas_shapes/proxy32, with the evidence): SGD + Nesterov, batch 64.
  c.train = train_config.get_config('short_proxy')
  c.train.log_every_steps = 100
  return c
