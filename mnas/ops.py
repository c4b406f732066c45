"""Depthwise convolution that is fast on XLA:CPU, forward and backward.

XLA:CPU lowers a grouped convolution (`lax.conv_general_dilated(...,
feature_group_count=C)`, what `nn.Conv(feature_group_count=C)` runs) to a dense
convolution over a block-diagonal kernel, so a depthwise layer costs about C
times its FLOPs. `python benchmarks/depthwise.py` on the 2-core AMD EPYC dev box
(JAX 0.10.2, shared, medians), MobileNetV3-Large layers at batch 32: 'grouped'
68-540 ms forward and 0.45-4.0 s forward+backward per layer; 'shifted' 4-9 ms
forward (11-67x faster) and 14-194 ms forward+backward (14-144x faster); e.g.
32x28x28x120, k=5, stride 1: 188 -> 6.7 ms forward, 613 -> 40 ms fwd+bwd.

'shifted' writes the layer as a sum over the k*k taps of strided slices of the
padded input times one weight per channel, which XLA fuses into one vectorised
loop. Autodiff of that sum would pad k*k full-size cotangents, so the VJP is
written by hand (`jax.custom_vjp`):

* input gradient: the transposed convolution, again as shifted slices, of the
  cotangent with the flipped kernel. For stride s > 1 it is split into s*s
  output phases (rows/cols congruent mod s); each phase is a stride-1
  correlation with a sub-kernel, so no dilated (mostly zero) cotangent is ever
  built (fwd+bwd 1.3-2.9x faster than dilating it with `lax.pad`), and the
  phases are interleaved by one fused stack+reshape.
* kernel gradient: for each tap, sum over N, H, W of (input slice * cotangent).
  All k*k sums are computed by one variadic `lax.reduce`, one pass over the
  data (a `jnp.sum` per tap becomes k*k YNNPACK reductions that cannot fuse
  the slice, so k*k materialised copies: fwd+bwd 3-19x slower), inside a
  `fori_loop` over images, so that one step's working set stays in L2 and no
  batch-sized temporary is allocated (1.4-3.3x faster fwd+bwd than one reduce
  over the batch); two images per step give XLA two independent reductions
  to run on its two threads. XLA emits the variadic reduce as scalar code; it
  is still the largest part of the backward pass.

Temporaries larger than 32 MiB (glibc's largest mmap threshold) are mmapped and
page-faulted afresh on every call; on the dev box that costs ~0.5 ms per MB,
more than the arithmetic. So the padded copy of the input is only made when it
is small; otherwise each tap zero-pads its own slice inside the fusion (~3x
slower arithmetic, but no big temporary). See benchmarks/depthwise.py.

Accumulation is in float32 for bfloat16 inputs (XLA:CPU has no bfloat16
arithmetic and upcasts each op anyway); outputs and gradients have the dtype
of the inputs.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

IMPLS = ('grouped', 'shifted', 'auto')

# glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: buffers above it are mmapped per
# call (see module docstring). Above this size we avoid making a padded copy.
_MAX_PAD_COPY_BYTES = 32 * 2**20

Array = jax.Array
Dtype = Any
Initializer = Callable[..., Array]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
  """TF "SAME" padding: returns (output size, pad before, pad after).

  total = max((ceil(size / stride) - 1) * stride + kernel - size, 0), with the
  extra pixel after (TF, and `lax.padtype_to_pads`).
  """
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return out, total // 2, total - total // 2


def _acc_dtype(dtype: Dtype) -> Dtype:
  return jnp.promote_types(dtype, jnp.float32)


# ---------------------------------------------------------------------------
# Shifted-slice building blocks.
# ---------------------------------------------------------------------------


def _window_1d(size: int, offset: int, out: int, stride: int):
  """Input range read by y[q] = x[stride * q + offset], q in [0, out), and the
  zero padding (lo, hi) needed where that index falls outside [0, size)."""
  q0 = min(out, max(0, -(offset // stride)))  # first q with index >= 0
  q1 = max(q0, min(out, (size - 1 - offset) // stride + 1))  # one past last q with index < size
  if q1 == q0:  # the whole window reads padding
    return None
  start = stride * q0 + offset
  return (start, stride * (q1 - 1) + offset + 1), (q0, out - q1)


def _shift(x: Array, dh: int, dw: int, out_hw: tuple[int, int], stride: int) -> Array | None:
  """y[n, q, r, c] = x[n, s*q + dh, s*r + dw, c], zero outside x (None if all zero).

  The zero padding is a `lax.pad` of a slice, which XLA fuses into the consumer,
  so no padded copy of `x` is made.
  """
  n, h, w, c = x.shape
  wh = _window_1d(h, dh, out_hw[0], stride)
  ww = _window_1d(w, dw, out_hw[1], stride)
  if wh is None or ww is None:
    return None
  (h0, h1), (plo, phi) = wh
  (w0, w1), (qlo, qhi) = ww
  y = lax.slice(x, (0, h0, w0, 0), (n, h1, w1, c), (1, stride, stride, 1))
  if plo or phi or qlo or qhi:
    y = lax.pad(y, jnp.zeros((), x.dtype), ((0, 0, 0), (plo, phi, 0), (qlo, qhi, 0), (0, 0, 0)))
  return y


def _shifts(x: Array, offsets: Sequence[tuple[int, int]], out_hw: tuple[int, int],
            stride: int) -> list[Array | None]:
  """`_shift` for many offsets; pads `x` once when the padded copy is small."""
  n, h, w, c = x.shape
  span_h = (stride * (out_hw[0] - 1) + 1, h)
  span_w = (stride * (out_hw[1] - 1) + 1, w)
  lo_h = max(0, -min(dh for dh, _ in offsets))
  hi_h = max(0, max(dh for dh, _ in offsets) + span_h[0] - span_h[1])
  lo_w = max(0, -min(dw for _, dw in offsets))
  hi_w = max(0, max(dw for _, dw in offsets) + span_w[0] - span_w[1])
  padded_bytes = n * (h + lo_h + hi_h) * (w + lo_w + hi_w) * c * x.dtype.itemsize
  if padded_bytes > _MAX_PAD_COPY_BYTES:
    return [_shift(x, dh, dw, out_hw, stride) for dh, dw in offsets]
  xp = jnp.pad(x, ((0, 0), (lo_h, hi_h), (lo_w, hi_w), (0, 0)))
  return [_shift(xp, dh + lo_h, dw + lo_w, out_hw, stride) for dh, dw in offsets]


def _weighted_sum(ys: Sequence[Array | None], weights: Sequence[Array], shape: tuple[int, ...],
                  out_dtype: Dtype) -> Array:
  """sum_t ys[t] * weights[t] (None = zeros), accumulated in float32 or wider."""
  acc = None
  for y, wt in zip(ys, weights):
    if y is None:
      continue
    acc_t = _acc_dtype(y.dtype)
    term = y.astype(acc_t) * wt.astype(acc_t)
    acc = term if acc is None else acc + term
  if acc is None:
    return jnp.zeros(shape, out_dtype)
  return acc.astype(out_dtype)


def _forward(x: Array, kernel: Array, stride: int) -> Array:
  k, c = kernel.shape[0], kernel.shape[-1]
  ho, pt, _ = same_padding(x.shape[1], k, stride)
  wo, pl, _ = same_padding(x.shape[2], k, stride)
  offsets = [(i - pt, j - pl) for i in range(k) for j in range(k)]
  ys = _shifts(x, offsets, (ho, wo), stride)
  weights = [kernel[i, j, 0] for i in range(k) for j in range(k)]
  return _weighted_sum(ys, weights, (x.shape[0], ho, wo, c), x.dtype)


def _input_grad(g: Array, kernel: Array, stride: int, hw: tuple[int, int]) -> Array:
  """Transposed depthwise conv: dx[h] = sum_{i, o: s*o + i = h + pad} g[o] * w[i].

  Split into s*s phases h = s*a + r; phase r uses the taps i = r + pad (mod s),
  g[a + (r + pad - i) / s]: a stride-1 correlation, no dilated cotangent.
  """
  k, c = kernel.shape[0], kernel.shape[-1]
  s = stride
  (h, w), n = hw, g.shape[0]
  _, pt, _ = same_padding(h, k, s)
  _, pl, _ = same_padding(w, k, s)
  ha, wa = -(-h // s), -(-w // s)  # rows/cols of the largest phase (phase 0)
  phase_taps = [[[((rh + pt - i) // s, (rw + pl - j) // s, (i, j))
                  for i in range(k) if (rh + pt - i) % s == 0
                  for j in range(k) if (rw + pl - j) % s == 0]
                 for rw in range(s)] for rh in range(s)]
  flat = [t for row in phase_taps for taps in row for t in taps]
  ys = iter(_shifts(g, [(dh, dw) for dh, dw, _ in flat], (ha, wa), 1))  # one padded copy of g
  phases = []
  for row in phase_taps:
    phases.append([])
    for taps in row:
      phase_ys = [next(ys) for _ in taps]
      weights = [kernel[i, j, 0] for _, _, (i, j) in taps]
      phases[-1].append(_weighted_sum(phase_ys, weights, (n, ha, wa, c), g.dtype))
  if s == 1:
    return phases[0][0]
  # (n, ha, s, wa, s, c) -> (n, s*ha, s*wa, c): one fused interleave; phases
  # that extend past the input (odd sizes) are cropped.
  y = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=2)
  y = y.reshape(n, s * ha, s * wa, c)
  return y[:, :h, :w, :]


def _kernel_grad_batch(x: Array, g: Array, k: int, stride: int) -> Array:
  """(k*k, C) tap sums of x-slice * g over the batch, one variadic reduce."""
  ho, wo = g.shape[1:3]
  _, pt, _ = same_padding(x.shape[1], k, stride)
  _, pl, _ = same_padding(x.shape[2], k, stride)
  acc_t = _acc_dtype(x.dtype)
  offsets = [(i - pt, j - pl) for i in range(k) for j in range(k)]
  ys = _shifts(x, offsets, (ho, wo), stride)
  live = [t for t, y in enumerate(ys) if y is not None]
  g = g.astype(acc_t)
  prods = tuple(ys[t].astype(acc_t) * g for t in live)
  sums = lax.reduce(prods, tuple(jnp.zeros((), acc_t) for _ in prods),
                    lambda a, b: tuple(u + v for u, v in zip(a, b)), (0, 1, 2))
  out = [jnp.zeros((x.shape[-1],), acc_t)] * len(ys)
  for t, total in zip(live, sums):
    out[t] = total
  return jnp.stack(out)


def _kernel_grad(x: Array, g: Array, k: int, stride: int, streams: int = 2) -> Array:
  """dw[i, j, c] = sum_{n, q, r} x[n, s*q + i - pad, s*r + j - pad, c] * g[n, q, r, c].

  Loops over images (`streams` independent images per step, so XLA can run
  their reductions on separate threads); see the module docstring for why.
  """
  n = x.shape[0]
  steps, rest = divmod(n, streams)

  def body(b, acc):
    for p in range(streams):
      xb = lax.dynamic_slice_in_dim(x, b * streams + p, 1, 0)
      gb = lax.dynamic_slice_in_dim(g, b * streams + p, 1, 0)
      acc = acc + _kernel_grad_batch(xb, gb, k, stride)
    return acc

  acc = jnp.zeros((k * k, x.shape[-1]), _acc_dtype(x.dtype))
  if steps:
    acc = lax.fori_loop(0, steps, body, acc)
  if rest:
    acc = acc + _kernel_grad_batch(x[n - rest:], g[n - rest:], k, stride)
  return acc.reshape(k, k, 1, x.shape[-1])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _depthwise_shifted(x: Array, kernel: Array, stride: int) -> Array:
  return _forward(x, kernel, stride)


def _depthwise_shifted_fwd(x, kernel, stride):
  return _forward(x, kernel, stride), (x, kernel)


def _depthwise_shifted_bwd(stride, res, g):
  x, kernel = res
  dx = _input_grad(g, kernel, stride, x.shape[1:3]).astype(x.dtype)
  dk = _kernel_grad(x, g, kernel.shape[0], stride).astype(kernel.dtype)
  return dx, dk


_depthwise_shifted.defvjp(_depthwise_shifted_fwd, _depthwise_shifted_bwd)


def _depthwise_grouped(x: Array, kernel: Array, stride: int) -> Array:
  k = kernel.shape[0]
  pads = [same_padding(x.shape[d], k, stride)[1:] for d in (1, 2)]
  return lax.conv_general_dilated(
      x, kernel, (stride, stride), pads, dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      feature_group_count=x.shape[-1])


def resolve_impl(impl: str) -> str:
  """Maps 'auto' to 'shifted' on CPU and 'grouped' elsewhere.

  On XLA:CPU 'shifted' is 11-67x faster forward and 14-144x faster
  forward+backward than 'grouped' (module docstring, benchmarks/depthwise.py).
  GPU/TPU backends run grouped convolutions with native depthwise kernels, and
  k*k slices would only add memory traffic there.
  """
  if impl not in IMPLS:
    raise ValueError(f'impl must be one of {IMPLS}, got {impl!r}')
  if impl == 'auto':
    return 'shifted' if jax.default_backend() == 'cpu' else 'grouped'
  return impl


def depthwise_conv(x: Array, kernel: Array, stride: int = 1, impl: str = 'auto') -> Array:
  """Depthwise 2-D convolution with TF "SAME" padding.

  Args:
    x: (N, H, W, C) input, float32 or bfloat16.
    kernel: (k, k, 1, C), the kernel of `nn.Conv(C, (k, k),
      feature_group_count=C)`. Cast to `x.dtype`.
    stride: the same stride along H and W.
    impl: 'grouped' (`lax.conv_general_dilated` with `feature_group_count=C`),
      'shifted' (sum of shifted slices, custom VJP) or 'auto' (`resolve_impl`).

  Returns:
    (N, ceil(H / stride), ceil(W / stride), C), dtype of `x`.
  """
  impl = resolve_impl(impl)
  if x.ndim != 4:
    raise ValueError(f'x must be NHWC, got shape {x.shape}')
  k = kernel.shape[0]
  if kernel.shape != (k, k, 1, x.shape[-1]):
    raise ValueError(f'kernel must have shape (k, k, 1, {x.shape[-1]}), got {kernel.shape}')
  if int(stride) != stride or stride < 1:
    raise ValueError(f'stride must be a positive int, got {stride!r}')
  kernel = kernel.astype(x.dtype)
  if impl == 'grouped':
    return _depthwise_grouped(x, kernel, int(stride))
  return _depthwise_shifted(x, kernel, int(stride))


class DepthwiseConv(nn.Module):
  """Depthwise convolution, no bias, TF "SAME" padding.

  The single parameter 'kernel' has shape (k, k, 1, C), the same name and shape
  as `nn.Conv(C, (k, k), feature_group_count=C, use_bias=False)`, so `impl` can
  change without touching checkpoints.
  """
  kernel_size: int
  strides: int = 1
  impl: str = 'auto'
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  kernel_init: Initializer = nn.initializers.he_normal()

  @nn.compact
  def __call__(self, x: Array) -> Array:
    k, c = self.kernel_size, x.shape[-1]
    kernel = self.param('kernel', self.kernel_init, (k, k, 1, c), self.param_dtype)
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    return depthwise_conv(x, kernel, self.strides, impl=self.impl)


# ---------------------------------------------------------------------------
# 1x1 convolution as a matrix product.
# ---------------------------------------------------------------------------


def pointwise_conv(x: Array, kernel: Array) -> Array:
  """1x1 convolution, stride 1: (..., Cin) x (1, 1, Cin, Cout) -> (..., Cout).

  One `dot_general` of the (prod(...), Cin) matrix, so that XLA:CPU runs it and
  both of its gradients as plain matrix products. Written as a convolution
  (`nn.Conv(kernel_size=(1, 1))`), the forward is as fast, but the backward is
  3-8x slower: the kernel gradient becomes a convolution over transposed
  (C, H, W, N) copies of the activations (benchmarks/train_throughput.py).
  """
  cin, cout = kernel.shape[-2:]
  if kernel.shape != (1, 1, cin, cout) or x.shape[-1] != cin:
    raise ValueError(f'pointwise_conv: kernel {kernel.shape} does not fit input {x.shape}')
  y = lax.dot_general(x.reshape(-1, cin), kernel.reshape(cin, cout), (((1,), (0,)), ((), ())))
  return y.reshape(*x.shape[:-1], cout)


class PointwiseConv(nn.Module):
  """`nn.Conv(features, (1, 1))` (stride 1, any padding) as a matrix product.

  Same parameters, names and shapes as `nn.Conv`: 'kernel' (1, 1, Cin, features)
  and, with `use_bias`, 'bias' (features,); so checkpoints do not change.
  """
  features: int
  use_bias: bool = True
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param('kernel', self.kernel_init, (1, 1, x.shape[-1], self.features),
                        self.param_dtype)
    bias = (self.param('bias', self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias else None)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = pointwise_conv(x, kernel)
    return y + bias if bias is not None else y


# ---------------------------------------------------------------------------
# Batch norm fused with the activation that follows it.
# ---------------------------------------------------------------------------


def _identity(x: Array) -> Array:
  return x


def _normalize_act(x: Array, mean: Array, a: Array, bias: Array,
                   act: Callable[[Array], Array]) -> Array:
  """act((x - mean) * a + bias) in float32 (or wider), flax's order of operations."""
  acc_t = _acc_dtype(x.dtype)
  return act((x.astype(acc_t) - mean) * a + bias)


