"""mnas/pareto.py on hand-computed cases (every objective maximised); the controllers' jnp
version agrees with it; benchmarks/pareto_search.py runs."""

import importlib.util
import json
import os

import numpy as np
import pytest

from mnas import pareto

# Four points on a front, one point behind two of them, one behind everything, a duplicate.
POINTS = np.array([[1, 4], [2, 3], [3, 2], [4, 1],  # Front 0.
                   [1.5, 2.5],  # Dominated by [2, 3] only: front 1.
                   [0, 0],  # Dominated by all: front 2.
                   [2, 3]])  # Equal to point 1: not dominated by it, front 0.


def test_dominates():
  dom = pareto.dominates(POINTS)
  assert dom[1, 4] and not dom[4, 1]
  assert not dom[0, 1] and not dom[1, 0]  # Incomparable.
  assert not dom[1, 6] and not dom[6, 1]  # Equal points do not dominate each other.
  assert dom[:5, 5].all() and dom[6, 5] and not dom[5].any()
  assert not dom[3, 4] and not dom[0, 4]  # [4, 1] and [1, 4] vs [1.5, 2.5].
  assert pareto.dominates([[1, 1], [1, 0]])[0, 1]  # Better in one, equal in the other.


def test_ranks_and_fronts():
  np.testing.assert_array_equal(pareto.ranks(POINTS), [0, 0, 0, 0, 1, 2, 0])
  assert [f.tolist() for f in pareto.fronts(POINTS)] == [[0, 1, 2, 3, 6], [4], [5]]
  assert pareto.fronts(np.zeros((0, 2))) == []
  # Three objectives: [1, 1, 1] is dominated by [2, 2, 2] only.
  np.testing.assert_array_equal(
      pareto.ranks([[2, 2, 2], [1, 1, 1], [3, 0, 0], [0, 0, 3]]), [0, 1, 0, 0])


def test_front_drops_duplicates_and_sorts():
  np.testing.assert_array_equal(pareto.front(POINTS), [0, 1, 2, 3])
  np.testing.assert_array_equal(pareto.front([[3, 0], [1, 1], [1, 1], [2, 0.5]]),
                                [1, 3, 0])


def test_crowding_distance():
  # Objective 0 over [1, 4]: range 3; objective 1 over [1, 4]: range 3.
  d = pareto.crowding_distance(POINTS[:4])
  assert d[0] == d[3] == np.inf
  # Point [2, 3]: neighbours [1, 4] and [3, 2] in both objectives: 2/3 + 2/3.
  np.testing.assert_allclose(d[1:3], [4 / 3, 4 / 3])
  # Uneven gaps: [0, 10], [1, 9], [5, 1], [6, 0]: ranges 6 and 10.
  d = pareto.crowding_distance([[0, 10], [1, 9], [5, 1], [6, 0]])
  np.testing.assert_allclose(d[1:3], [5 / 6 + 9 / 10, 5 / 6 + 9 / 10])
  d = pareto.crowding_distance([[0, 10], [4, 9], [5, 1], [6, 0]])
  np.testing.assert_allclose(d[1:3], [5 / 6 + 9 / 10, 2 / 6 + 9 / 10])
  assert np.all(pareto.crowding_distance([[1, 1], [2, 0]]) == np.inf)
  # A constant objective adds nothing (no division by zero).
  np.testing.assert_allclose(pareto.crowding_distance([[0, 5], [1, 5], [3, 5]])[1], 3 / 3)


