"""Proxy fidelity: does the proxy task rank architectures as a longer training does?

  python launch.py proxy-check --config experiments/proxy_check.py --workdir DIR

A proxy task is only worth its name if its ranking of architectures predicts the ranking
after longer training (MnasNet chose its 5-epoch proxy for that: Tan et al. 2019, section
4.1). This samples `config.num_archs` architectures of `config.space` (uniformly, numpy seed
`config.seed`, at `config.resolution`), trains each with the proxy (`config.train`, its
`num_train_steps`) and with a reference training `config.reference_factor` times as long
(same recipe, the schedule stretched), and compares the two rankings of their validation
accuracies: Kendall's tau, Spearman's rho, and the overlap of the top `config.top_k`.

Every training goes through the search's evaluation service (`mnas.search.evaluation`), so a
killed run resumes where it stopped (finished trainings are kept, the one in flight runs
again) and a crashed training is recorded as failed (left out of the rankings):

  workdir/results.sqlite        one row per training, stages 'proxy' and 'reference'
  workdir/proxy_check.json      the statistics and both accuracies of every architecture
  workdir/proxy_check.png       proxy accuracy against reference accuracy
  workdir/tensorboard/          the same scatter plot, the statistics as scalars
"""

from __future__ import annotations

import os

import numpy as np
from absl import logging

import search_spaces
from mnas import config as config_lib, jsonfile, metrics, workdir as workdir_lib
from mnas.errors import ConfigError
from mnas.search import multi_trial
from mnas.search.evaluation import Candidate, Evaluator
from mnas.search.store import Store

STAGES = ('proxy', 'reference')
RULES = {
    'space': config_lib.one_of(*search_spaces.SPACES),
    'resolution': config_lib.at_least(0, integer=True), 'seed': config_lib.INT,
    'num_classes': config_lib.POSITIVE, 'num_archs': config_lib.at_least(3, integer=True),
    'reference_factor': config_lib.above(1), 'top_k': config_lib.POSITIVE}


def check_config(config) -> None:
  """Raises ConfigError (or DataError) before any work: the fields, then the proxy task."""
  config_lib.check(config, RULES)
  if config.top_k > config.num_archs:
    raise ConfigError(f'config.top_k={config.top_k} is not allowed: at most '
                                 f'config.num_archs ({config.num_archs})')
  if not config.train.num_train_steps or config.train.num_train_steps < 1:
    raise ConfigError('config.train.num_train_steps must be >= 1: the proxy '
                                 'budget the reference multiplies')
  from mnas import train as train_lib
  train_lib.check_config(config.train, 'config.train')


def main(config, workdir: str) -> dict:
  """`launch.py proxy-check`: checks the config, locks the workdir (resumed only with the
  config it was made with, `mnas.workdir`), runs."""
  check_config(config)
  with workdir_lib.hold(workdir, 'proxy_check', config):
    return run(config, workdir)


def sample(config) -> list:
  """The architectures compared: `num_archs` distinct uniform samples of the space."""
  space = search_spaces.get_space(config.space)
  rng, archs, seen = np.random.default_rng(config.seed), [], set()
  for _ in range(100 * config.num_archs):
    arch = space.sample(rng)
    arch = arch.replace(resolution=config.resolution) if config.resolution else arch
    if arch.id not in seen:
      seen.add(arch.id)
      archs.append(arch)
    if len(archs) == config.num_archs:
      return archs
  raise ConfigError(f'config.num_archs={config.num_archs}: the space '
                               f'{config.space!r} has only {len(archs)} architectures')


def statistics(proxy: np.ndarray, reference: np.ndarray, top_k: int) -> dict:
  """Kendall's tau (b), Spearman's rho and the top-k overlap of two accuracy vectors."""
  from scipy import stats
  tau = stats.kendalltau(proxy, reference)
  rho = stats.spearmanr(proxy, reference)
  top = lambda a: set(np.argsort(-a, kind='stable')[:top_k].tolist())
  return dict(kendall_tau=float(tau.statistic), kendall_p=float(tau.pvalue),
              spearman_rho=float(rho.statistic), spearman_p=float(rho.pvalue),
              top_k=int(top_k), top_k_overlap=len(top(proxy) & top(reference)) / top_k)


