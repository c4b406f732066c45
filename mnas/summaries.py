"""TensorBoard summaries of a search (tensorboardX: no TensorFlow needed) and plots."""

from __future__ import annotations

import os

import numpy as np


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


class SearchWriter:
  """Per-step search summaries: rewards, the controller's view, Pareto plot, HParams."""

  def __init__(self, logdir: str, space, config):
    from tensorboardX import SummaryWriter
    self.logdir = logdir
    self.writer = SummaryWriter(logdir)
    self.space = space
    self.decisions = space.decisions
    self.pareto_every = config.get('pareto_every_steps', 5)
    self.hparams = config.get('hparams_per_candidate', True)
    self.writer.add_text('config', '```\n' + str(config) + '\n```', 0)

  def write_step(self, step: int, cands, metrics: dict, probabilities, store, seconds: float):
    from mnas import search
    w = self.writer
    rew = np.array([c.reward for c in cands], np.float64)
    ok = [c for c in cands if c.accuracy is not None and c.status != 'failed']
    w.add_scalar('search/reward_mean', rew.mean(), step)
    w.add_scalar('search/reward_max', rew.max(), step)
    if ok:
      w.add_scalar('search/accuracy_mean', np.mean([c.accuracy for c in ok]), step)
    w.add_scalar('search/latency_ms_mean', np.mean([c.latency_ms for c in cands]), step)
    w.add_scalar('search/failed', sum(c.status == 'failed' for c in cands), step)
    w.add_scalar('search/step_seconds', seconds, step)
    for k, v in metrics.items():
      w.add_scalar(f'controller/{k}', float(v), step)
    for d, p in zip(self.decisions, probabilities):
      w.add_scalars(f'probabilities/{d.name}',
                    {str(o): float(q) for o, q in zip(d.options, np.asarray(p))}, step)
    best = search.best_rows(store, 1)
    if best:
      w.add_scalar('search/best_reward', best[0]['reward'], step)
      w.add_scalar('search/best_accuracy', best[0]['accuracy'], step)
      w.add_text('best_architecture',
                 f'`{best[0]["arch"]}`  \nreward {best[0]["reward"]:.4f}, accuracy '
                 f'{best[0]["accuracy"]:.4f}, latency {best[0]["latency_ms"]:.2f} ms', step)
    if self.pareto_every and step % self.pareto_every == 0:
      rows = [r for r in store.finished() if r['accuracy'] is not None and r['status'] != 'failed']
      w.add_figure('search/pareto', pareto_plot(rows, search.pareto_front(rows)), step)
    if self.hparams:
      for c in cands:
        self._hparams(step, c)
    w.flush()

  def _hparams(self, step: int, c) -> None:
    """One HParams trial per candidate: decisions as hparams; accuracy, latency, reward."""
    hp = {d.name: str(d.options[int(i)]) for d, i, a in
          zip(self.decisions, c.indices, self.space.active(c.indices)) if a}
    hp.update(arch_id=c.arch.id, step=step)
    metrics = {'hparam/reward': float(c.reward), 'hparam/latency_ms': float(c.latency_ms),
               'hparam/accuracy': float(c.accuracy) if c.accuracy is not None else float('nan')}
    self.writer.add_hparams(hp, metrics, name=os.path.join('hparams', f'{step:05d}_{c.slot:03d}'),
                            global_step=step)

  def close(self):
    self.writer.close()


class NetAdaptWriter:
  """Per-iteration NetAdapt summaries: latency, accuracy, proposals, the architecture."""

  def __init__(self, logdir: str):
    from tensorboardX import SummaryWriter
    self.writer = SummaryWriter(logdir)

  def iteration(self, it: int, net: dict, parent: dict | None, proposals: int) -> None:
    w = self.writer
    w.add_scalar('netadapt/latency_ms', net['latency_ms'], it)
    w.add_scalar('netadapt/accuracy', net['accuracy'], it)
    w.add_scalar('netadapt/proposals', proposals, it)
    if parent is not None:
      w.add_scalar('netadapt/score', net.get('score', 0.0), it)
    w.add_text('netadapt/architecture', f'`{net["arch"]}`  \n{net.get("proposal", "seed")}: '
               f'{net["latency_ms"]:.4f} ms, accuracy {net["accuracy"]:.4f}', it)
    w.flush()

  def close(self) -> None:
    self.writer.close()
