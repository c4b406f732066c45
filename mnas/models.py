"""One Flax builder for every architecture of every space.

Layer semantics follow the TF reference code (tensorflow/models slim `mobilenet_v3.py`,
tpu `mnasnet_model.py`): batch norm with decay 0.99 and epsilon 1e-3, convolutions without
bias before batch norm, TF "SAME" padding, dropout before the classifier. Batch-norm
statistics live in the `batch_stats` collection; under `jax.pmap` pass `bn_axis_name` to
average them across replicas (cross-replica batch norm, as the TPU code does).
"""

from __future__ import annotations

import functools
import zlib
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mnas import ops
from mnas.space import SE_GATES, Architecture

BN_MOMENTUM = 0.99  # TF reference code: batch_norm_momentum (decay).
BN_EPSILON = 1e-3   # TF reference code: batch_norm_epsilon.

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'relu': nn.relu,
    'relu6': nn.relu6,
    'hs': nn.hard_swish,  # x * relu6(x + 3) / 6 (MobileNetV3 Eq. 2).
    'swish': nn.swish,
}

# TF reference initialisers (tpu mnasnet_model.py conv_kernel_initializer /
# dense_kernel_initializer): conv kernels N(0, sqrt(2 / fan_out)), fan_out = k * k * out;
# dense U(+-1/sqrt(out)). A depthwise kernel is TF's [k, k, C, 1], so its fan_out is k * k
# (depth multiplier 1), not k * k * C: here it is stored (k, k, 1, C), so out_axis=-2.
conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
depthwise_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal', in_axis=-1,
                                                  out_axis=-2)
dense_init = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_out', 'uniform')


LAYER_IMPLS = ('flax', 'fused', 'auto')


def resolve_layer_impl(impl: str) -> str:
  """'auto' -> 'fused' on CPU, 'flax' elsewhere.

  'flax': `nn.Conv` for 1x1 convolutions and `act(nn.BatchNorm(x))`. 'fused': the same
  parameters and values through `ops.PointwiseConv` (a matrix product) and `ops.BatchNorm`
  (batch norm and activation with a hand-written backward), which make the train step on
  XLA:CPU ~2x faster (benchmarks/README.md); not measured on GPU/TPU, hence 'flax' there.
  """
  if impl not in LAYER_IMPLS:
    raise ValueError(f'layer_impl must be one of {LAYER_IMPLS}, got {impl!r}')
  if impl == 'auto':
    return 'fused' if jax.default_backend() == 'cpu' else 'flax'
  return impl


def _conv1x1(features: int, *, fused: bool, use_bias: bool, dtype, name: str) -> nn.Module:
  if fused:
    return ops.PointwiseConv(features, use_bias=use_bias, kernel_init=conv_init, dtype=dtype,
                             name=name)
  return nn.Conv(features, (1, 1), use_bias=use_bias, kernel_init=conv_init, dtype=dtype,
                 name=name)


def _bn_act(x, act, *, fused: bool, train: bool, axis_name, dtype, name: str):
  """act(BatchNorm(x)), parameters 'scale'/'bias', statistics 'mean'/'var' under `name`."""
  kw = dict(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
            axis_name=axis_name, dtype=dtype, name=name)
  if fused:
    return ops.BatchNorm(activation=act, **kw)(x)
  x = nn.BatchNorm(**kw)(x)
  return act(x) if act is not None else x


class SqueezeExcite(nn.Module):
  """Squeeze-and-excite (Hu et al. 2018) with the MobileNetV3 or MnasNet gate."""
  inner: int
  gate: str  # An se_rule: its gate is `SE_GATES[gate]` (hard sigmoid or sigmoid).
  dtype: Any = jnp.float32
  fused: bool = False

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(_conv1x1, fused=self.fused, use_bias=True, dtype=self.dtype)
    s = jnp.mean(x, axis=(1, 2), keepdims=True)
    s = conv(self.inner, name='reduce')(s)
    s = nn.relu(s)
    s = conv(x.shape[-1], name='expand')(s)
    gate = nn.hard_sigmoid(s) if SE_GATES[self.gate] == 'hard_sigmoid' else nn.sigmoid(s)
    return x * gate


