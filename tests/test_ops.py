"""mnas.ops equals the formulations it replaces, values and grads: the shifted depthwise conv
vs the grouped convolution, PointwiseConv vs nn.Conv, BatchNorm vs act(nn.BatchNorm)."""

import functools

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


# --- 1x1 convolution as a matrix product -------------------------------------------------


@pytest.mark.parametrize('use_bias', [False, True])
def test_pointwise_conv_matches_nn_conv(use_bias):
  x = _random((2, 5, 7, 6), 0)
  conv = nn.Conv(4, (1, 1), use_bias=use_bias)
  pw = ops.PointwiseConv(4, use_bias=use_bias)
  params = conv.init(jax.random.PRNGKey(0), x)
  params = jax.tree.map(lambda p: p + _random(p.shape, 3), params)  # non-zero bias
  assert jax.tree.map(jnp.shape, jax.eval_shape(pw.init, jax.random.PRNGKey(0), x)) == \
      jax.tree.map(jnp.shape, params)

  def loss(apply, params, x):
    return jnp.sum(jnp.sin(apply(params, x)))

  for f in (lambda a, p, x: a(p, x), jax.grad(loss, argnums=(1, 2))):
    actual = jax.jit(lambda p, x: f(pw.apply, p, x))(params, x)
    expected = jax.jit(lambda p, x: f(conv.apply, p, x))(params, x)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
      _assert_close(a, e, 1e-5)


def test_pointwise_conv_bad_kernel_raises():
  with pytest.raises(ValueError, match='kernel'):
    ops.pointwise_conv(jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 2, 5)))


# --- Batch norm fused with its activation ------------------------------------------------

_ACTS = {'none': None, 'relu': nn.relu, 'relu6': nn.relu6, 'hs': nn.hard_swish,
         'swish': nn.swish}


def _bn_pair(act, train, axis_name=None, dtype=None):
  """(fused ops.BatchNorm, reference: act(nn.BatchNorm)) with momentum 0.99, eps 1e-3."""
  kw = dict(use_running_average=not train, momentum=0.99, epsilon=1e-3, axis_name=axis_name,
            dtype=dtype)
  fused = ops.BatchNorm(activation=_ACTS[act], **kw)
  ref = nn.BatchNorm(**kw)
  act_fn = _ACTS[act] or (lambda y: y)
  return fused, lambda v, x, **k: _apply_act(ref, act_fn, v, x, **k)


def _apply_act(ref, act_fn, v, x, **k):
  out = ref.apply(v, x, **k)
  if isinstance(out, tuple):
    return act_fn(out[0]), out[1]
  return act_fn(out)


def _bn_variables(c, seed=5):
  return {'params': {'scale': 1 + 0.5 * _random((c,), seed), 'bias': _random((c,), seed + 1)},
          'batch_stats': {'mean': _random((c,), seed + 2),
                          'var': 1 + jnp.abs(_random((c,), seed + 3))}}


def _bn_loss(apply, v, x, ct):
  """sum(y * ct) and the updated statistics (train mode)."""
  y, upd = apply(v, x, mutable=['batch_stats'])
  return jnp.sum(y.astype(jnp.float32) * ct), upd


@pytest.mark.parametrize('act', sorted(_ACTS))
def test_batch_norm_matches_flax_train(act):
  # Offset and scaled input: E[x^2] - E[x]^2 must still be accurate enough.
  x = 3.0 + 2.0 * _random((4, 6, 5, 8), 0)
  ct = _random(x.shape, 1)
  v = _bn_variables(8)
  fused, ref = _bn_pair(act, train=True)
  grad = lambda apply: jax.jit(jax.grad(functools.partial(_bn_loss, apply), argnums=(0, 1),
                                        has_aux=True))
  (gv, gx), upd = grad(fused.apply)(v, x, ct)
  (gv_ref, gx_ref), upd_ref = grad(ref)(v, x, ct)
  y = jax.jit(lambda v, x: fused.apply(v, x, mutable=['batch_stats'])[0])(v, x)
  y_ref = jax.jit(lambda v, x: ref(v, x, mutable=['batch_stats'])[0])(v, x)
  _assert_close(y, y_ref, 1e-5)
  _assert_close(gx, gx_ref, 1e-4)
  for name in ('scale', 'bias'):
    _assert_close(gv['params'][name], gv_ref['params'][name], 1e-4)
  for name in ('mean', 'var'):  # momentum 0.99 moving averages of the batch statistics
    _assert_close(upd['batch_stats'][name], upd_ref['batch_stats'][name], 1e-5)


