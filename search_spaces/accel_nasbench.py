"""Accel-NASBench's space (Ahmad et al., "Accel-NASBench: Sustainable Benchmarking for
Accelerator-Aware NAS", 2024, appendix B): MnasNet's factorized hierarchical space on
EfficientNet-B0's skeleton, as the benchmark's networks were built and trained
(github.com/afzalxo/Accel-NASBench configurationspaces/searchspaces.py, and the training code
github.com/afzalxo/ANB-DatasetCollection models/accelbenchnet.py, searchables/searchables.py).

224x224 ImageNet: a 3x3 stride-2 stem conv with 32 channels, BN, ReLU; 7 blocks of MBConv
layers with outputs 16, 24, 40, 80, 112, 192, 320 and strides 1, 2, 2, 2, 1, 2, 1; then a
1x1 conv to 1280 (4 x 320) + BN + ReLU, global pool, dropout, linear. Per block (MnasNet's
factorized choice: one per block, shared by its layers): expansion {1, 4, 6} (1: no expansion
conv), kernel {3, 5}, layers {1, 2, 3} ({1, 2, 3, 4} in the sixth block, "to conform to
EfficientNet-B0"), squeeze-excite on/off. Every network of the benchmark's files uses ReLU
(the configs' `activation_fn = relu`); its squeeze-excite is torchvision's: a
`max(1, block input // 4)`-wide ReLU bottleneck on the expanded width with a hard-sigmoid gate
(`se_rule='anb'`). The identity residual is on wherever stride is 1 and width stays. These
choices reproduce every file's `params` exactly and its `macs` as PyTorch-OpCounter counts
them (`mnas.counting.thop_macs`; tests/test_accel_nasbench.py).
36^6 x 48 = 104,485,552,128 architectures; the files hold 4,638 of them.
"""

from mnas.space import Head, Space, Stage, Stem

OUT = (16, 24, 40, 80, 112, 192, 320)
STRIDES = (1, 2, 2, 2, 1, 2, 1)
EXPANSIONS = (1, 4, 6)
LAYERS = ((1, 2, 3),) * 5 + ((1, 2, 3, 4), (1, 2, 3))

SPACE = Space(
    name='accel_nasbench',
    paper='Accel-NASBench (Ahmad et al. 2024), appendix B: MnasNet-style per-block expansion, '
          'kernel, layers and SE on EfficientNet-B0\'s skeleton, ReLU',
    stem=Stem(32, 'relu'),
    head=Head(pre=((1280, 'relu'),)),
    se_rule='anb',
    stages=tuple(Stage(stride=s, out=(c,), depth=d, kernel=(3, 5), se_ratio=(0.0, 0.25),
                       block=tuple(('ir', float(e)) for e in EXPANSIONS))
                 for c, s, d in zip(OUT, STRIDES, LAYERS)),
)

# EfficientNet-B0's point of the space (searchables.py `efficientnet_b0_conf`: the benchmark's
# baseline), with ReLU and the hard-sigmoid gate like every network of the space.
EFFICIENTNET_B0 = ('r224_w1_seanb stem_c32_relu ir_r1_k3_s1_e1_c16_se0.25_relu '
                   'ir_r2_k3_s2_e6_c24_se0.25_relu ir_r2_k5_s2_e6_c40_se0.25_relu '
                   'ir_r3_k3_s2_e6_c80_se0.25_relu ir_r3_k5_s1_e6_c112_se0.25_relu '
                   'ir_r4_k5_s2_e6_c192_se0.25_relu ir_r1_k3_s1_e6_c320_se0.25_relu '
                   'head_c1280_relu')


def from_benchmark(architecture: dict):
  """The architecture of one result file's "architecture" object ({"block0_e": 4,
  "block0_k": 5, "block0_l": 1, "block0_se": false, ...}); KeyError names a missing field."""
  tokens = ['r224_w1_seanb', 'stem_c32_relu']
  for i, (c, s) in enumerate(zip(OUT, STRIDES)):
    e, k, n, se = (architecture[f'block{i}_{f}'] for f in ('e', 'k', 'l', 'se'))
    tokens.append(f'ir_r{n}_k{k}_s{s}_e{e}_c{c}{"_se0.25" if se else ""}_relu')
  from mnas.space import parse
  return parse(' '.join(tokens + ['head_c1280_relu']))
