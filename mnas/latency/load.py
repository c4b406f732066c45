"""The table of a latency config: found in the workdir (or built, or its build resumed), and
the search's predictor on it.

The config is experiments/latency.py's (`launch.py latency`) or a search config's
`config.latency` (experiments/search_common.py); every field read here is checked first
(`FIELDS`), so a config that lacks one fails at once with a line naming it.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from absl import logging

from mnas import config as config_lib
from mnas.errors import ConfigError, DataError
from mnas.latency import targets
from mnas.latency.build import Builder, build_table, sample_archs
from mnas.latency.keys import space_keys
from mnas.latency.predictor import Predictor
from mnas.latency.settings import Settings
from mnas.latency.table import LatencyTable, model_code_hash, table_filename
from mnas.space import Space

SCOPES = ('all', 'sampled', 'on_demand', 'auto')
# The config fields `load_or_build` reads (besides the `Settings` fields).
FIELDS = ('target', 'width_multiplier', 'resolution', 'table', 'scope', 'max_full_entries',
          'build_archs', 'progress') + Settings.names()


def resolve(config: Any, space: Space) -> tuple[str, float, int]:
  """(target, width multiplier, resolution) of `config`; 0 is the space's (first) one."""
  w = float(config.width_multiplier or space.width_multiplier[0])
  r = int(config.resolution or space.resolution[0])
  return config.target, w, r


def table_path(config: Any, space: Space, workdir: str) -> str:
  """`config.table` when set, else workdir/latency_TARGET_SPACE_rRES_wALPHA.json."""
  if config.table:
    return config.table
  target, w, r = resolve(config, space)
  return os.path.join(workdir, table_filename(target, space.name, r, w))


def scope_archs(config: Any, space: Space, w: float, r: int
                ) -> tuple[str, list | None]:
  """What a build covers: (scope, architectures or None for every entry of the space).

  'all' every entry of the space; 'sampled' the entries of `build_archs` random
  architectures; 'on_demand' only the calibration architectures (the predictor measures the
  rest when asked); 'auto' all when the space has at most `max_full_entries`, else sampled.
  """
  scope = config.scope
  if scope == 'auto':
    n = len(space_keys(space, w, r, int(config.num_classes)))
    scope = 'all' if n <= int(config.max_full_entries) else 'sampled'
  if scope == 'all':
    return scope, None
  if scope == 'on_demand':
    return scope, []
  if scope == 'sampled':
    return scope, sample_archs(space, int(config.build_archs), seed=int(config.seed) + 20_000,
                               width_multiplier=w, resolution=r)
  raise ConfigError(f'config.scope={scope!r}; expected one of {SCOPES}')


def check_config(config: Any, where: str = 'config.latency') -> Settings:
  """Checks a latency config before any measuring: every field, the target (and, for
  litert-cpu, that LiteRT is installed), the scope; returns the measurement settings."""
  config_lib.require(config, FIELDS, where)  # Every missing field at once.
  config_lib.check(config, {
      'target': config_lib.one_of(*targets.TARGETS), 'scope': config_lib.one_of(*SCOPES),
      'width_multiplier': config_lib.NON_NEGATIVE,
      'resolution': config_lib.at_least(0, integer=True),
      'table': config_lib.TEXT, 'max_full_entries': config_lib.POSITIVE,
      'build_archs': config_lib.POSITIVE, 'progress': config_lib.BOOL}, where)
  settings = Settings.from_config(config, where)
  if config.target == 'litert-cpu':
    from mnas.latency import litert
    litert.require_litert()
  return settings


def load_or_build(config: Any, space: Space, workdir: str,
                  progress: bool | None = None) -> LatencyTable:
  """The table of `config` for `space`, built (or its interrupted build resumed, or its
  missing calibration fitted) if needed.

  `progress` (tqdm bars) overrides `config.progress`.
  """
  settings = check_config(config)
  progress = config.progress if progress is None else progress
  target, w, r = resolve(config, space)
  os.makedirs(workdir, exist_ok=True)
  path = table_path(config, space, workdir)
  expect = dict(target=target, space=space.name, width_multiplier=w, resolution=r,
                num_classes=settings.num_classes, batch_size=settings.batch_size,
                threads=settings.threads)
  if os.path.exists(path):
    table = LatencyTable.load(path, expect=expect)
    if table.meta.get('model_code') not in (None, model_code_hash()):
      logging.warning('latency table %s was measured with other model code (models.py/ops.py '
                      'changed since); rebuild it if the change affects speed', path)
    # A complete table is used as it is, unless it lacks the calibration the config asks for
    # (e.g. `latency validate` built it and was stopped before calibrating it).
    calibrated = bool(table.calibration) or not settings.calibration_archs
    if (table.meta.get('complete') and calibrated) or target not in targets.MEASURABLE:
      return table
  elif target not in targets.MEASURABLE:
    raise DataError(f'no latency table at {path}: target {target!r} is timed on the '
                    'device (`latency export`, then `latency import RESULTS.csv`)')
  scope, archs = scope_archs(config, space, w, r)
  table = build_table(space, target, settings, path=path, archs=archs, width_multiplier=w,
                      resolution=r, progress=progress)
  table.meta['scope'] = scope
  table.save()
  return table


def filler(table: LatencyTable, save_every: int,
           progress: bool) -> Callable[[list[str]], None] | None:
  """A `Predictor.fill` that measures missing entries on the table's target and saves them
  (every `save_every` entries, and when done); None for a target measured elsewhere."""
  if table.target not in targets.MEASURABLE:
    return None
  state = {}

  def fill(keys):
    if 'builder' not in state:  # One worker for the predictor's lifetime.
      state['builder'] = Builder(table, progress=progress, save_every=save_every)
    state['builder'].measure(keys, desc='latency (missing entries)')
  return fill


def predictor_for_search(config: Any, space: Space, workdir: str,
                         progress: bool | None = None) -> Predictor:
  """The search's predictor: `config.table` or the table in `workdir` (built on first use,
  covering `config.scope`: the search configs' 'on_demand' measures only the calibration
  entries), filling the entries of new candidates on demand on the table's target.

  `config` is the search config's `config.latency`; `progress` overrides `config.progress`.
  """
  config_lib.require(config, FIELDS, 'config.latency')
  progress = config.progress if progress is None else progress
  table = load_or_build(config, space, workdir, progress=progress)
  return Predictor(table, fill=filler(table, config.save_every, progress))
