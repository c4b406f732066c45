"""The one-shot (TuNAS) search loop end to end on the tiny embedded dataset: store rows,
warm-up and RL phases, the final architecture, report, and resume after a stop."""
import json
import os

import numpy as np
import pytest

from conftest import MacsPredictor
from experiments import tunas_proxylessnas
from mnas.search import oneshot, store as store_lib


def _config(data_dir, steps=8):  # data_dir: the tiny dataset (tests/conftest.py).
  c = tunas_proxylessnas.get_config('cpu')
  c.space, c.resolution, c.num_steps = 'tiny', 32, steps
  c.reward.target_ms = 3.0  # MACs in millions (MacsPredictor): the tiny space spans ~1-10.
  c.train.update(dataset='mnas_shapes/tiny', data_dir=data_dir, holdout=100, batch_size=16,
                 data_threads=1)
  c.oneshot.update(log_every_steps=2, checkpoint_every_steps=4, final_eval_batches=2)
  return c


def test_oneshot_search_records_rl_steps_and_writes_the_final_architecture(data_dir, tmp_path):
  workdir = str(tmp_path)
  summary = oneshot.run(_config(data_dir), workdir, predictor=MacsPredictor())
  assert summary['steps'] == summary['total_steps'] == 8
  rows = store_lib.Store(os.path.join(workdir, 'results.sqlite')).finished(oneshot.STAGE)
  # No controller updates in the first 25% of the steps (TuNAS): RL rows from step 2 on,
  # one per device (one CPU device here).
  assert sorted(r['step'] for r in rows) == list(range(2, 8))
  for r in rows:
    assert 0.0 <= r['accuracy'] <= 1.0 and r['latency_ms'] > 0 and r['params'] > 0
    assert r['reward'] == pytest.approx(r['accuracy'] - 0.1 * abs(r['latency_ms'] / 3.0 - 1))
  with open(os.path.join(workdir, 'best_arch.json')) as f:
    best = json.load(f)
  with open(os.path.join(workdir, 'oneshot.json')) as f:
    assert json.load(f)['status'] == 'done'
  import search_spaces
  arch = search_spaces.load_arch(os.path.join(workdir, 'best_arch.json'))
  assert str(arch) == best['arch'] and arch.resolution == 32
  assert set(best['probabilities']) == {d.name for d in search_spaces.get_space('tiny').decisions}
  assert oneshot.report(workdir)['arch'] == best['arch']
  assert os.path.exists(os.path.join(workdir, 'pareto.png'))


def test_oneshot_search_resumes_where_it_stopped(data_dir, tmp_path):
  """Stopped by max_seconds after its first step (checkpointed), then run again: the same
  samples, rewards and final architecture as an uninterrupted run."""
  full = str(tmp_path / 'full')
  oneshot.run(_config(data_dir), full, predictor=MacsPredictor())
  part = str(tmp_path / 'part')
  cfg = _config(data_dir)
  cfg.oneshot.max_seconds = 1e-6
  stopped = oneshot.run(cfg, part, predictor=MacsPredictor())
  assert stopped['steps'] == 1 and 'best' not in stopped
  assert not os.path.exists(os.path.join(part, 'best_arch.json'))
  resumed = oneshot.run(_config(data_dir), part, predictor=MacsPredictor())
  assert resumed['steps'] == 8
  rows = {w: store_lib.Store(os.path.join(w, 'results.sqlite')).finished(oneshot.STAGE)
          for w in (full, part)}
  key = lambda r: (r['step'], r['slot'], r['arch_id'])
  assert [key(r) for r in rows[part]] == [key(r) for r in rows[full]]
  np.testing.assert_allclose([r['reward'] for r in rows[part]],
                             [r['reward'] for r in rows[full]], rtol=1e-5)
  best = [json.load(open(os.path.join(w, 'best_arch.json'))) for w in (full, part)]
  assert best[0]['arch'] == best[1]['arch']


@pytest.mark.parametrize('field', ['oneshot.rl_delay_fraction', 'train.weight_decay', 'seed'])
def test_a_config_missing_a_field_fails_naming_it(data_dir, tmp_path, field):
  from mnas.errors import ConfigError
  c = _config(data_dir)
  *parents, name = field.split('.')
  block = c
  for p in parents:
    block = block[p]
  del block[name]
  expected = {'train.weight_decay': 'config.train has no field weight_decay:'}.get(
      field, f'config has no field {field}:')
  with pytest.raises(ConfigError, match=expected):
    oneshot.run(c, str(tmp_path / 'run'), predictor=MacsPredictor())
  assert not os.path.exists(tmp_path / 'run')
