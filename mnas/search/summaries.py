"""TensorBoard summaries of a search, in one run (through the one `mnas.metrics.MetricWriter`),
plus one run per HParams trial as that dashboard needs. The step is the store's step.

  scalars  search/reward_mean, _max, accuracy_mean, latency_ms_mean, failed, step_seconds
           search/best_reward, best_accuracy, best_latency_ms (best by reward so far)
           search/candidates_done
           search/candidate_reward, _accuracy, _latency_ms   x: the candidate's number (one
                                                               point each, not one a step)
           search/controller/*                               the controller's own (kl, ...)
  images   search/pareto          from the first step, every `pareto_every_steps`, the last
           search/probabilities   every decision's option probabilities over the steps (when
                                  the front is drawn)
  text     config, best_architecture

HParams go to a logdir of their own, beside it (workdir/hparams): every decision of the space
declared up front (readable option values) and the architecture string; one trial per
candidate (run STEP_SLOT, metrics trial/reward, trial/accuracy, trial/latency_ms). A trial
must be a run of its own, and TensorBoard ticks no run at all when there are more than 40,
so `tensorboard --logdir workdir/tensorboard` shows the search's one run whatever its size,
and `--logdir workdir/hparams` (or the workdir, for both) the trials.

The probabilities' history is kept in logdir/probabilities.jsonl, so the chart of a resumed
search starts at its first step.
"""

from __future__ import annotations

import json
import os

import numpy as np

from mnas import metrics
from mnas.search import results

INACTIVE = 'inactive'
METRICS = ('trial/reward', 'trial/accuracy', 'trial/latency_ms')  # Sorted after search/.


def option_label(option) -> str:
  """A decision option as it reads: ('ir', 3.0) -> 'ir 3', 0.25 -> '0.25'."""
  parts = option if isinstance(option, tuple) else (option,)
  return ' '.join(f'{p:g}' if isinstance(p, float) else str(p) for p in parts)


