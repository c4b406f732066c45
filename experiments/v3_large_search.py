r"""MobileNetV3-Large's block-wise search (Howard et al. 2019, section 4.1).

Paper settings: the MnasNet controller and soft reward (alpha = beta = -0.07) on a
MobileNetV3-like space; MobileNetV3-Large's search returned MnasNet-A1 as its seed, then
NetAdapt refined it. Here the `mobilenet_v3_large` space (V3-Large skeleton, per-layer
kernel / expansion / SE / activation, depth and width per stage) with the same controller.

  python launch.py search --config experiments/v3_large_search.py --workdir DIR \
      --config.train.data_dir=/path/to/tensorflow_datasets      # ImageNet, paper scale

The command runs MobileNetV3's pipeline (mnas/pipeline.py): this block search, then NetAdapt
(`c.netadapt`), final training with the MobileNetV3 recipe (`c.final`), export and the
comparison with MobileNetV3-Small/Large and MnasNet-A1 at the same latency target; each stage
in DIR/<stage>/, skipped when complete (`--config.pipeline=...` for a subset).

CPU-sized, on the embedded dataset at 64x64 (search_common.cpu_pipeline):

  python launch.py search --config experiments/v3_large_search.py:cpu --workdir /tmp/mnas_v3l
"""

import ml_collections

from experiments import search_common


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  c = search_common.base_config()
  c.space = 'mobilenet_v3_large'
  c.controller = 'mnasnet'
  c.reward.kind = 'mnasnet_soft'
  c.reward.target_ms = 51.0  # MobileNetV3-Large 1.0 on a Pixel 1 (Table 3).
  c.num_steps = 1000
  c.candidates_per_step = 8
  search_common.imagenet_proxy(c)
  search_common.add_pipeline(c)
  if variant == 'cpu':
    search_common.cpu_pipeline(c)
  elif variant:
    raise ValueError(f'unknown variant {variant!r}: "" (paper scale) or "cpu"')
  return c
