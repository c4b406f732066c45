r"""MobileNetV3-Small's search (Howard et al. 2019, section 4.1): w = -0.15.

Paper settings: for small models accuracy changes much faster with latency, so the block
search was rerun from scratch with the MnasNet reward's exponent w = -0.15 (instead of
-0.07). Here the `mobilenet_v3_small` space (V3-Small skeleton) with the MnasNet controller.

  python launch.py search --config experiments/v3_small_search.py --workdir DIR \
      --config.train.data_dir=/path/to/tensorflow_datasets      # ImageNet, paper scale

The command runs MobileNetV3's pipeline (mnas/pipeline.py): this block search, then NetAdapt
(`c.netadapt`), final training with the MobileNetV3 recipe (`c.final`), export and the
comparison with MobileNetV3-Small/Large and MnasNet-A1 at the same latency target; each stage
in DIR/<stage>/, skipped when complete (`--config.pipeline=...` for a subset).

CPU-sized, on the embedded dataset at 64x64 (search_common.cpu_pipeline):

  python launch.py search --config experiments/v3_small_search.py:cpu --workdir /tmp/mnas_v3s
"""

import ml_collections

from experiments import search_common


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  c = search_common.base_config()
  c.space = 'mobilenet_v3_small'
  c.controller = 'mnasnet'
  c.reward.kind = 'v3_small'  # alpha = beta = -0.15.
  c.reward.target_ms = 15.8  # MobileNetV3-Small 1.0 on a Pixel 1 (Table 3).
  c.num_steps = 1000
  c.candidates_per_step = 8
  search_common.imagenet_proxy(c)
  search_common.add_pipeline(c)
  if variant == 'cpu':
    search_common.cpu_pipeline(c)
  elif variant:
    raise ValueError(f'unknown variant {variant!r}: "" (paper scale) or "cpu"')
  return c
