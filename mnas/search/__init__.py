"""Architecture search: the methods, the evaluation service they share, their results.

  evaluation.py          the one rule for evaluating a candidate once (reuse, skip, failure,
                         resume) and recording it; every method below evaluates through it
  multi_trial.py         MnasNet-style search: each sample trained on the proxy task
  candidate_parallel.py  the candidates of a step dealt to several processes
  oneshot.py             TuNAS: a weight-sharing supernet trained with the controller
  netadapt.py, pipeline.py   MobileNetV3's recipe: search -> NetAdapt -> train -> export
  store.py, results.py, summaries.py, checks.py   the results store, the report and Pareto
                         front, TensorBoard, the checks of a config before any work
  target.py              the reward's latency target relative to the table (a quantile of
                         the space's predicted latencies), resolved once per search
  screening.py           samples screened by an accuracy predictor before they are trained

`run(config, workdir)` runs the method `config.method` names ('multi_trial', 'oneshot' or
'pipeline'): it locks the workdir (`mnas.workdir`: one writer at a time), checks the config,
then the workdir's record (resumed only with the config it was made with), and runs;
`report(workdir)` reports the search a workdir holds.
"""

from __future__ import annotations

import contextlib
import os

from absl import logging

import search_spaces
from mnas import workdir as workdir_lib
from mnas.errors import ConfigError
from mnas.search import target

METHODS = ('multi_trial', 'oneshot', 'pipeline')


def _module(method: str):
  if method not in METHODS:
    raise ConfigError(f'config.method={method!r} is not allowed; allowed: one of {METHODS}')
  if method == 'multi_trial':
    from mnas.search import multi_trial
    return multi_trial
  if method == 'oneshot':
    from mnas.search import oneshot
    return oneshot
  from mnas.search import pipeline
  return pipeline


def run(config, workdir: str, **kwargs) -> dict:
  """Checks `config`, then runs (or resumes) its search in `workdir`; returns its summary.

  `kwargs` go to the method's `run` (e.g. `proxy=`, `predictor=` to inject fakes; the blocks
  they replace, `config.train` and `config.latency`, are then not checked).
  """
  from mnas import distributed
  main = distributed.is_main()  # Only process 0 writes to the workdir.
  with workdir_lib.lock(workdir) if main else contextlib.nullcontext():
    method = _module(config.method)
    method.check_config(config, latency='predictor' not in kwargs, train='proxy' not in kwargs)
    if main:
      workdir_lib.check(workdir, config.method, config)
      logging.info('config (kept in %s/workdir.json):\n%s', workdir, config)
      if config.proxy.kind == 'accel_nasbench':  # Surrogates: proxy and hardware metric.
        from mnas import accel_nasbench
        proxy, predictor, config = accel_nasbench.search_parts(config, workdir)
        kwargs.setdefault('proxy', proxy)
        kwargs.setdefault('predictor', predictor)
      if config.reward.target_quantile is not None:  # T relative to the table (target.py).
        kwargs['predictor'] = kwargs.get('predictor') or _predictor(config, workdir)
        config = target.resolve(config, search_spaces.get_space(config.space),
                                kwargs['predictor'], workdir)
    return method.run(config, workdir, **kwargs)


def _predictor(config, workdir: str):
  """The search's latency predictor: its table in workdir/latency (built on first use)."""
  from mnas import latency
  os.makedirs(os.path.join(workdir, 'latency'), exist_ok=True)
  return latency.predictor_for_search(config.latency, search_spaces.get_space(config.space),
                                      os.path.join(workdir, 'latency'))


def context(config, workdir: str) -> dict:
  """What an architecture found by the search in `workdir` needs besides its string form
  (which holds its resolution and width multiplier): the space, classes and proxy dataset,
  and the latency table with the settings it was measured with (`launch.py latency predict
  --arch best_arch.json` uses them; `describe` the classes)."""
  out = dict(space=config.space, num_classes=int(config.num_classes), proxy=config.proxy.kind,
             dataset=config.train.dataset if config.proxy.kind == 'train' else config.proxy.path)
  if config.proxy.kind != 'accel_nasbench':  # Its cost is a surrogate's device metric.
    from mnas.latency import load
    space = search_spaces.get_space(config.space)
    table = load.table_path(config.latency, space, os.path.join(workdir, 'latency'))
    out['latency'] = dict(config=dict(config.latency.to_dict(), space=config.space),
                          table=os.path.abspath(table))
  return out


def report(workdir: str) -> dict:
  """Prints what the search in `workdir` found (and writes its plots and best_arch.json)."""
  kind = workdir_lib.read_kind(workdir)
  if kind == 'multi_trial':
    from mnas.search import results
    config = target.resolved(workdir_lib.read_config(workdir), workdir)
    has_refs = any(s == config.space for _, s in search_spaces.REFERENCES.values())
    predictor = (_predictor(config, workdir)  # The references' latencies, on its table.
                 if has_refs and config.proxy.kind != 'accel_nasbench' else None)
    out = results.report(workdir, context=context(config, workdir),
                         info=results.plot_info(config, predictor))
    if config.proxy.kind == 'accel_nasbench':  # Against EfficientNet-B0 and the files' best.
      from mnas import accel_nasbench
      out['ground_truth'] = accel_nasbench.ground_truth(config, workdir,
                                                        results.finished(workdir)[0])
    elif config.proxy.kind != 'train':  # A benchmark: the exact optimum is known.
      from mnas import nasbench
      out['ground_truth'] = nasbench.ground_truth(config, workdir, results.finished(workdir)[0])
    return out
  if kind not in METHODS:
    raise ConfigError(f'{workdir} holds a {kind} run, not a search: `report` reports searches')
  return _module(kind).report(workdir)


def main(config, workdir: str) -> dict:
  """`launch.py search`: runs the search, then prints its report and where to look."""
  logdir = os.path.join(workdir, 'tensorboard') if config.method == 'multi_trial' else workdir
  board = f'tensorboard --logdir {logdir} --host 127.0.0.1'
  print(f'TensorBoard: {board}', flush=True)
  summary = run(config, workdir)
  if 'trained' in summary:  # A process > 0 of a candidate-parallel search: process 0 reports.
    print(f'process {summary["process"]}: trained {summary["trained"]} candidates')
    return summary
  report(workdir)
  print(f'\nInspect the search with:\n  {board}')
  if config.method == 'multi_trial' and config.hparams_per_candidate:
    print(f'and its candidates in HParams with:\n  tensorboard --logdir '
          f'{os.path.join(workdir, "hparams")} --host 127.0.0.1')
  if config.method != 'pipeline':
    print(f'Best architecture: {os.path.join(workdir, "best_arch.json")}')
  return summary
