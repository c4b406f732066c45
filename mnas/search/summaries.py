"""TensorBoard summaries of a search's steps (through the one `mnas.metrics.MetricWriter`)."""

from __future__ import annotations

import os

import numpy as np

from mnas import metrics
from mnas.search import results


class SearchWriter:
  """Per-step search summaries: rewards, the controller's view, Pareto plot, HParams.

  Args:
    logdir: the TensorBoard directory (workdir/tensorboard).
    space: the search space (decision names and options).
    config: the search config; reads `pareto_every_steps` and `hparams_per_candidate`.
    hparams: one HParams trial per candidate (a one-shot search's thousands of samples
      would be thousands of runs); False overrides the config.
  """

  def __init__(self, logdir: str, space, config, hparams: bool = True):
    self.writer = metrics.MetricWriter(logdir)
    self.space = space
    self.pareto_every = config.pareto_every_steps
    self.hparams = hparams and config.hparams_per_candidate
    self.writer.write_texts(0, {'config': '```\n' + str(config) + '\n```'})

  def write_step(self, step: int, cands, controller_metrics: dict, probabilities, store,
                 seconds: float, stage: str = 'search') -> None:
    rew = np.array([c.reward for c in cands], np.float64)
    ok = [c for c in cands if c.ok]
    scalars = {'search/reward_mean': rew.mean(), 'search/reward_max': rew.max(),
               'search/latency_ms_mean': np.mean([c.latency_ms for c in cands]),
               'search/failed': sum(c.status == 'failed' for c in cands),
               'search/step_seconds': seconds}
    if ok:
      scalars['search/accuracy_mean'] = np.mean([c.accuracy for c in ok])
    scalars.update({f'controller/{k}': v for k, v in controller_metrics.items()})
    rows = store.finished(stage)
    best = results.best_rows(rows, 1)
    if best:
      b = best[0]
      scalars.update({'search/best_reward': b['reward'], 'search/best_accuracy': b['accuracy']})
      self.writer.write_texts(step, {'best_architecture': (
          f'`{b["arch"]}`  \nreward {b["reward"]:.4f}, accuracy {b["accuracy"]:.4f}, '
          f'latency {b["latency_ms"]:.2f} ms')})
    self.writer.write_scalars(step, scalars)
    self.writer.write_scalar_groups(step, {
        f'probabilities/{d.name}': dict(zip(map(str, d.options), np.asarray(p)))
        for d, p in zip(self.space.decisions, probabilities)})
    if self.pareto_every and step % self.pareto_every == 0:
      pts = results.distinct(rows)
      self.writer.write_figures(step, {'search/pareto': results.pareto_plot(
          pts, results.pareto_front(pts))})
    if self.hparams:
      for c in cands:
        self._hparams(step, c)
    self.writer.flush()

  def _hparams(self, step: int, c) -> None:
    """One HParams trial per candidate: decisions as hparams; accuracy, latency, reward."""
    hp = {d.name: str(d.options[int(i)]) for d, i, a in
          zip(self.space.decisions, c.indices, self.space.active(c.indices)) if a}
    hp.update(arch_id=c.arch.id, step=step)
    values = {'hparam/reward': float(c.reward), 'hparam/latency_ms': float(c.latency_ms)}
    if c.accuracy is not None:  # A failed candidate has none.
      values['hparam/accuracy'] = float(c.accuracy)
    self.writer.write_hparams(step, hp, values, os.path.join('hparams', f'{step:05d}_{c.slot:03d}'))

  def close(self) -> None:
    self.writer.close()
