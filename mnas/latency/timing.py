"""The timing protocol of every target: warm-up, interleaved repeats, robust statistics.

Random non-zero inputs and random variables (`mnas.latency.entries`), `warmup` calls, then
`repeats` timed calls with `block_until_ready` (more while under `min_seconds`); median,
IQR, MAD, p10, p25, min and mean in milliseconds. With `method='loop'` (XLA targets) a
timing is one call of a compiled loop that calls the entry `calls` times, divided by `calls`
(`XlaMeasurer._loop`), as whole architectures are timed. With `method='marginal'` the entry is
also compiled as a chain of `chain` independent copies in one program, calls of the two
programs are interleaved, and the entry's cost is the median of
(t_chain - t_single) / (chain - 1): the marginal cost of one more block *inside* a compiled
program, without the per-call dispatch overhead (which an end-to-end model pays once, not
once per block). `method='single'` times single calls. A table with a `reference_arch`
times every entry and architecture in alternation with that architecture's model and
reports it relative to it, in milliseconds of the reference's `reference_ms` (recorded by
the table's first measurement): every number of the table is on one scale, whatever the
machine's state when it was measured.

A measurement is asked for with a *protocol*: the dict of the table's metadata fields in
`PROTOCOL` (it travels as JSON to a worker process).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

# The table metadata fields a runner measures with (`Builder.protocol`).
PROTOCOL = ('repeats', 'warmup', 'method', 'chain', 'max_spread', 'remeasure', 'min_seconds',
            'batch_size', 'depthwise_impl', 'seed', 'clock', 'num_classes', 'reference_arch',
            'reference_ms')

CLOCKS = {'cpu': time.process_time, 'wall': time.perf_counter}


def default_clock(target: str, threads: int) -> str:
  """'cpu' (process CPU time) for one pinned CPU thread: unlike wall time it does not count
  the time other processes hold the core, so a busy machine still gives steady numbers."""
  return 'cpu' if target in ('xla-cpu', 'litert-cpu') and threads == 1 else 'wall'


def timed(fn: Callable[[], Any]) -> float:
  """Wall seconds of one call of `fn`."""
  t0 = time.perf_counter()
  fn()
  return time.perf_counter() - t0


def summarize(seconds: Sequence[float]) -> dict[str, float]:
  """Robust statistics of timings given in seconds, reported in milliseconds."""
  t = np.asarray(seconds, np.float64) * 1e3
  q10, q25, q50, q75 = np.percentile(t, [10, 25, 50, 75])
  return dict(median=float(q50), iqr=float(q75 - q25),
              mad=float(np.median(np.abs(t - q50))), p10=float(q10), p25=float(q25),
              min=float(t.min()), mean=float(t.mean()), n=int(t.size))


def spread(stats: Mapping[str, float]) -> float:
  """Relative spread of a measurement: IQR / median (0 for a perfectly steady one)."""
  return stats['iqr'] / max(abs(stats['median']), 1e-9)


def time_pair(single: Callable[[], Any], chained: Callable[[], Any] | None, chain: int,
              warmup: int, repeats: int, min_seconds: float, clock: str,
              reference: tuple[Callable[[], Any], int, float] | None = None,
              calls: int = 1) -> dict[str, float]:
  """Times `single()` (and `chained()`, interleaved) and summarizes per-entry milliseconds.

  With `chained`, every repeat times both calls back to back and contributes
  (t_chained - t_single) / (chain - 1): both programs pay the same per-call overhead and
  see the same machine load, which the difference cancels. Without, a sample is
  t_single / `calls` (a program that calls the model `calls` times). `min_seconds` extends
  the number of repeats until that much time has been spent (short entries get more
  samples).

  With `reference` = (call, its calls, seconds per call), every repeat also times the
  reference right after, and scales its sample by seconds per call / the reference's time
  per call in this repeat: a slow spell of a shared machine (another tenant's memory
  traffic, the clock frequency) slows both and cancels. Measured on a 2-core VM, 30
  tiny-space architectures at 32x32 in 3 shuffled rounds: an architecture's median varied
  by 17% (coefficient of variation over rounds), its ratio to the reference by 3%.
  """
  for _ in range(warmup):
    for f in (single, chained, reference and reference[0]):
      if f is not None:
        f()
  pc = CLOCKS[clock]
  samples, raw, singles = [], [], []
  start = time.perf_counter()
  i = 0
  while i < repeats or (time.perf_counter() - start < min_seconds and i < 20 * repeats):
    t0 = pc()
    single()
    t1 = t2 = pc()
    if chained is not None:
      chained()
      t2 = pc()
      sample = (t2 - t1 - (t1 - t0)) / (chain - 1)
    else:
      sample = (t1 - t0) / calls
    raw.append(sample)
    if reference is not None:
      reference[0]()
      t3 = pc()
      sample *= reference[2] / max((t3 - t2) / reference[1], 1e-12)
      if chained is not None:  # The reference evicted the entry's weights: untimed, warm again
        single()  # (else the next t_single pays the cold start and t_chained does not).
        chained()
    samples.append(sample)
    singles.append(t1 - t0)
    i += 1
  out = summarize(samples)
  if chained is not None:  # Also keep the plain single-call statistics.
    s = summarize(singles)
    out.update(single_median=s['median'], single_iqr=s['iqr'], single_p10=s['p10'])
  if reference is not None:  # And the samples before the reference's scaling.
    s = summarize(raw)
    out.update(raw_median=s['median'], raw_iqr=s['iqr'], reference_ms=reference[2] * 1e3)
  return out


def time_calls(protocol: Mapping[str, Any], single: Callable[[], Any],
               chained: Callable[[], Any] | None = None, chain: int = 1,
               compile_s: float = 0.0, reference=None, calls: int = 1) -> dict[str, float]:
  """`time_pair` with the warm-up, repeats, minimum time and clock of `protocol`."""
  stats = time_pair(single, chained, chain, int(protocol['warmup']), int(protocol['repeats']),
                    float(protocol['min_seconds']), protocol['clock'], reference, calls)
  stats['compile_s'] = round(compile_s, 3)
  return stats


def over_instances(runs: Sequence[Mapping[str, Any]], statistic: str) -> dict:
  """One timing of several instances of a program (each its own variables, buffers and
  compile): the median instance's statistics with `statistic` the median over instances,
  and `instance_medians`. Where a program's code and buffers land moves its time: on the
  tiny space at 32x32 an architecture varied by 9% between instances (entries 4-25%), by
  2% between timings of one instance."""
  values = [float(r[statistic]) for r in runs]
  mid = runs[int(np.argsort(values)[(len(values) - 1) // 2])]
  return dict(mid, **{statistic: float(np.median(values))}, instances=len(runs),
              instance_medians=[round(float(r['median']), 6) for r in runs])


class Reference:
  """The reference architecture of a measurer: `reference(protocol, arch_str)` is
  `time_pair`'s (call, calls, seconds per model call) for the table's `reference_arch`,
  else for `arch_str` (the first architecture timed end to end), or None. Its seconds are
  the table's `reference_ms` once recorded, else measured here (the median of 3 x `repeats`
  calls). `compile(arch_str, num_classes, protocol)` gives the measurer's (call, calls, _)."""

  def __init__(self, compile: Callable[[str, int, Mapping[str, Any]], tuple]):
    self.compile, self.arch, self.value = compile, None, None

  def __call__(self, protocol: Mapping[str, Any], arch_str: str | None = None):
    arch = protocol.get('reference_arch') or arch_str
    if arch is None:
      return None
    if self.arch != arch:
      call, calls, _ = self.compile(arch, int(protocol['num_classes']), protocol)
      s = time_pair(call, None, 1, int(protocol['warmup']), 3 * int(protocol['repeats']), 0.0,
                    protocol['clock'], calls=calls)['median'] / 1e3
      self.arch, self.value = arch, (call, calls, s)
    call, calls, s = self.value
    ms = protocol.get('reference_ms')
    return call, calls, s if ms is None else float(ms) / 1e3


def measure_robust(measure: Callable[[dict], dict], protocol: Mapping[str, Any]) -> dict:
  """Measures, and re-measures while the spread (IQR / median) exceeds `max_spread`.

  Keeps the attempt with the lowest median (load from other processes only ever adds
  time), records how many attempts it took.
  """
  best, attempts = None, 0
  for attempts in range(1, int(protocol['remeasure']) + 2):
    stats = measure(dict(protocol))
    if best is None or stats['median'] < best['median']:
      best = stats
    if spread(stats) <= protocol['max_spread']:
      break
  return dict(best, attempts=attempts, spread=round(spread(best), 4))