def test_hypervolume_2d():
  ref = [0, 0]
  assert pareto.hypervolume_2d([[2, 3]], ref) == 6
  # Staircase [1, 4], [2, 3], [3, 2], [4, 1]: 4 + 3 + 2 + 1 = 10.
  assert pareto.hypervolume_2d(POINTS[:4], ref) == 10
  # Dominated points and duplicates add nothing; order does not matter.
  assert pareto.hypervolume_2d(POINTS[::-1], ref) == 10
  # Another reference: boxes [1, 1]-p: [1, 4]: 0 wide; 1x2 + 1x1 + 1x0 = 3.
  assert pareto.hypervolume_2d(POINTS[:4], [1, 1]) == 3
  # Points below the reference in one objective add nothing.
  assert pareto.hypervolume_2d([[5, -1], [-1, 5], [2, 2]], [0, 0]) == 4
  assert pareto.hypervolume_2d(np.zeros((0, 2)), ref) == 0
  with pytest.raises(ValueError, match='reference'):
    pareto.hypervolume_2d([[1, 1]], [0, 0, 0])


def test_hypervolume_2d_matches_grid_count():
  rng = np.random.default_rng(0)
  p = rng.integers(0, 10, (12, 2))
  grid = np.stack(np.meshgrid(np.arange(10) + 0.5, np.arange(10) + 0.5), -1).reshape(-1, 2)
  covered = np.any(np.all(grid[:, None] <= p[None], -1), -1)
  assert pareto.hypervolume_2d(p, [0, 0]) == covered.sum()


def test_the_controllers_jax_version_agrees():
  jax = pytest.importorskip('jax')
  jnp = jax.numpy
  from mnas.controllers import evolution
  ranks = jax.jit(evolution.nondominated_ranks)
  crowding = jax.jit(evolution.crowding_distance)
  rng = np.random.default_rng(0)
  for trial in range(6):  # Integer points have ties; normal ones do not.
    f = (rng.integers(0, 5, (25, 2)) if trial % 2 else rng.normal(size=(25, 3))).astype(np.float32)
    rank = np.asarray(ranks(jnp.asarray(f), jnp.ones(len(f), bool)))
    np.testing.assert_array_equal(rank, pareto.ranks(f))
    crowd = np.asarray(crowding(jnp.asarray(f), jnp.asarray(rank)))
    for front in pareto.fronts(f):
      np.testing.assert_allclose(crowd[front], pareto.crowding_distance(f[front]), rtol=1e-5)
  # Invalid rows neither dominate nor get a front.
  rank = evolution.nondominated_ranks(jnp.array([[9., 9], [1, 1], [0, 0]]),
                                      jnp.array([False, True, True]))
  np.testing.assert_array_equal(rank, [3, 0, 1])


MACRO = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'benchmarks',
                     'nas-bench-macro', 'nas-bench-macro_cifar10.json')


@pytest.mark.slow  # ~16 s: benchmarks/pareto_search.py, run by hand, on a small setting.
@pytest.mark.skipif(not os.path.isfile(MACRO), reason=f'NAS-Bench-Macro file absent ({MACRO})')
def test_pareto_search_benchmark_runs(tmp_path):
  spec = importlib.util.spec_from_file_location(
      'pareto_search', os.path.join(os.path.dirname(__file__), '..', 'benchmarks',
                                    'pareto_search.py'))
  bench_lib = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bench_lib)
  table = bench_lib.nasbench.load_macro(MACRO)
  bench = bench_lib.Bench(
      table, bench_lib.nasbench.latency_from_table(table, bench_lib.LATENCY_TABLE))
  everything = np.arange(len(bench.acc))[None, None]
  assert bench.hv_ratio(everything, len(bench.acc)) == pytest.approx([1.0])
  bench_lib.main(['--nas_bench_macro', MACRO, '--seeds', '3', '--budgets', '12,24',
                  '--targets', '2', '--rewards', 'hard', '--workdir', str(tmp_path)])
  out = json.loads((tmp_path / 'results.json').read_text())
  assert set(out['hv_ratio']['24']) == {'nsga2', 'random', '2x evolution_hard',
                                        '2x reinforce_hard'}
  assert 0 < out['hv_ratio']['24']['nsga2']['median'] <= 1
  assert (tmp_path / 'pareto_search.png').exists()
