"""The search loop: store rows, reuse, failures, resume (in-process; kill -9 in test_resume)."""
import os

import numpy as np
import pytest

from conftest import MacsPredictor, fake_proxy
from experiments import search_common
from mnas import checkpoints, rewards, search
from mnas.errors import ConfigError, DataError
from mnas import workdir
from mnas.search import multi_trial, results, screening, store as store_lib
from mnas.search.evaluation import WorkdirMismatchError


def config(controller='reinforce', steps=4, per_step=4):
  c = search_common.base_config()
  c.space = 'tiny'
  c.controller = controller
  c.reward.kind = 'mnasnet_soft'
  c.reward.target_ms = 5.0
  c.num_steps = steps
  c.candidates_per_step = per_step
  c.num_classes = 10
  c.pareto_every_steps = 0  # No images (~4 s each step they are drawn): test_tensorboard has them.
  return c


def slots(rows):
  return sorted((r['step'], r['slot']) for r in rows)


def every_slot(steps, per_step):
  return [(s, k) for s in range(steps) for k in range(per_step)]


def run(cfg, workdir, proxy=fake_proxy):
  return multi_trial.run(cfg, str(workdir), proxy=proxy, predictor=MacsPredictor())


@pytest.mark.parametrize('controller', ['random', 'evolution', 'reinforce', 'mnasnet'])
def test_search_records_every_candidate(tmp_path, controller):
  out = run(config(controller), tmp_path)
  store = store_lib.Store(str(tmp_path / 'results.sqlite'))
  rows = store.finished()
  assert len(rows) == 16 and store.count('running') == 0
  assert {r['status'] for r in rows} <= {'done', 'failed', 'reused'}
  assert slots(rows) == every_slot(4, 4)
  assert out['best']['reward'] == max(r['reward'] for r in rows if r['status'] != 'failed')
  for r in rows:
    assert r['params'] > 0 and r['macs'] > 0 and r['latency_ms'] > 0
    assert r['finished'] >= r['started']
  assert os.path.isdir(tmp_path / 'hparams')


def test_duplicates_are_reused_not_retrained(tmp_path):
  calls = []
  def train(arch):
    calls.append(arch.id)
    return fake_proxy(arch)
  run(config('random', steps=6, per_step=4), tmp_path, train)
  rows = store_lib.Store(str(tmp_path / 'results.sqlite')).finished()
  assert len(calls) == len(set(calls))
  reused = [r for r in rows if r['status'] == 'reused']
  assert len(calls) + len(reused) == 24


def test_failing_and_crashing_candidates_do_not_stop_the_search(tmp_path):
  def train(arch):
    if arch.describe_layers()[0]['cout'] == 16:
      raise RuntimeError('out of memory')
    return fake_proxy(arch)
  cfg = config('random', steps=3, per_step=4)
  cfg.failure_reward = -1.0
  run(cfg, tmp_path, train)
  rows = store_lib.Store(str(tmp_path / 'results.sqlite')).finished()
  failed = [r for r in rows if r['status'] == 'failed']
  assert len(rows) == 12 and failed
  assert all(r['reward'] == -1.0 and r['reason'] for r in failed)
  assert any('out of memory' in r['reason'] for r in failed)


def test_latency_skip(tmp_path):
  cfg = config('random', steps=2, per_step=4)
  cfg.max_latency_ms = 1e-6
  run(cfg, tmp_path)
  rows = store_lib.Store(str(tmp_path / 'results.sqlite')).finished()
  assert all(r['status'] == 'failed' and 'skipped' in r['reason'] for r in rows)


def test_resume_continues_without_duplicates(tmp_path):
  run(config('reinforce', steps=2), tmp_path)
  # The controller checkpoint restores (a failed restore would silently replay from step 0).
  import jax
  import search_spaces
  from mnas import controllers
  cfg = config('reinforce', steps=2)
  ctl = controllers.make_controller(cfg.controller, search_spaces.get_space(cfg.space).num_options,
                                    **dict(cfg.controller_kwargs[cfg.controller]))
  restored = checkpoints.Checkpointer(str(tmp_path / 'controller')).restore(
      ctl.init(jax.random.key(0)))
  assert restored is not None and restored[0] == 2
  calls = []
  def train(arch):
    calls.append(arch)
    return fake_proxy(arch)
  run(config('reinforce', steps=4), tmp_path, train)
  rows = store_lib.Store(str(tmp_path / 'results.sqlite')).finished()
  assert slots(rows) == every_slot(4, 4)
  assert all(r['step'] >= 2 for r in store_lib.Store(str(tmp_path / 'results.sqlite')).rows()
             if r['row'] > 8)


