"""Where latency is measured: the targets of `mnas.latency`, and how one entry is timed.

A *target* turns a table entry (a block, the stem or the head at its input shape; see
`mnas.latency` for the keys) or a whole architecture into a robust timing:

  xla-cpu     the jitted Flax forward pass (inference mode) on the host CPU, batch 1, with
              XLA's CPU threads fixed at process start through XLA_FLAGS (single-threaded by
              default, like one mobile big core). When the current process was not started
              with those flags, a worker subprocess that was is used (`Worker`).
  gpu         the same jitted forward pass on whatever accelerator JAX sees, at a
              configurable batch size.
  litert-cpu  the entry exported with `jax.export`, converted to a LiteRT flatbuffer by
              `litert-converter` (TensorFlow-free) and run by `ai-edge-litert`'s interpreter
              with XNNPACK (`pip install -e .[tf]`).

Timing protocol (every target): random non-zero inputs and random variables, warm-up calls,
then `repeats` timed calls with `block_until_ready`; median, IQR, MAD, p10 and min in
milliseconds. With `method='marginal'` (the default) the entry is also compiled as a chain
of `chain` independent copies in one program, calls of the two programs are interleaved, and
the entry's cost is the median of (t_chain - t_single) / (chain - 1): the marginal cost of
one more block *inside* a compiled program, without the per-call dispatch overhead (which an
end-to-end model pays once, not once per block). `method='single'` times single calls.

Run as `python -m mnas.latency_targets` this module is the worker: it reads one JSON request
a line on stdin and answers one line prefixed with `@@latency ` on stdout.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

TARGETS = ('xla-cpu', 'gpu', 'litert-cpu', 'device')
MEASURABLE = ('xla-cpu', 'gpu', 'litert-cpu')  # 'device': timed elsewhere, then imported.
_REPLY = '@@latency '
LITERT_PACKAGES = 'ai-edge-litert==2.3.0 and litert-converter==0.5.0'


class TargetUnavailableError(RuntimeError):
  """The target cannot be measured here (missing package, no such device)."""


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
# The modules of table entries (the same nn layers as `mnas.models.MobileNet`).
# ------------------------------------------------------------------------------------------

def _models():
  from mnas import models
  return models


def entry_module(spec: dict, depthwise_impl: str = 'auto', layer_impl: str = 'auto'):
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
      """MobileNet's stem: KxK stride-2 conv, batch norm, activation."""
      @nn.compact
      def __call__(self, x):
        x = nn.Conv(spec['cout'], (spec['kernel'],) * 2, (2, 2), padding='SAME', use_bias=False,
                    kernel_init=models.conv_init, name='stem')(x)
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


def variable_shapes(module, input_shape: Sequence[int]) -> Any:
  import jax
  import jax.numpy as jnp
  return jax.eval_shape(module.init, jax.random.key(0),
                        jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32))


def random_variables(module, input_shape: Sequence[int], seed: int = 0, shapes=None) -> Any:
  """Random non-degenerate variables without compiling `init` (shapes by eval_shape).

  Kernels are He-normal (activations keep their scale: no denormals, no overflow), batch
  norm gets random scale / offset / statistics around the identity.
  """
  import jax
  import jax.numpy as jnp
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


# ------------------------------------------------------------------------------------------
# The timing loop.
# ------------------------------------------------------------------------------------------

def summarize(seconds: Sequence[float]) -> dict[str, float]:
  """Robust statistics of timings given in seconds, reported in milliseconds."""
  t = np.asarray(seconds, np.float64) * 1e3
  q10, q25, q50, q75 = np.percentile(t, [10, 25, 50, 75])
  return dict(median=float(q50), iqr=float(q75 - q25),
              mad=float(np.median(np.abs(t - q50))), p10=float(q10), p25=float(q25),
              min=float(t.min()), mean=float(t.mean()), n=int(t.size))


