r"""One-shot (TuNAS) search against MnasNet-style and random search at equal wall-clock.

  python benchmarks/oneshot_vs_mnas.py [--oneshot_steps 600] [--final_steps 1500]
      [--workdir /tmp/mnas_bench_oneshot] [--seed 0]

On the quickstart setting (experiments/quickstart.py: the `tiny` space at 32x32, the embedded
`mnas_shapes` dataset, a measured xla-cpu latency table shared by every method):

  1. the one-shot search (`mnas.oneshot`, TuNAS's settings of experiments/tunas_proxylessnas.py
     scaled to the CPU) runs `--oneshot_steps` supernet steps; its wall time T is the budget;
  2. the MnasNet-style search (LSTM + PPO, every candidate trained on the proxy task) and
     random search run for the same T (`config.max_seconds`);
  3. each method's final architecture (one-shot: the most likely one; the others: the best
     by reward) is trained from scratch with the same short recipe (`--final_steps` steps)
     and evaluated on the held-out validation images.

All three searches use the same reward, TuNAS's absolute reward Q + beta |T/T0 - 1|
(beta = -0.1, T0 = the quickstart's target), so the rewards in the table compare: `reward`
is that function of the from-scratch accuracy and the predicted latency. Search cost is the
search's wall time; the latency table (every entry of the space) is measured before the
searches and shared, so it counts for none of them. Every
run's workdir is kept under --workdir; rerunning skips searches that already finished.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from absl import logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import quickstart, tunas_proxylessnas  # noqa: E402
from mnas import counting, latency, rewards, train  # noqa: E402
from mnas.search import multi_trial, oneshot, results, store, target  # noqa: E402
import search_spaces  # noqa: E402


def _common(c, base):
  """The quickstart's space, resolution, data, latency table and target; TuNAS's reward."""
  c.space, c.resolution, c.seed = base.space, base.resolution, base.seed
  c.latency = base.latency
  c.reward.kind, c.reward.target_ms, c.reward.params = 'tunas_abs', base.reward.target_ms, {}
  return c


def oneshot_config(base, steps: int):
  c = _common(tunas_proxylessnas.get_config('cpu'), base)
  c.num_steps = steps
  c.train.update(dataset=base.train.dataset, min_area=base.train.min_area, batch_size=64)
  c.oneshot.log_every_steps = 50
  return c


def multi_trial_config(base, controller: str, seconds: float):
  c = _common(base.copy_and_resolve_references(), base)
  c.controller, c.num_steps, c.candidates_per_step = controller, 1000, 3
  c.max_seconds = seconds
  c.hparams_per_candidate = False
  return c


def _timed(fn, workdir: str) -> float:
  """Runs fn once per workdir; its wall time is kept in workdir/bench_seconds.json."""
  path = os.path.join(workdir, 'bench_seconds.json')
  if os.path.exists(path):
    return json.load(open(path))['seconds']
  t0 = time.time()
  fn()
  seconds = time.time() - t0
  with open(path, 'w') as f:
    json.dump({'seconds': seconds}, f)
  return seconds


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--oneshot_steps', type=int, default=600)
  p.add_argument('--final_steps', type=int, default=1500)
  p.add_argument('--workdir', default='/tmp/mnas_bench_oneshot')
  p.add_argument('--seed', type=int, default=0)
  args = p.parse_args()
  logging.set_verbosity(logging.INFO)  # The searches' and trainings' progress lines.
  base = quickstart.get_config()
  base.seed = args.seed
  os.makedirs(args.workdir, exist_ok=True)
  space = search_spaces.get_space(base.space)
  predictor = latency.predictor_for_search(base.latency, space,
                                           os.path.join(args.workdir, 'latency'))
  # Every entry of the space, measured before any search starts (resumable).
  predictor.fill(predictor.table.missing(latency.space_keys(
      space, None, base.latency.resolution, base.latency.num_classes)))
  # The quickstart's relative target, resolved once for every search (mnas/search/target.py).
  base = target.resolve(base, space, predictor, args.workdir)
  rows = {}
  wd = os.path.join(args.workdir, 'oneshot')
  os.makedirs(wd, exist_ok=True)
  budget = _timed(lambda: oneshot.run(oneshot_config(base, args.oneshot_steps), wd,
                                      predictor=predictor), wd)
  best = json.load(open(os.path.join(wd, 'best_arch.json')))
  rows['one-shot (TuNAS)'] = dict(seconds=budget, evaluated=f'{args.oneshot_steps} steps',
                                  arch=best['arch'])
  for name, controller in (('MnasNet (LSTM+PPO)', 'mnasnet'), ('random', 'random')):
    wd = os.path.join(args.workdir, controller)
    os.makedirs(wd, exist_ok=True)
    cfg = multi_trial_config(base, controller, budget)
    seconds = _timed(lambda: multi_trial.run(cfg, wd, predictor=predictor), wd)
    best = results.report(wd)
    n = store.Store(os.path.join(wd, 'results.sqlite')).count()
    rows[name] = dict(seconds=seconds, evaluated=f'{n} candidates', arch=best['arch'])

  reward = rewards.make_reward('tunas_abs', base.reward.target_ms)  # As _common sets.
  for name, r in rows.items():
    arch = search_spaces.load_arch(r['arch'])
    result = train.train_candidate(arch, base.train, budget_steps=args.final_steps, seed=0)
    lat = float(predictor.predict_batch([arch])[0])
    counts = counting.count(arch, base.num_classes)
    r.update(accuracy=result.val_accuracy, latency_ms=lat, params=counts['params'],
             macs=counts['macs'],
             reward=float(reward(result.val_accuracy, lat)) if result.status == 'done' else None)

  print(f'\nequal wall-clock ({budget:.0f} s of search each), tiny space at 32x32, mnas_shapes; '
        f'final architectures trained {args.final_steps} steps from scratch; reward '
        f'tunas_abs(T0={base.reward.target_ms} ms)')
  header = (f'{"method":<20} {"search s":>8} {"evaluated":>16} {"val acc":>7} {"lat ms":>7} '
            f'{"reward":>7} {"params":>8} {"MACs(M)":>7}  architecture')
  print(header + '\n' + '-' * len(header))
  for name, r in rows.items():
    print(f'{name:<20} {r["seconds"]:8.0f} {r["evaluated"]:>16} {r["accuracy"]:7.4f} '
          f'{r["latency_ms"]:7.3f} {r["reward"]:7.4f} {r["params"]:8d} {r["macs"] / 1e6:7.2f}  '
          f'{r["arch"]}')
  with open(os.path.join(args.workdir, 'oneshot_vs_mnas.json'), 'w') as f:
    json.dump(rows, f, indent=1)


if __name__ == '__main__':
  main()
