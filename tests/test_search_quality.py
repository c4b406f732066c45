"""benchmarks/search_quality.py: random's closed form against brute force, the harness on a
synthetic table (no data file), and a small run on NAS-Bench-Macro when its file is there."""

import itertools
import json
import os
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'benchmarks'))

import search_quality as sq  # noqa: E402
from mnas import nasbench  # noqa: E402

MACRO = os.path.join(REPO, '..', 'shared', 'benchmarks', 'nas-bench-macro',
                     'nas-bench-macro_cifar10.json')


def synthetic_table(num_options=(3, 3, 3, 3), seeds=3, seed=0) -> nasbench.Table:
  """Every architecture of a small space, accuracy additive in the options plus noise per
  training seed, rounded so that some values tie (as the real table's do)."""
  r = np.random.default_rng(seed)
  indices = np.array(list(itertools.product(*[range(k) for k in num_options])), np.int32)
  util = [r.normal(0, 0.01, k) for k in num_options]
  base = 0.85 + sum(util[d][indices[:, d]] for d in range(len(num_options)))
  acc = np.round(base[:, None] + r.normal(0, 0.003, (len(indices), seeds)), 3)
  flops = (1 + indices.sum(1)) * 10_000_000
  return nasbench.Table(path='synthetic', keys=tuple(''.join(map(str, i)) for i in indices),
                        indices=indices, accuracy=acc, params=flops // 10, flops=flops)


def brute_force(seen, true, n):
  """E[true of the best seen], E[true^2], P(optimal), by enumerating every sequence of n
  draws of (row, column); the first drawn wins ties."""
  pairs = [(i, j) for i in range(seen.shape[0]) for j in range(seen.shape[1])]
  opt = true.max()
  m1 = m2 = found = 0.0
  for seq in itertools.product(pairs, repeat=n):
    best = max(range(n), key=lambda k: (seen[seq[k]], -k))
    t = true[seq[best][0]]
    m1, m2, found = m1 + t, m2 + t * t, found + (t >= opt)
  total = len(pairs) ** n
  return m1 / total, m2 / total - (m1 / total) ** 2, found / total


@pytest.mark.parametrize('columns', [1, 2])
def test_random_closed_form_matches_brute_force(columns):
  r = np.random.default_rng(1)
  true = np.array([0.1, 0.5, 0.5, 0.2, 0.9, 0.3])
  # Seen values with ties, across rows and columns, and a best seen that is not the best.
  seen = (true[:, None] + np.round(r.normal(0, 0.3, (6, columns)), 1) if columns > 1
          else true[:, None].copy())
  seen[1, 0] = seen[3, -1]
  closed = sq.random_closed_form(seen, true, 3)
  for n in (1, 2, 3):
    mean, var, found = brute_force(seen, true, n)
    assert closed['mean'][n - 1] == pytest.approx(mean, abs=1e-12)
    assert closed['var'][n - 1] == pytest.approx(var, abs=1e-12)
    assert closed['found'][n - 1] == pytest.approx(found, abs=1e-12)


def test_random_closed_form_median():
  true = np.arange(10, dtype=np.float64)
  closed = sq.random_closed_form(true[:, None], true, 5)
  # Best of N uniform over 0..9: P(best <= k) = ((k + 1) / 10)^N; the median is the smallest
  # k with that >= 1/2.
  for n in range(1, 6):
    assert closed['median'][n - 1] == min(k for k in range(10) if ((k + 1) / 10) ** n >= 0.5)


def test_best_so_far_first_best_seen_wins():
  seen = np.array([[0.1], [0.5], [0.5], [0.9]])
  true = np.array([0.2, 0.4, 0.6, 0.1])
  rows = np.array([[0, 2, 1, 3]])
  best = sq.best_so_far(rows, np.zeros_like(rows), seen, true)
  np.testing.assert_array_equal(best, [[0.2, 0.6, 0.6, 0.1]])


@pytest.mark.parametrize('noise', [False, pytest.param(True, marks=pytest.mark.slow)])
def test_harness_on_synthetic_table(noise):  # Noisy: ~25 s more, with -m slow.
  table = synthetic_table()
  lat = 1.0 + table.flops / 1e7  # ms: a stand-in for a table of this space
  names = ['random', 'evolution', 'reinforce']
  hps = {n: sq.SHORT_BUDGET[n] for n in names}
  seeds, budgets = list(range(60)), [5, 10, 30]
  results = sq.evaluate(table, lat, names, hps, seeds, budgets, noise, log=lambda *a: None)
  stats = sq.budget_stats(results, budgets, len(seeds))
  assert len(results) == 5
  for sname, res in results.items():
    truth = res['setting']['true']
    assert res['optimum'] == truth.max()
    for run in res['runs'].values():
      assert run['regret'].shape == (len(seeds), max(budgets))
      assert np.all(run['regret'] >= 0)
      # Best so far: its true reward only changes when the seen best changes; with the mean
      # seen it never decreases.
      if not noise:
        assert np.all(np.diff(run['best'], axis=1) >= 0)
    check = stats[sname]['check']
    for b in budgets:  # Measured random agrees with its closed form.
      assert abs(check[b]['z']) <= sq.CHECK_SIGMAS, (sname, b, check[b])
    # An additive landscape of 81 architectures: for the rewards of the bar (not TuNAS's
    # abs reward, rugged around its target), the learning controllers' mean regret at 30
    # samples is at most half of random's (measured: 0.17-0.38 of it).
    table_b = stats[sname]['table']
    if res['setting']['kind'] in sq.BAR_KINDS:
      for name in ('evolution', 'reinforce'):
        assert table_b[name][30]['mean'] <= 0.5 * table_b['random'][30]['mean'], (sname, name)
  ok, _, _ = sq.verdicts(stats, results, names)
  assert ok


def test_closed_form_check_fails_on_a_biased_sampler():
  """The check is not vacuous: a 'random' search that never proposes the best rows fails."""
  table = synthetic_table()
  lat = 1.0 + table.flops / 1e7  # ms: a stand-in for a table of this space
  results = sq.evaluate(table, lat, ['random'], {'random': sq.SHORT_BUDGET['random']},
                        list(range(60)), [10], False, log=lambda *a: None)
  for res in results.values():
    true, run = res['setting']['true'], res['runs']['random']
    worst = true <= np.quantile(true, 0.9)
    run['best'] = np.minimum(run['best'], true[worst].max())
  stats = sq.budget_stats(results, [10], 60)
  ok, _, lines = sq.verdicts(stats, results, ['random'])
  assert not ok and 'CLOSED-FORM CHECK FAILED' in lines[0]


def test_missing_file_is_one_clear_error(tmp_path, capsys):
  assert sq.main(['--nas_bench_macro', str(tmp_path / 'nope.json'),
                  '--workdir', str(tmp_path)]) == 2
  assert 'does not exist' in capsys.readouterr().err
  with pytest.raises(SystemExit):
    sq.main(['--workdir', str(tmp_path)])  # --nas_bench_macro is required.


@pytest.mark.slow  # ~16 s: the script run by hand; its harness is tested on synthetic tables.
@pytest.mark.skipif(not os.path.isfile(MACRO),
                    reason=f'NAS-Bench-Macro file not found at {MACRO}')
def test_small_benchmark_on_nas_bench_macro(tmp_path, capsys):
  code = sq.main(['--nas_bench_macro', MACRO, '--seeds', '6', '--budgets', '10,20',
                  '--workdir', str(tmp_path)])
  out = capsys.readouterr().out
  assert code == 0, out
  assert 'closed-form check of random: ok' in out and 'not measured' in out
  for name in sq.CONTROLLERS:
    assert f'\n{name:<10}' in out
  with open(tmp_path / 'results.json') as f:
    res = json.load(f)
  assert set(res['settings']) == {'accuracy', 'mnasnet_soft@p25', 'mnasnet_soft@p50',
                                  'tunas_abs@p25', 'tunas_abs@p50'}
  acc = res['settings']['accuracy']
  assert acc['optimum'] == pytest.approx(0.93126663, abs=1e-6)
  assert len(acc['curves']['mnasnet']['mean']) == 20
  assert (tmp_path / 'search_quality.png').stat().st_size > 0
  assert os.listdir(tmp_path / 'tensorboard')
