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


def plot_info(config, predictor=None) -> dict:
  """What the Pareto plot and the report say besides the candidates: a title (space,
  dataset, resolution, latency target and device), the latency target T (None for a
  'pareto' reward), chance accuracy (1 / classes) and the space's reference architectures
  at the search's resolution with their predicted latency on the search's table (when a
  `predictor` is given; never trained here, so drawn as latencies only)."""
  import search_spaces
  target_ms = None if config.reward.kind == 'pareto' else float(config.reward.target_ms)
  dataset = config.train.dataset if config.proxy.kind == 'train' else config.proxy.kind
  device = (config.proxy.metric if config.proxy.kind == 'accel_nasbench'
            else config.latency.target)
  res = config.resolution or search_spaces.get_space(config.space).resolution[0]
  refs = []
  if predictor is not None:
    for name, (_, space) in sorted(search_spaces.REFERENCES.items()):
      if space == config.space:
        arch = search_spaces.get_reference(name, resolution=res)
        refs.append((name, float(predictor.predict(arch))))
  target = 'no target' if target_ms is None else f'T = {target_ms:.4g} ms'
  return dict(title=f'{config.space} on {dataset}, {res}x{res}; '
                    f'latency: {device}, {target}',
              target_ms=target_ms, chance=1.0 / int(config.num_classes), references=refs)


def pareto_plot(rows: list[dict], front: list[dict], path: str | None = None,
                info: dict | None = None, best: dict | None = None):
  """Accuracy vs predicted latency of every candidate, with the Pareto front, the best by
  reward, and `plot_info`'s target, chance level, references and title.

  Saves a PNG when `path` is given; returns the matplotlib figure.
  """
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  info = info or {}
  fig, ax = plt.subplots(figsize=(7, 5), dpi=100)
  if rows:
    ax.scatter([r['latency_ms'] for r in rows], [r['accuracy'] for r in rows], s=12,
               alpha=0.6, label='candidates')
  if front:
    ax.plot([r['latency_ms'] for r in front], [r['accuracy'] for r in front], 'r.-',
            label='Pareto front')
  if best:
    ax.scatter([best['latency_ms']], [best['accuracy']], s=120, marker='*', color='gold',
               edgecolor='k', zorder=4, label=f'best by reward ({best["reward"]:.4f})')
  if info.get('target_ms') is not None:
    ax.axvline(info['target_ms'], color='k', ls='--', lw=1,
               label=f'latency target {info["target_ms"]:.4g} ms')
  if info.get('chance') is not None:
    ax.axhline(info['chance'], color='gray', ls=':', lw=1, label=f'chance {info["chance"]:.3g}')
  for name, ms in info.get('references', ()):
    ax.axvline(ms, color='tab:purple', ls='-.', lw=0.8)
    ax.annotate(f'{name} (predicted latency; not trained)', (ms, 0.02),
                xycoords=('data', 'axes fraction'), rotation=90, fontsize=6, color='tab:purple')
  ax.set_xlabel('predicted latency (ms)')
  ax.set_ylabel('proxy-task accuracy')
  if info.get('title'):
    ax.set_title(info['title'], fontsize=9)
  ax.grid(alpha=0.3)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(loc='lower right', fontsize=7)
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


def report(workdir: str, top: int = 10, context: dict | None = None,
           info: dict | None = None) -> dict:
  """Prints the Pareto front and top candidates of a multi-trial search, and whether they met
  the latency target (`plot_info`); writes pareto.png and best_arch.json (with `context`);
  returns the best architecture's summary ({} when none finished)."""
  rows, failed = finished(workdir)
  front = pareto_front(rows)
  best = best_rows(rows, top)
  info = info or {}
  header = f'{"reward":>8} {"acc":>7} {"lat_ms":>9} {"params":>9} {"MACs(M)":>8}  architecture'
  fmt = lambda r: (f'{r["reward"]:8.4f} {r["accuracy"]:7.4f} {r["latency_ms"]:9.5g} '
                   f'{r["params"]:9d} {r["macs"] / 1e6:8.2f}  {r["arch"]}')
  if info.get('title'):
    print(info['title'])
  print(f'{len(rows)} architectures evaluated ({failed} failed rows)')
  if info.get('target_ms') is not None and rows:
    t = info['target_ms']
    met = sum(r['latency_ms'] <= t for r in rows)
    print(f'latency target {t:.4g} ms: met by {met} of {len(rows)}'
          + (f'; the best by reward {"meets" if best[0]["latency_ms"] <= t else "misses"} it'
             if best else ''))
  for name, ms in info.get('references', ()):
    print(f'reference {name}: predicted {ms:.5g} ms (not trained)')
  print('\nPareto front (accuracy vs predicted latency):\n' + header)
  print('\n'.join(fmt(r) for r in front))
  print(f'\nTop {len(best)} by reward:\n' + header)
  print('\n'.join(fmt(r) for r in best))
  pareto_plot(rows, front, os.path.join(workdir, 'pareto.png'), info,
              best[0] if best else None)
  if not best:
    return {}
  out = best_arch_json(best[0], context)
  jsonfile.write(os.path.join(workdir, 'best_arch.json'), out)
  print(f'\nwrote {workdir}/pareto.png and {workdir}/best_arch.json '
        '(accepted by describe, train and latency predict as --arch)')
  return out