def spread(stats: dict[str, float]) -> float:
  """Relative spread of a measurement: IQR / median (0 for a perfectly steady one)."""
  return stats['iqr'] / max(abs(stats['median']), 1e-9)


CLOCKS = {'cpu': time.process_time, 'wall': time.perf_counter}


def time_pair(single: Callable[[], Any], chained: Callable[[], Any] | None, chain: int,
              warmup: int, repeats: int, min_seconds: float = 0.0,
              clock: str = 'wall') -> dict[str, float]:
  """Times `single()` (and `chained()`, interleaved) and summarizes per-entry milliseconds.

  With `chained`, every repeat times both calls back to back and contributes
  (t_chained - t_single) / (chain - 1): both programs pay the same per-call overhead and
  see the same machine load, which the difference cancels. `min_seconds` extends the
  number of repeats until that much time has been spent (short entries get more samples).
  """
  for _ in range(warmup):
    single()
    if chained is not None:
      chained()
  pc = CLOCKS[clock]
  samples, singles = [], []
  start = time.perf_counter()
  i = 0
  while i < repeats or (time.perf_counter() - start < min_seconds and i < 20 * repeats):
    t0 = pc()
    single()
    t1 = pc()
    if chained is not None:
      chained()
      t2 = pc()
      samples.append((t2 - t1 - (t1 - t0)) / (chain - 1))
    singles.append(t1 - t0)
    i += 1
  out = summarize(samples if chained is not None else singles)
  if chained is not None:  # Also keep the plain single-call statistics.
    s = summarize(singles)
    out.update(single_median=s['median'], single_iqr=s['iqr'], single_p10=s['p10'])
  return out


# ------------------------------------------------------------------------------------------
# XLA targets (CPU and accelerators): one process, jitted programs.
# ------------------------------------------------------------------------------------------

class XlaMeasurer:
  """Times entries and architectures with jitted programs in *this* process."""

  CACHE = 128  # Compiled end-to-end models kept for re-measurement rounds.

  def __init__(self, target: str = 'xla-cpu', batch_size: int = 1, depthwise_impl: str = 'auto'):
    import jax
    self.target, self.batch_size, self.depthwise_impl = target, batch_size, depthwise_impl
    self._cache: dict = {}
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

  def _time(self, module, in_shape, settings, chain_inputs: bool, cache_key=None) -> dict:
    import jax
    if cache_key is not None and cache_key in self._cache:  # Compiled before: time again.
      single = self._cache[cache_key]
      stats = time_pair(single, None, 1, int(settings.get('warmup', 5)),
                        int(settings.get('repeats', 30)), float(settings.get('min_seconds', 0.0)),
                        settings.get('clock', 'wall'))
      stats['compile_s'] = 0.0
      return stats
    b = settings.get('batch_size', self.batch_size)
    shape = (b,) + tuple(in_shape)
    method, k = settings.get('method', 'marginal'), int(settings.get('chain', 2))
    n = k if (method == 'marginal' and chain_inputs and k > 1) else 1
    seed = int(settings.get('seed', 0))
    t0 = time.perf_counter()
    shapes = variable_shapes(module, shape)
    # Every copy of a chain has its own variables and input: like the blocks of a network,
    # each reads its weights once per call (shared weights would be cache-hot for copies 2..k).
    vs = [self._put(random_variables(module, shape, seed + j, shapes)) for j in range(n)]
    xs = [self._put(random_input(shape, 100 + j)) for j in range(n)]
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
    stats = time_pair(single, chained, k, int(settings.get('warmup', 5)),
                      int(settings.get('repeats', 30)), float(settings.get('min_seconds', 0.0)),
                      settings.get('clock', 'wall'))
    stats['compile_s'] = round(compile_s, 3)
    if cache_key is not None:
      while len(self._cache) >= self.CACHE:
        self._cache.pop(next(iter(self._cache)))
      self._cache[cache_key] = single
    return stats

  def measure_entry(self, spec: dict, settings: dict) -> dict:
    module, in_shape = entry_module(spec, settings.get('depthwise_impl', self.depthwise_impl))
    return self._time(module, in_shape, settings, chain_inputs=True)

  def measure_arch(self, arch_str: str, num_classes: int, settings: dict) -> dict:
    """End to end; the compiled model is kept, so measuring it again is cheap."""
    from mnas.space import parse
    arch = parse(arch_str)
    model = _models().build_model(arch, num_classes,
                                  depthwise_impl=settings.get('depthwise_impl', self.depthwise_impl))
    s = dict(settings, method='single')
    return self._time(model, (arch.resolution, arch.resolution, 3), s, chain_inputs=False,
                      cache_key=(arch_str, num_classes, s.get('batch_size', self.batch_size)))


