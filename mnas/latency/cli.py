"""`launch.py latency VERB --config experiments/latency.py --workdir DIR`:
build | validate | predict --arch A | export | import RESULTS.csv.

Each verb prints its result as JSON (and returns it).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Sequence

import search_spaces
from mnas import config as config_lib, workdir as workdir_lib
from mnas.errors import ConfigError
from mnas.latency import device, load
from mnas.latency.keys import keys_for, space_keys
from mnas.latency.predictor import Predictor
from mnas.latency.settings import Settings
from mnas.latency.table import LatencyTable
from mnas.latency.validation import validate
from mnas.space import Space

VERBS = ('build', 'validate', 'predict', 'export', 'import')
# The config fields the verbs read (besides those of `load.FIELDS`).
FIELDS = ('space', 'validate_archs', 'validate_seed', 'recalibrate', 'export_dir', 'device_name')


def main(verb: str, config: Any, workdir: str | None, arch: str | None = None,
         argv: Sequence[str] = ()) -> dict:
  """`launch.py latency VERB`: build | validate | predict | export | import.

  The config is checked before any measuring; the workdir is locked while the verb runs
  (several tables, of other targets, spaces or resolutions, may share it).
  """
  if config is None:
    raise ConfigError('latency needs --config=experiments/latency.py')
  if not workdir:
    raise ConfigError('latency needs --workdir=DIR (where the table lives)')
  if verb not in VERBS:
    raise ConfigError(f'unknown latency verb {verb!r}; one of {VERBS}')
  if verb == 'predict' and arch and not config.table:
    config = _arch_settings(config, arch)
  config_lib.require(config, FIELDS, 'config')
  load.check_config(config, 'config')
  space = search_spaces.get_space(config.space)
  with workdir_lib.lock(workdir):  # One process at a time writes the workdir's tables.
    out = _VERBS[verb](config, space, workdir, arch, argv)
  print(json.dumps(out, indent=1))
  return out


def _arch_settings(config: Any, arch: str) -> Any:
  """The latency settings and table an architecture file records (a search's best_arch.json:
  its table, target, space, classes, measurement protocol), over `config`'s; `config` when
  the file records none (or `--config.table` names a table)."""
  recorded = search_spaces.arch_context(arch).get('latency')
  if not recorded:
    return config
  out = config.copy_and_resolve_references()
  for k, v in recorded['config'].items():
    if k in out:
      out[k] = v
  out.table = recorded['table']
  return out


def _build(config: Any, space: Space, workdir: str, arch: str | None, argv: Sequence[str]) -> dict:
  target, w, r = load.resolve(config, space)
  t0 = time.time()
  table = load.load_or_build(config, space, workdir)
  return dict(table=table.path, target=target, space=space.name, resolution=r,
              width_multiplier=w, entries=len(table), complete=table.meta.get('complete'),
              scope=table.meta.get('scope'), overhead_ms=table.overhead_ms,
              build_seconds=table.meta.get('build_seconds'), seconds=round(time.time() - t0, 1))


def _validate(config: Any, space: Space, workdir: str, arch: str | None,
              argv: Sequence[str]) -> dict:
  # A table built here is calibrated by `validate`, its calibration architectures measured
  # in the same passes as the validation's (not by the build, minutes before).
  table = load.load_or_build(_without_calibration(config), space, workdir)
  report = validate(table, space, Settings.from_config(config, 'config'),
                    int(config.validate_archs), int(config.validate_seed),
                    recalibrate=bool(config.recalibrate), workdir=workdir,
                    progress=config.progress)
  return {k: v for k, v in report.items() if k != 'architectures'}


def _without_calibration(config: Any) -> Any:
  out = config.copy_and_resolve_references()
  out.calibration_archs = 0
  return out


def _predict(config: Any, space: Space, workdir: str, arch: str | None,
             argv: Sequence[str]) -> dict:
  if not arch:
    raise ConfigError('latency predict needs --arch (a reference name, string or JSON file)')
  target, w, r = load.resolve(config, space)
  a = search_spaces.load_arch(arch, w if config.width_multiplier else None,
                              r if config.resolution else None)
  table = load.load_or_build(config, space, workdir)
  pred = Predictor(table, fill=load.filler(table, config.save_every, config.progress))
  return dict(arch=str(a), target=target, table=table.path,
              predicted_ms=round(pred.predict(a), 4),
              overhead_ms=pred.overhead_ms,
              entries=[dict(key=k, ms=round(v, 4)) for k, v in pred.breakdown(a)[:-1]])


def _export(config: Any, space: Space, workdir: str, arch: str | None, argv: Sequence[str]) -> dict:
  _, w, r = load.resolve(config, space)
  _, archs = load.scope_archs(config, space, w, r)
  num_classes = int(config.num_classes)
  keys = space_keys(space, w, r, num_classes) if archs is None else keys_for(archs, num_classes)
  meta = dict(space=space.name, width_multiplier=w, resolution=r, num_classes=num_classes,
              batch_size=1, dtype='float32', depthwise_impl=config.depthwise_impl)
  out_dir = os.path.join(workdir, config.export_dir)
  manifest = device.export_entries(keys, out_dir, meta, depthwise_impl=config.depthwise_impl,
                                   progress=config.progress)
  return dict(manifest=manifest, entries=len(keys), dir=out_dir)


def _import(config: Any, space: Space, workdir: str, arch: str | None, argv: Sequence[str]) -> dict:
  if not argv:
    raise ConfigError('latency import needs a results file: launch.py latency import RESULTS.csv')
  src = argv[0]
  results = device.read_results(src)
  target, w, r = load.resolve(config, space)
  meta = dict(target=target, space=space.name, width_multiplier=w, resolution=r,
              num_classes=int(config.num_classes), batch_size=int(config.batch_size),
              threads=int(config.threads), device=config.device_name,
              source=os.path.abspath(src), dtype='float32', complete=True, scope='imported')
  path = load.table_path(config, space, workdir)
  table = (LatencyTable.load(path, expect=dict(target=target, space=space.name))
           if os.path.exists(path) else None)
  table = device.import_results(results, meta, path, table)
  return dict(table=path, imported=len(results), entries=len(table), target=target)


_VERBS = {'build': _build, 'validate': _validate, 'predict': _predict, 'export': _export,
          'import': _import}
