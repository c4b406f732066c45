"""The one TensorBoard writer of every stage (tensorboardX: no TensorFlow needed).

Its methods follow `clu.metric_writers` (which imports TensorFlow, so it is not used):
`write_scalars(step, {tag: value})`, `write_texts`, `write_figures`, `write_hparams`. Only
process 0 of a multi-process run writes, and a writer without a logdir writes nothing, so
callers never test either. A full disk is one `DataError` naming the logdir.

  with metrics.MetricWriter(os.path.join(workdir, 'tensorboard')) as w:
    w.write_scalars(step, {'train/loss': loss})
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Any, Mapping, Sequence

from mnas.errors import no_space, no_space_error


def _disk(method):
  """A full disk while writing as one DataError; the writer is then given up (no retries,
  no tracebacks from tensorboardX's exit hooks)."""
  @functools.wraps(method)
  def guarded(self, *args, **kwargs):
    if self._writer is None:
      return None
    try:
      return method(self, *args, **kwargs)
    except OSError as e:
      if not no_space(e):
        raise
      self._give_up()
      raise no_space_error(self.logdir) from None
  return guarded


def _abandon(writer) -> None:
  """Stops a tensorboardX writer's threads without writing what they hold (a full disk):
  no 'handle is closed' tracebacks from them at exit."""
  # pylint: disable=protected-access
  for file_writer in writer.all_writers.values():
    events = file_writer.event_writer
    if events._closed:
      continue
    events._closed = True
    if events._worker is not None and events._worker.is_alive():
      events._worker.stop()
    with contextlib.suppress(OSError):
      events._ev_writer.close()
    events._event_queue.close()


class MetricWriter:
  """Summaries into `logdir`; a no-op off process 0 or when `logdir` is None."""

  def __init__(self, logdir: str | None):
    import jax
    self.logdir = logdir
    self._writer = None
    self._groups: set[str] = set()
    if logdir and jax.process_index() == 0:
      from tensorboardX import SummaryWriter
      self._writer = SummaryWriter(logdir)

  @property
  def active(self) -> bool:
    """Whether this writer writes (process 0, a logdir, the disk not found full)."""
    return self._writer is not None

  @_disk
  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    for tag, value in scalars.items():
      self._writer.add_scalar(tag, float(value), step)

  @_disk
  def write_scalar_groups(self, step: int, groups: Mapping[str, Mapping[str, Any]]) -> None:
    """Several curves in one chart per group (TensorBoard's Custom Scalars tab), e.g. the
    probabilities of a decision's options: scalars `{group}/{curve}`, in one run."""
    new = {g: c for g, c in groups.items() if g not in self._groups}
    if new:  # The charts' layout, once per writer (as tensorboardX asks).
      self._groups.update(new)
      self._writer.add_custom_scalars({'groups': {
          g: ['Multiline', [f'{g}/{k}' for k in c]] for g, c in groups.items()}})
    for group, curves in groups.items():
      for name, value in curves.items():
        self._writer.add_scalar(f'{group}/{name}', float(value), step)

  @_disk
  def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
    for tag, text in texts.items():
      self._writer.add_text(tag, text, step)

  @_disk
  def write_figures(self, step: int, figures: Mapping[str, Any]) -> None:
    """matplotlib figures, rendered to images (and closed)."""
    for tag, fig in figures.items():
      self._writer.add_figure(tag, fig, step)

  @_disk
  def declare_hparams(self, hparams: Mapping[str, Sequence[str] | None],
                      metrics: Sequence[str]) -> None:
    """The HParams experiment, once, in this run: every hparam (with its discrete string
    values, or None for free text) and the metric tags, so that TensorBoard lists them all
    however many a trial sets."""
    from google.protobuf import struct_pb2
    from tensorboardX.proto import api_pb2, plugin_hparams_pb2, summary_pb2
    infos = [api_pb2.HParamInfo(
        name=name, type=api_pb2.DataType.Value('DATA_TYPE_STRING'),
        domain_discrete=struct_pb2.ListValue(values=[struct_pb2.Value(string_value=v)
                                                     for v in values]) if values else None)
        for name, values in hparams.items()]
    experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=[
        api_pb2.MetricInfo(name=api_pb2.MetricName(tag=t)) for t in metrics])
    content = plugin_hparams_pb2.HParamsPluginData(experiment=experiment, version=0)
    meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(
        plugin_name='hparams', content=content.SerializeToString()))
    self._writer._get_file_writer().add_summary(summary_pb2.Summary(  # pylint: disable=protected-access
        value=[summary_pb2.Summary.Value(tag='_hparams_/experiment', metadata=meta)]))

  @_disk
  def write_hparams(self, step: int, hparams: Mapping[str, Any], metrics: Mapping[str, float],
                    name: str) -> None:
    """One HParams trial, in the run `name` below the logdir (its values and metrics; the
    experiment is `declare_hparams`'s)."""
    from tensorboardX import SummaryWriter
    from tensorboardX.summary import hparams as hparams_summary
    _, start, end = hparams_summary(dict(hparams), dict(metrics))
    trial = SummaryWriter(os.path.join(self.logdir, name))
    try:
      trial.file_writer.add_summary(start)
      trial.file_writer.add_summary(end)
      for tag, value in metrics.items():
        trial.add_scalar(tag, float(value), step)
      trial.close()
    except OSError:
      _abandon(trial)
      raise

  @_disk
  def flush(self) -> None:
    self._writer.flush()

  @_disk
  def close(self) -> None:
    self._writer.close()
    self._writer = None

  def _give_up(self) -> None:
    _abandon(self._writer)
    self._writer = None

  def __enter__(self) -> MetricWriter:
    return self

  def __exit__(self, *exc) -> None:
    self.close()