def run(config, workdir: str, *, train_fn=None) -> dict:
  """Trains (or resumes) every architecture with both budgets; writes and returns the report.

  `train_fn(arch, config.train, budget_steps) -> TrainResult` (default
  `mnas.train.train_candidate`) can be injected, e.g. a fake in tests.
  """
  archs = sample(config)
  steps = {'proxy': int(config.train.num_train_steps),
           'reference': int(round(config.reference_factor * config.train.num_train_steps))}

  def proxy(n: int):  # The training proxy compiles the next architecture while one trains.
    if train_fn is None:
      return multi_trial.TrainProxy(config.train, config.seed, budget_steps=n)
    return lambda arch: train_fn(arch, config.train, n)
  os.makedirs(workdir, exist_ok=True)
  store = Store(os.path.join(workdir, 'results.sqlite'))
  acc = {s: np.full(len(archs), np.nan) for s in STAGES}
  try:
    for stage in STAGES:
      evaluator = Evaluator(store, stage=stage, reuse=False, num_classes=config.num_classes,
                            proxy=proxy(steps[stage]))
      for cand in evaluator.evaluate_all(0, [Candidate(i, a) for i, a in enumerate(archs)]):
        acc[stage][cand.slot] = cand.accuracy if cand.ok else np.nan
        logging.info('proxy-check %s %d/%d (%d steps) %s: %s accuracy %s', stage,
                     cand.slot + 1, len(archs), steps[stage], cand.arch.id, cand.status,
                     'n/a' if not cand.ok else f'{cand.accuracy:.4f}')
  finally:
    store.close()
  ok = ~(np.isnan(acc['proxy']) | np.isnan(acc['reference']))
  if ok.sum() < 3:
    raise ConfigError(f'proxy-check: only {int(ok.sum())} of {len(archs)} '
                                 'architectures trained with both budgets; see the failed '
                                 f'rows of {os.path.join(workdir, "results.sqlite")}')
  out = dict(statistics(acc['proxy'][ok], acc['reference'][ok], min(config.top_k, ok.sum())),
             num_archs=len(archs), compared=int(ok.sum()), proxy_steps=steps['proxy'],
             reference_steps=steps['reference'],
             archs=[dict(arch=str(a), proxy=_num(p), reference=_num(r))
                    for a, p, r in zip(archs, acc['proxy'], acc['reference'])])
  jsonfile.write(os.path.join(workdir, 'proxy_check.json'), out)
  _plot(workdir, acc['proxy'][ok], acc['reference'][ok], out)
  print(format_report(out))
  return out


def _num(x: float) -> float | None:
  return None if np.isnan(x) else float(x)


def format_report(out: dict) -> str:
  return (f'proxy ({out["proxy_steps"]} steps) vs reference ({out["reference_steps"]} steps), '
          f'{out["compared"]} of {out["num_archs"]} architectures: Kendall tau '
          f'{out["kendall_tau"]:.3f} (p {out["kendall_p"]:.2g}), Spearman rho '
          f'{out["spearman_rho"]:.3f} (p {out["spearman_p"]:.2g}), top-{out["top_k"]} overlap '
          f'{out["top_k_overlap"]:.2f}')


def _plot(workdir: str, proxy: np.ndarray, reference: np.ndarray, out: dict) -> None:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(4.8, 4.2))
  ax.scatter(proxy, reference, s=18)
  ax.set_xlabel(f'proxy accuracy ({out["proxy_steps"]} steps)')
  ax.set_ylabel(f'reference accuracy ({out["reference_steps"]} steps)')
  ax.set_title(f'Kendall tau {out["kendall_tau"]:.2f}, Spearman rho {out["spearman_rho"]:.2f}',
               fontsize=9)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, 'proxy_check.png'), dpi=110)
  with metrics.MetricWriter(os.path.join(workdir, 'tensorboard')) as w:
    w.write_scalars(0, {k: out[k] for k in ('kendall_tau', 'spearman_rho', 'top_k_overlap')})
    w.write_figures(0, {'proxy_check': fig})
  plt.close(fig)