# ------------------------------------------------------------------------------------------
# LiteRT (optional extra): jax.export -> StableHLO -> TFL flatbuffer -> interpreter.
# ------------------------------------------------------------------------------------------

def _require_litert():
  try:
    from ai_edge_litert import interpreter  # noqa: F401
    import litert_converter  # noqa: F401
  except ImportError as e:
    raise TargetUnavailableError(
        f'target litert-cpu needs the optional LiteRT packages ({LITERT_PACKAGES}): '
        f'`pip install -e .[tf]` or `pip install {LITERT_PACKAGES.replace(" and ", " ")}` '
        f'({e})') from e


def to_tflite(fn: Callable, input_shapes: Sequence[Sequence[int]], name: str = 'serving_default') -> bytes:
  """Converts `fn(*inputs)` (variables closed over as constants) to a LiteRT flatbuffer."""
  _require_litert()
  import jax
  import jax.numpy as jnp
  from litert_converter.mlir import ir, passmanager
  from litert_converter.mlir._mlir_libs import converter_api_ext as cae
  specs = [jax.ShapeDtypeStruct(tuple(s), jnp.float32) for s in input_shapes]
  exported = jax.export.export(jax.jit(fn), platforms=['cpu'])(*specs)
  text = exported.mlir_module()
  n_out = len(exported.out_avals)
  with ir.Context() as ctx:
    cae.prepare_mlir_context(ctx)
    module = ir.Module.parse(text)
    cae.run_convert_to_tfl_passes(module, passmanager.PassManager(), cae.ConvertToTFLConfig())
    cae.set_signature(module.operation, name, [f'x{j}' for j in range(len(specs))],
                      [f'y{j}' for j in range(n_out)])
    return bytes(cae.export_flatbuffer_to_bytes(module.operation))


def litert_impl(depthwise_impl: str) -> str:
  """The depthwise implementation exported to LiteRT: 'auto' is 'grouped', the grouped
  convolution that the converter turns into one DEPTHWISE_CONV_2D (XNNPACK's kernel),
  not XLA:CPU's shifted-slices formulation (dozens of elementwise ops in a flatbuffer)."""
  return 'grouped' if depthwise_impl == 'auto' else depthwise_impl


# The layers exported to LiteRT: nn.Conv and nn.BatchNorm (CONV_2D / FULLY_CONNECTED with
# the batch norm and activation folded in), not the CPU 'fused' layers (their dot_general
# 1x1 convs convert to BATCH_MATMUL, which the converter rejects for rank-4 outputs).
LITERT_LAYER_IMPL = 'flax'


