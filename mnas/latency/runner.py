"""Running a target: in this process, or in a worker process started with the right XLA_FLAGS.

A runner has `info` (the environment a table records), `measure_entry(spec, protocol)`,
`measure_arch(arch_str, num_classes, protocol)` and `close()`; `protocol` is the dict of the
table's `mnas.latency.timing.PROTOCOL` fields. The worker (`mnas.latency.worker`) speaks
one JSON request a line on stdin and answers one line prefixed with `REPLY` on stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any, Mapping

from mnas.latency import litert, targets, timing
from mnas.latency.targets import MEASURABLE, TargetUnavailableError

REPLY = '@@latency '
WORKER_MODULE = 'mnas.latency.worker'


def make_measurer(target: str, threads: int, batch_size: int, depthwise_impl: str):
  if target in ('xla-cpu', 'gpu'):
    return targets.XlaMeasurer(target, batch_size, depthwise_impl)
  if target == 'litert-cpu':
    return litert.LiteRTMeasurer(threads, depthwise_impl)
  raise TargetUnavailableError(
      f'target {target!r} cannot be measured from Python here; measurable: {MEASURABLE} '
      "(for a phone: `latency export`, time the .tflite files, then `latency import`)")


def worker_info(target: str, threads: int, batch_size: int) -> dict:
  import jax
  info = targets.environment(target)
  info.update(xla_flags=os.environ.get('XLA_FLAGS', ''), threads=threads, batch_size=batch_size,
              devices=[str(d) for d in jax.devices()], pid=os.getpid())
  try:
    info['cpu_affinity'] = sorted(os.sched_getaffinity(0))
  except AttributeError:  # pragma: no cover
    pass
  return info


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


class Worker:
  """A measuring subprocess started with XLA_FLAGS fixing the CPU threads.

  XLA reads its flags once, when the backend starts, so a process that has already started
  JAX with other flags (tests, the search) measures in a fresh process instead. With `pin`
  the worker binds itself to `threads` CPUs (the least busy ones) before JAX starts, so its
  thread pools cannot spread over more cores than the threads recorded in the table.
  """

  def __init__(self, target: str, threads: int, batch_size: int, depthwise_impl: str,
               log_path: str | None, pin: bool):
    env = dict(os.environ)
    flags = [f for f in env.get('XLA_FLAGS', '').split()
             if not f.lstrip('-').startswith(('xla_cpu_multi_thread_eigen',
                                              'intra_op_parallelism_threads'))]
    env['XLA_FLAGS'] = ' '.join(flags + targets.xla_cpu_flags(threads))
    if target in ('xla-cpu', 'litert-cpu'):
      env['JAX_PLATFORMS'] = 'cpu'
    # The folder that holds the `mnas` package: mnas/latency/runner.py -> three levels up.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env['PYTHONPATH'] = root + os.pathsep + env.get('PYTHONPATH', '')
    self._log_path = log_path
    self._log = open(log_path, 'a') if log_path else subprocess.DEVNULL
    cpus = ','.join(map(str, quiet_cpus(threads))) if pin and target != 'gpu' else ''
    self.proc = subprocess.Popen(
        [sys.executable, '-m', WORKER_MODULE, target, str(threads), str(batch_size),
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
      if line.startswith(REPLY):
        reply = json.loads(line[len(REPLY):])
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

  def measure_entry(self, spec: dict, protocol: Mapping[str, Any]) -> dict:
    return self.call({'op': 'entry', 'spec': spec, 'settings': dict(protocol)})

  def measure_arch(self, arch_str: str, num_classes: int, protocol: Mapping[str, Any]) -> dict:
    return self.call({'op': 'arch', 'arch': arch_str, 'num_classes': num_classes,
                      'settings': dict(protocol)})

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

  def measure_entry(self, spec, protocol):
    return self.measurer.measure_entry(spec, protocol)

  def measure_arch(self, arch_str, num_classes, protocol):
    return self.measurer.measure_arch(arch_str, num_classes, protocol)

  def close(self):
    pass


def _affinity() -> int:
  return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)


def open_runner(target: str, threads: int, batch_size: int, depthwise_impl: str, pin: bool,
                log_path: str | None = None):
  """A measuring runner: this process if it is already configured (XLA_FLAGS for `threads`
  and, with `pin`, bound to `threads` CPUs) or the target is an accelerator, else a worker
  (its stderr appended to `log_path`)."""
  if target not in MEASURABLE:
    make_measurer(target, threads, batch_size, depthwise_impl)  # Raises the explanation.
  if target == 'litert-cpu':
    litert.require_litert()  # Fail fast and clearly, before starting anything.
  if not in_worker(target, threads, pin):
    return InProcess(target, threads, batch_size, depthwise_impl)
  return Worker(target, threads, batch_size, depthwise_impl, log_path, pin)


def in_worker(target: str, threads: int, pin: bool) -> bool:
  """Whether `open_runner` measures in a worker process rather than in this one."""
  configured = targets.process_has_flags(threads) and (not pin or _affinity() <= threads)
  return not (configured or target == 'gpu')


def measured_apart(latency_config) -> bool:
  """Whether work in this process leaves the measurements of a latency config undisturbed:
  they run in a worker process pinned to its CPUs and timed by its own CPU clock."""
  c = latency_config
  clock = timing.default_clock(c.target, int(c.threads)) if c.clock == 'auto' else c.clock
  return clock == 'cpu' and bool(c.pin) and in_worker(c.target, int(c.threads), c.pin)
