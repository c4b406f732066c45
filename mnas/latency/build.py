"""Building a table: measuring its entries on a target (resumable), and its calibration.

`build_table` measures every entry a space can produce (small spaces) or the entries a set of
architectures needs (large ones; `Predictor` can fill missing entries on demand); it saves
every few entries and resumes where it stopped. `calibrate` fits the overhead the entries
miss on a few end-to-end measurements.
"""

from __future__ import annotations

import os
import time
from typing import Any, Sequence

import numpy as np

from mnas.errors import ConfigError
from mnas.latency import runner as runner_lib
from mnas.latency import targets, timing
from mnas.latency.keys import keys_for, parse_key, space_keys
from mnas.latency.predictor import Predictor
from mnas.latency.settings import Settings
from mnas.latency.table import (MATCH_FIELDS, SCHEMA_VERSION, LatencyTable, model_code_hash,
                                timestamp)
from mnas.space import Architecture, Space

# Runner facts a table records in its metadata (`runner.worker_info`).
_ENVIRONMENT = ('cpu', 'cpu_count', 'cpu_affinity', 'python', 'platform', 'jax', 'jaxlib', 'flax',
                'numpy', 'ai_edge_litert', 'litert_converter', 'device_kind', 'xla_flags',
                'devices')


def progress_bar(total: int, desc: str, enabled: bool):
  from tqdm import tqdm
  return tqdm(total=total, desc=desc, unit='entry' if 'latency' in desc else 'arch',
              disable=not enabled, dynamic_ncols=True, smoothing=0.1)


class Builder:
  """Measures table entries on a target, saving the table as it goes (resumable).

  Entries are measured with the protocol the table records (`timing.PROTOCOL`), in a runner
  opened on first use (a worker process logging next to the table, unless `runner`).
  `save_every` > 0 saves a table with a path every that many entries; it is saved when done
  in any case.
  """

  def __init__(self, table: LatencyTable, runner=None, log_path: str | None = None,
               progress: bool = True, save_every: int = 0):
    self.table, self.progress, self.save_every = table, progress, save_every
    self._runner = runner
    self._own_runner = runner is None
    self._log_path = log_path or table.worker_log
    # Imported (device) tables have no protocol; they cannot be measured here anyway.
    self.protocol = {k: table.meta[k] for k in timing.PROTOCOL if k in table.meta}
    self.seed = int(table.meta.get('seed', 0))  # Instance j of a program: seed + j.

  @property
  def runner(self):
    if self._runner is None:
      m = self.table.meta
      self._runner = runner_lib.open_runner(m['target'], m['threads'], m['batch_size'],
                                            m['depthwise_impl'], m['pin'], self._log_path)
      info = self._runner.info
      m.update({k: info[k] for k in _ENVIRONMENT if k in info})
    return self._runner

  def close(self) -> None:
    if self._runner is not None and self._own_runner:
      self._runner.close()
      self._runner = None

  def _record_reference(self, stats: dict) -> None:
    """The table's first measurement fixes `reference_ms`, the scale of all the others."""
    if 'reference_ms' in stats and self.table.meta.get('reference_ms') is None:
      self.table.meta['reference_ms'] = self.protocol['reference_ms'] = stats['reference_ms']

  def measure(self, keys: Sequence[str], desc: str = 'latency') -> int:
    """Measures the `keys` the table lacks; returns how many were measured."""
    todo = self.table.missing(keys)
    if not todo:
      return 0
    runner = self.runner
    bar = progress_bar(len(todo), desc, self.progress)
    t0 = time.time()
    try:
      for i, key in enumerate(todo):
        spec = parse_key(key)
        runs = []
        for j in range(int(self.table.meta.get('instances', 1))):
          runs.append(timing.measure_robust(lambda p: runner.measure_entry(spec, p),
                                            dict(self.protocol, seed=self.seed + j)))
          self._record_reference(runs[-1])
        self.table.add(key, timing.over_instances(runs, self.table.meta['statistic']))
        bar.set_postfix_str(f'{key[:40]} {self.table.entries[key]["ms"]:.3f} ms', refresh=False)
        bar.update(1)
        if self.table.path and self.save_every and (i + 1) % self.save_every == 0:
          self.table.save()
    finally:
      bar.close()
      self.table.meta['build_seconds'] = round(self.table.meta.get('build_seconds', 0.0)
                                               + time.time() - t0, 1)
      if self.table.path:
        self.table.save()
    return len(todo)

  def measure_archs(self, archs: Sequence[Architecture], num_classes: int,
                    desc: str = 'end to end') -> list[dict]:
    """End-to-end statistics of whole architectures on the table's target.

    Measured in passes over all architectures in shuffled order, as many as the table's
    `instances` but at least two (a measurement's repeatability), each pass a fresh
    instance of every model (seed + round: its own variables, buffers and compiled
    program); an architecture's `ms` is the median over its instances
    (`timing.over_instances`); `validation.repeatability` compares its `instance_medians`.
    """
    rounds = max(2, int(self.table.meta.get('instances', 1)))
    runs: list[list[dict]] = [[] for _ in archs]
    rng = np.random.default_rng(0)
    bar = progress_bar(len(archs) * rounds, desc, self.progress)
    try:
      for r in range(rounds):
        for i in rng.permutation(len(archs)):
          runs[i].append(timing.measure_robust(
              lambda p: self.runner.measure_arch(str(archs[i]), num_classes, p),
              dict(self.protocol, seed=self.seed + r)))
          self._record_reference(runs[i][-1])
          bar.update(1)
    finally:
      bar.close()
    out = []
    for arch_runs in runs:
      stats = timing.over_instances(arch_runs, self.table.meta['statistic'])
      stats['ms'] = float(stats[self.table.meta['statistic']])
      out.append(stats)
    return out