class LiteRTMeasurer:
  """Times LiteRT flatbuffers with the XNNPACK CPU interpreter, `threads` threads."""

  def __init__(self, threads: int = 1, depthwise_impl: str = 'auto'):
    _require_litert()
    self.threads, self.depthwise_impl = threads, litert_impl(depthwise_impl)
    self._cache: dict = {}
    self._programs: dict = {}

  def _interpreter(self, content: bytes):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=content, num_threads=self.threads)
    it.allocate_tensors()
    return it

  def _time(self, module, in_shape, settings, chain_inputs: bool, cache_key=None) -> dict:
    if cache_key is not None and cache_key in self._programs:  # Converted before: time again.
      stats = time_pair(self._programs[cache_key], None, 1, int(settings.get('warmup', 5)),
                        int(settings.get('repeats', 30)), float(settings.get('min_seconds', 0.0)),
                        settings.get('clock', 'wall'))
      stats['compile_s'] = 0.0
      return stats
    b = settings.get('batch_size', 1)
    shape = (b,) + tuple(in_shape)
    variables = random_variables(module, shape, settings.get('seed', 0))
    method, k = settings.get('method', 'marginal'), int(settings.get('chain', 3))
    apply = lambda x: module.apply(variables, x)
    t0 = time.perf_counter()
    programs = [self._interpreter(to_tflite(apply, [shape]))]
    if method == 'marginal' and chain_inputs and k > 1:
      programs.append(self._interpreter(to_tflite(lambda *xs: [apply(x) for x in xs], [shape] * k)))
    compile_s = time.perf_counter() - t0
    for p in programs:
      for j, d in enumerate(p.get_input_details()):
        p.set_tensor(d['index'], random_input(d['shape'], 100 + j))
    calls = [p.invoke for p in programs]
    if cache_key is not None:
      self._programs[cache_key] = calls[0]
      while len(self._programs) > XlaMeasurer.CACHE:
        self._programs.pop(next(iter(self._programs)))
    stats = time_pair(calls[0], calls[1] if len(calls) > 1 else None, k,
                      int(settings.get('warmup', 5)), int(settings.get('repeats', 30)),
                      float(settings.get('min_seconds', 0.0)), settings.get('clock', 'wall'))
    stats['compile_s'] = round(compile_s, 3)
    return stats

  def measure_entry(self, spec: dict, settings: dict) -> dict:
    module, in_shape = entry_module(spec, litert_impl(settings.get('depthwise_impl', 'auto')),
                                    LITERT_LAYER_IMPL)
    return self._time(module, in_shape, settings, chain_inputs=True)

  def measure_arch(self, arch_str: str, num_classes: int, settings: dict) -> dict:
    from mnas.space import parse
    arch = parse(arch_str)
    model = _models().build_model(arch, num_classes,
                                  depthwise_impl=litert_impl(settings.get('depthwise_impl', 'auto')),
                                  layer_impl=LITERT_LAYER_IMPL)
    key = (arch_str, num_classes)
    s = dict(settings, method='single')
    if key not in self._cache:
      self._cache[key] = (model, (arch.resolution, arch.resolution, 3))
      while len(self._cache) > XlaMeasurer.CACHE:
        self._cache.pop(next(iter(self._cache)))
    return self._time(*self._cache[key], s, chain_inputs=False, cache_key=key)


def entry_tflite(spec: dict, depthwise_impl: str = 'auto', seed: int = 0) -> bytes:
  """One table entry as a standalone LiteRT flatbuffer, batch 1 (for `latency export`)."""
  module, in_shape = entry_module(spec, litert_impl(depthwise_impl), LITERT_LAYER_IMPL)
  shape = (1,) + tuple(in_shape)
  variables = random_variables(module, shape, seed)
  return to_tflite(lambda x: module.apply(variables, x), [shape])


# ------------------------------------------------------------------------------------------
# Running a target: in this process, or in a worker started with the right XLA_FLAGS.
# ------------------------------------------------------------------------------------------

def make_measurer(target: str, threads: int = 1, batch_size: int = 1, depthwise_impl: str = 'auto'):
  if target in ('xla-cpu', 'gpu'):
    return XlaMeasurer(target, batch_size, depthwise_impl)
  if target == 'litert-cpu':
    return LiteRTMeasurer(threads, depthwise_impl)
  raise TargetUnavailableError(
      f'target {target!r} cannot be measured from Python here; measurable: {MEASURABLE} '
      "(for a phone: `latency export`, time the .tflite files, then `latency import`)")