def test_report(tmp_path, capsys):
  run(config('random', steps=2), tmp_path)
  best = results.report(str(tmp_path))
  text = capsys.readouterr().out
  assert 'Pareto front' in text and best['arch'] in text
  assert (tmp_path / 'pareto.png').exists() and (tmp_path / 'best_arch.json').exists()
  import search_spaces
  assert search_spaces.load_arch(str(tmp_path / 'best_arch.json')).id == best['id']


def test_pareto_front():
  rows = [dict(latency_ms=1, accuracy=0.5), dict(latency_ms=2, accuracy=0.4),
          dict(latency_ms=3, accuracy=0.7), dict(latency_ms=0.5, accuracy=0.1)]
  assert [r['latency_ms'] for r in results.pareto_front(rows)] == [0.5, 1, 3]


def test_max_seconds_stops_after_a_step_and_the_rerun_finishes(tmp_path):
  cfg = config('random', steps=3, per_step=2)
  cfg.max_seconds = 1e-6
  out = run(cfg, tmp_path)
  assert out['evaluations'] == 2  # One step: the limit is checked between steps.
  run(config('random', steps=3, per_step=2), tmp_path)
  rows = store_lib.Store(str(tmp_path / 'results.sqlite')).finished()
  assert slots(rows) == every_slot(3, 2)


def test_a_stored_row_is_reused_only_for_the_architecture_sampled(tmp_path):
  calls = []
  def interrupted(arch):
    calls.append(arch)
    if len(calls) == 7:  # Step 1, slot 2: killed mid-step.
      raise KeyboardInterrupt
    return fake_proxy(arch)
  with pytest.raises(KeyboardInterrupt):
    run(config('random', steps=3), tmp_path, interrupted)
  before = store_lib.Store(str(tmp_path / 'results.sqlite')).rows()
  cfg = config('random', steps=3)
  cfg.seed = 1  # Another search: step 1 samples other architectures than the stored ones.
  with pytest.raises(WorkdirMismatchError, match='step 1 slot 0 holds'):
    run(cfg, tmp_path)
  assert store_lib.Store(str(tmp_path / 'results.sqlite')).rows() == before
  run(config('random', steps=3), tmp_path)  # The same search resumes.
  rows = store_lib.Store(str(tmp_path / 'results.sqlite')).finished()
  assert slots(rows) == every_slot(3, 4)


def test_the_workdir_records_its_method_and_report_reads_it(tmp_path, capsys):
  search.run(config('random', steps=1), str(tmp_path), proxy=fake_proxy, predictor=MacsPredictor())
  assert workdir.read_kind(str(tmp_path)) == 'multi_trial'
  assert search.report(str(tmp_path))['arch'] in capsys.readouterr().out
  with pytest.raises(ConfigError, match='holds a multi_trial run, not a oneshot one'):
    workdir.check(str(tmp_path), 'oneshot', config('random', steps=1))
  old = tmp_path / 'old'
  old.mkdir()
  store_lib.Store(str(old / 'results.sqlite')).close()  # What mnas wrote before workdir.json.
  with pytest.raises(DataError, match='older mnas'):
    search.run(config('random', steps=1), str(old), proxy=fake_proxy, predictor=MacsPredictor())


