"""NAS-Bench-Macro: mnas's space builds the benchmark's networks exactly.

The counts are the benchmark's own (its file's `params` and `flops`, from its PyTorch
training code); tests that need the file skip when it is absent (mnas does not ship it).
"""
import collections
import json
import os

import jax
import numpy as np
import pytest

import search_spaces
from mnas import counting, models, nasbench
from mnas.errors import DataError
from mnas.space import parse
from search_spaces import nas_bench_macro

FILE = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'benchmarks',
                    'nas-bench-macro', 'nas-bench-macro_cifar10.json')
needs_file = pytest.mark.skipif(not os.path.isfile(FILE),
                                reason=f'NAS-Bench-Macro file absent ({FILE}); get it from '
                                       f'{nasbench.MACRO_URL}')
SPACE = search_spaces.get_space('nas_bench_macro')
PARAMS_10120012, FLOPS_10120012 = 1881802, 49844736  # Copied from the benchmark's file.


@pytest.fixture(scope='module')
def table():
  return nasbench.load_macro(FILE)


def _canonical_key(key: str) -> str:
  """The benchmark's rule, written from its README: a stage's identities after its first
  layer move to the stage's end."""
  out = ''
  for a, b in ((0, 2), (2, 5), (5, 8)):
    rest = [c for c in key[a + 1:b] if c != '0']
    out += key[a] + ''.join(rest).ljust(b - a - 1, '0')
  return out


@needs_file
def test_params_and_macs_equal_the_file_for_every_architecture(table):
  for key, idx, params, flops in zip(table.keys, table.indices, table.params, table.flops):
    c = counting.count(SPACE.decode(idx), num_classes=10)
    assert (c['params'], c['macs']) == (params, flops), key


@needs_file
def test_equivalent_keys_are_one_architecture_with_one_result(table):
  with open(FILE) as f:
    raw = json.load(f)
  ids, groups = collections.defaultdict(set), collections.defaultdict(set)
  for key in table.keys:
    arch = SPACE.decode(nas_bench_macro.indices(key))
    ids[_canonical_key(key)].add(arch.id)
    groups[arch.id].add(json.dumps(raw[key], sort_keys=True))
    assert nas_bench_macro.key(SPACE.encode(arch)) == _canonical_key(key)
  assert all(len(v) == 1 for v in ids.values())  # Equivalent encodings: one id.
  assert all(len(v) == 1 for v in groups.values())  # One network: one result in the file.
  assert len(groups) == len(ids) == 3969


@needs_file
@pytest.mark.parametrize('key', ['00000000', '22222222', '10120102', '02012100', '21002010'])
def test_flax_model_parameters_equal_the_file(table, key):
  arch = SPACE.decode(nas_bench_macro.indices(key))
  variables = models.init_variables(models.build_model(arch, num_classes=10), 0)
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables['params']))
  assert n == table.params[table.row(nas_bench_macro.indices(key))]


def test_space_language_expresses_the_benchmark():
  arch = SPACE.decode(nas_bench_macro.indices('10120012'))
  assert str(arch) == ('r32_w1_sev3 stem_s1_c32_relu ir_r1_k3_s2_e3_c64_relu '
                       'ir_r1_k3_s2_e3_c128_relu ir_r1_k5_s1_e6_c128_relu id_r1_s2_c256 '
                       'ir_r1_k3_s1_e3_c256_relu ir_r1_k5_s1_e6_c256_relu head_c1280_relu')
  assert parse(str(arch)) == arch
  # The stem at stride 1 keeps 32x32; the identity that doubles width is a strided 1x1 conv.
  rows = arch.describe_layers()
  assert rows[0]['input_resolution'] == 32 and rows[3]['type'] == 'id'
  assert (rows[3]['stride'], rows[3]['cin'], rows[3]['cout'], rows[3]['residual']) == (
      2, 128, 256, False)
  # The file's counts for key 10120012.
  assert counting.count(arch, 10)['params'] == PARAMS_10120012
  assert counting.count(arch, 10)['macs'] == FLOPS_10120012
  out = models.build_model(arch, 10).apply(
      models.init_variables(models.build_model(arch, 10), 0), np.zeros((2, 32, 32, 3)))
  assert out.shape == (2, 10)


def test_identities_that_change_nothing_are_no_layer():
  a = SPACE.decode(nas_bench_macro.indices('12101202'))
  b = SPACE.decode(nas_bench_macro.indices('12110220'))
  assert a == b and a.id == b.id and len(a.layers) == 6
  assert nas_bench_macro.key(SPACE.encode(a)) == '12110220'
  assert len({SPACE.decode(nas_bench_macro.indices(f'{i:08d}')).id
              for i in (0, 10, 100, 1000)}) == 4  # Identities that project stay.


def test_load_refuses_what_is_not_the_benchmark(tmp_path):
  with pytest.raises(DataError, match='does not exist'):
    nasbench.load_macro(str(tmp_path / 'missing.json'))
  bad = tmp_path / 'bad.json'
  bad.write_text(json.dumps({'0123': {'test_acc': [1], 'params': 1, 'flops': 1}}))
  with pytest.raises(DataError, match="key '0123'"):
    nasbench.load_macro(str(bad))