def _channel_means(xs: Sequence[Array], axis_name: str | None) -> list[Array]:
  """Per-channel means over all but the last axis, averaged over `axis_name` replicas
  with one `pmean` (as flax's `_compute_stats`)."""
  axes = tuple(range(xs[0].ndim - 1))
  mus = [jnp.mean(v, axes) for v in xs]
  if axis_name is None:
    return mus
  stacked = lax.pmean(jnp.stack(mus), axis_name)
  return [stacked[i] for i in range(len(xs))]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6))
def _bn_act_train(x, scale, bias, epsilon, act, axis_name, dtype):
  return _bn_act_train_fwd(x, scale, bias, epsilon, act, axis_name, dtype)[0]


def _bn_act_train_fwd(x, scale, bias, epsilon, act, axis_name, dtype):
  acc_t = _acc_dtype(x.dtype)
  xf = x.astype(acc_t)
  mean, mean2 = _channel_means([xf, xf * xf], axis_name)
  var = jnp.maximum(0.0, mean2 - mean * mean)  # E[x^2] - E[x]^2, one pass (flax's default).
  rstd = lax.rsqrt(var + epsilon)
  a = scale.astype(acc_t) * rstd
  y = _normalize_act(x, mean, a, bias.astype(acc_t), act).astype(dtype)
  return (y, mean, var), (x, scale, bias, mean, rstd)


