"""The pipeline (mnas.search.pipeline).

Stage order and skipping, resuming, scaling the references.
"""
import json
import os

import ml_collections
import pytest

import conftest
import search_spaces
from mnas.errors import ConfigError
from mnas.search import pipeline


def macs_ms(arch):
  return conftest.macs_ms(arch, 10)


def test_stages_are_checked():
  assert pipeline.check_stages(['search', 'train']) == ('search', 'train')
  with pytest.raises(ConfigError, match="allowed: \\('search', 'netadapt'"):
    pipeline.check_stages(['search', 'finetune'])
  with pytest.raises(ConfigError, match='order'):
    pipeline.check_stages(['train', 'search'])


def test_complete_stages_are_skipped_and_a_failed_one_resumes(tmp_path, monkeypatch):
  calls = []

  def stage(name, fail=False):
    def fn(config, d, outputs, predictor):
      calls.append(name)
      assert os.path.isdir(d) and d == str(tmp_path / name)
      if fail:
        raise RuntimeError('killed')
      return {'arch': f'from {name}', 'seen': sorted(outputs)}
    return fn

  fns = {s: stage(s) for s in pipeline.STAGES}
  monkeypatch.setattr(pipeline, 'STAGE_FNS', dict(fns, train=stage('train', fail=True)))
  config = ml_collections.ConfigDict({'pipeline': ('search', 'netadapt', 'train', 'export')})
  with pytest.raises(RuntimeError, match='killed'):
    pipeline.run(config, str(tmp_path), predictor=object())
  assert calls == ['search', 'netadapt', 'train']
  assert not os.path.exists(tmp_path / 'train' / 'done.json')
  monkeypatch.setattr(pipeline, 'STAGE_FNS', fns)
  out = pipeline.run(config, str(tmp_path), predictor=object())
  assert calls == ['search', 'netadapt', 'train', 'train', 'export']  # Done stages skipped.
  assert out['export']['seen'] == ['netadapt', 'search', 'train']
  with open(tmp_path / 'search' / 'done.json') as f:
    assert json.load(f)['arch'] == 'from search'


def test_netadapt_without_search_needs_a_seed():
  config = ml_collections.ConfigDict({'netadapt': {'seed': ''}, 'resolution': 32})
  with pytest.raises(ConfigError, match='netadapt.seed'):
    pipeline._seed(config, {})
  config.netadapt.seed = 'mobilenet_v3_small'
  assert pipeline._seed(config, {}) == search_spaces.get_reference('mobilenet_v3_small', 1.0, 32)


@pytest.mark.parametrize('name', ['mobilenet_v3_small', 'mobilenet_v3_large', 'mnasnet_a1'])
def test_references_are_scaled_to_the_latency_target(name):
  target = macs_ms(search_spaces.get_reference('mobilenet_v3_small', 1.0, 64))
  grid = tuple(m / 20 for m in range(2, 41))
  arch = pipeline.scale_to_latency(name, target, macs_ms, 64, grid)
  assert macs_ms(arch) <= target
  k = grid.index(arch.width_multiplier)
  if k + 1 < len(grid):  # The next wider one would miss the target.
    assert macs_ms(search_spaces.get_reference(name, grid[k + 1], 64)) > target
  tiny = pipeline.scale_to_latency(name, 1e-9, macs_ms, 64, grid)
  assert tiny.width_multiplier == grid[0]  # Nothing meets it: the narrowest.


def test_format_table():
  row = dict(model='found', width_multiplier=1.0, accuracy=0.5, measured_ms=1.0, predicted_ms=0.9,
             params=1234, macs=5.6e6, arch='...')
  text = pipeline.format_table([row], 1.0, 'xla-cpu', 'test')
  assert '| found | 1 | 0.5000 | 1.0000 | 0.9000 | 1,234 | 5.60M |' in text
