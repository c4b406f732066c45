r"""TuNAS one-shot search of a MobileNetV3-like space (Bender et al. 2020, section 4.2).

  python launch.py search --config experiments/tunas_v3_like.py --workdir DIR \
      --config.train.data_dir=/path/to/tensorflow_datasets      # ImageNet, paper scale
  python launch.py search --config experiments/tunas_v3_like.py:cpu --workdir /tmp/tunas_v3

The `mobilenet_v3_large` space (MobileNetV3-Large skeleton; per layer kernel {3,5,7},
expansion 1-6, squeeze-excite on/off, ReLU / h-swish; depth and width per stage), the
counterpart of TuNAS's `mobilenet_v3_like_search`, searched with TuNAS's one-shot method
(`mnas.oneshot`). Every setting is the ProxylessNAS search's (experiments/tunas_proxylessnas.py
documents each with its source) except the latency target: T0 = 57 ms, TuNAS's default for
its MobileNetV3-based spaces, "the simulated latency of MobileNet V3 on a Pixel 1" [code
mobile_architecture_search.py main()]. TuNAS ran this space in bfloat16 on TPU with L2 3e-5
(its float32 default is 4e-5, used here: the supernet computes in float32).

`:cpu` — the embedded `mnas_shapes` dataset at 64x64, as tunas_proxylessnas.py:cpu, with
T0 = 2 ms of the xla-cpu table at 64x64 (as experiments/v3_large_search.py:cpu).
"""

import ml_collections

from experiments import tunas_proxylessnas


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  c = tunas_proxylessnas.tunas_config('mobilenet_v3_large', 57.0, variant)
  if variant == 'cpu':
    c.reward.target_ms = 2.0
  return c
