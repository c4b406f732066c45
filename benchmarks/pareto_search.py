r"""A whole Pareto front (accuracy vs latency) in one search, on NAS-Bench-Macro (issue 13).

  python benchmarks/pareto_search.py --nas_bench_macro PATH/nas-bench-macro_cifar10.json \
      [--seeds 100] [--budgets 50,100,200] [--targets 4] [--workdir /tmp/mnas_pareto_search]
  python benchmarks/pareto_search.py --nas_bench_macro PATH --tune   # the grid below

Every one of the 6,561 architectures of NAS-Bench-Macro has a known accuracy (mean of its 3
seeds) and a latency (predicted from mnas's table of this space measured on xla-cpu, or
`--latency_table` benchmarks/tables/latency_litert-cpu_...). The exact Pareto front of the
6,561 is known, so a search is scored by the hypervolume (HV) of the front of everything it
sampled (true mean accuracies), divided by the HV of the exact front, against the fixed
reference point (accuracy of the worst architecture, latency of the slowest one): 1.0 means
it found the exact front. Methods, each given the same number of samples (repeats count):

  nsga2          Evolution(selection='nsga2'): objectives (accuracy, -latency), one search;
  random         uniform sampling;
  K x evolution  K single-target aging-evolution searches, each budget/K samples, with
                 MnasNet's reward at K targets, the latency quantiles (k + 1/2) / K; the
                 front of their union. 'soft' is MnasNet's soft reward (w = -0.07), 'hard'
                 its hard constraint (alpha = 0, beta = -1). With alpha = beta the target
                 only scales the reward (ACC * (LAT / T)^w = T^-w * ACC * LAT^w): K soft
                 searches all seek the same point, whatever the targets;
  K x reinforce  the same with TuNAS's REINFORCE controller.

Every search runs once to the largest budget: a controller does not know its budget, so the
first B samples of a run are a run of budget B (per target for the single-target ones). The
seeds are vmapped (and the K targets), each search is one lax.scan. Prints, per budget and
method: median and mean HV ratio over the seeds, a bootstrap 95% CI of the mean, the
2.5-97.5% range of single runs, and the two-sided Mann-Whitney U p-value against random;
writes workdir/results.json and workdir/pareto_search.png (the fronts of the first seed at
the largest budget against the exact front; median HV ratio vs samples, with quartiles).

Hyperparameters (CHOSEN) were picked with --tune on seeds 1000-1099, disjoint from the
reported seeds 0-99, by the mean HV ratio averaged over the budgets 50, 100 and 200, with
the shipped xla-cpu table (rerun --tune for another table). Batch = samples per update.
  nsga2: population 4-32 x batch 1, 4, 8: population 8, batch 1 (0.9676; populations 4-8
    all within 0.009 of it, 16: 0.951-0.953, 32: 0.942-0.946);
  K x evolution: (population, tournament) (4, 2) .. (40, 10): (40, 10) for both rewards
    (soft 0.9106 .. 0.9262, hard 0.9172 .. 0.9271, rising towards near-uniform sampling:
    budget / K is 12-50 samples per target);
  K x reinforce: learning rate 0.03-1.0: soft 0.03 (0.9253; 0.1: 0.9236), hard 0.1 (0.9426).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mnas import controllers, nasbench, pareto, rewards  # noqa: E402

CHOSEN = {  # --tune on seeds 1000-1099 (see the module docstring).
    'nsga2': dict(population_size=8, batch=1),
    'evolution_soft': dict(population_size=40, tournament_size=10, batch=1),
    'evolution_hard': dict(population_size=40, tournament_size=10, batch=1),
    'reinforce_soft': dict(learning_rate=0.03, batch=1),
    'reinforce_hard': dict(learning_rate=0.1, batch=1),
}
GRID = {
    'nsga2': [dict(population_size=p, batch=b) for p in (4, 6, 8, 12, 16, 32) for b in (1, 4, 8)],
    'evolution': [dict(population_size=p, tournament_size=s, batch=1)
                  for p, s in ((4, 2), (8, 3), (12, 4), (16, 5), (25, 8), (40, 10))],
    'reinforce': [dict(learning_rate=lr, batch=1) for lr in (0.03, 0.1, 0.2, 0.3, 1.0)],
}
REWARDS = {'soft': dict(alpha=-0.07, beta=-0.07), 'hard': dict(alpha=0.0, beta=-1.0)}
TUNE_SEED_OFFSET = 1000
TABLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'tables')
LATENCY_TABLE = os.path.join(TABLES, 'latency_xla-cpu_nas_bench_macro_r32_w1.json')


class Bench:
  """The table as jnp arrays, searches as vmapped functions of (seed keys, targets)."""

  def __init__(self, table: nasbench.Table, lat: np.ndarray):
    self.num_options = (nasbench.MACRO_OPTIONS,) * nasbench.MACRO_LAYERS
    self.weights = nasbench.MACRO_OPTIONS ** np.arange(nasbench.MACRO_LAYERS)[::-1]
    rows = table.indices @ self.weights
    if not np.array_equal(rows, np.arange(len(rows))):
      raise ValueError('table rows are not in base-3 order of their decision indices')
    self.acc = np.asarray(table.mean_accuracy, np.float64)
    self.lat = np.asarray(lat, np.float64)
    self.points = np.stack([self.acc, -self.lat], 1)  # Both maximised.
    self.reference = np.array([self.acc.min(), -self.lat.max()])
    self.exact_hv = pareto.hypervolume_2d(self.points, self.reference)
    self.exact_front = pareto.front(self.points)
    self._acc, self._lat = jnp.asarray(self.acc, jnp.float32), jnp.asarray(self.lat, jnp.float32)

  def runner(self, method: str, budget: int, hp: dict):
    """jitted f(keys [S], targets [K]) -> sampled rows, int32 [S, K, budget] (K = 1 for
    nsga2 and random, whose target is unused)."""
    hp = dict(hp)
    batch = hp.pop('batch', 1)
    name, _, reward = method.partition('_')
    if name == 'random':
      ctl = controllers.make_controller('random', self.num_options)
    elif name == 'nsga2':
      ctl = controllers.make_controller('evolution', self.num_options, selection='nsga2', **hp)
    else:
      ctl = controllers.make_controller(name, self.num_options, **hp)
    w = jnp.asarray(self.weights, jnp.int32)

    def reward_of(rows, target):
      acc, lat = self._acc[rows], self._lat[rows]
      if name == 'nsga2':
        return jnp.stack([acc, -lat], 1)
      return rewards.mnasnet(acc, lat, target, **REWARDS[reward])

    def run(key, target, k):
      key = jax.random.fold_in(key, k)  # Each single-target search its own samples.

      def step(state, key):
        x = ctl.sample(state, key, batch)
        rows = x @ w
        if name != 'random':  # The jitted update on arrays (no float conversion).
          state, _ = ctl._update(state, x, jnp.ones_like(x, bool), reward_of(rows, target))
        return state, rows

      _, rows = jax.lax.scan(step, ctl.init(key), jax.random.split(key, -(-budget // batch)))
      return rows.reshape(-1)[:budget]

    per_target = jax.vmap(run, in_axes=(None, 0, 0))
    per_seed = jax.vmap(per_target, in_axes=(0, None, None))
    return jax.jit(lambda keys, targets: per_seed(keys, targets, jnp.arange(len(targets))))

  def search(self, method: str, hp: dict, seeds: np.ndarray, budget: int, k: int) -> np.ndarray:
    """Rows sampled, [seeds, K, ceil(budget / K)] for single-target methods, else
    [seeds, 1, budget]."""
    single = method.startswith(('evolution', 'reinforce'))
    targets = np.quantile(self.lat, (np.arange(k) + 0.5) / k) if single else np.zeros(1)
    keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds))
    per = -(-budget // k) if single else budget
    return np.asarray(self.runner(method, per, hp)(keys, jnp.asarray(targets, jnp.float32)))

  def hv_ratio(self, rows: np.ndarray, budget: int) -> np.ndarray:
    """HV ratio per seed of the first `budget` samples of rows [seeds, K, n] (split evenly
    over the K searches, the first budget % K one more)."""
    k = rows.shape[1]
    take = [budget // k + (i < budget % k) for i in range(k)]
    out = []
    for r in rows:
      found = np.concatenate([r[i, :t] for i, t in enumerate(take)])
      out.append(pareto.hypervolume_2d(self.points[found], self.reference) / self.exact_hv)
    return np.array(out)


def summarize(x: np.ndarray, random: np.ndarray, rng: np.random.Generator) -> dict:
  from scipy import stats
  boot = rng.choice(x, (2000, len(x))).mean(1)
  p = (stats.mannwhitneyu(x, random, alternative='two-sided').pvalue
       if not np.array_equal(x, random) else 1.0)
  return {'median': float(np.median(x)), 'mean': float(x.mean()),
          'mean_ci95': [float(v) for v in np.percentile(boot, [2.5, 97.5])],
          'runs_2.5_97.5': [float(v) for v in np.percentile(x, [2.5, 97.5])],
          'p_vs_random': float(p)}


def tune(bench: Bench, args, budgets: list[int]):
  """Prints the mean HV ratio of every GRID point on the tuning seeds."""
  seeds = TUNE_SEED_OFFSET + np.arange(args.seeds)
  print(f'tuning seeds {seeds[0]}-{seeds[-1]}: mean HV ratio at budgets {budgets}, and their '
        'average')
  methods = [('nsga2', 'nsga2')] + [(f'{n}_{r}', n) for n in ('evolution', 'reinforce')
                                    for r in args.rewards]
  for method, grid in methods:
    for hp in GRID[grid]:
      rows = bench.search(method, hp, seeds, max(budgets), args.targets)
      hv = [bench.hv_ratio(rows, b).mean() for b in budgets]
      print(f'{method:16s} {json.dumps(hp):55s} ' + ' '.join(f'{v:.4f}' for v in hv)
            + f'  avg {np.mean(hv):.4f}', flush=True)


def plot(bench: Bench, rows: dict, curves: dict, budget: int, path: str):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5), dpi=100)
  ax.scatter(bench.lat, bench.acc, s=2, c='0.85', label='all 6,561')
  f = bench.exact_front
  ax.step(bench.lat[f], bench.acc[f], 'k-', where='post', lw=1, label='exact front')
  for (method, r), m in zip(rows.items(), 'os^vDP'):
    found = r[0].reshape(-1)
    if r.shape[1] > 1:  # Single-target: the budget split over the targets.
      k = r.shape[1]
      found = np.concatenate([r[0, i, :budget // k + (i < budget % k)] for i in range(k)])
    front = found[pareto.front(bench.points[found])]
    ax.step(bench.lat[front], bench.acc[front], where='post', marker=m, ms=4, lw=0.8,
            label=method)
  ax.set_ylim(np.percentile(bench.acc, 5), bench.acc.max() + 0.003)
  ax.set_xlabel('predicted latency (ms)')
  ax.set_ylabel('CIFAR-10 accuracy (mean of 3 seeds)')
  ax.set_title(f'fronts found by seed 0, {budget} samples')
  ax.legend(fontsize=8, loc='lower right')
  for method, (xs, hv) in curves.items():
    q = np.percentile(hv, [25, 50, 75], axis=1)
    bx.plot(xs, q[1], label=method)
    bx.fill_between(xs, q[0], q[2], alpha=0.2)
  bx.set_xlabel('samples')
  bx.set_ylabel('HV / HV(exact front)')
  bx.set_title('median over seeds, quartiles shaded')
  bx.grid(alpha=0.3)
  bx.legend(fontsize=8, loc='lower right')
  fig.tight_layout()
  fig.savefig(path)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--nas_bench_macro', required=True, help='nas-bench-macro_cifar10.json')
  ap.add_argument('--latency_table', default=LATENCY_TABLE,
                  help='latency table of the space (benchmarks/tables/: xla-cpu, litert-cpu)')
  ap.add_argument('--seeds', type=int, default=100)
  ap.add_argument('--budgets', default='50,100,200')
  ap.add_argument('--targets', type=int, default=4, help='K single-target searches')
  ap.add_argument('--rewards', default='soft,hard', help="single-target rewards: soft, hard")
  ap.add_argument('--workdir', default='/tmp/mnas_pareto_search')
  ap.add_argument('--tune', action='store_true', help='print the grid on the tuning seeds')
  args = ap.parse_args(argv)
  args.rewards = args.rewards.split(',')
  budgets = sorted(int(b) for b in args.budgets.split(','))
  start = time.time()
  table = nasbench.load_macro(args.nas_bench_macro)
  bench = Bench(table, nasbench.latency_from_table(table, args.latency_table))
  print(f'latency: {args.latency_table}')
  print(f'reference point: accuracy {bench.reference[0]:.4f}, latency {-bench.reference[1]:.3f} '
        f'ms; exact front: {len(bench.exact_front)} of {len(bench.acc)} architectures, '
        f'HV {bench.exact_hv:.5f}')
  if args.tune:
    tune(bench, args, budgets)
    print(f'wall {time.time() - start:.0f} s')
    return

  seeds = np.arange(args.seeds)
  methods = ['nsga2', 'random'] + [f'{n}_{r}' for n in ('evolution', 'reinforce')
                                   for r in args.rewards]
  hps = {m: CHOSEN.get(m, {}) for m in methods}
  rows = {m: bench.search(m, hps[m], seeds, max(budgets), args.targets) for m in methods}
  label = {m: m if m in ('nsga2', 'random') else f'{args.targets}x {m}' for m in methods}
  hv = {m: {b: bench.hv_ratio(rows[m], b) for b in budgets} for m in methods}
  stats = {b: {m: summarize(hv[m][b], hv['random'][b], np.random.default_rng(0))
               for m in methods} for b in budgets}
  xs = np.arange(10, max(budgets) + 1, 10)
  curves = {label[m]: (xs, np.stack([bench.hv_ratio(rows[m], x) for x in xs])) for m in methods}

  print(f'\nHV ratio (HV of the found front / HV of the exact front), {len(seeds)} seeds '
        f'({seeds[0]}-{seeds[-1]}); p: two-sided Mann-Whitney U vs random')
  print(f'{"samples":>7} {"method":22s} {"median":>7} {"mean":>7} {"mean 95% CI":>17} '
        f'{"runs 2.5-97.5%":>17} {"p vs random":>11}')
  for b in budgets:
    for m in methods:
      s = stats[b][m]
      p = '' if m == 'random' else f'{s["p_vs_random"]:11.2e}'
      print(f'{b:7d} {label[m]:22s} {s["median"]:7.4f} {s["mean"]:7.4f} '
            f'  [{s["mean_ci95"][0]:.4f}, {s["mean_ci95"][1]:.4f}] '
            f'  [{s["runs_2.5_97.5"][0]:.4f}, {s["runs_2.5_97.5"][1]:.4f}] {p}')
  os.makedirs(args.workdir, exist_ok=True)
  plot(bench, {label[m]: rows[m] for m in methods}, curves, max(budgets),
       os.path.join(args.workdir, 'pareto_search.png'))
  wall = time.time() - start
  out = {
      'latency': args.latency_table, 'nas_bench_macro': args.nas_bench_macro,
      'reference_point': {'accuracy': bench.reference[0], 'latency_ms': -bench.reference[1]},
      'exact_front_size': len(bench.exact_front), 'exact_hv': bench.exact_hv,
      'seeds': [int(seeds[0]), int(seeds[-1])], 'targets': args.targets,
      'target_latencies_ms': np.quantile(bench.lat, (np.arange(args.targets) + 0.5)
                                         / args.targets).tolist(),
      'hyperparameters': hps, 'budgets': budgets,
      'hv_ratio': {str(b): {label[m]: stats[b][m] for m in methods} for b in budgets},
      'wall_seconds': wall}
  with open(os.path.join(args.workdir, 'results.json'), 'w') as f:
    json.dump(out, f, indent=1)
  print(f'\nwrote {args.workdir}/results.json and {args.workdir}/pareto_search.png; '
        f'wall {wall:.0f} s')


if __name__ == '__main__':
  main()