def probabilities_figure(space, history: list[tuple[int, list]]):
  """One small chart per decision: each option's probability against the step (fixed
  margins and few ticks: `tight_layout` over 30 charts took 2 s a figure)."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  n, cols = len(space.decisions), 6
  rows = -(-n // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 1.6 * rows), dpi=70,
                           sharex=True, sharey=True, squeeze=False)
  fig.subplots_adjust(left=0.03, right=0.99, bottom=0.06, top=0.96, wspace=0.08, hspace=0.3)
  steps = [s for s, _ in history]
  for k, ax in enumerate(axes.flat):
    if k >= n:
      ax.axis('off')
      continue
    d = space.decisions[k]
    for j, option in enumerate(d.options):
      ax.plot(steps, [p[k][j] for _, p in history], '.-', ms=3, label=option_label(option))
    ax.set_title(d.name, fontsize=7, pad=2)
    ax.legend(fontsize=5, loc='upper left', frameon=False, handlelength=1)
  axes[0, 0].set_ylim(0, 1)
  axes[0, 0].set_yticks([0, 0.5, 1])
  axes[0, 0].xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4, integer=True))
  for ax in axes.flat:
    ax.tick_params(labelsize=6, length=2)
  return fig


class SearchWriter:
  """Per-step search summaries: rewards, the controller's view, Pareto plot, HParams.

  Args:
    logdir: the TensorBoard directory (workdir/tensorboard).
    space: the search space (decision names and options).
    config: the search config; reads `num_steps`, `pareto_every_steps` and
      `hparams_per_candidate`.
    hparams: one HParams trial per candidate, in logdir/../hparams (a one-shot search's
      thousands of samples would be thousands of runs); False overrides the config.
    plot: `(rows, front, best=row) -> figure`, the Pareto image (default
      `results.pareto_plot`, without `results.plot_info`'s target, chance and references).
  """

  def __init__(self, logdir: str, space, config, hparams: bool = True, plot=None):
    self.writer = metrics.MetricWriter(logdir)
    self.space, self.logdir = space, logdir
    self.num_steps, self.pareto_every = config.num_steps, config.pareto_every_steps
    self.hparams = hparams and config.hparams_per_candidate
    self.plot = plot or results.pareto_plot
    self.writer.write_texts(0, {'config': '```\n' + str(config) + '\n```'})
    self.trials, self.history = None, None
    if self.hparams:
      self.trials = metrics.MetricWriter(os.path.join(os.path.dirname(logdir), 'hparams'))
      self.trials.declare_hparams(
          {**{d.name: [option_label(o) for o in d.options] + [INACTIVE]
              for d in space.decisions}, 'arch': None, 'arch_id': None}, METRICS)

  def _history(self, step: int, probabilities) -> list[tuple[int, list]]:
    """The probabilities of the steps before `step` (a resumed search's too, read once from
    the file, which keeps only those), then this one's, appended to it."""
    path = os.path.join(self.logdir, 'probabilities.jsonl')
    if self.history is None:
      self.history = []
      if os.path.exists(path):
        with open(path) as f:
          self.history = [(r['step'], r['p']) for r in map(json.loads, f) if r['step'] < step]
      if self.writer.active:  # Steps from `step` on (a resumed step's) are written again.
        os.makedirs(self.logdir, exist_ok=True)
        with open(path + '.tmp', 'w') as f:
          f.writelines(json.dumps(dict(step=s, p=p)) + '\n' for s, p in self.history)
        os.replace(path + '.tmp', path)
    row = [np.asarray(x, float).round(5).tolist() for x in probabilities]
    self.history.append((step, row))
    if self.writer.active:
      with open(path, 'a') as f:
        f.write(json.dumps(dict(step=step, p=row)) + '\n')
    return self.history

  def write_step(self, step: int, cands, controller_metrics: dict, probabilities, store,
                 seconds: float, stage: str = 'search') -> None:
    """Summaries of step `step` (the store's) once its candidates are in `store`."""
    rew = np.array([c.reward for c in cands], np.float64)
    ok = [c for c in cands if c.ok]
    rows = store.finished(stage)
    scalars = {'search/reward_mean': rew.mean(), 'search/reward_max': rew.max(),
               'search/latency_ms_mean': np.mean([c.latency_ms for c in cands]),
               'search/failed': sum(c.status == 'failed' for c in cands),
               'search/step_seconds': seconds, 'search/candidates_done': len(rows)}
    if ok:
      scalars['search/accuracy_mean'] = np.mean([c.accuracy for c in ok])
    scalars.update({f'search/controller/{k}': v for k, v in controller_metrics.items()})
    best = results.best_rows(rows, 1)
    if best:
      b = best[0]
      scalars.update({'search/best_reward': b['reward'], 'search/best_accuracy': b['accuracy'],
                      'search/best_latency_ms': b['latency_ms']})
      self.writer.write_texts(step, {'best_architecture': (
          f'`{b["arch"]}`  \nreward {b["reward"]:.4f}, accuracy {b["accuracy"]:.4f}, '
          f'latency {b["latency_ms"]:.4g} ms (step {b["step"]}, slot {b["slot"]})')})
    self.writer.write_scalars(step, scalars)
    first = len(rows) - len(cands)
    for k, c in enumerate(cands):  # One point per candidate.
      point = {'search/candidate_reward': c.reward, 'search/candidate_latency_ms': c.latency_ms}
      if c.ok:
        point['search/candidate_accuracy'] = c.accuracy
      self.writer.write_scalars(first + k, point)
    history = self._history(step, probabilities)  # Kept every step, drawn with the front.
    last = step == self.num_steps - 1
    if self.pareto_every and (step % self.pareto_every == 0 or last):  # ~3 s of drawing.
      pts = results.distinct(rows)
      front = self.plot(pts, results.pareto_front(pts), best=best[0] if best else None)
      self.writer.write_figures(step, {
          'search/pareto': front,
          'search/probabilities': probabilities_figure(self.space, history)})
    if self.hparams:
      for c in cands:
        self._hparams(step, c)
    self.writer.flush()

  def _hparams(self, step: int, c) -> None:
    """One HParams trial per candidate: every decision (inactive ones say so), the
    architecture; accuracy, latency, reward."""
    hp = {d.name: option_label(d.options[int(i)]) if a else INACTIVE for d, i, a in
          zip(self.space.decisions, c.indices, self.space.active(c.indices))}
    hp.update(arch=str(c.arch), arch_id=c.arch.id)
    values = {'trial/reward': float(c.reward), 'trial/latency_ms': float(c.latency_ms)}
    if c.accuracy is not None:  # A failed candidate has none.
      values['trial/accuracy'] = float(c.accuracy)
    self.trials.write_hparams(step, hp, values, f'{step:05d}_{c.slot:03d}')

  def close(self) -> None:
    self.writer.close()
    if self.trials:
      self.trials.close()
