"""The results store: one SQLite row per candidate evaluation, in the workdir.

Plain SQL and JSON only (nothing in the workdir is ever unpickled). A row is written as
'running' before a candidate trains and updated to 'done' or 'failed' after, so a killed
search knows which candidates were in flight and re-runs exactly those.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sqlite3
import time
from typing import Any, Iterator

from mnas.errors import DataError, no_space, no_space_error

SCHEMA = """
CREATE TABLE IF NOT EXISTS evaluations (
  row INTEGER PRIMARY KEY AUTOINCREMENT,
  step INTEGER NOT NULL,          -- controller step that sampled the candidate
  slot INTEGER NOT NULL,          -- index of the candidate within its step's batch
  stage TEXT NOT NULL DEFAULT 'search',
  arch_id TEXT NOT NULL,
  arch TEXT NOT NULL,
  decisions TEXT NOT NULL,        -- JSON list of option indices
  status TEXT NOT NULL,           -- running | done | failed | reused
  reason TEXT,
  accuracy REAL,
  latency_ms REAL,
  params INTEGER,
  macs INTEGER,
  reward REAL,
  train_seconds REAL,
  started REAL,
  finished REAL,
  extra TEXT,                     -- JSON
  UNIQUE (stage, step, slot)
);
CREATE INDEX IF NOT EXISTS by_arch ON evaluations (arch_id, status);
"""

COLUMNS = ('row', 'step', 'slot', 'stage', 'arch_id', 'arch', 'decisions', 'status', 'reason',
           'accuracy', 'latency_ms', 'params', 'macs', 'reward', 'train_seconds', 'started',
           'finished', 'extra')


def _guarded(method):
  """SQLite's errors of a damaged file or a full disk as DataErrors naming the store."""
  @functools.wraps(method)
  def guarded(self, *args, **kwargs):
    try:
      return method(self, *args, **kwargs)
    except sqlite3.DatabaseError as e:
      if no_space(e):
        raise no_space_error(self.path) from None
      if isinstance(e, sqlite3.OperationalError) and 'locked' in str(e):
        raise
      raise DataError(f'{self.path} is damaged ({e}): restore it from a copy, or start a new '
                      '--workdir') from None
  return guarded


class Store:
  """A results database at `path` (created if missing)."""

  @_guarded
  def __init__(self, path: str):
    self.path = path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    self._db = sqlite3.connect(path, timeout=60, isolation_level=None)
    self._db.execute('PRAGMA journal_mode=WAL')
    self._db.executescript(SCHEMA)

  @classmethod
  def open_existing(cls, path: str) -> Store:
    """The store at `path`; DataError when there is none (nothing was searched there)."""
    if not os.path.exists(path):
      raise DataError(f'no results store at {path}: run a search into this workdir first')
    return cls(path)

  def close(self):
    self._db.close()

  @contextlib.contextmanager
  def _tx(self) -> Iterator[sqlite3.Connection]:
    self._db.execute('BEGIN IMMEDIATE')
    try:
      yield self._db
      self._db.execute('COMMIT')
    except BaseException:
      if self._db.in_transaction:  # SQLite may have rolled back itself (a full disk).
        self._db.execute('ROLLBACK')
      raise

  @_guarded
  def start(self, *, step: int, slot: int, arch, decisions, stage: str = 'search',
            **fields) -> int:
    """Records a candidate as running (replacing an unfinished row of the same slot)."""
    with self._tx() as db:
      db.execute('DELETE FROM evaluations WHERE stage=? AND step=? AND slot=? AND status="running"',
                 (stage, step, slot))
      cur = db.execute(
          'INSERT INTO evaluations (step, slot, stage, arch_id, arch, decisions, status, started, '
          'latency_ms, params, macs, extra) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)',
          (step, slot, stage, arch.id, str(arch), json.dumps([int(d) for d in decisions]),
           'running', time.time(), fields.get('latency_ms'), fields.get('params'),
           fields.get('macs'), json.dumps(fields.get('extra', {}))))
      return cur.lastrowid

  @_guarded
  def finish(self, row: int, *, status: str, **fields) -> None:
    if status not in ('done', 'failed', 'reused'):
      raise ValueError(f'status={status!r}; allowed: done, failed, reused')
    allowed = {'reason', 'accuracy', 'latency_ms', 'params', 'macs', 'reward', 'train_seconds'}
    bad = set(fields) - allowed - {'extra'}
    if bad:
      raise ValueError(f'unknown fields {sorted(bad)}; allowed: {sorted(allowed | {"extra"})}')
    sets = ['status=?', 'finished=?'] + [f'{k}=?' for k in fields if k != 'extra']
    vals = [status, time.time()] + [fields[k] for k in fields if k != 'extra']
    if 'extra' in fields:
      sets.append('extra=?')
      vals.append(json.dumps(fields['extra']))
    with self._tx() as db:
      db.execute(f'UPDATE evaluations SET {", ".join(sets)} WHERE row=?', (*vals, row))

  @_guarded
  def rows(self, where: str = '1', args: tuple = ()) -> list[dict[str, Any]]:
    cur = self._db.execute(
        f'SELECT {", ".join(COLUMNS)} FROM evaluations WHERE {where} ORDER BY row', args)
    out = []
    for r in cur.fetchall():
      d = dict(zip(COLUMNS, r))
      d['decisions'] = json.loads(d['decisions'])
      d['extra'] = json.loads(d['extra']) if d['extra'] else {}
      out.append(d)
    return out

  def finished(self, stage: str = 'search') -> list[dict[str, Any]]:
    return self.rows('stage=? AND status!="running"', (stage,))

  def lookup(self, arch_id: str) -> dict[str, Any] | None:
    """The first finished training of an architecture (done or failed), for reuse."""
    rows = self.rows('arch_id=? AND status IN ("done", "failed")', (arch_id,))
    return rows[0] if rows else None

  def slot(self, step: int, slot: int, stage: str = 'search') -> dict[str, Any] | None:
    rows = self.rows('stage=? AND step=? AND slot=?', (stage, step, slot))
    return rows[-1] if rows else None

  @_guarded
  def count(self, status: str | None = None) -> int:
    if status is None:
      return self._db.execute('SELECT COUNT(*) FROM evaluations').fetchone()[0]
    return self._db.execute('SELECT COUNT(*) FROM evaluations WHERE status=?',
                            (status,)).fetchone()[0]
