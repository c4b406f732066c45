"""Where latency is measured: the targets of a table, and the XLA ones' measurer.

A *target* turns a table entry (a block, the stem or the head at its input shape; see
`mnas.latency.keys`) or a whole architecture into a robust timing
(`mnas.latency.timing`):

  xla-cpu     the jitted Flax forward pass (inference mode) on the host CPU, batch 1, with
              XLA's CPU threads fixed at process start through XLA_FLAGS (single-threaded by
              default, like one mobile big core). When the current process was not started
              with those flags, a worker subprocess that was is used
              (`mnas.latency.runner.Worker`).
  gpu         the same jitted forward pass on whatever accelerator JAX sees, at a
              configurable batch size.
  litert-cpu  the entry exported with `jax.export`, converted to a LiteRT flatbuffer by
              `litert-converter` (TensorFlow-free) and run by `ai-edge-litert`'s interpreter
              with XNNPACK (`pip install -e .[tf]`; `mnas.latency.litert`).
  device      timed elsewhere (a phone): `latency export`, then `latency import`
              (`mnas.latency.device`).
"""

from __future__ import annotations

import json
import os
import platform
import time
from typing import Any, Callable, Mapping

import numpy as np

from mnas.errors import UserError
from mnas.latency import entries, timing

TARGETS = ('xla-cpu', 'gpu', 'litert-cpu', 'device')
MEASURABLE = ('xla-cpu', 'gpu', 'litert-cpu')  # 'device': timed elsewhere, then imported.


class TargetUnavailableError(UserError, RuntimeError):
  """The target cannot be measured here (missing optional package, no such device)."""


# ------------------------------------------------------------------------------------------
# Threads, flags and the environment that a table records.
# ------------------------------------------------------------------------------------------

def xla_cpu_flags(threads: int) -> list[str]:
  """XLA_FLAGS that fix XLA:CPU's intra-op threads (read once, at backend start)."""
  if threads == 1:
    return ['--xla_cpu_multi_thread_eigen=false', 'intra_op_parallelism_threads=1']
  return ['--xla_cpu_multi_thread_eigen=true', f'intra_op_parallelism_threads={threads}']


def process_has_flags(threads: int) -> bool:
  """Whether this process was started with the XLA_FLAGS for `threads`."""
  have = os.environ.get('XLA_FLAGS', '').split()
  return all(f in have for f in xla_cpu_flags(threads))


def cpu_model() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.lower().startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def environment(target: str) -> dict[str, Any]:
  """Versions and machine facts recorded in a table's metadata (this process)."""
  import flax
  import jax
  env = dict(cpu=cpu_model(), cpu_count=os.cpu_count(), python=platform.python_version(),
             platform=platform.platform(), jax=jax.__version__, flax=flax.__version__,
             numpy=np.__version__)
  try:
    import jaxlib
    env['jaxlib'] = jaxlib.__version__
  except Exception:  # pragma: no cover
    pass
  if target == 'litert-cpu':
    try:
      from importlib import metadata
      env['ai_edge_litert'] = metadata.version('ai-edge-litert')
      env['litert_converter'] = metadata.version('litert-converter')
    except Exception:
      pass
  if target == 'gpu':
    try:
      env['device_kind'] = jax.devices()[0].device_kind
    except Exception:
      pass
  return env


# ------------------------------------------------------------------------------------------
# XLA targets (CPU and accelerators): one process, jitted programs.
# ------------------------------------------------------------------------------------------

def remember(cache: dict, key, value, size: int = 128) -> None:
  """Keeps `value` under `key`, forgetting the oldest entries beyond `size` (the compiled
  programs a re-measurement round times again)."""
  while len(cache) >= size:
    cache.pop(next(iter(cache)))
  cache[key] = value


def timing_loop(module, out) -> Callable:
  """loop(variables, x, n): `module.apply(variables, x)` called n times in a `fori_loop`,
  reading its input and weights through an optimization barrier tied to the loop counter
  (not loop-invariant: not hoisted) and returning its output as the loop's carry (not dead
  code); `out` is the output's shape and dtype (`jax.eval_shape`)."""
  import jax.numpy as jnp
  from jax import lax

  def loop(variables, x, n):
    def body(i, y):
      v_i, x_i, _ = lax.optimization_barrier((variables, x, i))
      return module.apply(v_i, x_i)
    return lax.fori_loop(0, n, body, jnp.zeros(out.shape, out.dtype))
  return loop