def test_a_relative_latency_target_is_a_quantile_of_the_space_and_is_kept(tmp_path):
  """reward.target_quantile: T is that quantile of the space's predicted latencies (checked
  on 2,000 other uniform samples), the rewards use it, and a resumed search reads it back."""
  import json
  import numpy as np
  import search_spaces
  from mnas import rewards
  from mnas.search import target
  cfg = config('random', steps=2, per_step=3)
  cfg.reward.target_quantile = 0.25
  search.run(cfg, str(tmp_path), proxy=fake_proxy, predictor=MacsPredictor())
  record = json.loads((tmp_path / target.FILE).read_text())
  t = record['target_ms']
  assert record['quantile'] == 0.25 and record['samples'] == 200 and t != cfg.reward.target_ms
  space = search_spaces.get_space('tiny')
  rng = np.random.default_rng(12345)
  others = MacsPredictor().predict_batch([space.sample(rng) for _ in range(2000)])
  # 200 samples: the standard error of a quantile's coverage is sqrt(.25 * .75 / 200) = 0.03.
  assert abs(np.mean(np.asarray(others) <= t) - 0.25) < 0.1
  reward = rewards.make_reward('mnasnet_soft', t)
  rows = store_lib.Store(str(tmp_path / 'results.sqlite')).finished()
  for r in rows:
    if r['status'] == 'done':
      assert r['reward'] == pytest.approx(float(reward(r['accuracy'], r['latency_ms'])))
  # Resumed with more steps: T is read back, not recomputed (the record wins).
  (tmp_path / target.FILE).write_text(json.dumps(dict(record, target_ms=2 * t)))
  cfg.num_steps = 3
  search.run(cfg, str(tmp_path), proxy=fake_proxy, predictor=MacsPredictor())
  last = [r for r in store_lib.Store(str(tmp_path / 'results.sqlite')).finished()
          if r['step'] == 2 and r['status'] == 'done']
  two_t = rewards.make_reward('mnasnet_soft', 2 * t)
  assert last and all(r['reward'] == pytest.approx(float(two_t(r['accuracy'], r['latency_ms'])))
                      for r in last)


def test_the_next_candidate_is_prepared_while_one_runs_its_proxy(tmp_path):
  """Evaluator.evaluate_all: while a candidate runs the proxy, the proxy prepares (the
  training proxy compiles) the next one if that one will run it too; not one it reuses; at
  once when the current one does not run it. Evaluator.prepare: at once (a step's first
  candidate, while its latency is measured)."""
  import numpy as np
  import search_spaces
  from mnas.search.evaluation import Candidate, Evaluator, Outcome
  calls = []

  class Proxy:
    def prepare(self, arch, now=False):
      calls.append(('prepare now' if now else 'prepare', arch.id))

    def __call__(self, arch):
      calls.append(('run', arch.id))
      return Outcome('done', 0.5)
  space = search_spaces.get_space('tiny')
  a, b, c, d = (space.sample(np.random.default_rng(i)) for i in range(4))
  evaluator = Evaluator(store_lib.Store(str(tmp_path / 'results.sqlite')), proxy=Proxy())
  cands = [Candidate(0, a), Candidate(1, b), Candidate(2, a), Candidate(3, c)]
  assert [x.status for x in evaluator.evaluate_all(0, cands)] == ['done', 'done', 'reused',
                                                                  'done']
  assert calls == [('prepare', b.id), ('run', a.id), ('run', b.id),  # a reused: c at once.
                   ('prepare now', c.id), ('run', c.id)]
  evaluator.prepare(1, Candidate(0, a))  # Reused: nothing to prepare.
  evaluator.prepare(1, Candidate(0, d))
  assert calls[5:] == [('prepare now', d.id)]


def test_the_training_proxy_compiles_the_next_candidate_after_the_first_step(monkeypatch):
  """TrainProxy: `prepare(arch)` compiles it once the current run's first step is done, once;
  a run that fails before its first step does not hand it on to a later run."""
  import threading
  from mnas import train
  from mnas.search.evaluation import Outcome
  compiled, done = [], threading.Event()

  def compile_ahead(arch, config, devices):
    compiled.append(arch)
    done.set()

  def train_candidate(arch, config, workdir, seed, budget_steps, callbacks, devices):
    if arch == 'fails':
      raise RuntimeError('before its first step')
    assert not compiled  # Nothing before the first step.
    for step in (1, 2, 3):
      for cb in callbacks:
        cb(step, {})
    return Outcome('done', 0.5)
  monkeypatch.setattr(train, 'compile_ahead', compile_ahead)
  monkeypatch.setattr(train, 'train_candidate', train_candidate)
  proxy = multi_trial.TrainProxy(search_common.base_config().train, seed=0)
  proxy.prepare('next')
  proxy('current')
  assert done.wait(10) and compiled == ['next']
  proxy.prepare('stale')
  with pytest.raises(RuntimeError):
    proxy('fails')
  compiled.clear()
  proxy('later')
  assert compiled == []


