r"""The README's main command: a few-minute MnasNet-style search on a CPU.

  python launch.py search --config experiments/quickstart.py --workdir /tmp/mnas_quickstart

The `tiny` MobileNetV3-like space at 64x64, the embedded `mnas_shapes` dataset (generated on
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
  c.controller = 'mnasnet'
  c.controller_kwargs = {}  # LSTMController defaults: PPO, lr 3.5e-4, hidden 100.
  c.num_steps = 8
  c.candidates_per_step = 4
  c.reward.kind = 'mnasnet_soft'
  c.reward.target_ms = 1.5  # Predicted ms on the xla-cpu table at 64x64; ~ the space's median.
  c.latency.target = 'xla-cpu'
  c.latency.num_classes = 10
  c.latency.scope = 'on_demand'  # Measure the entries candidates need as they come.
  c.latency.repeats = 20
  c.train.dataset = 'mnas_shapes'
  c.train.resolution = 64
  c.train.batch_size = 64
  c.train.num_train_steps = 150
  c.train.log_every_steps = 50
  return c
