r"""MnasNet's search (Tan et al. 2019): the factorized hierarchical space, soft reward.

Paper settings: the `mnasnet` space (section 4), reward ACC * (LAT / T) ** w with
alpha = beta = -0.07 (Eq. 2, soft constraint), T = 75 ms on a Pixel phone, an RNN controller
trained with PPO, ~8,000 sampled models, each trained 5 epochs on ImageNet with 50,000
training images held out as the validation set (the proxy task), on 64 TPUv2 devices.
Here: latency from a table measured on `latency.target` (T in ms of that table), the
controller samples `candidates_per_step` models per PPO update.

  python launch.py search --config experiments/mnasnet_search.py --workdir DIR \
      --config.train.data_dir=/path/to/tensorflow_datasets      # ImageNet, paper scale

CPU-sized, on the embedded dataset (one line):

  python launch.py search --config experiments/mnasnet_search.py:cpu --workdir /tmp/mnas_mnasnet
"""

import ml_collections

from experiments import search_common


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  c = search_common.base_config()
  c.space = 'mnasnet'
  c.controller = 'mnasnet'  # LSTM + PPO.
  c.reward.kind = 'mnasnet_soft'  # alpha = beta = -0.07.
  c.reward.target_ms = 75.0  # MnasNet's T (Pixel 1); re-target for your table's device.
  c.num_steps = 1000  # x 8 candidates = 8,000 models, as in the paper.
  c.candidates_per_step = 8
  search_common.imagenet_proxy(c)
  if variant == 'cpu':
    search_common.cpu_proxy(c, resolution=64)
    c.reward.target_ms = 6.0  # ~ the median predicted ms of the space at 64x64, 1 thread.
  elif variant:
    raise ValueError(f'unknown variant {variant!r}: "" (paper scale) or "cpu"')
  return c