def _bn_act_train_bwd(epsilon, act, axis_name, dtype, res, cts):
  """Batch-norm backward with the activation's derivative recomputed from x.

  With xhat = (x - mean) * rstd and d = dL/d(pre-activation):
    dbias = sum(d), dscale = sum(d * xhat),
    dx = scale * rstd * (d - mean(d) - xhat * mean(d * xhat)),
  the means taken over the whole (cross-replica) batch, as autodiff of flax's
  BatchNorm gives. Cotangents of the returned batch statistics are ignored: they
  only feed the moving averages.
  """
  del epsilon, dtype
  x, scale, bias, mean, rstd = res
  dy = cts[0]
  acc_t = _acc_dtype(x.dtype)
  a = scale.astype(acc_t) * rstd
  xc = x.astype(acc_t) - mean
  _, act_vjp = jax.vjp(act, xc * a + bias.astype(acc_t))
  d = act_vjp(dy.astype(acc_t))[0]
  axes = tuple(range(x.ndim - 1))
  sum_d, sum_dxc = jnp.sum(d, axes), jnp.sum(d * xc, axes)
  m = int(np.prod(x.shape[:-1]))
  mean_d, mean_dxc = sum_d / m, sum_dxc / m
  if axis_name is not None:
    stacked = lax.pmean(jnp.stack([mean_d, mean_dxc]), axis_name)
    mean_d, mean_dxc = stacked[0], stacked[1]
  dx = a * (d - mean_d) - xc * (a * rstd * rstd * mean_dxc)
  dscale = rstd * sum_dxc
  return dx.astype(x.dtype), dscale.astype(scale.dtype), sum_d.astype(bias.dtype)


