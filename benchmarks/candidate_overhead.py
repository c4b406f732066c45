r"""Where a candidate's time goes on the proxy task: compiling and setting up, or training.

  python benchmarks/candidate_overhead.py [--config quickstart] [--num 6] [--steps 0] \
      [--ahead 1] [--per_step 0] [--data_dir DIR]  # --config NAME[:VARIANT]: experiments/

Trains `--num` architectures sampled from the config's space (numpy seed 0, at its
resolution) with its proxy task (`config.train`; `--steps` overrides num_train_steps), one
after the other in one process through the search's own proxy
(`mnas.search.multi_trial.TrainProxy`), and prints per candidate the seconds of
`mnas.train.TrainResult.seconds`: setup (model, initialisation and its compile, data
pipeline), first step (the train step's compile), the other steps, and the final evaluation
(its compile included); overhead is everything but the steps, as a share of the candidate's
time. With `--ahead 1` the next candidate of the same controller step is compiled on a
thread while one trains, as the search does; a step holds `--per_step` candidates (0: the
config's candidates_per_step), so the first of each step compiles as it starts (its train
and evaluation programs beside its initialisation, as in every run). `--ahead 0` compiles
each candidate as it starts. Run it on a quiet machine (compare runs made in one sitting)
and say how loaded it was.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--config', default='quickstart', help='experiments/NAME.py[:VARIANT]')
  p.add_argument('--num', type=int, default=6)
  p.add_argument('--steps', type=int, default=0, help='num_train_steps; 0: the config\'s')
  p.add_argument('--ahead', type=int, default=1, help='compile the next candidate ahead')
  p.add_argument('--per_step', type=int, default=0, help="0: config's candidates_per_step")
  p.add_argument('--data_dir', default=None)
  args = p.parse_args(argv)
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  import search_spaces
  from mnas.search import multi_trial
  name, _, variant = args.config.partition(':')
  module = importlib.import_module(f'experiments.{name}')
  config = module.get_config(variant) if variant else module.get_config()
  if args.steps:
    config.train.num_train_steps = args.steps
  if args.data_dir:
    config.train.data_dir = args.data_dir
  space = search_spaces.get_space(config.space)
  rng = np.random.default_rng(0)
  archs = [space.sample(rng) for _ in range(args.num)]
  archs = [a.replace(resolution=config.resolution) if config.resolution else a for a in archs]
  per_step = args.per_step or config.get('candidates_per_step', 1)
  proxy = multi_trial.TrainProxy(config.train, config.seed)
  print(f'{args.config}: {config.space} at {config.resolution}, {config.train.dataset}, '
        f'{config.train.num_train_steps} steps of {config.train.batch_size}; compile ahead '
        f'{"on" if args.ahead else "off"}, {per_step} candidates per step; load '
        f'{os.getloadavg()[0]:.1f} at start')
  print(f'{"#":>2} {"setup":>6} {"1st step":>8} {"steps":>6} {"eval":>6} {"total":>6} '
        f'{"overhead":>8} {"val acc":>7}  arch')
  totals = []
  for i, arch in enumerate(archs):
    t0 = time.time()
    if args.ahead and (i + 1) % per_step and i + 1 < len(archs):
      proxy.prepare(archs[i + 1])  # As `Evaluator.evaluate_all` does within a step.
    r = proxy(arch)
    total = time.time() - t0
    s = r.seconds
    over = total - s.get('steps', 0.0)
    totals.append((total, over))
    print(f'{i:>2} {s.get("setup", 0):6.1f} {s.get("first_step", 0):8.1f} '
          f'{s.get("steps", 0):6.1f} {s.get("evaluate", 0):6.1f} {total:6.1f} '
          f'{over / total:8.0%} {r.val_accuracy:7.3f}  {arch.id}', flush=True)
  total, over = np.sum(totals, 0)
  print(f'all: {total:.1f} s, overhead {over:.1f} s = {over / total:.0%}; load '
        f'{os.getloadavg()[0]:.1f} at the end')


if __name__ == '__main__':
  main()
