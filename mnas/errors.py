"""The errors a user can fix, one family: `launch.py` prints them as one line, exit code 2.

Anything else that escapes is a bug in mnas and keeps its traceback (exit code 1). Each
message names what is wrong (a config field, a file) and what is allowed or what to do.

  UserError
    ConfigError        a config field is missing, of the wrong type or outside its values
      SpaceError       an architecture string, a search space or a decision (mnas.space)
    DataError          a file or directory that is missing, unreadable or garbled
"""

from __future__ import annotations


class UserError(Exception):
  """Something the user can fix; the message says what and how, in one line."""


class ConfigError(UserError, ValueError):
  """A config field (or command-line flag) is missing or has a value that is not allowed."""


class SpaceError(ConfigError):
  """An invalid architecture, block string, search space or decision."""


class DataError(UserError):
  """A file, dataset or directory that is missing, unreadable or damaged (its path named)."""