def quiet_cpus(n: int, sample_s: float = 0.2) -> list[int]:
  """The `n` allowed CPUs that were least busy over `sample_s` seconds (/proc/stat)."""
  allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else []
  if len(allowed) <= n:
    return allowed

  def busy():
    out = {}
    try:
      with open('/proc/stat') as f:
        for line in f:
          if line.startswith('cpu') and line[3].isdigit():
            p = line.split()
            v = [int(x) for x in p[1:]]
            out[int(p[0][3:])] = (sum(v) - v[3] - (v[4] if len(v) > 4 else 0), sum(v))
    except OSError:
      pass
    return out
  a = busy()
  time.sleep(sample_s)
  b = busy()
  load = {c: (b[c][0] - a[c][0]) / max(1, b[c][1] - a[c][1]) if c in a and c in b else 0.0
          for c in allowed}
  return sorted(sorted(allowed, key=lambda c: (load[c], -c))[:n])


def default_clock(target: str, threads: int) -> str:
  """'cpu' (process CPU time) for one pinned CPU thread: unlike wall time it does not count
  the time other processes hold the core, so a busy machine still gives steady numbers."""
  return 'cpu' if target in ('xla-cpu', 'litert-cpu') and threads == 1 else 'wall'


class Worker:
  """A measuring subprocess started with XLA_FLAGS fixing the CPU threads.

  XLA reads its flags once, when the backend starts, so a process that has already started
  JAX with other flags (tests, the search) measures in a fresh process instead. With `pin`
  the worker binds itself to `threads` CPUs (the least busy ones) before JAX starts, so its
  thread pools cannot spread over more cores than the threads recorded in the table.
  """

  def __init__(self, target: str, threads: int, batch_size: int, depthwise_impl: str,
               log_path: str | None = None, pin: bool = True):
    env = dict(os.environ)
    flags = [f for f in env.get('XLA_FLAGS', '').split()
             if not f.lstrip('-').startswith(('xla_cpu_multi_thread_eigen',
                                              'intra_op_parallelism_threads'))]
    env['XLA_FLAGS'] = ' '.join(flags + xla_cpu_flags(threads))
    if target in ('xla-cpu', 'litert-cpu'):
      env['JAX_PLATFORMS'] = 'cpu'
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env['PYTHONPATH'] = root + os.pathsep + env.get('PYTHONPATH', '')
    self._log_path = log_path
    self._log = open(log_path, 'a') if log_path else subprocess.DEVNULL
    cpus = ','.join(map(str, quiet_cpus(threads))) if pin and target != 'gpu' else ''
    self.proc = subprocess.Popen(
        [sys.executable, '-m', 'mnas.latency_targets', target, str(threads), str(batch_size),
         depthwise_impl, cpus], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
        env=env, cwd=root, text=True, bufsize=1)
    self.info = self.call({'op': 'info'})

  def call(self, request: dict) -> dict:
    if self.proc.poll() is not None:
      raise RuntimeError(f'latency worker exited with code {self.proc.returncode}{self._tail()}')
    self.proc.stdin.write(json.dumps(request) + '\n')
    self.proc.stdin.flush()
    while True:
      line = self.proc.stdout.readline()
      if not line:
        raise RuntimeError(f'latency worker died (code {self.proc.wait()}){self._tail()}')
      if line.startswith(_REPLY):
        reply = json.loads(line[len(_REPLY):])
        if 'error' in reply:
          exc = TargetUnavailableError if reply.get('unavailable') else RuntimeError
          raise exc(reply['error'])
        return reply

  def _tail(self) -> str:
    if not self._log_path:
      return ''
    try:
      with open(self._log_path) as f:
        return '; worker log tail:\n' + ''.join(f.readlines()[-15:])
    except OSError:
      return ''

  def measure_entry(self, spec: dict, settings: dict) -> dict:
    return self.call({'op': 'entry', 'spec': spec, 'settings': settings})

  def measure_arch(self, arch_str: str, num_classes: int, settings: dict) -> dict:
    return self.call({'op': 'arch', 'arch': arch_str, 'num_classes': num_classes,
                      'settings': settings})

  def close(self) -> None:
    if self.proc.poll() is None:
      try:
        self.proc.stdin.write(json.dumps({'op': 'exit'}) + '\n')
        self.proc.stdin.flush()
        self.proc.wait(timeout=30)
      except Exception:
        self.proc.kill()
    if self._log is not subprocess.DEVNULL:
      self._log.close()


