"""Times depthwise-conv implementations on MobileNetV3-Large layer shapes.

  python benchmarks/depthwise.py [--repeats 7] [--shapes 0,3] [--alternatives]

Forward and forward+backward (grads wrt input and kernel) of one layer, jitted,
after two warm-up calls; prints the median wall time in ms over `--repeats`
calls and the speed-up of 'shifted' over 'grouped'. `--alternatives` also times
the formulations that `mnas/ops.py` does NOT use, to justify its choices:

* autodiff: 'shifted' forward without the custom VJP;
* dk per-tap sum: kernel gradient as k*k `jnp.sum`s over the whole batch;
* dk batch reduce: one variadic reduce over the whole batch (no image loop);
* dx dilated: input gradient via a dilated cotangent (`lax.pad` with interior
  padding) and a stride-1 shifted correlation, instead of s*s phases.

The machine may be shared: take medians, and compare numbers from one run.
Large (> 32 MiB) temporaries are page-faulted afresh on every call under glibc
malloc; `MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=8589934592`
(or tcmalloc) changes the numbers of the 112x112 layers a lot.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mnas import ops  # pylint: disable=g-import-not-at-top

# MobileNetV3-Large (Howard et al. 2019, Table 1) at 224x224, batch 32: input of
# the depthwise conv (N, H, W, C), kernel, stride.
SHAPES = (
    ((32, 112, 112, 16), 3, 1),
    ((32, 112, 112, 64), 3, 2),
    ((32, 56, 56, 72), 5, 2),
    ((32, 28, 28, 120), 5, 1),
    ((32, 14, 14, 480), 3, 1),
    ((32, 14, 14, 672), 5, 2),
    ((32, 7, 7, 960), 5, 1),
)


def time_ms(fn, args, repeats: int) -> float:
  """Median wall time of `fn(*args)` in ms, after two warm-up calls."""
  for _ in range(2):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return 1e3 * float(np.median(times))


def fwd_bwd(conv):
  """x, kernel, cotangent -> (dx, dkernel) of `conv`, jitted."""
  def f(x, kernel, ct):
    _, vjp = jax.vjp(conv, x, kernel)
    return vjp(ct)
  return jax.jit(f)


# --- Alternatives that mnas/ops.py does not use (see module docstring). ------


def _kernel_grad_per_tap(x, g, k, stride):
  ho, wo = g.shape[1:3]
  _, pt, _ = ops.same_padding(x.shape[1], k, stride)
  _, pl, _ = ops.same_padding(x.shape[2], k, stride)
  ys = ops._shifts(x, [(i - pt, j - pl) for i in range(k) for j in range(k)], (ho, wo), stride)
  sums = [jnp.sum(y * g, axis=(0, 1, 2)) for y in ys]
  return jnp.stack(sums).reshape(k, k, 1, x.shape[-1])


def _kernel_grad_batch_reduce(x, g, k, stride):
  return ops._kernel_grad_batch(x, g, k, stride).reshape(k, k, 1, x.shape[-1])


def _input_grad_dilated(g, kernel, stride, hw):
  k, s = kernel.shape[0], stride
  h, w = hw
  _, pt, _ = ops.same_padding(h, k, s)
  _, pl, _ = ops.same_padding(w, k, s)
  # Scatter g to the stride grid of the padded input, then correlate with the
  # flipped kernel: dx[h] = sum_i gd[h + pt - i] w[i].
  gd = lax.pad(g, jnp.zeros((), g.dtype),
               ((0, 0, 0), (0, 0, s - 1), (0, 0, s - 1), (0, 0, 0)))
  offsets = [(pt - i, pl - j) for i in range(k) for j in range(k)]
  ys = ops._shifts(gd, offsets, (h, w), 1)
  weights = [kernel[i, j, 0] for i in range(k) for j in range(k)]
  return ops._weighted_sum(ys, weights, (g.shape[0], h, w, g.shape[-1]), g.dtype)


def shifted_variant(stride, input_grad=None, kernel_grad=None):
  """'shifted' with its input or kernel gradient replaced."""
  input_grad = input_grad or ops._input_grad
  kernel_grad = kernel_grad or ops._kernel_grad

  @jax.custom_vjp
  def conv(x, kernel):
    return ops._forward(x, kernel, stride)

  def fwd(x, kernel):
    return conv(x, kernel), (x, kernel)

  def bwd(res, g):
    x, kernel = res
    return (input_grad(g, kernel, stride, x.shape[1:3]).astype(x.dtype),
            kernel_grad(x, g, kernel.shape[0], stride).astype(kernel.dtype))

  conv.defvjp(fwd, bwd)
  return conv


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--repeats', type=int, default=7)
  parser.add_argument('--shapes', default='', help='comma-separated indices into SHAPES')
  parser.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  parser.add_argument('--alternatives', action='store_true')
  parser.add_argument('--skip_grouped', action='store_true')
  args = parser.parse_args()
  shapes = [SHAPES[int(i)] for i in args.shapes.split(',')] if args.shapes else SHAPES
  dtype = jnp.dtype(args.dtype)
  print(f'jax {jax.__version__}, backend {jax.default_backend()}, {os.cpu_count()} cpus, '
        f'{args.dtype}, median of {args.repeats} (ms)')
  header = (f'{"input (N,H,W,C)":<20} {"k":>2} {"s":>2} | {"grouped fwd":>11} {"shifted fwd":>11} '
            f'{"x":>6} | {"grouped f+b":>11} {"shifted f+b":>11} {"x":>6}')
  print(header)
  print('-' * len(header))
  alt_rows = []
  for shape, k, s in shapes:
    kx, kk, kg = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, shape, dtype)
    kernel = jax.random.normal(kk, (k, k, 1, shape[-1]), dtype)
    ho, wo = -(-shape[1] // s), -(-shape[2] // s)
    ct = jax.random.normal(kg, (shape[0], ho, wo, shape[-1]), dtype)
    t = {}
    for impl in ('grouped', 'shifted'):
      if impl == 'grouped' and args.skip_grouped:
        t[impl] = (float('nan'), float('nan'))
        continue
      conv = functools.partial(ops.depthwise_conv, stride=s, impl=impl)
      t[impl] = (time_ms(jax.jit(conv), (x, kernel), args.repeats),
                 time_ms(fwd_bwd(conv), (x, kernel, ct), args.repeats))
    (gf, gb), (sf, sb) = t['grouped'], t['shifted']
    print(f'{str(shape):<20} {k:>2} {s:>2} | {gf:11.1f} {sf:11.1f} {gf / sf:5.1f}x | '
          f'{gb:11.1f} {sb:11.1f} {gb / sb:5.1f}x', flush=True)
    if args.alternatives:
      alts = {
          'autodiff': lambda x, w, s=s: ops._forward(x, w, s),
          'dk per-tap sum': shifted_variant(s, kernel_grad=_kernel_grad_per_tap),
          'dk batch reduce': shifted_variant(s, kernel_grad=_kernel_grad_batch_reduce),
      }
      if s > 1:
        alts['dx dilated'] = shifted_variant(s, input_grad=_input_grad_dilated)
      row = {name: time_ms(fwd_bwd(conv), (x, kernel, ct), args.repeats)
             for name, conv in alts.items()}
      alt_rows.append((shape, k, s, sb, row))
  if alt_rows:
    print('\nforward+backward of alternative formulations (ms; shifted = what ops.py uses)')
    for shape, k, s, sb, row in alt_rows:
      print(f'{str(shape):<20} {k:>2} {s:>2} | shifted {sb:.1f} | ' +
            ' | '.join(f'{name} {ms:.1f}' for name, ms in row.items()), flush=True)


if __name__ == '__main__':
  main()
