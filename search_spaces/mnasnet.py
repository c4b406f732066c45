"""MnasNet's factorized hierarchical search space and MnasNet-A1/B1 (Tan et al. 2019)."""

from mnas.space import Head, Space, Stage, Stem, make_divisible

# MnasNet-A1 (Figure 7; tpu/models/official/mnasnet/mnasnet_models.py `mnasnet_a1`).
# The first block is a SepConv: an inverted residual with expansion 1 (no expansion conv).
A1 = ('r224_w1_semnas stem_c32_relu ir_r1_k3_s1_e1_c16_relu ir_r2_k3_s2_e6_c24_relu '
      'ir_r3_k5_s2_e3_c40_se0.25_relu ir_r4_k3_s2_e6_c80_relu ir_r2_k3_s1_e6_c112_se0.25_relu '
      'ir_r3_k5_s2_e6_c160_se0.25_relu ir_r1_k3_s1_e6_c320_relu head_c1280_relu_fixed')

# MnasNet-B1 (mnasnet_models.py `mnasnet_b1`): no squeeze-excite.
B1 = ('r224_w1_semnas stem_c32_relu ir_r1_k3_s1_e1_c16_relu ir_r3_k3_s2_e3_c24_relu '
      'ir_r3_k5_s2_e3_c40_relu ir_r3_k5_s2_e6_c80_relu ir_r2_k3_s1_e6_c96_relu '
      'ir_r4_k5_s2_e6_c192_relu ir_r1_k3_s1_e6_c320_relu head_c1280_relu_fixed')

# Section 4: 7 blocks on MobileNetV2's skeleton (filters F_i, layers N_i, strides); per
# block a conv op {regular conv, depthwise (SepConv), MBConv3, MBConv6}, kernel {3, 5},
# SE ratio {0, 0.25}, skip {identity, none}, filters F_i x {0.75, 1.0, 1.25} (rounded to
# multiples of 8) and layers N_i + {-1, 0, +1}. The published MnasNet-A1/B1 use two widths
# (112, 192) that the rounded grid lacks; they are added so both are points of the space.
# The paper's "pooling" skip op is not modelled.
_SKELETON = [  # (F_i, N_i, stride, extra widths)
    (16, 1, 1, ()), (24, 2, 2, ()), (32, 3, 2, ()), (64, 4, 2, ()),
    (96, 3, 1, (112,)), (160, 3, 2, (192,)), (320, 1, 1, ())]


def _stage(f, n, stride, extra):
  widths = sorted({make_divisible(f * m) for m in (0.75, 1.0, 1.25)} | set(extra))
  return Stage(stride=stride, out=tuple(widths),
               depth=tuple(d for d in (n - 1, n, n + 1) if d >= 1),
               block=(('conv', 1.0), ('ir', 1.0), ('ir', 3.0), ('ir', 6.0)), kernel=(3, 5),
               se_ratio=(0.0, 0.25), skip=(True, False))


SPACE = Space(
    name='mnasnet',
    paper='MnasNet (Tan et al. 2019), section 4: factorized hierarchical search space.',
    stem=Stem(32, 'relu'),
    head=Head(pre=((1280, 'relu'),), fixed=True),
    se_rule='mnas',
    stages=tuple(_stage(*s) for s in _SKELETON),
)
