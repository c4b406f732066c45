"""What `launch.py` shares with any command line of mnas: flag checks per verb, and the rule
that a mistake the user can fix is one line on stderr with exit code 2.

A `mnas.errors.UserError` (a bad config field or flag, a damaged file, a locked workdir, a
full disk) prints `error: ...` and exits 2; anything else is a bug in mnas and keeps its
traceback (exit code 1).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable

from absl import flags
from absl import logging as absl_logging

from mnas.errors import ConfigError, UserError, no_space

# A flag's example value, for the line that says a verb needs it.
_EXAMPLES = {'config': 'experiments/quickstart.py', 'workdir': 'DIR', 'arch': 'mobilenet_v3_small'}


_PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _OwnInfo(logging.Filter):
  """INFO lines of mnas itself; of other libraries (orbax, TFDS, ...) warnings and errors."""

  def filter(self, record: logging.LogRecord) -> bool:
    return (record.levelno >= logging.WARNING
            or (record.pathname.startswith(_PROJECT) and 'site-packages' not in record.pathname))


def quiet_third_party_logs() -> None:
  """Keeps other libraries' INFO lines off the console (absl's handler, which `app.run` puts
  on the root logger, so Python logging's records pass through it too), unless
  `--verbosity` asks for more than INFO (1: mnas's debug lines, e.g. a search candidate's
  training progress, and every library's INFO)."""
  if absl_logging.get_verbosity() < 1:
    absl_logging.get_absl_handler().addFilter(_OwnInfo())


def compilation_cache(path: str) -> None:
  """Turns on JAX's persistent compilation cache in `path` (unless $JAX_COMPILATION_CACHE_DIR
  already chose one; '' turns it off): a program compiled once, by this process or an
  earlier one (a killed search, a benchmark's previous run), is read back instead of being
  compiled again. Programs that compile in under half a second are not worth an entry.
  Set through JAX's environment variables, read when JAX is imported: a command refused
  before any work (a locked workdir) never imports it."""
  if os.environ.get('JAX_COMPILATION_CACHE_DIR') or not path:
    return
  os.environ['JAX_COMPILATION_CACHE_DIR'] = os.path.expanduser(path)
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')


def one_line(e) -> str:
  """A long message (a config file's traceback) as its first and last lines."""
  lines = [line.strip() for line in str(e).splitlines() if line.strip()]
  return lines[0] + (f' ... {lines[-1]}' if len(lines) > 1 else '')


def _exit(message: str) -> None:
  print(f'error: {one_line(message)}', file=sys.stderr)
  sys.exit(2)


def parse_flags(flag_values: flags.FlagValues, argv: list[str]) -> list[str]:
  """absl's flag parsing (`app.run(flags_parser=...)`) with a bad flag or config override
  as one line and exit code 2."""
  try:
    return flag_values(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    if isinstance(e, (AttributeError, KeyError)):  # An override of a field the config lacks.
      field = str(e).strip('"\'')
      given = [a.split('=')[0] for a in argv if a.startswith('--config.') and field in a]
      e = f'{given[0] if given else field}: the config has no field {field!r}'
    _exit(str(e))


def check_flags(flag_values: flags.FlagValues, verb: str, required: tuple[str, ...],
                optional: tuple[str, ...], own: set[str]) -> None:
  """Raises ConfigError when `verb` is given a flag of another verb (of `own`), lacks one it
  needs, or its --config file does not load."""
  extra = sorted(f for f in own - set(required) - set(optional) if flag_values[f].present)
  if extra:
    raise ConfigError(f'launch.py {verb} takes no --{extra[0]}; its flags: '
                      + ', '.join(f'--{f}' for f in required + optional))
  missing = [f for f in required if flag_values[f].value is None]
  if missing:
    raise ConfigError(f'launch.py {verb} needs --{missing[0]} (e.g. '
                      f'--{missing[0]}={_EXAMPLES.get(missing[0], "...")})')
  if 'config' in required + optional and flag_values['config'].present:
    try:
      flag_values.config.keys()  # Loads the config file.
    except OSError as e:
      raise ConfigError(f'--config: {one_line(e)}') from None


def run(verb: Callable[[], None]) -> None:
  """Runs `verb()`; a UserError (or a full disk, however it surfaced) exits 2 with one line."""
  try:
    verb()
  except UserError as e:
    _exit(str(e))
  except Exception as e:  # pylint: disable=broad-except
    if not no_space(e):
      raise
    _exit(f'no space left on the device ({e}): free some and run the same command again')
