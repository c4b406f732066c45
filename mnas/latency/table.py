"""The latency table: entries (key -> statistics in ms), metadata and calibration; a JSON file.

The metadata record what the table was measured for and how (target, CPU model, library
versions, threads, batch, date, schema version, space, width multiplier, resolution, the
measurement protocol, ...); the calibration holds the fitted correction. Loading a table made
for another target, schema or space, or timed by an older timing loop, raises
`TableMismatchError`.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import math
import os
from typing import Any, Iterable, Mapping, Sequence

from mnas import jsonfile
from mnas.errors import ConfigError, DataError, UserError

SCHEMA_VERSION = 1
# The version of `targets.timing_loop`, which times a JAX target's architectures (the
# reference and the calibration's among them) and its entries with method 'loop'. Version 1
# (tables without `timing_loop`) fed the program `x + c` and reduced its output, which XLA
# fused into the first and last ops: early high-resolution blocks timed 2-8x slow
# (`mnas.latency`'s docstring). Tables whose entries or reference scale it timed are refused.
TIMING_LOOP = 2
TIMED_BY_LOOP = ('xla-cpu', 'gpu')


def timed_by_an_old_loop(meta: Mapping[str, Any]) -> bool:
  """Whether a table's entries ('loop') or reference scale came from an older timing loop."""
  return (meta.get('target') in TIMED_BY_LOOP and meta.get('timing_loop', 1) != TIMING_LOOP
          and (meta.get('method') == 'loop' or bool(meta.get('reference_arch'))))


# Fields a table must match to be extended or used (beyond the schema version).
MATCH_FIELDS = ('target', 'space', 'width_multiplier', 'resolution', 'num_classes', 'batch_size',
                'threads', 'depthwise_impl', 'statistic', 'method', 'clock')


class TableMismatchError(ConfigError):
  """A table was made for another target / schema / space / shape than asked for."""

  def __init__(self, field: str, expected: Any, found: Any, path: str | None = None,
               why: str = ''):
    self.field, self.expected, self.found, self.path = field, expected, found, path
    where = f'latency table {path}' if path else 'latency table'
    super().__init__(f'{where} was made for {field}={found!r}{why}, but {field}={expected!r} is '
                     'needed; build one (`launch.py latency build`) in another workdir or at '
                     'another config.table')


class MissingEntriesError(UserError, ValueError):
  """An architecture needs entries the table does not have."""

  def __init__(self, keys: Sequence[str], path: str | None = None):
    self.keys = list(keys)
    more = len(self.keys) - 5
    shown = ', '.join(self.keys[:5]) + (f' and {more} more' if more > 0 else '')
    super().__init__(f'latency table {path or ""} lacks {len(self.keys)} entries: {shown}; '
                     'measure them (`Predictor(..., fill=...)`, `build_table(..., archs=[...])` or '
                     '`launch.py latency build`)')


def table_filename(target: str, space: str, resolution: int, width_multiplier: float) -> str:
  return f'latency_{target}_{space}_r{resolution}_w{width_multiplier:g}.json'


def timestamp() -> str:
  """Now, UTC, ISO 8601 to the second (the dates a table records)."""
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')


def model_code_hash() -> str:
  """A fingerprint of the model code the entries run (mnas/models.py, mnas/ops.py)."""
  import hashlib
  h = hashlib.sha1()
  for name in ('mnas.models', 'mnas.ops'):
    spec = importlib.util.find_spec(name)  # The file, without importing it (Flax, JAX).
    try:
      with open(spec.origin, 'rb') as f:
        h.update(f.read())
    except (AttributeError, TypeError, OSError):
      pass
  return h.hexdigest()[:12]


class LatencyTable:
  """Entries (key -> statistics in ms), metadata and calibration; a JSON file."""

  def __init__(self, meta: dict, entries: dict | None = None, calibration: dict | None = None,
               path: str | None = None):
    self.meta = dict(meta)
    self.meta.setdefault('schema', SCHEMA_VERSION)
    self.meta.setdefault('statistic', 'median')  # The file format's, for tables without one.
    self.entries: dict[str, dict] = dict(entries or {})
    self.calibration: dict = dict(calibration or {})
    self.path = path

  # --- lookup -------------------------------------------------------------------------
  @property
  def target(self) -> str:
    return self.meta['target']

  @property
  def overhead_ms(self) -> float:
    return float(self.calibration.get('overhead_ms', 0.0))

  @property
  def worker_log(self) -> str | None:
    """Where a measuring worker process of this table logs: next to the table file."""
    return os.path.splitext(self.path)[0] + '.worker.log' if self.path else None

  def ms(self, key: str) -> float:
    if key not in self.entries:
      raise MissingEntriesError([key], self.path)
    return float(self.entries[key]['ms'])

  def missing(self, keys: Iterable[str]) -> list[str]:
    return [k for k in dict.fromkeys(keys) if k not in self.entries]

  def __contains__(self, key: str) -> bool:
    return key in self.entries

  def __len__(self) -> int:
    return len(self.entries)

  def add(self, key: str, stats: Mapping[str, Any]) -> None:
    stats = dict(stats)
    if 'ms' not in stats:  # A marginal cost below the noise can come out negative: 0.
      stats['ms'] = max(0.0, float(stats[self.meta['statistic']]))
    self.entries[key] = stats

  # --- files --------------------------------------------------------------------------
  def to_json(self) -> dict:
    return dict(meta=self.meta, calibration=self.calibration,
                entries={k: self.entries[k] for k in sorted(self.entries)})

  def save(self, path: str | None = None) -> str:
    """Writes the table atomically (a partial table is a valid table).

    Not `jsonfile.write`: the processes of a distributed search extend one table, so each
    writes through a temporary file of its own (named by its pid).
    """
    path = path or self.path
    if not path:
      raise ValueError('LatencyTable.save needs a path')
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    self.meta['updated'] = timestamp()
    self.meta['n_entries'] = len(self.entries)
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'w') as f:
      json.dump(self.to_json(), f, indent=1)
    os.replace(tmp, path)
    self.path = path
    return path

  @classmethod
  def load(cls, path: str, expect: Mapping[str, Any] | None = None) -> LatencyTable:
    """Reads a table; `expect` fields (target, space, ...) must match, and a table timed by
    an older timing loop is refused (TableMismatchError).

    A file that is not a table (or not JSON) raises DataError naming it.
    """
    obj = jsonfile.read(path)
    if not isinstance(obj, dict) or 'meta' not in obj or 'entries' not in obj:
      raise DataError(f'{path} is not a latency table (expected a JSON object with "meta" and '
                      '"entries")')
    table = cls(obj['meta'], obj['entries'], obj.get('calibration'), path)
    table.check(dict(expect or {}, schema=SCHEMA_VERSION))
    if timed_by_an_old_loop(table.meta):
      raise TableMismatchError('timing_loop', TIMING_LOOP, table.meta.get('timing_loop', 1), path,
                               why=' (a timing loop that timed early blocks 2-8x slow)')
    return table

  def check(self, expect: Mapping[str, Any]) -> None:
    """Raises TableMismatchError on the first field of `expect` that differs."""
    for field in ('schema',) + MATCH_FIELDS:
      if field in expect and expect[field] is not None:
        want, have = expect[field], self.meta.get(field)
        if isinstance(want, float) or isinstance(have, float):
          same = have is not None and math.isclose(float(want), float(have))
        else:
          same = want == have
        if not same:
          raise TableMismatchError(field, want, have, self.path)
