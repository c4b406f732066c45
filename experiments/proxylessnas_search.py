r"""A MnasNet-style search over the ProxylessNAS space (Cai et al. 2019; TuNAS section 4.1).

The `proxylessnas` space: MobileNetV2's skeleton, per layer kernel {3,5,7} x expansion {3,6},
depth per stage. TuNAS searched it with its REINFORCE controller and the absolute reward
(beta = -0.10) at the latency of ProxylessNAS-Mobile (84 ms on a Pixel 1); this config uses
the same controller and reward, training each candidate separately (not weight sharing).

  python launch.py search --config experiments/proxylessnas_search.py --workdir DIR \
      --config.train.data_dir=/path/to/tensorflow_datasets      # ImageNet, paper scale

CPU-sized, on the embedded dataset:

  python launch.py search --config experiments/proxylessnas_search.py:cpu --workdir /tmp/mnas_pxl
"""

import ml_collections

from experiments import search_common


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  c = search_common.base_config()
  c.space = 'proxylessnas'
  c.controller = 'reinforce'  # TuNAS: independent categoricals, REINFORCE, Adam(beta1=0).
  c.reward.kind = 'tunas_abs'  # Q + beta * |T / T0 - 1|, beta = -0.10.
  c.reward.target_ms = 84.0  # ProxylessNAS-Mobile on a Pixel 1 (TuNAS Table 2).
  c.num_steps = 1000
  c.candidates_per_step = 8
  search_common.imagenet_proxy(c)
  if variant == 'cpu':
    search_common.cpu_proxy(c, resolution=64)
    c.reward.target_ms = 4.0
  elif variant:
    raise ValueError(f'unknown variant {variant!r}: "" (paper scale) or "cpu"')
  return c