class Block(nn.Module):
  """One layer: `conv`, `ds` (MobileNetV1), `ir` (MobileNetV2/V3, MnasNet MBConv) or `id`.

  `spec` is one row of `Architecture.describe_layers()`.
  """
  spec: dict
  se_rule: str
  train: bool
  dtype: Any = jnp.float32
  depthwise_impl: str = 'auto'
  bn_axis_name: str | None = None
  layer_impl: str = 'auto'

  @property
  def _fused(self) -> bool:
    return resolve_layer_impl(self.layer_impl) == 'fused'

  def _bn(self, x, name, act=None):
    """act(batch_norm(x)); the activation is fused into the layer with layer_impl 'fused'."""
    return _bn_act(x, act, fused=self._fused, train=self.train, axis_name=self.bn_axis_name,
                   dtype=self.dtype, name=name)

  def _conv(self, x, features, kernel, stride, name):
    if kernel == 1 and stride == 1:
      return _conv1x1(features, fused=self._fused, use_bias=False, dtype=self.dtype, name=name)(x)
    return nn.Conv(features, (kernel, kernel), (stride, stride), padding='SAME', use_bias=False,
                   kernel_init=conv_init, dtype=self.dtype, name=name)(x)

  def _dw(self, x, name):
    s = self.spec
    return ops.DepthwiseConv(kernel_size=s['kernel'], strides=s['stride'],
                             impl=self.depthwise_impl, dtype=self.dtype,
                             kernel_init=depthwise_init, name=name)(x)

  def _se(self, x):
    return SqueezeExcite(self.spec['se'], self.se_rule, self.dtype, self._fused, name='se')(x)

  @nn.compact
  def __call__(self, x):
    s, act = self.spec, ACTIVATIONS[self.spec['act']]
    shortcut = x
    if s['type'] == 'id':  # The canonical form keeps only identities that project.
      x = self._bn(self._conv(x, s['cout'], 1, s['stride'], 'project'), 'project_bn')
    elif s['type'] == 'conv':
      x = self._bn(self._conv(x, s['cout'], s['kernel'], s['stride'], 'conv'), 'bn', act)
      if s['se']:
        x = self._se(x)
    elif s['type'] == 'ds':
      x = self._bn(self._dw(x, 'depthwise'), 'depthwise_bn', act)
      if s['se']:
        x = self._se(x)
      x = self._bn(self._conv(x, s['cout'], 1, 1, 'project'), 'project_bn', act)
    else:  # Inverted residual; expansion 1 has no expansion conv.
      if s['expanded'] != s['cin']:
        x = self._bn(self._conv(x, s['expanded'], 1, 1, 'expand'), 'expand_bn', act)
      x = self._bn(self._dw(x, 'depthwise'), 'depthwise_bn', act)
      if s['se']:
        x = self._se(x)
      x = self._bn(self._conv(x, s['cout'], 1, 1, 'project'), 'project_bn')  # Linear.
    if s['residual']:
      x = x + shortcut
    return x


