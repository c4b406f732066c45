"""Reading configs: every default lives in a config file (experiments/), none in the code.

Library code reads `config.field`. Each entry point first checks that the fields it reads
are there (`require`), so a config that lacks one fails at once with a line naming it,
instead of an AttributeError deep inside a run.
"""

from __future__ import annotations

from typing import Any, Iterable

from mnas.errors import ConfigError


def lookup(config: Any, dotted: str) -> Any:
  """config.a.b for 'a.b'; KeyError naming the first missing part."""
  value = config
  for part in dotted.split('.'):
    if not hasattr(value, 'keys') or part not in value:
      raise KeyError(part)
    value = value[part]
  return value


def require(config: Any, fields: Iterable[str], where: str = 'config') -> None:
  """Raises ConfigError naming every field of `fields` (dotted) that `config` lacks."""
  missing = []
  for name in fields:
    try:
      lookup(config, name)
    except KeyError:
      missing.append(name)
  if missing:
    raise ConfigError(f'{where} has no field {", ".join(missing)}: the configs in experiments/ '
                      'hold every field with its default; start from one of them')
