"""What a search found: the best rows, the Pareto front, the report and its plot.

  python launch.py report --workdir DIR

prints the Pareto front (accuracy vs predicted latency) and the top candidates by reward
and writes DIR/pareto.png and DIR/best_arch.json (accepted as `--arch` by `describe`,
`train` and `latency predict`).
"""

from __future__ import annotations

import os

import numpy as np

from mnas import jsonfile, pareto
from mnas.search.store import Store


def best_rows(rows: list[dict], k: int) -> list[dict]:
  """The k rows of highest reward among those that did not fail."""
  ok = [r for r in rows if r['reward'] is not None and r['status'] != 'failed']
  return sorted(ok, key=lambda r: -r['reward'])[:k]


def distinct(rows: list[dict]) -> list[dict]:
  """One row per architecture (its first), of those with an accuracy."""
  out = {}
  for r in rows:
    if r['status'] in ('done', 'reused') and r['accuracy'] is not None:
      out.setdefault(r['arch_id'], r)
  return list(out.values())


def pareto_front(rows: list[dict]) -> list[dict]:
  """Rows not dominated in (higher accuracy, lower latency), one per distinct point, by
  latency ascending."""
  points = np.array([(r['accuracy'], -r['latency_ms']) for r in rows], float).reshape(-1, 2)
  return [rows[i] for i in pareto.front(points)]


def pareto_plot(rows: list[dict], front: list[dict], path: str | None = None):
  """Accuracy vs predicted latency of every candidate, with the Pareto front.

  Saves a PNG when `path` is given; returns the matplotlib figure.
  """
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
  if rows:
    ax.scatter([r['latency_ms'] for r in rows], [r['accuracy'] for r in rows], s=12,
               alpha=0.6, label='candidates')
  if front:
    ax.plot([r['latency_ms'] for r in front], [r['accuracy'] for r in front], 'r.-',
            label='Pareto front')
  ax.set_xlabel('predicted latency (ms)')
  ax.set_ylabel('proxy-task accuracy')
  ax.grid(alpha=0.3)
  if rows or front:
    ax.legend(loc='lower right')
  fig.tight_layout()
  if path:
    fig.savefig(path)
  return fig


def best_arch_json(row: dict, context: dict | None = None) -> dict:
  """The best_arch.json of a store row, with the search's `context` (`mnas.search.context`)."""
  out = {'arch': row['arch'], 'id': row['arch_id'], 'accuracy': row['accuracy'],
         'latency_ms': row['latency_ms'], 'reward': row['reward'], 'params': row['params'],
         'macs': row['macs']}
  return dict(out, context=context) if context else out


def finished(workdir: str) -> tuple[list[dict], int]:
  """The distinct architectures a multi-trial search evaluated (one row each) and its number
  of failed rows."""
  store = Store.open_existing(os.path.join(workdir, 'results.sqlite'))
  try:
    return distinct(store.finished()), store.count('failed')
  finally:
    store.close()


def report(workdir: str, top: int = 10, context: dict | None = None) -> dict:
  """Prints the Pareto front and top candidates of a multi-trial search; writes pareto.png and
  best_arch.json; returns the best architecture's summary ({} when none finished)."""
  rows, failed = finished(workdir)
  front = pareto_front(rows)
  best = best_rows(rows, top)
  header = f'{"reward":>8} {"acc":>6} {"lat_ms":>8} {"params":>9} {"MACs(M)":>8}  architecture'
  fmt = lambda r: (f'{r["reward"]:8.4f} {r["accuracy"]:6.3f} {r["latency_ms"]:8.4g} '
                   f'{r["params"]:9d} {r["macs"] / 1e6:8.1f}  {r["arch"]}')
  print(f'{len(rows)} architectures evaluated ({failed} failed rows)')
  print('\nPareto front (accuracy vs predicted latency):\n' + header)
  print('\n'.join(fmt(r) for r in front))
  print(f'\nTop {len(best)} by reward:\n' + header)
  print('\n'.join(fmt(r) for r in best))
  pareto_plot(rows, front, os.path.join(workdir, 'pareto.png'))
  if not best:
    return {}
  out = best_arch_json(best[0], context)
  jsonfile.write(os.path.join(workdir, 'best_arch.json'), out)
  print(f'\nwrote {workdir}/pareto.png and {workdir}/best_arch.json '
        '(accepted by describe, train and latency predict as --arch)')
  return out
