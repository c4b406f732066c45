"""The timing protocol of every target: warm-up, interleaved repeats, robust statistics.

Random non-zero inputs and random variables (`mnas.latency.entries`), `warmup` calls, then
`repeats` timed calls with `block_until_ready` (more while under `min_seconds`); median,
IQR, MAD, p10, p25, min and mean in milliseconds. With `method='marginal'` the entry is
also compiled as a chain of `chain` independent copies in one program, calls of the two
programs are interleaved, and the entry's cost is the median of
(t_chain - t_single) / (chain - 1): the marginal cost of one more block *inside* a compiled
program, without the per-call dispatch overhead (which an end-to-end model pays once, not
once per block). `method='single'` times single calls.

A measurement is asked for with a *protocol*: the dict of the table's metadata fields in
`PROTOCOL` (it travels as JSON to a worker process).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

# The table metadata fields a runner measures with (`Builder.protocol`).
PROTOCOL = ('repeats', 'warmup', 'method', 'chain', 'max_spread', 'remeasure', 'min_seconds',
            'batch_size', 'depthwise_impl', 'seed', 'clock')

CLOCKS = {'cpu': time.process_time, 'wall': time.perf_counter}


def default_clock(target: str, threads: int) -> str:
  """'cpu' (process CPU time) for one pinned CPU thread: unlike wall time it does not count
  the time other processes hold the core, so a busy machine still gives steady numbers."""
  return 'cpu' if target in ('xla-cpu', 'litert-cpu') and threads == 1 else 'wall'


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
              warmup: int, repeats: int, min_seconds: float, clock: str) -> dict[str, float]:
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


def time_calls(protocol: Mapping[str, Any], single: Callable[[], Any],
               chained: Callable[[], Any] | None = None, chain: int = 1,
               compile_s: float = 0.0) -> dict[str, float]:
  """`time_pair` with the warm-up, repeats, minimum time and clock of `protocol`."""
  stats = time_pair(single, chained, chain, int(protocol['warmup']), int(protocol['repeats']),
                    float(protocol['min_seconds']), protocol['clock'])
  stats['compile_s'] = round(compile_s, 3)
  return stats


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
