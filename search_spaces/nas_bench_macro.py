"""NAS-Bench-Macro's space (Su et al., "Prioritized Architecture Sampling with Monto-Carlo
Tree Search", CVPR 2021), as its training code builds it (github.com/xiusu/NAS-Bench-Macro,
train/model.py `Network`).

CIFAR-10 at 32x32: a 3x3 stride-1 stem conv with 32 channels, BN, ReLU; 8 searchable layers
in 3 stages of 2, 3 and 3 layers, the first layer of each stage with stride 2 and twice the
width (64, 128, 256); then a 1x1 conv to 1280 + BN + ReLU, global pool, linear. Each layer
is one of (the benchmark's key digits, in this order):
  '0' identity: nothing, or a 1x1 conv with the stride + BN where stride or width change;
  '1' MBConv, expansion 3, kernel 3 (MobileNetV2's block with ReLU);
  '2' MBConv, expansion 6, kernel 5.
3^8 = 6,561 keys, 3,969 distinct networks: an identity that is not a stage's first layer
changes nothing, so the key '1 0 1' of a stage is the network of '1 1 0' (the benchmark
stores the same result under both). The decisions are the key's digits, in order.
The training code pads symmetrically (PyTorch, k // 2); mnas pads as TF's 'SAME', which
changes no count (params, MACs) but the values of stride-2 layers.
"""

from mnas.space import Head, Space, Stage, Stem

# Key digit -> block option (type, expansion, kernel).
OPS = (('id', 1.0, 1), ('ir', 3.0, 3), ('ir', 6.0, 5))
STAGES = ((2, 64), (3, 128), (3, 256))  # (layers, width) of the 3 stages.

SPACE = Space(
    name='nas_bench_macro',
    paper='NAS-Bench-Macro (Su et al. 2021): 8 layers of identity / MBConv3 3x3 / MBConv6 5x5 '
          'on CIFAR-10',
    stem=Stem(32, 'relu', kernel=3, stride=1),
    head=Head(pre=((1280, 'relu'),)),
    stages=tuple(Stage(stride=2, out=(c,), depth=(n,), block=OPS, per_layer=True)
                 for n, c in STAGES),
    resolution=(32,),
)


def key(indices) -> str:
  """The benchmark's key of decision indices ('0'/'1'/'2' per layer)."""
  return ''.join(str(int(i)) for i in indices)


def indices(key_: str) -> list[int]:
  """Decision indices of a benchmark key."""
  return [int(c) for c in key_]