_bn_act_train.defvjp(_bn_act_train_fwd, _bn_act_train_bwd)


def batch_norm_act(x: Array, scale: Array, bias: Array, mean: Array | None = None,
                   var: Array | None = None, *, epsilon: float = 1e-3,
                   act: Callable[[Array], Array] | None = None,
                   axis_name: str | None = None,
                   dtype: Dtype | None = None) -> tuple[Array, Array, Array]:
  """act(batch_norm(x)) over the last axis; returns (y, mean, var).

  Training (`mean`, `var` None): normalises with the batch statistics (means over
  all axes but the last, in float32, var = E[x^2] - E[x]^2 clipped at 0, averaged
  over `axis_name` replicas), returned for the moving averages. Evaluation:
  normalises with the given `mean`, `var` and returns them. y has dtype `dtype`
  (default x's); arithmetic is in float32 or wider.

  Same values as `act(nn.BatchNorm(...)(x))`, but training has a hand-written
  VJP: autodiff of the flax layer saves the centred input and makes several
  passes over it, with the activation's derivative on a saved copy of the
  normalised tensor; this saves only `x`, recomputes the activation's input, and
  makes two passes (the two channel sums, then dx), all fused by XLA.
  """
  act = act or _identity
  dtype = jnp.dtype(dtype or x.dtype)
  if mean is None:
    return _bn_act_train(x, scale, bias, float(epsilon), act, axis_name, dtype)
  acc_t = _acc_dtype(x.dtype)
  a = scale.astype(acc_t) * lax.rsqrt(var.astype(acc_t) + epsilon)
  y = _normalize_act(x, mean.astype(acc_t), a, bias.astype(acc_t), act).astype(dtype)
  return y, mean, var