class MobileNet(nn.Module):
  """Stem, blocks, head and classifier of any `Architecture`.

  Input: NHWC images at `arch.resolution` (any size works; counts assume it).
  """
  arch: Architecture
  num_classes: int = 1000
  dropout_rate: float = 0.2  # MobileNetV3 / MnasNet: dropout 0.2 before the classifier.
  dtype: Any = jnp.float32
  depthwise_impl: str = 'auto'
  bn_axis_name: str | None = None
  layer_impl: str = 'auto'  # 'flax', 'fused' or 'auto': see resolve_layer_impl.
  # A zero classifier kernel (big_vision's `head_zeroinit`): the first logits are 0, the loss
  # ln(classes). The TPU code's U(+-1/sqrt(classes)) is made for 1000 classes; for 10 it
  # starts 1,280-wide heads at a loss of ~7 (MnasNet-A1 at 64x64: 7.19).
  head_zeroinit: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    arch = self.arch
    fused = resolve_layer_impl(self.layer_impl) == 'fused'
    bn_act = functools.partial(_bn_act, fused=fused, train=train, axis_name=self.bn_axis_name,
                               dtype=self.dtype)
    x = x.astype(self.dtype)
    x = nn.Conv(arch.scaled(arch.stem.out), (arch.stem.kernel,) * 2, (arch.stem.stride,) * 2,
                padding='SAME', use_bias=False, kernel_init=conv_init, dtype=self.dtype,
                name='stem')(x)
    x = bn_act(x, ACTIVATIONS[arch.stem.act], name='stem_bn')
    for spec in arch.describe_layers():
      x = Block(spec, arch.se_rule, train, self.dtype, self.depthwise_impl, self.bn_axis_name,
                self.layer_impl, name=f'block{spec["index"]}')(x)
    head = arch.head_widths()
    for j, (c, a) in enumerate(head[:len(arch.head.pre)]):
      x = _conv1x1(c, fused=fused, use_bias=False, dtype=self.dtype, name=f'head{j}')(x)
      x = bn_act(x, ACTIVATIONS[a], name=f'head{j}_bn')
    x = jnp.mean(x, axis=(1, 2))
    for j, (c, a) in enumerate(head[len(arch.head.pre):]):  # After the pool: bias, no BN.
      x = ACTIVATIONS[a](nn.Dense(c, kernel_init=conv_init, dtype=self.dtype,
                                  name=f'head_post{j}')(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    # Logits in the compute dtype (float64 stays float64); the losses (mnas.steps) compute
    # in at least float32.
    head_init = nn.initializers.zeros if self.head_zeroinit else dense_init
    return nn.Dense(self.num_classes, kernel_init=head_init, dtype=self.dtype,
                    name='classifier')(x)


def build_model(arch: Architecture, num_classes: int = 1000, **kwargs) -> MobileNet:
  """The model of an architecture; kwargs: dropout_rate, dtype, depthwise_impl, bn_axis_name,
  layer_impl, head_zeroinit."""
  return MobileNet(arch=arch, num_classes=num_classes, **kwargs)


def _seed_of(rng) -> int:
  if isinstance(rng, (int, np.integer)):
    return int(rng)
  data = jax.random.key_data(rng) if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key) else rng
  return int(np.asarray(data).astype(np.uint64).sum() % (2 ** 63))


def init_leaf(names: Sequence[str], shape: tuple[int, ...], seed: int) -> np.ndarray:
  """The initial value of the variable at path `names` (e.g. ['params', 'block3',
  'depthwise', 'kernel']) drawn with numpy, from the modules' initialisers' distributions.

  Each leaf has its own stream, keyed by (seed, path).
  """
  name = names[-1]
  if names[0] == 'batch_stats' or name in ('scale', 'bias'):
    return np.ones(shape) if name in ('var', 'scale') else np.zeros(shape)
  if name != 'kernel':
    raise ValueError(f'init_variables: no initialiser for parameter {"/".join(names)}')
  gen = np.random.default_rng([seed, zlib.crc32('/'.join(names).encode())])
  out = shape[-2] if names[-2] == 'depthwise' else shape[-1]  # See depthwise_init.
  fan_out = int(np.prod(shape[:-2])) * out
  if names[-2] == 'classifier':  # dense_init: U(+-sqrt(3 * (1/3) / fan_out)).
    limit = np.sqrt(1.0 / fan_out)
    return gen.uniform(-limit, limit, shape)
  return gen.normal(0.0, np.sqrt(2.0 / fan_out), shape)  # conv_init: N(0, 2 / fan_out).


def init_variables(model: MobileNet, rng, batch_size: int = 1) -> dict:
  """Parameters and batch statistics, drawn on the host with numpy.

  Same distributions as the modules' initialisers (`conv_init`, `dense_init` or zeros, BN
  scale 1 and bias 0, moving mean 0 and variance 1), but without XLA: compiling the ~100 random
  initialisers of a MobileNet takes XLA:CPU 30-60 s (about 0.4 s each), numpy takes
  milliseconds, and a search initialises thousands of candidates. Deterministic in `rng`
  (an int seed or a JAX key); each leaf has its own stream, keyed by its path.
  """
  res = model.arch.resolution
  x = jnp.zeros((batch_size, res, res, 3), jnp.float32)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  seed = _seed_of(rng)

  def leaf(path, s):
    names = [str(getattr(p, 'key', p)) for p in path]
    if model.head_zeroinit and names[-2:] == ['classifier', 'kernel']:
      return jnp.zeros(s.shape, s.dtype)
    return jnp.asarray(init_leaf(names, s.shape, seed), s.dtype)

  return jax.tree_util.tree_map_with_path(leaf, shapes)
