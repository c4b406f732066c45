"""The one checkpointer: a run's state and its input iterators' state, by step.

Used by every stage that checkpoints: training (`mnas.train`), the controller of a search
(`mnas.search`), the one-shot supernet. A thin layer over orbax's `CheckpointManager`
(orbax-checkpoint 0.12): each step directory holds two items, `state` (a pytree of numpy
arrays, e.g. the unreplicated train state, written with `StandardSave`) and `data` (JSON, e.g.
the grain iterators' states, `JsonSave`). orbax writes a
step into a temporary directory and renames it when complete, so a crash mid-save leaves no
half-written step behind; a step that is nevertheless unreadable (truncated or deleted files,
a disk error) is moved aside to `<directory>.corrupt/` with a warning and the previous step is
restored instead.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

from absl import logging
import flax.serialization
import jax
import numpy as np
import orbax.checkpoint as ocp

from mnas.errors import no_space, no_space_error


def _to_host(tree):
  """Numpy copies of a pytree of arrays (first replica of pmapped ones taken by the caller)."""
  return jax.tree.map(np.asarray, jax.device_get(tree))


class Checkpointer:
  """Saves and restores (train state, data-iterator state) pairs by step.

  Args:
    directory: where the step directories go (created if missing).
    max_to_keep: number of most recent checkpoints kept.
    async_save: write in a background thread (`wait()` or `close()` to finish).
    this_process_only: the state belongs to this process alone (a search's controller lives
      on process 0): no barriers with the other processes of a multi-process run. By default
      every process takes part (orbax's multi-process checkpointing of a data-parallel run).
  """

  def __init__(self, directory: str, max_to_keep: int = 3, async_save: bool = True,
               this_process_only: bool = False):
    self.directory = os.path.abspath(os.fspath(directory))
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=async_save)
    if this_process_only and jax.process_count() > 1:
      os.makedirs(self.directory, exist_ok=True)  # orbax wants it made when not creating it.
      options.create = False
      options.multiprocessing_options = ocp.options.MultiprocessingOptions(
          primary_host=jax.process_index(), active_processes={jax.process_index()})
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=('state', 'data'))

  def all_steps(self) -> list[int]:
    self._manager.reload()
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    steps = self.all_steps()
    return steps[-1] if steps else None

  def save(self, step: int, state: Any, data_state: dict | None = None) -> bool:
    """Saves `state` (any pytree: a flax struct, optax states ...) at `step`.

    The state is stored as its flax state dict, so restoring needs a target of the same
    structure (see `restore`). Returns whether a checkpoint was written.
    """
    tree = _to_host(flax.serialization.to_state_dict(state))
    args = ocp.args.Composite(state=ocp.args.StandardSave(tree),
                              data=ocp.args.JsonSave(data_state or {}))
    return self._disk(self._manager.save, int(step), args=args, force=True)

  def _disk(self, fn, *args, **kwargs):
    """fn(...), with a full disk raised as one DataError naming the directory."""
    try:
      return fn(*args, **kwargs)
    except Exception as e:  # orbax wraps the OSError in its own errors.
      if no_space(e):
        raise no_space_error(self.directory) from None
      raise

  def _restore_step(self, step: int, target: Any):
    abstract = _to_host(flax.serialization.to_state_dict(target))
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()))
    state_dict = restored['state']
    # Check that every leaf came back with the expected shape: a partially written array
    # must not pass as a good checkpoint.
    def check(a, b):
      if np.shape(a) != np.shape(b):
        raise ValueError(f'restored shape {np.shape(b)} != expected {np.shape(a)}')
    jax.tree.map(check, abstract, state_dict)
    state = flax.serialization.from_state_dict(target, state_dict)
    return state, dict(restored['data'] or {})

  def restore(self, target: Any) -> tuple[int, Any, dict] | None:
    """(step, state, data_state) of the newest readable checkpoint, or None if there is none.

    `target` is a pytree of the state's structure (e.g. a freshly initialised train state);
    its leaves are replaced by the restored arrays (numpy). An unreadable newer step is moved
    aside once, to `<directory>.corrupt/<step>-<time>`, with one warning line, so that the run
    continues (and saves that step again) from the previous one.
    """
    for step in reversed(self.all_steps()):
      try:
        state, data_state = self._restore_step(step, target)
      except Exception as e:  # pylint: disable=broad-except
        logging.warning('checkpoint step %d in %s is unreadable (%s: %s); moved to %s.corrupt/, '
                        'continuing from the previous one', step, self.directory,
                        type(e).__name__, str(e)[:200], self.directory)
        self._quarantine(step)
        continue
      logging.info('Restored checkpoint step %d from %s.', step, self.directory)
      return step, state, data_state
    return None

  def _quarantine(self, step: int) -> None:
    src = os.path.join(self.directory, str(step))
    if not os.path.exists(src):
      matches = [d for d in os.listdir(self.directory)
                 if d.split('_')[-1] == str(step) and not d.startswith('.')]
      if not matches:
        self._manager.reload()
        return
      src = os.path.join(self.directory, matches[0])
    dst_dir = self.directory + '.corrupt'
    os.makedirs(dst_dir, exist_ok=True)
    dst = os.path.join(dst_dir, f'{os.path.basename(src)}-{int(time.time())}')
    shutil.move(src, dst)
    self._manager.reload()

  def wait(self) -> None:
    self._disk(self._manager.wait_until_finished)

  def close(self) -> None:
    self.wait()
    self._manager.close()


def read_variables(directory: str, ema: bool = True) -> dict | None:
  """{'params', 'batch_stats'} (numpy) of the newest checkpoint of a training run, or None.

  `directory` is a trainer's `workdir/checkpoints`. No template is needed: the train state
  is read back as saved. `ema=True` gives the exponential moving averages, the weights the
  trainer evaluates; `ema=False` the raw ones.
  """
  if not os.path.isdir(directory):
    return None
  manager = ocp.CheckpointManager(os.path.abspath(directory), item_names=('state', 'data'))
  try:
    step = manager.latest_step()
    if step is None:
      return None
    args = ocp.args.Composite(state=ocp.args.StandardRestore())
    state = manager.restore(step, args=args)['state']
  finally:
    manager.close()
  prefix = 'ema_' if ema else ''
  return jax.tree.map(np.asarray, {'params': state[prefix + 'params'],
                                   'batch_stats': state.get(prefix + 'batch_stats') or {}})
