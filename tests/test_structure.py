"""The shape of the code: no import cycle inside mnas/, short modules, a thin launch.py, lint."""
import ast
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _modules() -> dict[str, str]:
  """Dotted module name -> path, for every module of the mnas package."""
  out = {}
  for d, _, files in os.walk(os.path.join(ROOT, 'mnas')):
    for f in files:
      if f.endswith('.py'):
        rel = os.path.relpath(os.path.join(d, f), ROOT)[:-3].replace(os.sep, '.')
        out[rel[:-len('.__init__')] if rel.endswith('.__init__') else rel] = os.path.join(d, f)
  return out


def import_graph() -> dict[str, set[str]]:
  """module -> the mnas modules it imports, anywhere in it (function-level imports count).

  `from mnas.a import b` is an edge to mnas.a.b when that is a module, else to mnas.a.
  """
  modules = _modules()
  graph = {}
  for name, path in modules.items():
    package = name if path.endswith('__init__.py') else name.rpartition('.')[0]
    edges = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
      if isinstance(node, ast.Import):
        edges.update(a.name for a in node.names)
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ''
        if node.level:
          base = '.'.join(package.split('.')[:len(package.split('.')) - node.level + 1]
                          + ([base] if base else []))
        for a in node.names:
          edges.add(f'{base}.{a.name}' if f'{base}.{a.name}' in modules else base)
    graph[name] = {e for e in edges if e in modules and e != name}
  return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  state, stack = {}, []

  def visit(n):
    state[n] = 'open'
    stack.append(n)
    for m in sorted(graph[n]):
      if state.get(m) == 'open':
        return stack[stack.index(m):] + [m]
      if m not in state:
        found = visit(m)
        if found:
          return found
    stack.pop()
    state[n] = 'done'
    return None

  for n in sorted(graph):
    if n not in state:
      found = visit(n)
      if found:
        return found
  return None


def test_the_cycle_finder_finds_cycles():
  assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
  assert find_cycle({'a': {'b'}, 'b': set(), 'c': {'a', 'b'}}) is None


def test_no_import_cycle_inside_mnas():
  graph = import_graph()
  assert graph['mnas.search.multi_trial'] >= {'mnas.search.evaluation', 'mnas.search.store'}
  cycle = find_cycle(graph)
  assert cycle is None, ' -> '.join(cycle)


def test_no_package_module_imports_its_own_package():
  """Submodules import their siblings, never the package's __init__ (which imports them)."""
  graph = import_graph()
  bad = [(m, p) for m, deps in graph.items() for p in deps if m.startswith(p + '.')]
  assert not bad, bad


def test_modules_are_short():
  long = {p: n for p in _modules().values() if (n := len(open(p).readlines())) > 600}
  assert not long, long
  assert len(open(os.path.join(ROOT, 'launch.py')).readlines()) < 130


@pytest.mark.skipif(shutil.which('ruff') is None, reason='ruff is in the [test] extra')
def test_the_code_passes_the_linter():
  out = subprocess.run(['ruff', 'check', '--no-cache', '--output-format', 'concise', '.'],
                       cwd=ROOT, capture_output=True, text=True)
  assert out.returncode == 0, out.stdout[-3000:]