def new_table(space: Space | str, target: str, settings: Settings, *,
              width_multiplier: float | None = None, resolution: int | None = None,
              path: str | None = None) -> LatencyTable:
  """An empty table of `space` on `target` with its metadata (`width_multiplier` and
  `resolution` default to the space's first)."""
  if target not in targets.TARGETS:
    raise ConfigError(f'unknown latency target {target!r}; known: {targets.TARGETS}')
  name = space if isinstance(space, str) else space.name
  if not isinstance(space, str):
    width_multiplier = float(width_multiplier or space.width_multiplier[0])
    resolution = int(resolution or space.resolution[0])
  meta = dict(schema=SCHEMA_VERSION, target=target, space=name,
              width_multiplier=None if width_multiplier is None else float(width_multiplier),
              resolution=resolution, **settings.table_meta(target),
              model_code=model_code_hash(), created=timestamp(), complete=False,
              cpu=targets.cpu_model())
  if settings.reference and target in targets.MEASURABLE and not isinstance(space, str):
    meta['reference_arch'] = str(sample_archs(space, 1, seed=20_000 + settings.seed,
                                              width_multiplier=width_multiplier,
                                              resolution=resolution)[0])
    meta['reference_ms'] = None  # Set by the first measurement (`Builder`).
  return LatencyTable(meta, path=path)


