"""Reading configs: every default lives in a config file (experiments/), none in the code.

Library code reads `config.field`. Each entry point first checks that the fields it reads
are there (`require`), so a config that lacks one fails at once with a line naming it,
instead of an AttributeError deep inside a run.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from mnas.errors import ConfigError


def lookup(config: Any, dotted: str) -> Any:
  """config.a.b for 'a.b'; KeyError naming the first missing prefix ('a' or 'a.b')."""
  value, parts = config, dotted.split('.')
  for i, part in enumerate(parts):
    if not hasattr(value, 'keys') or part not in value:
      raise KeyError('.'.join(parts[:i + 1]))
    value = value[part]
  return value


def require(config: Any, fields: Iterable[str], where: str = 'config') -> None:
  """Raises ConfigError naming every field of `fields` (dotted) that `config` lacks (a
  missing block once, not each of its fields)."""
  missing = []
  for name in fields:
    try:
      lookup(config, name)
    except KeyError as e:
      if e.args[0] not in missing:
        missing.append(e.args[0])
  if missing:
    raise ConfigError(f'{where} has no field {", ".join(missing)}: the configs in experiments/ '
                      'hold every field with its default; start from one of them')


# Rules for `check`: (predicate, what is allowed), named by what they allow.
Rule = tuple[Callable[[Any], bool], str]


def _is_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def at_least(low, integer: bool = False) -> Rule:
  kind = 'an integer' if integer else 'a number'
  return (lambda v: (_is_int(v) if integer else _is_number(v)) and v >= low, f'{kind} >= {low}')


def above(low) -> Rule:
  return (lambda v: _is_number(v) and v > low, f'a number > {low}')


def fraction(top_open: bool = True) -> Rule:
  return ((lambda v: _is_number(v) and 0 <= v < 1, 'a number in [0, 1)') if top_open
          else (lambda v: _is_number(v) and 0 <= v <= 1, 'a number in [0, 1]'))


def one_of(*values) -> Rule:
  return (lambda v: v in values, f'one of {values}')


def optional(rule: Rule) -> Rule:
  ok, allowed = rule
  return (lambda v: v is None or ok(v), f'None or {allowed}')


def either(value, rule: Rule) -> Rule:
  ok, allowed = rule
  return (lambda v: v == value or ok(v), f'{value!r} or {allowed}')


POSITIVE = at_least(1, integer=True)
NON_NEGATIVE = at_least(0)
BOOL = (lambda v: isinstance(v, bool), 'True or False')
INT = (_is_int, 'an integer')
NUMBER = (_is_number, 'a number')
TEXT = (lambda v: isinstance(v, str), 'a string')


def check(config: Any, rules: dict[str, Rule], where: str = 'config') -> None:
  """Raises ConfigError naming the first field that is missing or breaks its rule."""
  require(config, rules, where)
  for name, (ok, allowed) in rules.items():
    value = lookup(config, name)
    if not ok(value):
      raise ConfigError(f'{where}.{name}={value!r} is not allowed; allowed: {allowed}')
