"""The errors a user can fix, one family: `launch.py` prints them as one line, exit code 2.

Anything else that escapes is a bug in mnas and keeps its traceback (exit code 1). Each
message names what is wrong (a config field, a file) and what is allowed or what to do.

  UserError
    ConfigError        a config field is missing, of the wrong type or outside its values
      SpaceError       an architecture string, a search space or a decision (mnas.space)
    DataError          a file or directory that is missing, unreadable or garbled, or a
                       full disk
"""

from __future__ import annotations

import errno


class UserError(Exception):
  """Something the user can fix; the message says what and how, in one line."""


class ConfigError(UserError, ValueError):
  """A config field (or command-line flag) is missing or has a value that is not allowed."""


class SpaceError(ConfigError):
  """An invalid architecture, block string, search space or decision."""


class DataError(UserError):
  """A file, dataset or directory that is missing, unreadable or damaged (its path named)."""


_NO_SPACE = ('No space left on device', 'database or disk is full')


def no_space(e: BaseException | None) -> bool:
  """Whether `e`, or an exception it was raised from, says the disk is full."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if getattr(e, 'errno', None) == errno.ENOSPC or any(m in str(e) for m in _NO_SPACE):
      return True
    e = e.__cause__ or e.__context__
  return False


def no_space_error(path: str) -> DataError:
  return DataError(f'no space left on the device of {path}: free some and run the same '
                   'command again (what was finished is kept)')
