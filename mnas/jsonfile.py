"""JSON files of a workdir: written atomically, read with errors that name the file."""

from __future__ import annotations

import json
import os
from typing import Any

from mnas.errors import DataError, no_space, no_space_error

_MISSING = object()


def write(path: str, obj: Any) -> None:
  """Writes `obj` as indented JSON; a crash mid-write leaves the old file (or none).

  A full disk is a DataError naming the file (the old file, if any, is kept).
  """
  tmp = f'{path}.tmp'
  try:
    with open(tmp, 'w') as f:
      json.dump(obj, f, indent=1)
    os.replace(tmp, path)
  except OSError as e:
    if not no_space(e):
      raise
    raise no_space_error(path) from None


def read(path: str, default: Any = _MISSING) -> Any:
  """The JSON in `path`; `default` when the file does not exist (DataError without one).

  Raises DataError naming the file when it is not valid JSON.
  """
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    if default is _MISSING:
      raise DataError(f'{path}: no such file') from None
    return default
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise DataError(f'{path} is not valid JSON ({e}); it is damaged: restore or remove it'
                    ) from None