class InProcess:
  """The same interface as `Worker`, measuring in this process."""

  def __init__(self, target: str, threads: int, batch_size: int, depthwise_impl: str):
    self.measurer = make_measurer(target, threads, batch_size, depthwise_impl)
    self.info = worker_info(target, threads, batch_size)

  def measure_entry(self, spec, settings):
    return self.measurer.measure_entry(spec, settings)

  def measure_arch(self, arch_str, num_classes, settings):
    return self.measurer.measure_arch(arch_str, num_classes, settings)

  def close(self):
    pass


def worker_info(target: str, threads: int, batch_size: int) -> dict:
  import jax
  info = environment(target)
  info.update(xla_flags=os.environ.get('XLA_FLAGS', ''), threads=threads, batch_size=batch_size,
              devices=[str(d) for d in jax.devices()], pid=os.getpid())
  try:
    info['cpu_affinity'] = sorted(os.sched_getaffinity(0))
  except AttributeError:  # pragma: no cover
    pass
  return info


def _affinity() -> int:
  return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)


def open_runner(target: str, threads: int = 1, batch_size: int = 1, depthwise_impl: str = 'auto',
                log_path: str | None = None, pin: bool = True):
  """A measuring runner: this process if it is already configured (XLA_FLAGS for `threads`
  and, with `pin`, bound to `threads` CPUs) or the target is an accelerator, else a worker."""
  if target not in MEASURABLE:
    make_measurer(target)  # Raises the explanation.
  if target == 'litert-cpu':
    _require_litert()  # Fail fast and clearly, before starting anything.
  configured = process_has_flags(threads) and (not pin or _affinity() <= threads)
  if configured or target == 'gpu':
    return InProcess(target, threads, batch_size, depthwise_impl)
  return Worker(target, threads, batch_size, depthwise_impl, log_path, pin)


def _serve(target: str, threads: int, batch_size: int, depthwise_impl: str, cpus: str) -> None:
  if cpus and hasattr(os, 'sched_setaffinity'):  # Before JAX starts its thread pools.
    os.sched_setaffinity(0, {int(c) for c in cpus.split(',')})
  out = sys.stdout
  sys.stdout = sys.stderr  # Anything else printed goes to the log, not the protocol.
  measurer, err = None, None
  try:
    measurer = make_measurer(target, threads, batch_size, depthwise_impl)
  except TargetUnavailableError as e:
    err = e
  for line in sys.stdin:
    req = json.loads(line)
    try:
      if req['op'] == 'exit':
        break
      if err is not None:
        raise err
      if req['op'] == 'info':
        reply = worker_info(target, threads, batch_size)
      elif req['op'] == 'entry':
        reply = measurer.measure_entry(req['spec'], req['settings'])
      elif req['op'] == 'arch':
        reply = measurer.measure_arch(req['arch'], req['num_classes'], req['settings'])
      else:
        raise ValueError(f'unknown request {req["op"]!r}')
    except TargetUnavailableError as e:
      reply = {'error': str(e), 'unavailable': True}
    except Exception as e:  # Reported to the parent, which raises.
      import traceback
      traceback.print_exc()
      reply = {'error': f'{type(e).__name__}: {e}'}
    out.write(_REPLY + json.dumps(reply) + '\n')
    out.flush()


if __name__ == '__main__':
  _serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4],
         sys.argv[5] if len(sys.argv) > 5 else '')
