"""A workdir belongs to one job: its record says what the job is, its lock who is writing it.

  workdir/workdir.json   {"kind": "multi_trial" | "oneshot" | "pipeline" | "train",
                          "created": ISO time, "config": the config it was made with}
  workdir/lock           an OS lock (fcntl.flock) held by the one process writing the
                         workdir, with its PID; the kernel releases it when that process
                         ends, kill -9 included, so no stale lock can outlive it

`hold(workdir, kind, config)` takes the lock, then writes the record (a new workdir) or
checks the config against it (a resumed one): a rerun with another definition (space,
resolution, controller and its settings, reward, seed, proxy, latency table, ...) is refused
with one line naming the differing fields, before anything runs. How long to run, where the
data lives and how much to log (`RESUMABLE`) may change on resume. A second process on a
held workdir is refused with one line naming the holder's PID. A workdir written by mnas
before this record existed is refused too (its checkpoints are in an older format).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import fnmatch
import json
import os
from typing import Any, Iterator

from mnas import jsonfile
from mnas.errors import ConfigError, DataError, UserError

RECORD = 'workdir.json'
LOCK = 'lock'
# A latency workdir is only locked.
KINDS = ('multi_trial', 'oneshot', 'pipeline', 'train', 'proxy_check')
# Config fields (dotted, fnmatch patterns) that may change when a workdir is resumed: the
# budget of the whole run, where the data lives, how much is logged and checkpointed.
RESUMABLE = ('num_steps', 'max_seconds', '*data_dir', '*data_threads', '*log_every_steps',
             '*checkpoint_every_steps', '*keep_checkpoints', 'pareto_every_steps',
             'hparams_per_candidate', '*progress', '*save_every')
# A training run may also be continued for longer.
RESUMABLE_BY_KIND = {'train': ('num_train_steps', 'num_epochs')}
# What a search wrote into its workdir before the record existed (a training run's workdir
# has not changed its format).
_OLD_MARKERS = ('results.sqlite', 'controller', 'oneshot.json', 'search', 'netadapt')
_HELD: dict[str, int] = {}  # This process's locks: real path -> open file descriptor.


class WorkdirLockedError(UserError):
  """Another process is writing the workdir."""


def _flat(tree: Any, prefix: str = '') -> dict[str, Any]:
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flat(v, f'{prefix}{k}.'))
    return out if out or not prefix else {prefix[:-1]: {}}
  return {prefix[:-1]: tree}


def as_json(config) -> dict:
  """The config as plain JSON values (tuples become lists), as the record stores it."""
  return json.loads(config.to_json_best_effort())


def resumable(kind: str) -> tuple[str, ...]:
  """The fields (fnmatch patterns) that may change when a `kind` workdir is resumed."""
  return RESUMABLE + RESUMABLE_BY_KIND.get(kind, ())


def differences(recorded: dict, config: dict, kind: str) -> list[str]:
  """The dotted fields whose values differ (resumable ones excluded), 'name (old -> new)'."""
  old, new = _flat(recorded), _flat(config)
  out = []
  for name in sorted(set(old) | set(new)):
    if any(fnmatch.fnmatchcase(name, p) for p in resumable(kind)):
      continue
    if old.get(name, '<absent>') != new.get(name, '<absent>'):
      out.append(f'{name} ({old.get(name, "<absent>")!r} -> {new.get(name, "<absent>")!r})')
  return out


@contextlib.contextmanager
def lock(workdir: str) -> Iterator[None]:
  """Holds workdir/lock for the block (re-entrant within a process)."""
  path = os.path.realpath(os.path.join(workdir, LOCK))
  if path in _HELD:
    yield
    return
  _make(workdir)
  try:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise DataError(f'cannot write to the workdir {workdir}: {e.strerror}') from None
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    holder = os.pread(fd, 64, 0).decode(errors='replace').strip() or 'unknown'
    os.close(fd)
    raise WorkdirLockedError(f'{workdir} is in use by process {holder} (it holds {path}): '
                             'wait for it to end, or stop it, or use another --workdir'
                             ) from None
  os.ftruncate(fd, 0)
  os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
  _HELD[path] = fd
  try:
    yield
  finally:
    del _HELD[path]
    os.close(fd)  # Releases the lock.


def _make(workdir: str) -> None:
  try:
    os.makedirs(workdir, exist_ok=True)
  except FileExistsError:
    raise DataError(f'--workdir {workdir} is a file, not a directory') from None
  except OSError as e:
    raise DataError(f'cannot make the workdir {workdir}: {e.strerror}') from None
  if not os.access(workdir, os.W_OK):
    raise DataError(f'the workdir {workdir} is not writable')


def check(workdir: str, kind: str, config) -> dict:
  """Writes the record of a new workdir, or checks `config` against an existing one."""
  if kind not in KINDS:
    raise ConfigError(f'workdir kind {kind!r} is not one of {KINDS}')
  path = os.path.join(workdir, RECORD)
  if os.path.exists(path):
    record = jsonfile.read(path)
    if record.get('kind') != kind:
      raise ConfigError(f'{workdir} holds a {record.get("kind")} run, not a {kind} one: use '
                        'a new --workdir')
    diff = differences(record['config'], as_json(config), kind)
    if diff:
      raise ConfigError(f'{workdir} was made with another config: {"; ".join(diff)}. Only '
                        f'{", ".join(resumable(kind))} may change on resume: to run this '
                        'config, use a new --workdir')
    return record
  if kind != 'train' and any(os.path.exists(os.path.join(workdir, m)) for m in _OLD_MARKERS):
    raise DataError(f'{workdir} was written by an older mnas (it has no {RECORD}); its '
                    'checkpoints are in an older format: use a new --workdir')
  record = dict(kind=kind, created=datetime.datetime.now().isoformat(timespec='seconds'),
                config=as_json(config))
  jsonfile.write(path, record)
  return record


@contextlib.contextmanager
def hold(workdir: str, kind: str, config) -> Iterator[dict]:
  """Locks `workdir` and checks (or writes) its record; yields the record."""
  with lock(workdir):
    yield check(workdir, kind, config)


def read_kind(workdir: str) -> str:
  """The kind of run in `workdir` (DataError when there is none)."""
  path = os.path.join(workdir, RECORD)
  if not os.path.exists(path):
    raise DataError(f'nothing was run in {workdir} ({RECORD} is missing): run `launch.py '
                    'search` (or train) into it first')
  return jsonfile.read(path)['kind']



def read_config(workdir: str):
  """The config `workdir` was made with, as an ml_collections ConfigDict."""
  import ml_collections
  return ml_collections.ConfigDict(jsonfile.read(os.path.join(workdir, RECORD))['config'])
