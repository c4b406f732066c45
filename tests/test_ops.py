"""The 'shifted' depthwise conv equals the grouped convolution, values and grads."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnas import ops


def _random(shape, seed, dtype=jnp.float32):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), dtype)


def _value_and_grads(impl, x, kernel, stride, ct):
  """(y, dy/dx . ct, dy/dkernel . ct) for one impl, jitted."""
  def f(x, kernel, ct):
    y, vjp = jax.vjp(lambda x, k: ops.depthwise_conv(x, k, stride, impl), x, kernel)
    return (y,) + vjp(ct)
  return jax.jit(f)(x, kernel, ct)


def _assert_close(actual, expected, rel):
  actual, expected = np.asarray(actual, np.float32), np.asarray(expected, np.float32)
  assert actual.shape == expected.shape
  scale = np.abs(expected).max() + 1e-6
  np.testing.assert_allclose(actual, expected, rtol=0, atol=rel * scale)


def _check_against_grouped(hw, kernel_size, stride, dtype=jnp.float32, rel=1e-4, batch=3, c=4):
  x = _random((batch, *hw, c), 0)
  kernel = _random((kernel_size, kernel_size, 1, c), 1)
  out_hw = tuple(-(-d // stride) for d in hw)
  ct = _random((batch, *out_hw, c), 2)
  expected = _value_and_grads('grouped', x, kernel, stride, ct)  # float32 reference
  actual = _value_and_grads('shifted', x.astype(dtype), kernel.astype(dtype), stride,
                            ct.astype(dtype))
  for a, e, name in zip(actual, expected, ('output', 'grad x', 'grad kernel')):
    assert a.dtype == dtype, name
    _assert_close(a, e, rel)


@pytest.mark.parametrize('hw', [(7, 7), (8, 8), (9, 10)])
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('kernel_size', [3, 5, 7])
def test_shifted_matches_grouped(hw, kernel_size, stride):
  # batch 3: one step of the two-image loop in the kernel gradient, plus the odd image.
  _check_against_grouped(hw, kernel_size, stride)


@pytest.mark.parametrize('hw,kernel_size,stride', [((9, 10), 3, 2), ((8, 8), 5, 1), ((7, 7), 7, 2)])
def test_shifted_matches_grouped_without_padded_copy(monkeypatch, hw, kernel_size, stride):
  # Big inputs zero-pad each tap inside the fusion instead of padding x once.
  monkeypatch.setattr(ops, '_MAX_PAD_COPY_BYTES', 0)
  _check_against_grouped(hw, kernel_size, stride)


@pytest.mark.parametrize('hw,kernel_size,stride', [((8, 8), 3, 1), ((9, 10), 5, 2)])
def test_shifted_bfloat16(hw, kernel_size, stride):
  # bfloat16 has an 8-bit mantissa: inputs alone are rounded by ~0.4%.
  _check_against_grouped(hw, kernel_size, stride, dtype=jnp.bfloat16, rel=3e-2)


@pytest.mark.parametrize('stride', [1, 3])
def test_shifted_matches_grouped_other_shapes(stride):
  # Even kernel, stride 3, single image.
  _check_against_grouped((6, 11), 4, stride, batch=1, c=2)


def test_same_padding_is_tf_same():
  # 224 -> 112 at stride 2, k=3: total pad 1, all of it after (TF "SAME").
  assert ops.same_padding(224, 3, 2) == (112, 0, 1)
  assert ops.same_padding(7, 5, 1) == (7, 2, 2)
  assert ops.same_padding(8, 5, 2) == (4, 1, 2)


@pytest.mark.parametrize('impl', ['grouped', 'shifted', 'auto'])
def test_module_matches_nn_conv(impl):
  x = _random((2, 9, 10, 6), 0)
  conv = nn.Conv(6, (5, 5), (2, 2), padding='SAME', feature_group_count=6, use_bias=False)
  dw = ops.DepthwiseConv(kernel_size=5, strides=2, impl=impl)
  conv_params = jax.jit(conv.init)(jax.random.PRNGKey(0), x)
  dw_shapes = jax.eval_shape(dw.init, jax.random.PRNGKey(0), x)
  assert jax.tree.map(jnp.shape, dw_shapes) == jax.tree.map(jnp.shape, conv_params)
  assert jax.tree.map(jnp.shape, dw_shapes) == {'params': {'kernel': (5, 5, 1, 6)}}
  _assert_close(jax.jit(dw.apply)(conv_params, x), jax.jit(conv.apply)(conv_params, x), 1e-5)


def test_module_dtypes():
  x = _random((1, 8, 8, 3), 0)
  dw = ops.DepthwiseConv(kernel_size=3, dtype=jnp.bfloat16, impl='shifted')
  params = jax.jit(dw.init)(jax.random.PRNGKey(0), x)
  assert params['params']['kernel'].dtype == jnp.float32
  y = jax.jit(dw.apply)(params, x)
  assert y.dtype == jnp.bfloat16 and y.shape == (1, 8, 8, 3)


def test_auto_is_shifted_on_cpu():
  assert jax.default_backend() == 'cpu'
  assert ops.resolve_impl('auto') == 'shifted'


def test_bad_impl_raises():
  x, kernel = jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 1, 2))
  with pytest.raises(ValueError, match='impl.*grouped.*shifted.*auto'):
    ops.depthwise_conv(x, kernel, 1, impl='fft')
  with pytest.raises(ValueError, match='impl'):
    jax.eval_shape(ops.DepthwiseConv(kernel_size=3, impl='fft').init, jax.random.PRNGKey(0), x)


def test_bad_kernel_shape_raises():
  with pytest.raises(ValueError, match='kernel'):
    ops.depthwise_conv(jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 2, 2)), 1)
