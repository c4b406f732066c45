r"""Each controller against random search at equal budget, over several seeds.

  python benchmarks/search_vs_random.py [--seeds 0,1,2] [--controllers mnasnet,reinforce,evolution]
      [--num_steps 10] [--candidates_per_step 4] [--workdir /tmp/mnas_bench_search]

Runs `mnas.search.run` on the quickstart setting (experiments/quickstart.py: tiny space,
embedded dataset, measured xla-cpu latency table) once per (controller, seed), plus random
search with the same seeds and budget. Every run shares one latency table and one cache of
proxy-task results (an architecture is trained once across all runs: the cache is keyed by
its id and the proxy-task config), so a controller is judged by what it samples, not by
training noise. Prints, per controller, the best reward found and the mean reward of the
last quarter of its samples (mean and spread over seeds).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import quickstart  # noqa: E402
from mnas import latency, search, store as store_lib, train  # noqa: E402
import search_spaces  # noqa: E402


def cached_train_fn(config, cache_path: str):
  cache = json.load(open(cache_path)) if os.path.exists(cache_path) else {}

  def train_fn(arch):
    if arch.id not in cache:
      r = train.train_candidate(arch, config.train, budget_steps=config.train.num_train_steps,
                                seed=0)
      cache[arch.id] = dict(status=r.status, reason=r.reason, val_accuracy=r.val_accuracy)
      with open(cache_path, 'w') as f:
        json.dump(cache, f)
    return train.TrainResult(**{k: cache[arch.id][k] for k in ('status', 'reason', 'val_accuracy')})
  return train_fn


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--seeds', default='0,1,2')
  p.add_argument('--controllers', default='mnasnet,reinforce,evolution')
  p.add_argument('--num_steps', type=int, default=10)
  p.add_argument('--candidates_per_step', type=int, default=4)
  p.add_argument('--workdir', default='/tmp/mnas_bench_search')
  args = p.parse_args()
  seeds = [int(s) for s in args.seeds.split(',')]
  controllers = ['random'] + [c for c in args.controllers.split(',') if c != 'random']
  base = quickstart.get_config()
  base.num_steps, base.candidates_per_step = args.num_steps, args.candidates_per_step
  base.hparams_per_candidate = False
  os.makedirs(args.workdir, exist_ok=True)
  space = search_spaces.get_space(base.space)
  predictor = latency.predictor_for_search(base.latency, space, os.path.join(args.workdir, 'latency'))
  train_fn = cached_train_fn(base, os.path.join(args.workdir, 'proxy_cache.json'))
  results = {}
  for name in controllers:
    for seed in seeds:
      cfg = base.copy_and_resolve_references()
      cfg.controller, cfg.seed = name, seed
      workdir = os.path.join(args.workdir, f'{name}_seed{seed}')
      search.run(cfg, workdir, train_fn=train_fn, predictor=predictor)
      rows = store_lib.Store(os.path.join(workdir, 'results.sqlite')).finished()
      rewards = np.array([r['reward'] for r in rows], np.float64)
      last = rewards[-max(1, len(rewards) // 4):]
      results.setdefault(name, []).append((rewards.max(), last.mean()))
  print(f'\n{"controller":<12} {"best reward":>20} {"mean reward, last 25%":>24}  (over seeds {seeds}, '
        f'{args.num_steps * args.candidates_per_step} candidates each)')
  for name, vals in results.items():
    best, last = np.array(vals).T
    print(f'{name:<12} {best.mean():12.4f} +- {best.std():.4f} {last.mean():16.4f} +- {last.std():.4f}')


if __name__ == '__main__':
  main()