class BatchNorm(nn.Module):
  """`act(nn.BatchNorm(...)(x))` over the last axis, with a fused backward.

  Same variables as `nn.BatchNorm`: params 'scale' (ones) and 'bias' (zeros),
  'batch_stats' 'mean' (zeros) and 'var' (ones), float32; moving averages
  `momentum * old + (1 - momentum) * batch`, not updated while initialising;
  `axis_name` averages the batch statistics (and their gradients) over replicas
  as flax's cross-replica batch norm does. Output dtype: `dtype`, else the
  promotion of x and the parameters.
  """
  use_running_average: bool | None = None
  momentum: float = 0.99
  epsilon: float = 1e-5
  activation: Callable[[Array], Array] | None = None
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: Array, use_running_average: bool | None = None) -> Array:
    use_running_average = nn.merge_param('use_running_average', self.use_running_average,
                                         use_running_average)
    c = x.shape[-1]
    ra_mean = self.variable('batch_stats', 'mean', lambda s: jnp.zeros(s, jnp.float32), (c,))
    ra_var = self.variable('batch_stats', 'var', lambda s: jnp.ones(s, jnp.float32), (c,))
    scale = self.param('scale', nn.initializers.ones, (c,), self.param_dtype)
    bias = self.param('bias', nn.initializers.zeros, (c,), self.param_dtype)
    dtype = nn.dtypes.canonicalize_dtype(x, scale, bias, dtype=self.dtype)
    if use_running_average:
      y, _, _ = batch_norm_act(x, scale, bias, ra_mean.value, ra_var.value,
                               epsilon=self.epsilon, act=self.activation, dtype=dtype)
    else:
      axis_name = None if self.is_initializing() else self.axis_name
      y, mean, var = batch_norm_act(x, scale, bias, epsilon=self.epsilon, act=self.activation,
                                    axis_name=axis_name, dtype=dtype)
      if not self.is_initializing():
        ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return y
