"""The search loop: store rows, reuse, failures, resume (in-process; kill -9 in test_resume)."""
import dataclasses
import os

import ml_collections
import numpy as np
import pytest

from mnas import counting, search, store as store_lib


@dataclasses.dataclass
class Result:
  status: str
  reason: str | None
  val_accuracy: float | None


class MacsPredictor:
  """Latency stand-in for loop tests: proportional to MACs."""

  def predict_batch(self, archs):
    return [counting.count(a)['macs'] / 1e6 for a in archs]


def fake_train(arch):
  """Accuracy grows with width and kernel; one architecture family diverges."""
  rows = arch.describe_layers()
  if rows[0]['kernel'] == 7 and rows[0]['cout'] == 24:
    return Result('failed', 'loss is NaN at step 3', None)
  acc = 0.3 + 0.001 * sum(r['cout'] for r in rows) + 0.01 * sum(r['kernel'] for r in rows) / 10
  return Result('done', None, min(acc, 0.99))


def config(controller='reinforce', steps=4, per_step=4):
  c = ml_collections.ConfigDict()
  c.space = 'tiny'
  c.controller = controller
  c.controller_kwargs = {}
  c.reward = ml_collections.ConfigDict({'kind': 'mnasnet_soft', 'target_ms': 5.0, 'params': {}})
  c.num_steps = steps
  c.candidates_per_step = per_step
  c.failure_reward = 0.0
  c.seed = 0
  c.num_classes = 10
  c.max_latency_ms = None
  c.pareto_every_steps = 2
  c.hparams_per_candidate = True
  return c


@pytest.mark.parametrize('controller', ['random', 'evolution', 'reinforce', 'mnasnet'])
def test_search_records_every_candidate(tmp_path, controller):
  out = search.run(config(controller), str(tmp_path), train_fn=fake_train, predictor=MacsPredictor())
  store = store_lib.Store(str(tmp_path / 'results.sqlite'))
  rows = store.finished()
  assert len(rows) == 16 and store.count('running') == 0
  assert {r['status'] for r in rows} <= {'done', 'failed', 'reused'}
  assert sorted((r['step'], r['slot']) for r in rows) == [(s, k) for s in range(4) for k in range(4)]
  assert out['best']['reward'] == max(r['reward'] for r in rows if r['status'] != 'failed')
  for r in rows:
    assert r['params'] > 0 and r['macs'] > 0 and r['latency_ms'] > 0 and r['finished'] >= r['started']
  assert os.path.isdir(tmp_path / 'tensorboard' / 'hparams')


def test_duplicates_are_reused_not_retrained(tmp_path):
  calls = []
  def train(arch):
    calls.append(arch.id)
    return fake_train(arch)
  search.run(config('random', steps=6, per_step=4), str(tmp_path), train_fn=train,
             predictor=MacsPredictor())
  rows = store_lib.Store(str(tmp_path / 'results.sqlite')).finished()
  assert len(calls) == len(set(calls))
  reused = [r for r in rows if r['status'] == 'reused']
  assert len(calls) + len(reused) == 24


def test_failing_and_crashing_candidates_do_not_stop_the_search(tmp_path):
  def train(arch):
    if arch.describe_layers()[0]['cout'] == 16:
      raise RuntimeError('out of memory')
    return fake_train(arch)
  cfg = config('random', steps=3, per_step=4)
  cfg.failure_reward = -1.0
  search.run(cfg, str(tmp_path), train_fn=train, predictor=MacsPredictor())
  rows = store_lib.Store(str(tmp_path / 'results.sqlite')).finished()
  failed = [r for r in rows if r['status'] == 'failed']
  assert len(rows) == 12 and failed
  assert all(r['reward'] == -1.0 and r['reason'] for r in failed)
  assert any('out of memory' in r['reason'] for r in failed)


def test_latency_skip(tmp_path):
  cfg = config('random', steps=2, per_step=4)
  cfg.max_latency_ms = 1e-6
  search.run(cfg, str(tmp_path), train_fn=fake_train, predictor=MacsPredictor())
  rows = store_lib.Store(str(tmp_path / 'results.sqlite')).finished()
  assert all(r['status'] == 'failed' and 'skipped' in r['reason'] for r in rows)


def test_resume_continues_without_duplicates(tmp_path):
  search.run(config('reinforce', steps=2), str(tmp_path), train_fn=fake_train, predictor=MacsPredictor())
  # The controller checkpoint restores (a failed restore would silently replay from step 0).
  import jax
  import search_spaces
  from mnas import controllers
  cfg = config('reinforce', steps=2)
  ctl = controllers.make_controller(cfg.controller, search_spaces.get_space(cfg.space).num_options,
                                    **dict(cfg.get('controller_kwargs', {})))
  template = {'state': ctl.init(jax.random.key(0)), 'step': np.zeros((), np.int64)}
  restored = search.ControllerCheckpoints(str(tmp_path / 'controller')).restore(template)
  assert restored is not None and int(restored['step']) == 2
  calls = []
  def train(arch):
    calls.append(arch)
    return fake_train(arch)
  search.run(config('reinforce', steps=4), str(tmp_path), train_fn=train, predictor=MacsPredictor())
  rows = store_lib.Store(str(tmp_path / 'results.sqlite')).finished()
  assert sorted((r['step'], r['slot']) for r in rows) == [(s, k) for s in range(4) for k in range(4)]
  assert all(r['step'] >= 2 for r in store_lib.Store(str(tmp_path / 'results.sqlite')).rows()
             if r['row'] > 8)


def test_report(tmp_path, capsys):
  search.run(config('random', steps=2), str(tmp_path), train_fn=fake_train, predictor=MacsPredictor())
  best = search.report(str(tmp_path))
  text = capsys.readouterr().out
  assert 'Pareto front' in text and best['arch'] in text
  assert (tmp_path / 'pareto.png').exists() and (tmp_path / 'best_arch.json').exists()
  import search_spaces
  assert search_spaces.load_arch(str(tmp_path / 'best_arch.json')).id == best['id']


def test_pareto_front():
  rows = [dict(latency_ms=1, accuracy=0.5), dict(latency_ms=2, accuracy=0.4),
          dict(latency_ms=3, accuracy=0.7), dict(latency_ms=0.5, accuracy=0.1)]
  assert [r['latency_ms'] for r in search.pareto_front(rows)] == [0.5, 1, 3]


def test_max_seconds_stops_after_a_step_and_the_rerun_finishes(tmp_path):
  cfg = config('random', steps=3, per_step=2)
  cfg.max_seconds = 1e-6
  out = search.run(cfg, str(tmp_path), train_fn=fake_train, predictor=MacsPredictor())
  assert out['evaluations'] == 2  # One step: the limit is checked between steps.
  search.run(config('random', steps=3, per_step=2), str(tmp_path), train_fn=fake_train,
             predictor=MacsPredictor())
  rows = store_lib.Store(str(tmp_path / 'results.sqlite')).finished()
  assert sorted((r['step'], r['slot']) for r in rows) == [(s, k) for s in range(3) for k in range(2)]