class XlaMeasurer:
  """Times entries and architectures with jitted programs in *this* process."""

  LOOP_MS = 2.0  # A timing of `_loop` covers at least this long (`calls` calls).

  def __init__(self, target: str, batch_size: int, depthwise_impl: str):
    import jax
    self.target, self.batch_size, self.depthwise_impl = target, batch_size, depthwise_impl
    self._cache: dict = {}
    self.reference = timing.Reference(self._arch_loop)
    if target == 'gpu':
      devs = [d for d in jax.devices() if d.platform != 'cpu']
      if not devs:
        raise TargetUnavailableError('target gpu: JAX sees no accelerator here '
                                     f'(devices: {jax.devices()})')
      self.device = devs[0]
    else:
      self.device = jax.devices('cpu')[0]

  def _put(self, tree):
    import jax
    return jax.device_put(tree, self.device)

  def _time(self, module, in_shape, protocol: Mapping[str, Any], cache_key) -> dict:
    """An entry as `method` 'single' calls or 'marginal' chains (`timing.time_pair`)."""
    import jax
    if cache_key in self._cache:  # Compiled before: time again.
      return timing.time_calls(protocol, *self._cache[cache_key],  # compile_s: the first's.
                               reference=self.reference(protocol))
    shape = (protocol['batch_size'],) + tuple(in_shape)
    method, k = protocol['method'], int(protocol['chain'])
    n = k if (method == 'marginal' and k > 1) else 1
    seed = int(protocol['seed'])
    t0 = time.perf_counter()
    shapes = entries.variable_shapes(module, shape)
    # Every copy of a chain has its own variables and input: like the blocks of a network,
    # each reads its weights once per call (shared weights would be cache-hot for copies 2..k).
    vs = [self._put(entries.random_variables(module, shape, seed + j, shapes)) for j in range(n)]
    xs = [self._put(entries.random_input(shape, 100 + j)) for j in range(n)]
    if n == 1:
      fn = jax.jit(module.apply)
      single = lambda: jax.block_until_ready(fn(vs[0], xs[0]))
      chained = None
    else:
      # One program, one compile: copy 1 always runs, copies 2..k run when `on` (lax.cond
      # executes only the taken branch), so both timings share the program's per-call cost.
      from jax import lax
      import jax.numpy as jnp
      out = jax.eval_shape(module.apply, vs[0], xs[0])

      def program(vs, xs, on):
        rest = lambda: [module.apply(v, x) for v, x in zip(vs[1:], xs[1:])]
        none = lambda: [jnp.zeros(out.shape, out.dtype) for _ in vs[1:]]
        return module.apply(vs[0], xs[0]), lax.cond(on, rest, none)
      fn = jax.jit(program)
      off_flag, on_flag = self._put(np.bool_(False)), self._put(np.bool_(True))
      single = lambda: jax.block_until_ready(fn(vs, xs, off_flag))
      chained = lambda: jax.block_until_ready(fn(vs, xs, on_flag))
      chained()
    single()
    compile_s = time.perf_counter() - t0
    stats = timing.time_calls(protocol, single, chained, k, compile_s, self.reference(protocol))
    remember(self._cache, cache_key, (single, chained, k, compile_s))
    return stats

  def measure_entry(self, spec: dict, protocol: Mapping[str, Any]) -> dict:
    """With `method='loop'`, the entry called `calls` times inside one compiled loop, as
    `measure_arch` times a whole network (`_loop`); else `_time`'s single calls or chains.
    The entry's program is kept, so a re-measurement (`timing.measure_robust`) times the
    same program again instead of compiling it again (same variables, same inputs)."""
    module, in_shape = entries.entry_module(spec, protocol['depthwise_impl'])
    key = ('entry', json.dumps(spec, sort_keys=True), protocol['batch_size'], protocol['seed'],
           protocol['depthwise_impl'], protocol['method'], protocol['chain'])
    for old in [k for k in self._cache if k[0] == 'entry' and k != key]:
      del self._cache[old]  # Re-measurements follow at once: one entry's program is enough.
    if protocol['method'] != 'loop':
      return self._time(module, in_shape, protocol, key)
    call, calls, compile_s = self._compiled_loop(key, lambda: (module, in_shape), protocol)
    return timing.time_calls(protocol, call, None, 1, compile_s, self.reference(protocol), calls)

  def _loop(self, module, in_shape, protocol: Mapping[str, Any]):
    """(call, calls, compile_s): `module` called `calls` times inside one compiled
    `timing_loop` (`calls` such that one call of the loop takes >= LOOP_MS); why the loop
    adds nothing to the module's program: `mnas.latency`'s docstring."""
    import jax
    shape = (protocol['batch_size'],) + tuple(in_shape)
    t0 = time.perf_counter()
    vs = self._put(entries.random_variables(module, shape, int(protocol['seed'])))
    x = self._put(entries.random_input(shape, 100))
    fn = jax.jit(timing_loop(module, jax.eval_shape(module.apply, vs, x)))
    one = self._put(np.int32(1))
    jax.block_until_ready(fn(vs, x, one))
    compile_s = time.perf_counter() - t0
    once = timing.summarize([timing.timed(lambda: jax.block_until_ready(fn(vs, x, one)))
                             for _ in range(3)])['median']
    calls = int(np.clip(np.ceil(self.LOOP_MS / max(once, 1e-3)), 1, 256))
    n = self._put(np.int32(calls))
    return (lambda: jax.block_until_ready(fn(vs, x, n))), calls, compile_s

  def _compiled_loop(self, key, module_and_shape, protocol: Mapping[str, Any]):
    """`_loop` of `module_and_shape()`, compiled once per `key` and kept."""
    if key not in self._cache:
      remember(self._cache, key, self._loop(*module_and_shape(), protocol))
    return self._cache[key]

  def _arch_loop(self, arch_str: str, num_classes: int, protocol: Mapping[str, Any]):
    return self._compiled_loop(
        (arch_str, num_classes, protocol['batch_size'], protocol['seed']),
        lambda: entries.arch_model(arch_str, num_classes, protocol['depthwise_impl']), protocol)

  def measure_arch(self, arch_str: str, num_classes: int, protocol: Mapping[str, Any]) -> dict:
    """End to end, per model call inside a compiled loop (JAX's per-call dispatch of the
    model's ~50-300 arrays, 0.2-0.3 ms at 32x32, is not the model's, and as noisy as the
    model itself at that size), relative to the reference (`timing.Reference`, `time_pair`).
    The compiled loop is kept, so measuring it again is cheap."""
    call, calls, compile_s = self._arch_loop(arch_str, num_classes, protocol)
    return timing.time_calls(protocol, call, None, 1, compile_s,
                             self.reference(dict(protocol, num_classes=num_classes), arch_str),
                             calls)
