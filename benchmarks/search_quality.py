r"""Search quality on NAS-Bench-Macro: every controller against the table's ground truth.

  python benchmarks/search_quality.py --nas_bench_macro PATH/nas-bench-macro_cifar10.json
      [--workdir /tmp/mnas_search_quality] [--seeds 100] [--budgets 25,50,100,200]
      [--controllers random,evolution,reinforce,mnasnet] [--noise] [--require_bar] [--tune]

NAS-Bench-Macro (mnas.nasbench) has every one of the 6,561 architectures of its space trained
(3 seeds), so a search can be judged exactly: each controller (random, aging evolution, TuNAS
REINFORCE, MnasNet's LSTM + PPO) searches `--seeds` times (seeds 0, 1, ...) with a budget of
200 proposals (every proposal counts, duplicates included), for five rewards: accuracy alone,
MnasNet's soft reward and TuNAS's abs reward, each at two latency targets (the 25th and 50th
percentiles of the latency of the space's architectures, printed). After every proposal the
best architecture so far is the one with the best reward the controller saw; its regret is
the reward optimum (exact: the best of all 6,561 rows) minus its true reward, computed on
the seeds' mean accuracy. With `--noise` the controller sees one training seed's accuracy,
drawn at random per evaluation (as a real proxy task is noisy); by default it sees the mean.

Prints, per reward and controller, at budgets 25, 50, 100 and 200: the median and mean regret,
the share of search seeds that found the optimum, the two-sided Mann-Whitney p of the
controller's regrets against random's, and at 100 samples the bar (PASS: a median regret at
most half of random's, with p < 0.01; required for accuracy and the soft reward).

Random search has a closed form: N uniform draws over the table's rows (and, with --noise,
its accuracy seeds), the best by the seen reward; E[true reward of the best of N] follows
from the order statistics of the seen rewards. The measured random curve is compared with it
(the difference in units of its exact standard error over the search seeds) and the script
exits with 1 when they differ by more than 4 standard errors at a budget: a check of the
harness that no hyperparameter can tune. `--require_bar` also exits with 1 when the bar fails.

Writes to --workdir: search_quality.png (best-so-far against samples, the mean and its 95%
interval, mean +- 1.96 standard errors, per reward), TensorBoard scalars in tensorboard/ (one
run; Custom Scalars charts per reward: best so far and regret, every controller), and
results.json (the table, the curves, the per-seed regrets at each budget, the settings).

Each (controller, reward) is one compiled call: `jax.vmap` over the search seeds of a
`jax.lax.scan` over the controller's sample/update steps. The whole run (100 seeds) takes
~220 s on 2 cores, ~40 s of it per reward for the LSTM controller (PPO, 4 epochs a batch).

Latency: mnas's own table of this space (`--latency_table`; by default the xla-cpu one
shipped in benchmarks/tables/, the one experiments/nas_bench_macro.py searches with) through
its predictor, so every row's latency and every reward's exact optimum are known.

Short-budget hyperparameters: the controllers' defaults are the papers', meant for thousands
of samples; those used here are experiments/nas_bench_macro.py's (each controller's variant:
candidates per update and controller_kwargs), so that a search launched with it is the one
judged here. `--tune` runs TUNE_GRID on search seeds 1000-1049 (disjoint from the reported
seeds 0-99), the mean accuracy seen, and prints per entry the median regret at 100 samples
over random's exact median regret there (random = 1.0, lower is better), averaged over the
five rewards, with the mean-regret ratio and the share that found the optimum. The choice:
the lowest average, ties broken by the mean-regret ratio. Found (before the measured table
existed, with a FLOPs-based latency, 1 ms + 1 ms per 10 MFLOPs, for the four latency rewards;
b = candidates per update):
  evolution, b = 1, average median ratio for population P x tournament S:
          S=2   S=3   S=5   S=10
    P=5   0.46  0.39  0.27
    P=10  0.46  0.31  0.23  0.23  <- P = 10, S = 10 (mean-regret ratio 0.26 vs 0.30)
    P=20  0.70  0.43  0.29  0.24
    P=30  0.73  0.68  0.37  0.27
    P=50  0.84  0.74  0.47  0.36
    (the paper's P = 100 would spend half the budget filling the population; a short
    budget wants strong selection, S close to P).
  reinforce (TuNAS), average median ratio, baseline momentum 0.5 / 0.9:
             b=1        b=2        b=5        b=10
    lr=0.03  0.54/0.56  0.64/0.63  0.82/0.77  0.92/0.92
    lr=0.1   0.25/0.25  0.29/0.30  0.44/0.43  0.57/0.63
    lr=0.3   0.41/0.52  0.35/0.38  0.23/0.31  0.28/0.29  <- b = 5, lr 0.3, momentum 0.5
    lr=1.0   1.44/1.92  1.10/1.48  0.75/0.99  0.43/0.75
    (TuNAS's default rate, 0.0048, does not move the logits in 40 updates.)
  mnasnet (LSTM + PPO, 4 epochs per batch; ~30 s per reward and entry, so fewer rewards per
  entry), median ratio at 100 samples:
    accuracy: b=10: lr 0.005 0.31, 0.01 0.36, 0.03 0.81, 0.1 1.00 (collapses early: 46
      distinct architectures in 200 proposals); b=5: lr 0.003 0.31, 0.01 0.60; b=20: lr
      0.01 0.60, 0.03 0.59; b=10, lr 0.01, algorithm 'reinforce' 0.60, the same numbers as
      PPO with num_epochs=1 (as they must be: PPO's first epoch is REINFORCE); lr 0.03
      'reinforce' 0.40.
    soft@p25 / abs@p25: b=10: lr 0.005 0.17/0.54, lr 0.01 0.17/0.49; b=5 lr 0.003 0.14/0.49;
      b=10 lr 0.005 baseline momentum 0.5 0.12/0.49; entropy_weight 0.01 0.81/0.63 (it keeps
      the policy near uniform: 196 distinct in 200).
    baseline momentum 0.5, accuracy / abs@p50: b=10 lr 0.005 0.27/0.82, lr 0.01 0.27/0.68;
      b=5 lr 0.003 0.18/0.65 (soft@p25 0.00, abs@p25 0.32)  <- b = 5, lr 0.003, momentum 0.5.
TuNAS's abs reward is the hardest for every controller, because its landscape is rugged: with
the measured latency, rows better than all 16 of their one-decision neighbours number 145
(abs@p25) and 227 (abs@p50), against 14 for accuracy and 12 for the soft reward, and the best
neighbour of the optimum ranks 107th (abs@p25) and 103rd (abs@p50) of 6,561, against 9th
(accuracy, soft): |latency / target - 1| turns each latency step into a reward cliff on both
sides of the target. (With alpha = beta, the soft reward's ranking does not depend on its
target: T only scales it; its two targets give one ranking.)
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import nas_bench_macro as macro_config  # noqa: E402
from mnas import controllers, nasbench, rewards  # noqa: E402
from mnas.errors import UserError  # noqa: E402

CONTROLLERS = ('random', 'evolution', 'reinforce', 'mnasnet')
BUDGETS = (25, 50, 100, 200)
BAR_BUDGET = 100  # The bar: median regret <= BAR_RATIO x random's, p < BAR_P, at 100 samples.
BAR_RATIO = 0.5
BAR_P = 0.01
BAR_KINDS = ('accuracy', 'mnasnet_soft')  # The rewards the bar is required for.
TARGET_PERCENTILES = (25, 50)  # Latency targets: percentiles of the space's latencies.
LATENCY_KINDS = ('mnasnet_soft', 'tunas_abs')
CHECK_SIGMAS = 4.0  # Measured random vs its closed form: fail beyond this many std. errors.
TUNE_SEEDS = tuple(range(1000, 1050))  # Disjoint from the reported seeds (0, 1, ...).

TABLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'tables')
LATENCY_TABLE = os.path.join(TABLES, 'latency_xla-cpu_nas_bench_macro_r32_w1.json')


def short_budget(name: str) -> dict:
  """Candidates per update and controller kwargs of `name` in experiments/nas_bench_macro.py."""
  c = macro_config.get_config('' if name == 'mnasnet' else name)
  return dict(candidates_per_step=c.candidates_per_step,
              controller_kwargs=c.controller_kwargs[name].to_dict())


SHORT_BUDGET = {name: short_budget(name) for name in CONTROLLERS}

# What --tune tries: per controller, a list of SHORT_BUDGET-like entries.
def _mnasnet(b, **kw):
  return dict(candidates_per_step=b, controller_kwargs=kw)


TUNE_GRID = {
    'evolution': [dict(candidates_per_step=1,
                       controller_kwargs=dict(population_size=p, tournament_size=s))
                  for p in (5, 10, 20, 30, 50) for s in (2, 3, 5, 10) if s <= p],
    'reinforce': [dict(candidates_per_step=b,
                       controller_kwargs=dict(learning_rate=lr, baseline_momentum=m))
                  for b in (1, 2, 5, 10) for lr in (0.03, 0.1, 0.3, 1.0) for m in (0.5, 0.9)],
    'mnasnet': [_mnasnet(10, learning_rate=lr) for lr in (0.005, 0.01, 0.03, 0.1)]
               + [_mnasnet(5, learning_rate=lr) for lr in (0.003, 0.01)]
               + [_mnasnet(20, learning_rate=lr) for lr in (0.01, 0.03)]
               + [_mnasnet(10, learning_rate=0.01, algorithm='reinforce'),
                  _mnasnet(10, learning_rate=0.03, algorithm='reinforce'),
                  _mnasnet(10, learning_rate=0.01, num_epochs=1),
                  _mnasnet(10, learning_rate=0.005, entropy_weight=0.01),
                  _mnasnet(10, learning_rate=0.005, baseline_momentum=0.5),
                  _mnasnet(10, learning_rate=0.01, baseline_momentum=0.5),
                  _mnasnet(5, learning_rate=0.003, baseline_momentum=0.5)],
}


def reward_settings(table: nasbench.Table, lat: np.ndarray) -> list[dict]:
  """The five rewards: accuracy, then each latency reward at each target.

  Each: name, kind, target_ms (None for accuracy), true [N] (on the mean accuracy) and
  per_seed [N, S] (on each training seed's accuracy).
  """
  acc = table.accuracy
  out = [dict(name='accuracy', kind='accuracy', target_ms=None,
              true=acc.mean(1), per_seed=acc.copy())]
  targets = [float(np.percentile(lat, q)) for q in TARGET_PERCENTILES]
  for kind in LATENCY_KINDS:
    for q, target in zip(TARGET_PERCENTILES, targets):
      fn = rewards.make_reward(kind, target)
      out.append(dict(name=f'{kind}@p{q}', kind=kind, target_ms=target,
                      true=np.asarray(fn(acc.mean(1), lat), np.float64),
                      per_seed=np.asarray(fn(acc, lat[:, None]), np.float64)))
  return out


def seen_values(setting: dict, noise: bool) -> np.ndarray:
  """[N, S] rewards a controller can see: one per training seed, or the mean's (S = 1)."""
  return setting['per_seed'] if noise else setting['true'][:, None]


def row_lookup(indices: np.ndarray, num_options: tuple[int, ...]) -> np.ndarray:
  """[prod(num_options)] row of each mixed-radix code of decision indices; the table must
  hold every architecture exactly once."""
  strides = np.cumprod((1,) + tuple(num_options[:0:-1]))[::-1]
  codes = indices.astype(np.int64) @ strides
  size = int(np.prod(num_options))
  if len(codes) != size or len(np.unique(codes)) != size:
    raise ValueError(f'the table has {len(codes)} rows, not every one of the {size} '
                     'architectures exactly once')
  lookup = np.empty(size, np.int32)
  lookup[codes] = np.arange(size)
  return lookup


def make(name: str, num_options, hp: dict):
  return controllers.make_controller(name, num_options, **hp['controller_kwargs'])


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _search(controller, batch: int, num_steps: int, lookup, seen, states, keys):
  """vmap over (state, key) of one search: [seeds, steps * batch] rows and seen columns."""
  num_options = jnp.array(controller.num_options)
  strides = jnp.cumprod(jnp.concatenate([jnp.ones(1, jnp.int32), num_options[:0:-1]]))[::-1]
  update = getattr(controller, '_update', None)  # None: random search (nothing to learn).
  seen32 = seen.astype(jnp.float32)

  def one(state, key):

    def step(state, key):
      k_sample, k_seed = jax.random.split(key)
      x = controller.sample(state, k_sample, batch)
      rows = lookup[x @ strides]
      col = jax.random.randint(k_seed, (batch,), 0, seen.shape[1])
      if update is not None:
        state, _ = update(state, x, jnp.ones(x.shape, bool), seen32[rows, col])
      return state, (rows, col)

    _, (rows, cols) = jax.lax.scan(step, state, jax.random.split(key, num_steps))
    return rows.reshape(-1), cols.reshape(-1)

  return jax.vmap(one)(states, keys)


def simulate(controller, batch: int, lookup: np.ndarray, seen: np.ndarray, seeds,
             num_samples: int, stream: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Searches once per seed: rows [seeds, num_samples] proposed, and the column of `seen`
  each evaluation saw. Each controller gets its own `stream` of random numbers, so that two
  controllers' searches with one seed are independent (with a shared key, evolution's first
  uniform samples would be random search's)."""
  num_steps = -(-num_samples // batch)
  keys = [jax.random.PRNGKey(s) for s in seeds]
  keys = [jax.random.split(jax.random.fold_in(k, stream) if stream else k) for k in keys]
  # One init per seed, not vmapped: a vmapped LSTM init is a batched QR (the orthogonal
  # initializer), which deadlocks jaxlib 0.10's CPU runtime on a 2-thread pool.
  states = jax.tree.map(lambda *x: jnp.stack(x), *[controller.init(k[0]) for k in keys])
  rows, cols = _search(controller, batch, num_steps, jnp.asarray(lookup), jnp.asarray(seen),
                       states, jnp.stack([k[1] for k in keys]))
  return np.asarray(rows)[:, :num_samples], np.asarray(cols)[:, :num_samples]


def best_so_far(rows: np.ndarray, cols: np.ndarray, seen: np.ndarray,
                true: np.ndarray) -> np.ndarray:
  """[seeds, samples] true reward of the best-seen proposal so far (the first on ties)."""
  obs = seen[rows, cols]
  n, t = rows.shape
  out = np.empty((n, t))
  best_obs = np.full(n, -np.inf)
  best_true = np.zeros(n)
  for i in range(t):
    better = obs[:, i] > best_obs
    best_obs = np.where(better, obs[:, i], best_obs)
    best_true = np.where(better, true[rows[:, i]], best_true)
    out[:, i] = best_true
  return out


def random_closed_form(seen: np.ndarray, true: np.ndarray, num_samples: int) -> dict:
  """Exact law of random search's best-so-far for N = 1..num_samples.

  Each evaluation is a uniform draw of (row, seen column); the best is the one with the
  highest seen value, the first drawn on ties, so given the highest seen value v its true
  reward is uniform over the (row, column) pairs seen as v. With the pairs grouped by seen
  value, P(max seen = v_g) = F(v_g)^N - F(v_g-)^N. Returns mean [T], var [T] of the true
  reward of the best, found [T] (P(it is the optimum)), and median [T].
  """
  obs = seen.ravel()
  tru = np.broadcast_to(true[:, None], seen.shape).ravel()
  values, group = np.unique(obs, return_inverse=True)
  count = np.bincount(group).astype(np.float64)
  total = count.sum()
  mean_t = np.bincount(group, tru) / count
  mean_t2 = np.bincount(group, tru * tru) / count
  opt = true.max()
  found_t = np.bincount(group, tru >= opt) / count
  hi = np.cumsum(count) / total
  lo = np.concatenate([[0.0], hi[:-1]])
  n = np.arange(1, num_samples + 1)[:, None]
  p = hi[None] ** n - lo[None] ** n  # [T, G]
  mean = p @ mean_t
  var = np.maximum(p @ mean_t2 - mean ** 2, 0.0)
  # The median: the law of the best's true reward, each group's mass spread over its pairs.
  order = np.argsort(tru, kind='stable')
  mass = p[:, group[order]] / count[group[order]][None]  # [T, pairs]
  cdf = np.cumsum(mass, 1)
  median = tru[order][np.minimum((cdf < 0.5).sum(1), len(tru) - 1)]
  return dict(mean=mean, var=var, found=p @ found_t, median=median)


def mann_whitney(a: np.ndarray, b: np.ndarray) -> float:
  """Two-sided Mann-Whitney U p-value; 1.0 when all values are equal."""
  from scipy import stats
  if np.ptp(np.concatenate([a, b])) == 0:
    return 1.0
  return float(stats.mannwhitneyu(a, b, alternative='two-sided').pvalue)


def evaluate(table: nasbench.Table, lat: np.ndarray, names, hps: dict, seeds, budgets,
             noise: bool, log=print) -> dict:
  """Runs every (reward, controller); returns per reward the curves and the budgets' stats."""
  num_options = tuple(int(k) for k in table.indices.max(0) + 1)
  lookup = row_lookup(table.indices, num_options)
  num_samples = max(budgets)
  results = {}
  for setting in reward_settings(table, lat):
    seen, true = seen_values(setting, noise), setting['true']
    opt = float(true.max())
    closed = random_closed_form(seen, true, num_samples)
    per = {}
    for name in names:
      t0 = time.time()
      controller = make(name, num_options, hps[name])
      rows, cols = simulate(controller, hps[name]['candidates_per_step'], lookup, seen, seeds,
                            num_samples, stream=CONTROLLERS.index(name))
      best = best_so_far(rows, cols, seen, true)
      regret = opt - best
      per[name] = dict(best=best, regret=regret, seconds=time.time() - t0,
                       unique=float(np.mean([len(np.unique(r)) for r in rows])))
      log(f'  {setting["name"]:<18} {name:<10} {time.time() - t0:6.1f} s')
    results[setting['name']] = dict(setting=setting, optimum=opt, closed=closed, runs=per,
                                    num_optimal=int(np.sum(true >= opt)))
  return results


def budget_stats(results: dict, budgets, num_seeds: int) -> dict:
  """Per reward, controller and budget: regret median/mean, share optimal, p vs random, bar;
  and the closed-form check of random."""
  out = {}
  for sname, res in results.items():
    runs, closed, opt = res['runs'], res['closed'], res['optimum']
    rand = runs.get('random')
    table = {}
    for name, run in runs.items():
      rows = {}
      for b in budgets:
        reg = run['regret'][:, b - 1]
        row = dict(median=float(np.median(reg)), mean=float(reg.mean()),
                   found=float(np.mean(reg <= 0.0)))
        if rand is not None and name != 'random':
          rreg = rand['regret'][:, b - 1]
          row['p'] = mann_whitney(reg, rreg)
          row['ratio'] = row['median'] / max(float(np.median(rreg)), 1e-12)
          row['bar'] = bool(row['median'] <= BAR_RATIO * float(np.median(rreg))
                            and row['p'] < BAR_P)
        rows[b] = row
      table[name] = rows
    check = {}
    if rand is not None:
      for b in budgets:
        measured = float(rand['best'][:, b - 1].mean())
        se = float(np.sqrt(closed['var'][b - 1] / num_seeds))
        diff = measured - float(closed['mean'][b - 1])
        check[b] = dict(measured=measured, closed=float(closed['mean'][b - 1]), diff=diff,
                        se=se, z=diff / se if se > 0 else (0.0 if diff == 0 else np.inf),
                        found_closed=float(closed['found'][b - 1]),
                        median_regret_closed=opt - float(closed['median'][b - 1]))
      se_all = np.sqrt(closed['var'] / num_seeds)
      d_all = rand['best'].mean(0) - closed['mean']
      check['max_abs_z_all_samples'] = float(np.max(np.abs(d_all) / np.maximum(se_all, 1e-15)))
    out[sname] = dict(table=table, check=check)
  return out


def print_report(results: dict, stats: dict, budgets, file=None) -> None:
  p = functools.partial(print, file=file or sys.stdout)
  for sname, res in results.items():
    s = res['setting']
    target = '' if s['target_ms'] is None else f', target {s["target_ms"]:.3f} ms'
    p(f'\n== {sname} ({s["kind"]}{target}): optimum {res["optimum"]:.5f} '
      f'({res["num_optimal"]} row(s))')
    p(f'{"controller":<10} {"budget":>6} {"median regret":>14} {"mean regret":>12} '
      f'{"found opt":>9} {"p vs random":>11} {"median/rand":>11} {"bar@" + str(BAR_BUDGET):>7}')
    for name, rows in stats[sname]['table'].items():
      for b, r in rows.items():
        pv = f'{r["p"]:11.2e}' if 'p' in r else f'{"":>11}'
        ratio = f'{r["ratio"]:11.2f}' if 'ratio' in r else f'{"":>11}'
        bar = ('PASS' if r['bar'] else 'FAIL') if ('bar' in r and b == BAR_BUDGET) else ''
        p(f'{name:<10} {b:>6} {r["median"]:14.5f} {r["mean"]:12.5f} {r["found"]:9.2f} '
          f'{pv} {ratio} {bar:>7}')
    check = stats[sname]['check']
    if check:
      p('random vs its closed form (E[true reward of the best of N]): '
        + '; '.join(f'N={b}: {c["measured"]:.5f} vs {c["closed"]:.5f}, '
                    f'diff {c["diff"]:+.5f} +- {c["se"]:.5f} (z {c["z"]:+.1f})'
                    for b, c in check.items() if isinstance(b, int))
        + f'; max |z| over N=1..{max(budgets)}: {check["max_abs_z_all_samples"]:.1f}')


def verdicts(stats: dict, results: dict, names) -> tuple[bool, bool | None, list[str]]:
  """(closed-form check ok, bar met (None: BAR_BUDGET not run), lines saying what failed)."""
  lines, check_ok = [], True
  bar_ok = None if any(BAR_BUDGET not in st['table'].get('random', {BAR_BUDGET: 0})
                       for st in stats.values()) else True
  for sname, st in stats.items():
    for b, c in st['check'].items():
      if isinstance(b, int) and not abs(c['z']) <= CHECK_SIGMAS:
        check_ok = False
        lines.append(f'CLOSED-FORM CHECK FAILED: {sname}, N={b}: random measured '
                     f'{c["measured"]:.6f}, closed form {c["closed"]:.6f}, z {c["z"]:+.1f}')
    if results[sname]['setting']['kind'] in BAR_KINDS:
      for name in names:
        r = st['table'][name].get(BAR_BUDGET, {})
        if bar_ok is not None and 'bar' in r and not r['bar']:
          bar_ok = False
          lines.append(f'BAR FAILED: {sname}, {name}: median regret {r["median"]:.5f} = '
                       f'{r["ratio"]:.2f} x random\'s, p {r["p"]:.2e}')
  return check_ok, bar_ok, lines


def curve_summary(best: np.ndarray) -> dict:
  """Mean and 95% interval of the mean (+- 1.96 standard errors) over seeds, per sample."""
  mean = best.mean(0)
  half = 1.96 * best.std(0, ddof=1) / np.sqrt(best.shape[0]) if best.shape[0] > 1 else 0 * mean
  return dict(mean=mean, lo=mean - half, hi=mean + half)


def write_outputs(workdir: str, results: dict, stats: dict, meta: dict) -> None:
  """search_quality.png, tensorboard/, results.json."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  from mnas import metrics

  os.makedirs(workdir, exist_ok=True)
  curves = {s: {n: curve_summary(run['best']) for n, run in res['runs'].items()}
            for s, res in results.items()}
  cols = min(3, len(results))
  grid = -(-len(results) // cols)
  fig, axes = plt.subplots(grid, cols, figsize=(4.6 * cols, 3.6 * grid), squeeze=False)
  for ax in axes.flat[len(results):]:
    ax.set_visible(False)
  for ax, (sname, res) in zip(axes.flat, results.items()):
    x = np.arange(1, len(res['closed']['mean']) + 1)
    for name, c in curves[sname].items():
      line, = ax.plot(x, c['mean'], label=name, lw=1.2)
      ax.fill_between(x, c['lo'], c['hi'], color=line.get_color(), alpha=0.25, lw=0)
    ax.plot(x, res['closed']['mean'], 'k--', lw=0.8, label='random (closed form)')
    ax.axhline(res['optimum'], color='grey', lw=0.6, ls=':')
    lo = min(c['mean'][min(9, len(x) - 1)] for c in curves[sname].values())
    ax.set_ylim(lo, res['optimum'] + 0.1 * (res['optimum'] - lo))
    ax.set_title(sname, fontsize=9)
    ax.set_xlabel('samples')
  for row in axes:
    row[0].set_ylabel('true reward of the best so far')
  axes[0][0].legend(fontsize=7, loc='lower right')
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, 'search_quality.png'), dpi=110)

  with metrics.MetricWriter(os.path.join(workdir, 'tensorboard')) as w:
    num = len(next(iter(results.values()))['closed']['mean'])
    for i in range(num):
      groups = {}
      for sname, res in results.items():
        best = {'random_closed_form': res['closed']['mean'][i]}
        regret = {'random_closed_form': res['optimum'] - res['closed']['mean'][i]}
        for name, c in curves[sname].items():
          for k in ('mean', 'lo', 'hi'):
            best[f'{name}_{k}'] = c[k][i]
          regret[name] = res['optimum'] - c['mean'][i]
        groups[f'{sname}/best_so_far'] = best
        groups[f'{sname}/regret'] = regret
      w.write_scalar_groups(i + 1, groups)
    w.write_figures(num, {'search_quality': fig})
  plt.close(fig)

  out = dict(meta=meta, settings={})
  for sname, res in results.items():
    s = res['setting']
    out['settings'][sname] = dict(
        kind=s['kind'], target_ms=s['target_ms'], optimum=res['optimum'],
        num_optimal=res['num_optimal'], table=stats[sname]['table'],
        random_check=stats[sname]['check'],
        random_closed_form=dict(mean=res['closed']['mean'].tolist(),
                                found=res['closed']['found'].tolist()),
        curves={n: {k: v.tolist() for k, v in c.items()} for n, c in curves[sname].items()},
        regrets_at_budgets={n: {b: run['regret'][:, b - 1].tolist() for b in meta['budgets']}
                            for n, run in res['runs'].items()},
        seconds={n: run['seconds'] for n, run in res['runs'].items()},
        unique_per_search={n: run['unique'] for n, run in res['runs'].items()})
  with open(os.path.join(workdir, 'results.json'), 'w') as f:
    json.dump(out, f, indent=1, default=float)


def tune(table: nasbench.Table, lat: np.ndarray, names, noise: bool) -> dict:
  """Runs TUNE_GRID on TUNE_SEEDS; prints and returns each entry's scores at 100 samples."""
  num_options = tuple(int(k) for k in table.indices.max(0) + 1)
  lookup = row_lookup(table.indices, num_options)
  settings = reward_settings(table, lat)
  ref = {}
  for s in settings:
    seen = seen_values(s, noise)
    closed = random_closed_form(seen, s['true'], BAR_BUDGET)
    ref[s['name']] = s['true'].max() - closed['median'][-1]
  print(f'tuning on seeds {TUNE_SEEDS[0]}-{TUNE_SEEDS[-1]}: median regret at {BAR_BUDGET} '
        'samples / random\'s exact median regret (mean over rewards; per reward), '
        'mean regret ratio, share optimal', flush=True)
  out = {}
  for name in names:
    for hp in TUNE_GRID.get(name, [SHORT_BUDGET[name]]):
      t0 = time.time()
      controller = make(name, num_options, hp)
      med, mean, found = [], [], []
      for s in settings:
        seen = seen_values(s, noise)
        rows, cols = simulate(controller, hp['candidates_per_step'], lookup, seen, TUNE_SEEDS,
                              BAR_BUDGET)
        reg = s['true'].max() - best_so_far(rows, cols, seen, s['true'])[:, -1]
        med.append(np.median(reg) / ref[s['name']])
        mean.append(reg.mean() / ref[s['name']])
        found.append(np.mean(reg <= 0))
      key = f'{name} {json.dumps(hp)}'
      out[key] = dict(median_ratio=med, mean_ratio=mean, found=found)
      print(f'{name:<10} b={hp["candidates_per_step"]:<3} {json.dumps(hp["controller_kwargs"]):<52}'
            f' med {np.mean(med):.2f} ({" ".join(f"{v:.2f}" for v in med)}) '
            f'mean {np.mean(mean):.2f} found {np.mean(found):.2f}  {time.time() - t0:.0f} s',
            flush=True)
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--nas_bench_macro', required=True,
                 help='path of NAS-Bench-Macro\'s nas-bench-macro_cifar10.json')
  p.add_argument('--workdir', default='/tmp/mnas_search_quality')
  p.add_argument('--latency_table', default=LATENCY_TABLE,
                 help='mnas latency table of the nas_bench_macro space (32x32, 10 classes)')
  p.add_argument('--seeds', type=int, default=100, help='search seeds 0 .. seeds-1')
  p.add_argument('--budgets', default=','.join(map(str, BUDGETS)))
  p.add_argument('--controllers', default=','.join(CONTROLLERS))
  p.add_argument('--noise', action='store_true',
                 help='the controller sees one training seed\'s accuracy per evaluation')
  p.add_argument('--require_bar', action='store_true', help='exit 1 when the bar fails')
  p.add_argument('--tune', action='store_true', help='run TUNE_GRID on seeds 1000-1049 only')
  args = p.parse_args(argv)
  budgets = sorted({int(b) for b in args.budgets.split(',')})
  names = ['random'] + [c for c in args.controllers.split(',') if c and c != 'random']
  bad = sorted(set(names) - set(CONTROLLERS))
  if bad or budgets[0] < 1 or args.seeds < 2:
    p.error(f'controllers must be among {CONTROLLERS} (got {bad}), budgets >= 1, seeds >= 2')
  try:
    table = nasbench.load_macro(args.nas_bench_macro)
    lat = nasbench.latency_from_table(table, args.latency_table)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(f'NAS-Bench-Macro: {len(table.keys)} architectures; latency {args.latency_table} '
        f'{lat.min():.2f}-{lat.max():.2f} ms; targets: '
        + ', '.join(f'p{q} = {np.percentile(lat, q):.3f} ms' for q in TARGET_PERCENTILES)
        + f'; controller sees {"one seed" if args.noise else "the mean"} accuracy', flush=True)
  if args.tune:
    tune(table, lat, [n for n in names if n != 'random'], args.noise)
    return 0
  t0 = time.time()
  seeds = list(range(args.seeds))
  results = evaluate(table, lat, names, SHORT_BUDGET, seeds, budgets, args.noise)
  stats = budget_stats(results, budgets, len(seeds))
  print_report(results, stats, budgets)
  meta = dict(args=vars(args), budgets=budgets, seeds=len(seeds), hyperparameters=SHORT_BUDGET,
              latency=args.latency_table, seconds=time.time() - t0)
  write_outputs(args.workdir, results, stats, meta)
  check_ok, bar_ok, lines = verdicts(stats, results, names)
  for line in lines:
    print(line)
  bar = {True: 'PASS', False: 'FAIL', None: f'not measured (no budget {BAR_BUDGET})'}[bar_ok]
  print(f'\nclosed-form check of random: {"ok" if check_ok else "FAILED"}; bar at '
        f'{BAR_BUDGET} samples ({", ".join(BAR_KINDS)}): {bar}; '
        f'{time.time() - t0:.0f} s; outputs in {args.workdir}')
  if not check_ok or (args.require_bar and not bar_ok):
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
