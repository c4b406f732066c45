"""The one TensorBoard writer of every stage (tensorboardX: no TensorFlow needed).

Its methods follow `clu.metric_writers` (which imports TensorFlow, so it is not used):
`write_scalars(step, {tag: value})`, `write_texts`, `write_figures`, `write_hparams`. Only
process 0 of a multi-process run writes, and a writer without a logdir writes nothing, so
callers never test either.

  with metrics.MetricWriter(os.path.join(workdir, 'tensorboard')) as w:
    w.write_scalars(step, {'train/loss': loss})
"""

from __future__ import annotations

from typing import Any, Mapping

import jax


class MetricWriter:
  """Summaries into `logdir`; a no-op off process 0 or when `logdir` is None."""

  def __init__(self, logdir: str | None):
    self.logdir = logdir
    self._writer = None
    if logdir and jax.process_index() == 0:
      from tensorboardX import SummaryWriter
      self._writer = SummaryWriter(logdir)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    for tag, value in scalars.items() if self._writer else ():
      self._writer.add_scalar(tag, float(value), step)

  def write_scalar_groups(self, step: int, groups: Mapping[str, Mapping[str, Any]]) -> None:
    """Several curves in one chart per group, e.g. the probabilities of a decision's options."""
    for tag, curves in groups.items() if self._writer else ():
      self._writer.add_scalars(tag, {k: float(v) for k, v in curves.items()}, step)

  def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
    for tag, text in texts.items() if self._writer else ():
      self._writer.add_text(tag, text, step)

  def write_figures(self, step: int, figures: Mapping[str, Any]) -> None:
    """matplotlib figures, rendered to images (and closed)."""
    for tag, fig in figures.items() if self._writer else ():
      self._writer.add_figure(tag, fig, step)

  def write_hparams(self, step: int, hparams: Mapping[str, Any], metrics: Mapping[str, float],
                    name: str) -> None:
    """One HParams trial, in the run `name` below the logdir."""
    if self._writer:
      self._writer.add_hparams(dict(hparams), dict(metrics), name=name, global_step=step)

  def flush(self) -> None:
    if self._writer:
      self._writer.flush()

  def close(self) -> None:
    if self._writer:
      self._writer.close()
      self._writer = None

  def __enter__(self) -> MetricWriter:
    return self

  def __exit__(self, *exc) -> None:
    self.close()
