"""`launch.py config --config FILE[:VARIANT]`: every field of a config with its value and the
comment its config file gives it.

Comments are found by following how the config is built, from the file's `get_config`: an
assignment `c.a.b = value` takes the comment at the end of its line and the comment lines
right above it; `c.train = train.get_config()` (a function of another file of experiments/)
or `imagenet_proxy(c)` (a helper that fills `c`) is followed into that function, its fields
under the prefix it is assigned to. A later assignment's comment replaces an earlier one's,
as its value does. A field no assignment comments is listed without one.
"""

from __future__ import annotations

import ast
import functools
import io
import os
import tokenize
from typing import Any


@functools.cache
def _parse(path: str) -> tuple[ast.Module, dict[int, str], list[str]]:
  with open(path) as f:
    source = f.read()
  by_line = {tok.start[0]: tok.string.lstrip('#').strip()
             for tok in tokenize.generate_tokens(io.StringIO(source).readline)
             if tok.type == tokenize.COMMENT}
  return ast.parse(source), by_line, source.splitlines()


def _path(node: ast.AST) -> str | None:
  """'a.b' for `c.a.b` or `c['a'].b`, '' for `c` itself, None for anything else."""
  parts = []
  while isinstance(node, (ast.Attribute, ast.Subscript)):
    if isinstance(node, ast.Attribute):
      parts.append(node.attr)
    elif isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
      parts.append(node.slice.value)
    else:
      return None
    node = node.value
  return '.'.join(reversed(parts)) if isinstance(node, ast.Name) else None


def _modules(tree: ast.Module, here: str) -> dict[str, str]:
  """{local name: file} of the modules of this folder the file imports."""
  out = {}
  for node in tree.body:
    if isinstance(node, ast.ImportFrom):
      for alias in node.names:
        path = os.path.join(here, alias.name + '.py')
        if os.path.exists(path):
          out[alias.asname or alias.name] = path
  return out


def _callee(call: ast.Call, path: str, tree: ast.Module) -> tuple[str, str] | None:
  """(file, function) of a call to a function of this file or of a module of its folder."""
  f = call.func
  if isinstance(f, ast.Name) and any(isinstance(n, ast.FunctionDef) and n.name == f.id
                                     for n in tree.body):
    return path, f.id
  if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
    module = _modules(tree, os.path.dirname(path)).get(f.value.id)
    return (module, f.attr) if module else None
  return None


def _join(prefix: str, name: str) -> str:
  return '.'.join(p for p in (prefix, name) if p)


def _collect(path: str, function: str, prefix: str, out: dict[str, str], depth: int = 0) -> None:
  tree, by_line, lines = _parse(path)
  fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function), None)
  if fn is None or depth > 8:
    return
  nodes = sorted((n for n in ast.walk(fn) if isinstance(n, (ast.Assign, ast.Expr))),
                 key=lambda n: n.lineno)
  for node in nodes:
    value = node.value
    targets = node.targets if isinstance(node, ast.Assign) else []
    if isinstance(value, ast.Call) and (callee := _callee(value, path, tree)):
      if targets:  # c.train = train.get_config(): its fields under 'train'.
        field = _path(targets[0])
      else:  # imagenet_proxy(c): fills its argument.
        field = _path(value.args[0]) if value.args else None
      if field is not None:
        _collect(*callee, _join(prefix, field), out, depth + 1)
      continue
    for target in targets:
      field = _path(target)
      if not field:
        continue
      above, line = [], node.lineno - 1
      while line >= 1 and lines[line - 1].strip().startswith('#'):
        above.insert(0, by_line.get(line, ''))
        line -= 1
      text = ' '.join(above + ([by_line[node.end_lineno]] if node.end_lineno in by_line else []))
      if text:
        out[_join(prefix, field)] = text


def comments(config_file: str) -> dict[str, str]:
  """{dotted field: comment} of the config that `config_file`'s `get_config` builds."""
  out: dict[str, str] = {}
  _collect(os.path.abspath(config_file.split(':')[0]), 'get_config', '', out)
  return out


def _flat(config: Any, prefix: str = '') -> list[tuple[str, Any]]:
  out = []
  for k, v in config.items():
    if hasattr(v, 'items') and len(v):
      out += _flat(v, _join(prefix, k))
    else:
      out.append((_join(prefix, k), v))
  return out


def describe(config: Any, config_file: str) -> str:
  """The fields of `config` (loaded from `config_file`), one a line, with their comments."""
  known = comments(config_file)
  lines = [f'# {config_file}: every field, its value and its comment; override any with '
           '--config.FIELD=VALUE']
  for name, value in _flat(config):
    shown = '{}' if hasattr(value, 'items') else repr(value)  # An empty block.
    lines.append(f'{name} = {shown}' + (f'  # {known[name]}' if name in known else ''))
  return '\n'.join(lines)
