"""Export (mnas.export): architecture files, the orbax checkpoint, the LiteRT flatbuffer."""
import json

import jax
import numpy as np
import pytest

from mnas import export, models
from mnas.space import Architecture, parse

ARCH = parse('r32_w1_sev3 stem_c8_hs ir_r1_k3_s2_x24_c16_se0.25_hs ir_r1_k5_s1_x32_c16_relu '
             'head_c32_hs_pool_c48_hs')


def _trained_like_variables(arch, seed=0):
  """Random weights with non-trivial batch-norm statistics (as after training)."""
  v = jax.tree.map(np.asarray, models.init_variables(models.build_model(arch, 10), seed))
  rng = np.random.default_rng(seed)
  def perturb(path, x):
    name = str(getattr(path[-1], 'key', path[-1]))
    if name == 'var':
      return rng.uniform(0.5, 2.0, x.shape).astype(x.dtype)
    if name in ('mean', 'bias', 'scale'):
      return (x + rng.normal(0, 0.2, x.shape)).astype(x.dtype)
    return x
  return jax.tree_util.tree_map_with_path(perturb, v)


def test_export_without_flatbuffer_writes_arch_and_checkpoint(tmp_path):
  v = _trained_like_variables(ARCH)
  out = export.export(ARCH, v, str(tmp_path), 10, tflite=False)
  with open(tmp_path / 'arch.json') as f:
    assert Architecture.from_json(json.load(f)) == ARCH
  assert (tmp_path / 'arch.txt').read_text().strip() == str(ARCH)
  restored = export.load_checkpoint(out['checkpoint'])
  jax.tree.map(np.testing.assert_array_equal, restored, v)
  assert json.loads((tmp_path / 'export.json').read_text())['params'] == out['params']


def test_flatbuffer_matches_the_flax_model(tmp_path):
  pytest.importorskip('ai_edge_litert')
  pytest.importorskip('litert_converter')
  v = _trained_like_variables(ARCH)
  out = export.export(ARCH, v, str(tmp_path), 10)
  check = out['tflite_check']
  assert check['match'] and check['max_rel_diff'] < 1e-4, check
  # Independently of check_tflite: the interpreter against the Flax model on fresh inputs.
  from ai_edge_litert.interpreter import Interpreter
  it = Interpreter(model_path=str(tmp_path / 'model.tflite'))
  it.allocate_tensors()
  model = models.build_model(ARCH, 10)
  x = np.random.default_rng(7).normal(size=(1, 32, 32, 3)).astype(np.float32)
  it.set_tensor(it.get_input_details()[0]['index'], x)
  it.invoke()
  y = it.get_tensor(it.get_output_details()[0]['index'])
  np.testing.assert_allclose(y, model.apply(v, x), rtol=1e-4, atol=1e-4 * np.abs(y).max())