def build_table(space: Space, target: str, settings: Settings, *, path: str | None = None,
                archs: Sequence[Architecture] | None = None, keys: Sequence[str] | None = None,
                width_multiplier: float | None = None, resolution: int | None = None,
                progress: bool = True, runner=None) -> LatencyTable:
  """Builds (or resumes, or extends) the latency table of `space` on `target`.

  Measures every entry of the space (`space_keys`) unless `archs` or `keys` narrow it to
  the entries those architectures need. An existing table at `path` is loaded (its
  metadata must match: TableMismatchError) and only missing entries are measured; the table
  is saved every `settings.save_every` entries. Then `settings.calibration_archs` random
  architectures of the space are measured end to end and the calibration
  (`settings.calibration_model`) is fitted and stored in the table.

  Measurement (`Settings`): `warmup` calls, `repeats` timed calls (more while under
  `min_seconds`), `method` 'loop' (calls inside one compiled loop), 'marginal' (in-program
  cost: a chain of `chain` copies minus one copy) or 'single'; with `reference`, relative to
  the table's reference architecture; entries whose spread (IQR / median) exceeds
  `max_spread` are re-measured up to `remeasure` times; `statistic` of the samples is the
  entry's `ms`, the median over `instances` fresh instances.
  `clock` 'cpu' (the default for one CPU thread: process CPU time, steady on a loaded
  machine) or 'wall'; `pin` binds the measuring process to `threads` CPUs.
  """
  table = new_table(space, target, settings, width_multiplier=width_multiplier,
                    resolution=resolution, path=path)
  if path and os.path.exists(path):
    old = LatencyTable.load(path, expect={f: table.meta[f] for f in MATCH_FIELDS})
    old.meta.update({k: table.meta[k] for k in ('repeats', 'warmup', 'max_spread', 'remeasure',
                                                 'min_seconds', 'chain')})
    table = old
  w, r = table.meta['width_multiplier'], table.meta['resolution']
  num_classes = settings.num_classes
  table.meta['scope'] = 'all' if archs is None and keys is None else 'architectures'
  if keys is None:
    keys = (keys_for(archs, num_classes) if archs is not None
            else space_keys(space, w, r, num_classes))
  cal = sample_archs(space, settings.calibration_archs, seed=10_000 + settings.seed,
                     width_multiplier=w, resolution=r) if settings.calibration_archs else []
  keys = list(dict.fromkeys(list(keys) + keys_for(cal, num_classes)))
  builder = Builder(table, runner=runner, progress=progress, save_every=settings.save_every)
  try:
    builder.measure(keys, desc=f'latency {space.name} {target}')
    if cal and table.calibration.get('archs') != [str(a) for a in cal]:
      calibrate(table, cal, builder.measure_archs(cal, num_classes, desc='calibration'),
                settings.calibration_model)
    table.meta['complete'] = not table.missing(keys)
    if table.path:
      table.save()
  finally:
    builder.close()
  return table


def sample_archs(space: Space, n: int, *, seed: int, width_multiplier: float | None = None,
                 resolution: int | None = None) -> list[Architecture]:
  """`n` distinct uniform samples of `space` at one width multiplier and resolution."""
  rng = np.random.default_rng(seed)
  out, seen = [], set()
  for _ in range(50 * n):
    if len(out) == n:
      break
    a = space.sample(rng)
    kw = {}
    if width_multiplier:
      kw['width_multiplier'] = float(width_multiplier)
    if resolution:
      kw['resolution'] = int(resolution)
    a = a.replace(**kw) if kw else a
    if a not in seen:
      seen.add(a)
      out.append(a)
  return out


def calibrate(table: LatencyTable, archs: Sequence[Architecture], measured: Sequence[Any],
              model: str) -> dict:
  """Fits the table's calibration on end-to-end measurements of `archs`.

  'constant': the overhead is the median over `archs` of measured - sum of entries; see
  `Predictor.fit` for 'linear' and 'weights'.
  """
  ms = np.array([m['ms'] if isinstance(m, dict) else float(m) for m in measured], np.float64)
  base = Predictor(table, overhead_ms=0.0, scale=1.0, per_mparam_ms=0.0)
  sums = base.sum_batch(archs)
  p = base.fit(archs, ms, model=model)
  table.calibration = dict(model=model, overhead_ms=p.overhead_ms, scale=p.scale,
                           per_mparam_ms=p.per_mparam_ms, group_scales=p.group_scales,
                           archs=[str(a) for a in archs],
                           measured_ms=ms.round(5).tolist(), sum_ms=sums.round(5).tolist(),
                           date=timestamp())
  return table.calibration
