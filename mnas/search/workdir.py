"""A search's workdir records what it is: `workdir.json`, written when the workdir is made.

  workdir.json   {"method": "multi_trial" | "oneshot" | "pipeline", "created": ISO time,
                  "config": the config it was made with}

`report` reads the method from it (rather than guessing from the files present), and a rerun
with another method is refused. A workdir written by mnas before this record existed (its
controller checkpoints are in an older format) is refused with a line saying so.
"""

from __future__ import annotations

import datetime
import json
import os

from mnas import jsonfile
from mnas.errors import ConfigError, DataError

RECORD = 'workdir.json'
METHODS = ('multi_trial', 'oneshot', 'pipeline')
# What a search writes into its workdir; present without a record: an older mnas wrote it.
_OLD_MARKERS = ('results.sqlite', 'controller', 'checkpoints', 'oneshot.json', 'search')


def method_of(config) -> str:
  """The search method a config asks for: `config.method`, one of METHODS."""
  if config.method not in METHODS:
    raise ConfigError(f'config.method={config.method!r} is not allowed; allowed: {METHODS}')
  return config.method


def open_workdir(workdir: str, config) -> dict:
  """Makes `workdir` (or checks it) for a search by `config`; returns its record."""
  method = method_of(config)
  path = os.path.join(workdir, RECORD)
  if os.path.exists(path):
    record = jsonfile.read(path)
    if record['method'] != method:
      raise ConfigError(f'{workdir} holds a {record["method"]} search, config.method is '
                        f'{method!r}: use a new --workdir')
    return record
  if os.path.isdir(workdir) and any(os.path.exists(os.path.join(workdir, m))
                                    for m in _OLD_MARKERS):
    raise DataError(f'{workdir} was written by an older mnas (it has no {RECORD}); its '
                    'checkpoints are in an older format: use a new --workdir')
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise DataError(f'cannot make the workdir {workdir}: {e.strerror}') from None
  record = dict(method=method, created=datetime.datetime.now().isoformat(timespec='seconds'),
                config=json.loads(config.to_json_best_effort()))
  jsonfile.write(path, record)
  return record


def read_method(workdir: str) -> str:
  """The method of the search in `workdir` (DataError when there is none)."""
  path = os.path.join(workdir, RECORD)
  if not os.path.exists(path):
    raise DataError(f'no search in {workdir} ({RECORD} is missing): run `launch.py search` '
                    'into it first')
  return jsonfile.read(path)['method']
