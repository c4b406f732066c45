"""The Flax modules of table entries (the same nn layers as `mnas.models.MobileNet`), and the
random variables and inputs they are timed with.

An entry's spec is what `mnas.latency.keys.parse_key` reads from its key: a block (one row
of `Architecture.describe_layers()`), the stem or the head at its input shape.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def _models():
  from mnas import models  # Flax and JAX: imported when an entry is first built.
  return models


def entry_module(spec: dict, depthwise_impl: str, layer_impl: str = 'auto'):
  """(flax module, input shape without batch) of one parsed table entry."""
  import flax.linen as nn
  import jax.numpy as jnp
  models = _models()
  kind = spec['kind']
  if kind == 'block':
    row = dict(spec, index=0)
    module = models.Block(row, spec['se_rule'], False, jnp.float32, depthwise_impl,
                          layer_impl=layer_impl)
    return module, (spec['input_resolution'],) * 2 + (spec['cin'],)

  if kind == 'stem':
    class StemEntry(nn.Module):
      """MobileNet's stem: KxK conv (stride 2, or the key's), batch norm, activation."""
      @nn.compact
      def __call__(self, x):
        x = nn.Conv(spec['cout'], (spec['kernel'],) * 2, (spec['stride'],) * 2, padding='SAME',
                    use_bias=False, kernel_init=models.conv_init, name='stem')(x)
        x = nn.BatchNorm(use_running_average=True, momentum=models.BN_MOMENTUM,
                         epsilon=models.BN_EPSILON, name='stem_bn')(x)
        return models.ACTIVATIONS[spec['act']](x)
    return StemEntry(), (spec['input_resolution'],) * 2 + (spec['cin'],)

  if kind == 'head':
    class HeadEntry(nn.Module):
      """MobileNet's head: 1x1 convs + BN, global pool, dense layers, classifier."""
      @nn.compact
      def __call__(self, x):
        for j, (c, a) in enumerate(spec['pre']):
          x = nn.Conv(c, (1, 1), use_bias=False, kernel_init=models.conv_init, name=f'head{j}')(x)
          x = models.ACTIVATIONS[a](nn.BatchNorm(use_running_average=True,
                                                 momentum=models.BN_MOMENTUM,
                                                 epsilon=models.BN_EPSILON,
                                                 name=f'head{j}_bn')(x))
        x = jnp.mean(x, axis=(1, 2))
        for j, (c, a) in enumerate(spec['post']):
          x = models.ACTIVATIONS[a](nn.Dense(c, kernel_init=models.conv_init,
                                             name=f'head_post{j}')(x))
        x = nn.Dense(spec['num_classes'], kernel_init=models.dense_init, name='classifier')(x)
        return x.astype(jnp.float32)
    return HeadEntry(), (spec['input_resolution'],) * 2 + (spec['cin'],)
  raise ValueError(f'unknown entry kind {kind!r}')


def arch_model(arch_str: str, num_classes: int, depthwise_impl: str, layer_impl: str = 'auto'):
  """(flax module, input shape without batch) of a whole architecture, end to end."""
  from mnas.space import parse
  arch = parse(arch_str)
  model = _models().build_model(arch, num_classes, depthwise_impl=depthwise_impl,
                                layer_impl=layer_impl)
  return model, (arch.resolution, arch.resolution, 3)


def variable_shapes(module, input_shape: Sequence[int]) -> Any:
  import jax
  import jax.numpy as jnp
  return jax.eval_shape(module.init, jax.random.key(0),
                        jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32))


def random_variables(module, input_shape: Sequence[int], seed: int, shapes=None) -> Any:
  """Random non-degenerate variables without compiling `init` (shapes by eval_shape).

  Kernels are He-normal (activations keep their scale: no denormals, no overflow), batch
  norm gets random scale / offset / statistics around the identity.
  """
  import jax
  shapes = variable_shapes(module, input_shape) if shapes is None else shapes
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = str(getattr(path[-1], 'key', path[-1]))
    shape = leaf.shape
    if name == 'kernel' or (len(shape) >= 2 and name not in ('scale', 'bias', 'mean', 'var')):
      fan_in = max(1, int(np.prod(shape[:-1])))
      v = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
    elif name in ('scale', 'var'):
      v = rng.uniform(0.5, 1.5, shape)
    else:  # bias, mean
      v = 0.1 * rng.standard_normal(shape)
    return np.asarray(v, dtype=leaf.dtype)  # numpy: device_put copies it without a compile.
  return jax.tree_util.tree_map_with_path(fill, shapes)


def random_input(shape: Sequence[int], seed: int = 1) -> np.ndarray:
  """Standard-normal input without exact zeros."""
  x = np.random.default_rng(seed).standard_normal(tuple(shape)).astype(np.float32)
  x[x == 0] = 1e-3
  return x
