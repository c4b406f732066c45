"""MobileNetV3-Large/Small (Howard et al. 2019) and MobileNetV3-like search spaces."""

from mnas.space import Head, Space, Stage, Stem

# Table 1 (slim mobilenet_v3.py V3_LARGE): expansions as ratios of the block input, as the
# slim code writes them (184 = 80 x 2.3), so width multipliers scale them as the paper does.
V3_LARGE = (
    'r224_w1_sev3 stem_c16_hs ir_r1_k3_s1_e1_c16_relu ir_r1_k3_s2_e4_c24_relu '
    'ir_r1_k3_s1_e3_c24_relu ir_r3_k5_s2_e3_c40_se0.25_relu ir_r1_k3_s2_e6_c80_hs '
    'ir_r1_k3_s1_e2.5_c80_hs ir_r2_k3_s1_e2.3_c80_hs ir_r2_k3_s1_e6_c112_se0.25_hs '
    'ir_r3_k5_s2_e6_c160_se0.25_hs head_c960_hs_pool_c1280_hs')

# Table 2 (slim V3_SMALL): 72 = 16 x 4.5, 88 = 24 x 3.67.
V3_SMALL = (
    'r224_w1_sev3 stem_c16_hs ir_r1_k3_s2_e1_c16_se0.25_relu ir_r1_k3_s2_e4.5_c24_relu '
    'ir_r1_k3_s1_e3.67_c24_relu ir_r1_k5_s2_e4_c40_se0.25_hs ir_r2_k5_s1_e6_c40_se0.25_hs '
    'ir_r2_k5_s1_e3_c48_se0.25_hs ir_r3_k5_s2_e6_c96_se0.25_hs head_c576_hs_pool_c1024_hs')

# Per-layer choices of the MobileNetV3-like spaces: kernel 3/5/7, expansion 1-6 on
# MobileNetV3's grid (which uses 2.3, 2.5, 3.67 and 4.5), SE on/off, ReLU or h-swish.
_EXPANSIONS = (1.0, 2.0, 2.3, 2.5, 3.0, 3.67, 4.0, 4.5, 5.0, 6.0)


def _searchable(stride, out, depth, expansions=_EXPANSIONS):
  return Stage(stride=stride, out=out, depth=depth, block=tuple(('ir', e) for e in expansions),
               kernel=(3, 5, 7), se_ratio=(0.0, 0.25), act=('relu', 'hs'), per_layer=True)


LARGE_SPACE = Space(
    name='mobilenet_v3_large',
    paper='MobileNetV3 (Howard et al. 2019) Table 1 skeleton; per-layer choices as TuNAS.',
    stem=Stem(16, 'hs'),
    head=Head(pre=((960, 'hs'),), post=((1280, 'hs'),)),
    stages=(Stage(stride=1, out=(16,), depth=(1,), block=(('ir', 1.0),)),
            _searchable(2, (16, 24, 32), (1, 2, 3)),
            _searchable(2, (32, 40, 48), (2, 3, 4)),
            _searchable(2, (64, 80, 96), (2, 3, 4, 5)),
            _searchable(1, (96, 112, 128), (1, 2, 3)),
            _searchable(2, (128, 160, 192), (2, 3, 4))),
)

SMALL_SPACE = Space(
    name='mobilenet_v3_small',
    paper='MobileNetV3 (Howard et al. 2019) Table 2 skeleton; per-layer choices as TuNAS.',
    stem=Stem(16, 'hs'),
    head=Head(pre=((576, 'hs'),), post=((1024, 'hs'),)),
    stages=(Stage(stride=2, out=(16,), depth=(1,), block=(('ir', 1.0),), se_ratio=(0.0, 0.25)),
            _searchable(2, (16, 24, 32), (1, 2, 3)),
            _searchable(2, (32, 40, 48), (2, 3, 4)),
            _searchable(1, (40, 48, 56), (1, 2, 3)),
            _searchable(2, (64, 96, 128), (2, 3, 4))),
)

# A CPU-sized MobileNetV3-like space for the quickstart (small input, few layers).
TINY_SPACE = Space(
    name='tiny',
    paper='A small MobileNetV3-like space for CPU searches on the embedded dataset.',
    stem=Stem(16, 'hs'),
    head=Head(pre=((192, 'hs'),), post=((256, 'hs'),)),
    stages=(_searchable(2, (16, 24), (1, 2), (1.0, 3.0, 6.0)),
            _searchable(2, (24, 32, 40), (1, 2), (3.0, 6.0)),
            _searchable(2, (40, 48, 64), (1, 2), (3.0, 6.0))),
    resolution=(64,),
)