@pytest.mark.parametrize('act', ['none', 'hs'])
def test_batch_norm_matches_flax_eval(act):
  x = _random((2, 3, 4, 8), 0)
  v = _bn_variables(8)
  fused, ref = _bn_pair(act, train=False)
  _assert_close(jax.jit(fused.apply)(v, x), jax.jit(ref)(v, x), 1e-5)
  gx = jax.jit(jax.grad(lambda x: jnp.sum(jnp.sin(fused.apply(v, x)))))(x)
  gx_ref = jax.jit(jax.grad(lambda x: jnp.sum(jnp.sin(ref(v, x)))))(x)
  _assert_close(gx, gx_ref, 1e-5)


def test_batch_norm_cross_replica():
  """Under a named axis (vmap here, pmap in training) the batch statistics and their
  gradients are averaged over replicas exactly as autodiff of flax's BatchNorm does."""
  x = 1.0 + _random((3, 2, 4, 4, 6), 0)  # 3 replicas
  ct = _random(x.shape, 1)
  v = _bn_variables(6)
  fused, ref = _bn_pair('swish', train=True, axis_name='r')

  def per_replica(apply):
    g = jax.grad(functools.partial(_bn_loss, apply), argnums=(0, 1), has_aux=True)
    return jax.jit(jax.vmap(g, in_axes=(None, 0, 0), axis_name='r'))

  (gv, gx), upd = per_replica(fused.apply)(v, x, ct)
  (gv_ref, gx_ref), upd_ref = per_replica(ref)(v, x, ct)
  _assert_close(gx, gx_ref, 1e-4)
  for a, e in zip(jax.tree.leaves((gv, upd)), jax.tree.leaves((gv_ref, upd_ref))):
    _assert_close(a, e, 1e-4)
  # The statistics are global: every replica holds the same moving averages.
  np.testing.assert_allclose(upd['batch_stats']['mean'][0], upd['batch_stats']['mean'][2],
                             rtol=1e-6)


def test_batch_norm_variables_match_flax():
  x = jnp.zeros((2, 3, 3, 5))
  fused = jax.eval_shape(ops.BatchNorm(use_running_average=False).init,
                         jax.random.PRNGKey(0), x)
  ref = jax.eval_shape(nn.BatchNorm(use_running_average=False).init, jax.random.PRNGKey(0), x)
  assert jax.tree.map(lambda s: (s.shape, s.dtype), fused) == \
      jax.tree.map(lambda s: (s.shape, s.dtype), ref)
  # Initialising does not touch the moving averages (flax semantics).
  v = ops.BatchNorm(use_running_average=False).init(jax.random.PRNGKey(0), x + 3.0)
  np.testing.assert_array_equal(v['batch_stats']['mean'], np.zeros(5))
  np.testing.assert_array_equal(v['batch_stats']['var'], np.ones(5))


def test_batch_norm_bfloat16():
  x = (2.0 + _random((4, 5, 5, 8), 0)).astype(jnp.bfloat16)
  v = _bn_variables(8)
  fused, ref = _bn_pair('relu6', train=True, dtype=jnp.bfloat16)
  y, _ = jax.jit(lambda v, x: fused.apply(v, x, mutable=['batch_stats']))(v, x)
  y_ref, _ = jax.jit(lambda v, x: ref(v, x, mutable=['batch_stats']))(v, x)
  assert y.dtype == jnp.bfloat16
  _assert_close(y, y_ref, 2e-2)
  gx = jax.jit(jax.grad(lambda x: _bn_loss(fused.apply, v, x, 1.0)[0]))(x)
  assert gx.dtype == jnp.bfloat16 and np.isfinite(np.asarray(gx, np.float32)).all()
