"""MobileNetV1 (Howard et al. 2017) and MobileNetV2 (Sandler et al. 2018)."""

from mnas.space import Head, Space, Stage, Stem

# MobileNetV1, Table 1: conv3x3/s2 32, then depthwise-separable (dw3x3 + pw1x1, each with
# BN + activation) with (stride, out): (1,64) (2,128) (1,128) (2,256) (1,256) (2,512)
# 5x(1,512) (2,1024) (1,1024); global pool; FC. No residuals, no head conv.
# Activation: ReLU6 after the stem and every dw and pw conv. The paper's text says ReLU, but
# the implementations (and their published weights) use ReLU6: Keras
# keras/src/applications/mobilenet.py (`layers.ReLU(6.0)` in _conv_block and
# _depthwise_conv_block), TF-slim research/slim/nets/mobilenet_v1.py
# (`mobilenet_v1_arg_scope`: tf.nn.relu6) and timm timm/models/efficientnet.py
# (`_gen_mobilenet_v1`: relu6).
V1 = ('r224_w1_sev3 stem_c32_relu6 '
      'ds_r1_k3_s1_c64_relu6 ds_r1_k3_s2_c128_relu6 ds_r1_k3_s1_c128_noskip_relu6 '
      'ds_r1_k3_s2_c256_relu6 ds_r1_k3_s1_c256_noskip_relu6 ds_r1_k3_s2_c512_relu6 '
      'ds_r5_k3_s1_c512_noskip_relu6 ds_r1_k3_s2_c1024_relu6 ds_r1_k3_s1_c1024_noskip_relu6 '
      'head')

# MobileNetV2, Table 2: (t, c, n, s) = (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2) (6,96,3,1)
# (6,160,3,2) (6,320,1,1); ReLU6; conv1x1 1280; pool; FC.
V2 = ('r224_w1_sev3 stem_c32_relu6 ir_r1_k3_s1_e1_c16_relu6 ir_r2_k3_s2_e6_c24_relu6 '
      'ir_r3_k3_s2_e6_c32_relu6 ir_r4_k3_s2_e6_c64_relu6 ir_r3_k3_s1_e6_c96_relu6 '
      'ir_r3_k3_s2_e6_c160_relu6 ir_r1_k3_s1_e6_c320_relu6 head_c1280_relu6')

_V1_STAGES = [(1, 64, 1), (2, 128, 1), (1, 128, 1), (2, 256, 1), (1, 256, 1), (2, 512, 1),
              (1, 512, 5), (2, 1024, 1), (1, 1024, 1)]

V1_SPACE = Space(
    name='mobilenet_v1',
    paper='MobileNetV1 (Howard et al. 2017), Tables 6-7: width multiplier x resolution.',
    stem=Stem(32, 'relu6'),  # ReLU6 throughout, as V1 above.
    head=Head(pre=()),
    stages=tuple(Stage(stride=s, out=(c,), depth=(n,), block=(('ds', 1.0),), act=('relu6',),
                       skip=(False,))
                 for s, c, n in _V1_STAGES),
    width_multiplier=(0.25, 0.5, 0.75, 1.0),
    resolution=(128, 160, 192, 224),
)
