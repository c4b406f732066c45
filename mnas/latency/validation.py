"""Validating the predictor: random architectures measured end to end on the table's target.

The report has RMSE, MAPE, the share within +-5% / +-10% and Spearman's rank correlation of
predicted against measured latency, as nn-Meter reports them (Zhang et al. 2021), for the
predictor, the plain sum of entries and each correction fitted on half the architectures;
the end-to-end measurement's own repeatability (the same metrics between two instances of
the same architectures, each with its own variables, buffers and compiled program: no
predictor can rank better than that); and
the CPU the table was built on against this one, said out loud when they differ. `validate`
writes it as JSON, a scatter plot (PNG) and TensorBoard summaries.
"""

from __future__ import annotations

import os
import time
from typing import Sequence

import numpy as np

from mnas import jsonfile
from absl import logging

from mnas.latency import targets, timing
from mnas.latency.build import Builder, calibrate, sample_archs
from mnas.latency.keys import keys_for
from mnas.latency.predictor import OVERHEAD_MODELS, Predictor
from mnas.latency.settings import Settings
from mnas.latency.table import LatencyTable, timestamp
from mnas.space import Architecture, Space

_SCALARS = ('rmse_ms', 'mape_pct', 'within_5pct', 'within_10pct', 'spearman')


def metrics(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
  """RMSE (ms), MAPE (%), share within +-5% / +-10%, Spearman and Pearson correlations."""
  from scipy import stats
  p, m = np.asarray(predicted, np.float64), np.asarray(measured, np.float64)
  rel = (p - m) / m
  out = dict(n=int(m.size), rmse_ms=float(np.sqrt(np.mean((p - m) ** 2))),
             mape_pct=float(100 * np.mean(np.abs(rel))),
             within_5pct=float(np.mean(np.abs(rel) <= 0.05)),
             within_10pct=float(np.mean(np.abs(rel) <= 0.10)), bias_pct=float(100 * np.mean(rel)),
             max_abs_error_pct=float(100 * np.max(np.abs(rel))))
  if m.size > 2 and np.ptp(m) > 0 and np.ptp(p) > 0:
    out['spearman'] = float(stats.spearmanr(p, m).statistic)
    out['pearson'] = float(stats.pearsonr(p, m).statistic)
  return out


def repeatability(measured_stats: Sequence[dict]) -> dict[str, float]:
  """`metrics` of the second instance's end-to-end medians against the first's (the same
  architectures measured twice, `Builder.measure_archs`); {} with fewer than two."""
  rounds = [s.get('instance_medians') or [] for s in measured_stats]
  if not rounds or min(len(r) for r in rounds) < 2:
    return {}
  return metrics([r[1] for r in rounds], [r[0] for r in rounds])


def scatter_figure(predicted, measured, title: str):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
  p, m = np.asarray(predicted), np.asarray(measured)
  lo, hi = float(min(p.min(), m.min())) * 0.95, float(max(p.max(), m.max())) * 1.05
  xs = np.linspace(lo, hi, 2)
  ax.plot(xs, xs, 'k-', lw=1, label='y = x')
  ax.fill_between(xs, xs * 0.9, xs * 1.1, color='tab:green', alpha=0.12, label='+-10%')
  ax.fill_between(xs, xs * 0.95, xs * 1.05, color='tab:green', alpha=0.2, label='+-5%')
  ax.scatter(m, p, s=14, color='tab:blue', alpha=0.8, zorder=3)
  ax.set_xlim(lo, hi)
  ax.set_ylim(lo, hi)
  ax.set_xlabel('measured latency (ms)')
  ax.set_ylabel('predicted latency (ms)')
  ax.set_title(title, fontsize=9)
  ax.legend(loc='upper left', fontsize=8)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  return fig


def validate(table: LatencyTable, space: Space, settings: Settings, n: int, seed: int, *,
             recalibrate: bool, workdir: str | None = None, runner=None, progress: bool = True,
             archs: Sequence[Architecture] | None = None) -> dict:
  """Measures `n` random architectures (drawn with `seed`) end to end and compares them
  with the predictor.

  Missing entries of those architectures are measured first (and saved into the table,
  every `settings.save_every`). With `recalibrate` (or without a calibration) the table is
  calibrated on `settings.calibration_archs` other architectures
  (`settings.calibration_model`), measured in the same shuffled passes. Returns (and,
  with `workdir`, writes as JSON, PNG and TensorBoard) the report: metrics of the predictor
  (sum of entries + calibration), of the plain sum, and of each correction fitted on half
  the architectures and evaluated on the other half.
  """
  meta = table.meta
  archs = list(archs) if archs is not None else sample_archs(
      space, n, seed=seed, width_multiplier=meta.get('width_multiplier'),
      resolution=meta.get('resolution'))
  num_classes = int(meta['num_classes'])
  builder = Builder(table, runner=runner, progress=progress, save_every=settings.save_every)
  cal = []
  if recalibrate or not table.calibration:
    # The end-to-end cost the entries miss (weights streaming from memory) moves with the
    # machine's state (other processes' memory traffic): calibrate now, on architectures
    # disjoint from the validation ones, as a user would before trusting the predictor.
    # calibration_archs 0 (a build without calibration): as many as the table's, else 5.
    n_cal = int(settings.calibration_archs or len(table.calibration.get('archs', [])) or 5)
    cal = sample_archs(space, n_cal, seed=10_000 + int(meta['seed']),
                       width_multiplier=meta.get('width_multiplier'),
                       resolution=meta.get('resolution'))
  t0 = time.time()
  try:
    builder.runner  # Opened first: a table timed elsewhere ('device') fails here, saying so.
    builder.measure(keys_for(archs + cal, num_classes),
                    desc=f'latency {space.name} {meta["target"]}')
    # Calibration and validation architectures in the same shuffled passes: measured ten
    # minutes apart, the machine's drift between them biased a whole validation by 5%.
    measured_stats = builder.measure_archs(cal + archs, num_classes, desc='end to end')
    if cal:
      calibrate(table, cal, measured_stats[:len(cal)], settings.calibration_model)
      measured_stats = measured_stats[len(cal):]
      if table.path:
        table.save()
  finally:
    builder.close()
  measured = np.array([s['ms'] for s in measured_stats])
  pred = Predictor(table)
  predicted = pred.predict_batch(archs)
  sums = pred.sum_batch(archs)
  half = len(archs) // 2
  report = dict(
      target=meta['target'], space=space.name, n=len(archs), seed=seed,
      resolution=meta.get('resolution'), width_multiplier=meta.get('width_multiplier'),
      table=table.path, table_entries=len(table), calibration={
          k: table.calibration.get(k)
          for k in ('model', 'overhead_ms', 'scale', 'per_mparam_ms', 'group_scales')},
      statistic=meta.get('statistic'), method=meta.get('method'), threads=meta.get('threads'),
      batch_size=meta.get('batch_size'), cpu=meta.get('cpu'), date=timestamp(),
      validated_on=targets.cpu_model(), same_cpu=meta.get('cpu') == targets.cpu_model(),
      seconds=round(time.time() - t0, 1),
      predictor=metrics(predicted, measured),
      plain_sum=metrics(sums, measured),
      measured_spread_median=float(np.median([timing.spread(s) for s in measured_stats])),
      repeatability=repeatability(measured_stats),
  )
  if not report['same_cpu']:
    logging.warning('latency validate: the table was built on %r, this machine is %r: its '
                    'entries describe the other CPU', meta.get('cpu'), report['validated_on'])
  if half >= 3:  # Corrections fitted on one half of the architectures, tested on the other.
    for model in OVERHEAD_MODELS:
      fitted = pred.fit(archs[:half], measured[:half], model=model)
      report[f'{model}_fit_holdout'] = dict(
          metrics(fitted.predict_batch(archs[half:]), measured[half:]), scale=fitted.scale,
          overhead_ms=fitted.overhead_ms, per_mparam_ms=fitted.per_mparam_ms,
          group_scales=fitted.group_scales)
  mparams = pred.mparams_batch(archs)
  report['architectures'] = [dict(arch=str(a), measured_ms=round(float(m), 5),
                                  predicted_ms=round(float(p), 5), sum_ms=round(float(s), 5),
                                  mparams=round(float(w), 5), spread=round(timing.spread(st), 4),
                                  instance_medians=st.get('instance_medians'))
                             for a, m, p, s, w, st in zip(archs, measured, predicted, sums, mparams,
                                                          measured_stats)]
  if workdir:
    _write_report(report, predicted, measured, workdir)
  return report


def _write_report(report: dict, predicted, measured, workdir: str) -> None:
  """workdir/validation_*.json and .png, and the plot and metrics in workdir/tensorboard."""
  from mnas import metrics as metrics_lib  # JAX (process 0 writes): when a report is written.
  os.makedirs(workdir, exist_ok=True)
  stem = f'validation_{report["target"]}_{report["space"]}_r{report["resolution"]}'
  r = report['predictor']
  title = (f'{report["space"]} on {report["target"]} (n={report["n"]})\nMAPE {r["mape_pct"]:.1f}%, '
           f'+-10% {100 * r["within_10pct"]:.0f}%, Spearman {r.get("spearman", float("nan")):.3f}')
  fig = scatter_figure(predicted, measured, title)
  report['plot'] = os.path.join(workdir, stem + '.png')
  fig.savefig(report['plot'])
  report['report'] = os.path.join(workdir, stem + '.json')
  report['tensorboard'] = os.path.join(workdir, 'tensorboard')
  tag = f'latency/{report["target"]}'
  with metrics_lib.MetricWriter(report['tensorboard']) as w:
    w.write_figures(0, {f'{tag}/predicted_vs_measured': fig})  # Closes the figure.
    w.write_scalars(0, {f'{tag}/{k}': r[k] for k in _SCALARS if k in r})
  import matplotlib.pyplot as plt
  plt.close(fig)
  jsonfile.write(report['report'], report)
