"""ProxylessNAS's mobile search space (Cai et al. 2019), as TuNAS defines it."""

from mnas.space import Head, Space, Stage, Stem

# MobileNetV2's skeleton: a fixed first block (MBConv1 3x3, 16), then stages of up to 4
# layers (the last stage 1) where every layer picks kernel {3, 5, 7} x expansion {3, 6};
# layers after the first of a stage may be skipped, i.e. each stage picks its depth.
# MobileNetV2 (kernel 3, expansion 6, depths 2-3-4-3-3-1) is a point of the space.
_STAGES = [(24, 2), (32, 2), (64, 2), (96, 1), (160, 2)]

SPACE = Space(
    name='proxylessnas',
    paper='ProxylessNAS (Cai et al. 2019); TuNAS (Bender et al. 2020) section 4.1.',
    stem=Stem(32, 'relu6'),
    head=Head(pre=((1280, 'relu6'),)),
    stages=(Stage(stride=1, out=(16,), depth=(1,), block=(('ir', 1.0),), act=('relu6',)),)
    + tuple(Stage(stride=s, out=(c,), depth=(1, 2, 3, 4), block=(('ir', 3.0), ('ir', 6.0)),
                  kernel=(3, 5, 7), act=('relu6',), per_layer=True) for c, s in _STAGES)
    + (Stage(stride=1, out=(320,), depth=(1,), block=(('ir', 3.0), ('ir', 6.0)),
             kernel=(3, 5, 7), act=('relu6',), per_layer=True),),
)
