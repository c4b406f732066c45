r"""Each controller against random search at equal budget, over several seeds.

  python benchmarks/search_vs_random.py [--seeds 0,1,2] [--controllers mnasnet,reinforce]
      [--num_steps 8] [--candidates_per_step 3] [--train_steps 1000] [--jobs 2]
      [--workdir /tmp/mnas_bench_search]

The defaults are the run reported in the README (55 minutes on 2 cores with a complete
latency table; ~30 s per new architecture). `--controllers mnasnet,reinforce,evolution`
adds aging evolution (not in that run: another ~25 minutes).

Runs `mnas.search.multi_trial.run` on the quickstart setting (experiments/quickstart.py: the
tiny space at 32x32, the embedded dataset, a measured xla-cpu latency table, MnasNet's soft
reward) once per (controller, seed), random search included, each with the same budget of
num_steps x candidates_per_step samples (a sample of an architecture seen before counts).

Two settings differ from the quickstart, both for the signal a search needs to learn from
in a few dozen samples:
  * the proxy task trains `--train_steps` (1,000) steps instead of 400: after 400 steps of
    32 images the tiny space's candidates reach 12-16% (chance 10%), after 1,000 16-26%
    (median 21%, over the 215 architectures of the run reported in the README);
  * the controllers use the quickstart's short-budget hyperparameters (their defaults
    are the papers', meant for thousands of samples). They were chosen on a synthetic
    reward at the same budget (`--tune`), not on this benchmark's results.

Every run shares one latency table (all the space's entries, measured before the runs, so
that no run measures while another trains) and one cache of proxy-task results (an
architecture is trained once across all runs, an SQLite file keyed by its id and the
step count), so a controller is judged by what it samples, not by training noise. Runs go
`--jobs` at a time in separate processes (XLA compiles on one core; two jobs overlap one
compiling with the other training). The runs resume: kill the benchmark and run it again.
Prints, per controller, the mean over seeds of the best reward found and of the mean
reward of the last quarter of its samples, and writes them to workdir/results.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import sqlite3
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import quickstart  # noqa: E402
from mnas import latency, train  # noqa: E402
from mnas.search import multi_trial, store as store_lib, target  # noqa: E402
import search_spaces  # noqa: E402

# Learning rates / population for a budget of a few dozen samples (a handful of updates).
SHORT_BUDGET = {name: dict(kw) for name, kw in quickstart.get_config().controller_kwargs.items()}


class ProxyCache:
  """Proxy-task results shared by every run and process (SQLite: safe to share)."""

  def __init__(self, path: str, config):
    self.path, self.config = path, config
    with self._db() as db:
      db.execute('CREATE TABLE IF NOT EXISTS proxy (arch_id TEXT, steps INTEGER, status TEXT, '
                 'reason TEXT, val_accuracy REAL, seconds REAL, PRIMARY KEY (arch_id, steps))')

  def _db(self):
    return sqlite3.connect(self.path, timeout=600)

  def __call__(self, arch) -> train.TrainResult:
    steps = int(self.config.num_train_steps)
    with self._db() as db:
      row = db.execute('SELECT status, reason, val_accuracy FROM proxy WHERE arch_id=? AND steps=?',
                       (arch.id, steps)).fetchone()
    if row is None:
      t0 = time.time()
      r = train.train_candidate(arch, self.config, budget_steps=steps, seed=0)
      row = (r.status, r.reason, r.val_accuracy)
      with self._db() as db:
        db.execute('INSERT OR REPLACE INTO proxy VALUES (?, ?, ?, ?, ?, ?)',
                   (arch.id, steps, *row, time.time() - t0))
    return train.TrainResult(status=row[0], reason=row[1], val_accuracy=row[2])

  def stats(self) -> tuple[int, float]:
    with self._db() as db:
      n, seconds = db.execute('SELECT COUNT(*), SUM(seconds) FROM proxy').fetchone()
    return n, seconds or 0.0


def make_config(args, name: str, seed: int):
  c = quickstart.get_config()
  c.num_steps, c.candidates_per_step = args.num_steps, args.candidates_per_step
  c.train.num_train_steps = args.train_steps
  c.hparams_per_candidate = False
  c.controller, c.seed = name, seed
  return c


def run_one(args, name: str, seed: int) -> dict:
  """One search; returns its rewards in sample order."""
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  cfg = make_config(args, name, seed)
  space = search_spaces.get_space(cfg.space)
  predictor = latency.predictor_for_search(cfg.latency, space,
                                           os.path.join(args.workdir, 'latency'), progress=False)
  # The quickstart's relative target, resolved once for every run (mnas/search/target.py).
  cfg = target.resolve(cfg, space, predictor, args.workdir)
  workdir = os.path.join(args.workdir, f'{name}_seed{seed}')
  t0 = time.time()
  multi_trial.run(cfg, workdir, proxy=ProxyCache(os.path.join(args.workdir, 'proxy_cache.sqlite'),
                                                    cfg.train), predictor=predictor)
  rows = store_lib.Store(os.path.join(workdir, 'results.sqlite')).finished()
  rows.sort(key=lambda r: (r['step'], r['slot']))
  return dict(controller=name, seed=seed, seconds=time.time() - t0,
              rewards=[r['reward'] for r in rows],
              accuracies=[r['accuracy'] for r in rows],
              latencies=[r['latency_ms'] for r in rows],
              trained=sum(r['status'] == 'done' for r in rows))


def summarize(rewards) -> tuple[float, float]:
  r = np.asarray(rewards, np.float64)
  return r.max(), r[-max(1, len(r) // 4):].mean()


def tune(args, controllers, num_seeds: int = 20) -> None:
  """SHORT_BUDGET's check: a synthetic reward at the benchmark's budget (no training).

  Reward = 0.2 + a random utility per option of each decision (summed, spread ~0.015 like
  the proxy accuracies of the tiny space) + N(0, 0.01) noise; fresh utilities per seed.
  """
  import jax
  from mnas import controllers as ctl
  space = search_spaces.get_space('tiny')
  no = space.num_options
  print(f'{"controller":<12} {"kwargs":<44} {"best":>7} {"last 25%":>9}  ({num_seeds} seeds)')
  for name in controllers:
    out = []
    for seed in range(num_seeds):
      r = np.random.default_rng(1000 + seed)
      util = [r.normal(0, 1, k) for k in no]
      c = ctl.make_controller(name, no, **SHORT_BUDGET[name])
      rng = jax.random.PRNGKey(seed)
      state, rewards = c.init(rng), []
      for _ in range(args.num_steps):
        rng, k = jax.random.split(rng)
        x = np.asarray(c.sample(state, k, args.candidates_per_step))
        value = np.array([sum(util[d][i] for d, i in enumerate(row)) for row in x])
        rew = 0.2 + 0.015 * value / np.sqrt(len(no)) + r.normal(0, 0.01, len(x))
        rewards += list(rew)
        state, _ = c.update(state, x, np.ones(x.shape, bool), rew)
      out.append(summarize(rewards))
    best, last = np.mean(out, 0)
    print(f'{name:<12} {str(SHORT_BUDGET[name]):<44} {best:7.4f} {last:9.4f}')


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--seeds', default='0,1,2')
  p.add_argument('--controllers', default='mnasnet,reinforce')
  p.add_argument('--num_steps', type=int, default=8)
  p.add_argument('--candidates_per_step', type=int, default=3)
  p.add_argument('--train_steps', type=int, default=1000)
  p.add_argument('--jobs', type=int, default=2)
  p.add_argument('--workdir', default='/tmp/mnas_bench_search')
  p.add_argument('--tune', action='store_true', help='only the synthetic-reward check')
  args = p.parse_args()
  seeds = [int(s) for s in args.seeds.split(',')]
  names = ['random'] + [c for c in args.controllers.split(',') if c != 'random']
  if args.tune:
    return tune(args, names)
  os.makedirs(args.workdir, exist_ok=True)
  base = make_config(args, 'random', 0)
  space = search_spaces.get_space(base.space)
  predictor = latency.predictor_for_search(base.latency, space,
                                           os.path.join(args.workdir, 'latency'))
  predictor.fill(predictor.table.missing(latency.space_keys(
      space, None, base.latency.resolution, base.latency.num_classes)))
  cache = ProxyCache(os.path.join(args.workdir, 'proxy_cache.sqlite'), base.train)
  t0 = time.time()
  runs = [(name, seed) for seed in seeds for name in names]  # Seed-major: a table early.
  ctx = multiprocessing.get_context('spawn')  # Fresh JAX per process.
  with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=ctx) as pool:
    futures = {pool.submit(run_one, args, *r): r for r in runs}
    results = []
    for f in concurrent.futures.as_completed(futures):
      results.append(f.result())
      n, sec = cache.stats()
      print(f'[{time.time() - t0:7.0f} s] {futures[f][0]} seed {futures[f][1]} done; '
            f'{n} architectures trained so far ({sec / max(n, 1):.1f} s each)', flush=True)
  budget = args.num_steps * args.candidates_per_step
  table = {}
  for name in names:
    per_seed = [summarize(r['rewards']) for s in seeds for r in results
                if r['controller'] == name and r['seed'] == s]
    trained = [r['trained'] for r in results if r['controller'] == name]
    table[name] = dict(best=[b for b, _ in per_seed], last=[seed_last for _, seed_last in per_seed],
                       trained=trained, kwargs=SHORT_BUDGET.get(name, {}))
  print(f'\n{budget} samples per run ({args.num_steps} steps x {args.candidates_per_step}), '
        f'{args.train_steps} proxy steps, seeds {seeds}, {time.time() - t0:.0f} s')
  print(f'{"controller":<11} {"best reward":>18} {"last 25% mean":>18} {"vs random":>10} '
        f'{"trained":>8}  per seed (best / last)')
  rand_last = np.mean(table['random']['last'])
  for name, t in table.items():
    best, last = np.array(t['best']), np.array(t['last'])
    seeds_txt = ' '.join(f'{seed_best:.4f}/{seed_last:.4f}'
                         for seed_best, seed_last in zip(best, last))
    print(f'{name:<11} {best.mean():9.4f} +- {best.std():.4f} '
          f'{last.mean():9.4f} +- {last.std():.4f} '
          f'{last.mean() - rand_last:+10.4f} {np.mean(t["trained"]):8.1f}  {seeds_txt}')
  with open(os.path.join(args.workdir, 'results.json'), 'w') as f:
    json.dump(dict(table=table, runs=results, args=vars(args)), f, indent=1)


if __name__ == '__main__':
  main()