def test_screening_trains_the_best_predicted_of_k_samples(tmp_path):
  """config.screen: a predictor fitted on an earlier search's store screens 3 x 4 samples a
  step down to the 4 of best predicted reward (distinct first); without a predictor the
  config is refused before any work."""
  run(config('random', steps=3), tmp_path / 'earlier')
  c = config('random', steps=2)
  c.screen.factor = 3
  with pytest.raises(ConfigError, match='config.screen.predictor'):
    run(c, tmp_path / 'refused')
  assert not os.path.exists(tmp_path / 'refused' / 'results.sqlite')
  c.screen.predictor = str(tmp_path / 'earlier' / 'results.sqlite')
  predict = screening.predictor_for(c)
  seen = []
  def screen(archs):
    seen.append(list(archs))
    return predict(archs)
  multi_trial.run(c, str(tmp_path / 'screened'), proxy=fake_proxy, predictor=MacsPredictor(),
                  screen=screen)
  rows = store_lib.Store(str(tmp_path / 'screened' / 'results.sqlite')).finished()
  assert len(seen) == 2 and all(len(s) == 12 for s in seen) and len(rows) == 8
  reward = rewards.from_config(c.reward)
  for step, archs in enumerate(seen):  # No architecture left out predicts a higher reward.
    scores = reward(predict(archs), np.asarray(MacsPredictor(10).predict_batch(archs)))
    score = {a.id: float(v) for a, v in zip(archs, scores)}
    kept = {r['arch_id'] for r in rows if r['step'] == step}
    assert len(kept) == min(4, len(score))
    assert min(score[k] for k in kept) >= max([score[o] for o in set(score) - kept] or [0])


def test_screening_selects_distinct_best_first():
  archs = [type('A', (), {'id': i})() for i in 'aabcd']
  keep = screening.select(archs, [1.0] * 5, [0.9, 0.9, 0.8, 0.1, 0.5], lambda a, lat: a, 3)
  assert list(keep) == [0, 2, 4]  # a (once), b, d; the second a only if nothing else is left.
  assert list(screening.select(archs[:2], [1.0] * 2, [0.9, 0.9], lambda a, lat: a, 2)) == [0, 1]


def test_best_arch_json_carries_its_search_context_and_describe_and_predict_use_it(
    tmp_path, capsys):
  """best_arch.json records the search's classes and latency table (with its settings):
  `describe` counts the classifier for 10 classes, not 1000; `latency predict` with the
  plain latency config predicts on the search's table instead of building another."""
  import search_spaces
  from experiments import latency as latency_config
  from mnas import counting, jsonfile, latency
  from mnas.latency import cli as latency_cli
  cfg = config('random', steps=1)
  search.run(cfg, str(tmp_path), proxy=fake_proxy, predictor=MacsPredictor())
  search.report(str(tmp_path))
  path = str(tmp_path / 'best_arch.json')
  context = jsonfile.read(path)['context']
  assert (context['space'], context['num_classes'], context['dataset']) == ('tiny', 10,
                                                                           cfg.train.dataset)
  arch = search_spaces.load_arch(path)
  assert counting.main(path)['params'] == counting.count(arch, 10)['params']
  assert counting.main(path, num_classes=1000)['num_classes'] == 1000
  # The search's table (what its predictor built on first use), with known entries.
  space = search_spaces.get_space('tiny')
  table = latency.new_table(space, 'xla-cpu', latency.Settings.from_config(cfg.latency),
                            resolution=arch.resolution, path=context['latency']['table'])
  keys = latency.arch_keys(arch, cfg.latency.num_classes)  # The table's own classes.
  for k in keys:
    table.add(k, dict(median=0.25, iqr=0.0))
  table.calibration = dict(overhead_ms=0.5)
  table.meta['complete'] = True
  table.save()
  out = latency_cli.main('predict', latency_config.get_config(), str(tmp_path / 'other'), path)
  assert out['predicted_ms'] == pytest.approx(0.25 * len(keys) + 0.5)
  assert not os.path.exists(tmp_path / 'other' / 'latency_xla-cpu_tiny_r64_w1.json')


def test_a_target_below_the_tables_constant_overhead_is_said(tmp_path, caplog):
  """Every prediction includes the table's overhead: a target under it cannot be met."""
  class WithOverhead(MacsPredictor):
    overhead_ms = 10.0  # Above config's target_ms = 5.
  multi_trial.run(config('random', steps=1, per_step=1), str(tmp_path), proxy=fake_proxy,
                  predictor=WithOverhead())
  assert any('at or below the latency table\'s constant overhead (10 ms' in r.getMessage()
             for r in caplog.records if r.levelname == 'WARNING')
