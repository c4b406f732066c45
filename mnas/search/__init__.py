"""Architecture search: the methods, the evaluation service they share, their results.

  evaluation.py          the one rule for evaluating a candidate once (reuse, skip, failure,
                         resume) and recording it; every method below evaluates through it
  multi_trial.py         MnasNet-style search: each sample trained on the proxy task
  candidate_parallel.py  the candidates of a step dealt to several processes
  oneshot.py             TuNAS: a weight-sharing supernet trained with the controller
  netadapt.py, pipeline.py   MobileNetV3's recipe: search -> NetAdapt -> train -> export
  store.py, results.py, summaries.py, workdir.py   the results store, the report and
                         Pareto front, TensorBoard, the workdir's record

`run(config, workdir)` runs the method `config.method` names ('multi_trial', 'oneshot' or
'pipeline'); `report(workdir)` reports the search a workdir holds.
"""

from __future__ import annotations

import os

from mnas import distributed
from mnas.search import workdir as workdir_lib


def _module(method: str):
  if method == 'multi_trial':
    from mnas.search import multi_trial
    return multi_trial
  if method == 'oneshot':
    from mnas.search import oneshot
    return oneshot
  from mnas.search import pipeline
  return pipeline


def run(config, workdir: str, **kwargs) -> dict:
  """Runs (or resumes) the search `config` describes in `workdir`; returns its summary.

  `kwargs` go to the method's `run` (e.g. `proxy=`, `predictor=` to inject fakes).
  """
  if distributed.is_main():  # Only process 0 writes to the workdir.
    workdir_lib.open_workdir(workdir, config)
  return _module(workdir_lib.method_of(config)).run(config, workdir, **kwargs)


def report(workdir: str) -> dict:
  """Prints what the search in `workdir` found (and writes its plots and best_arch.json)."""
  method = workdir_lib.read_method(workdir)
  if method == 'multi_trial':
    from mnas.search import results
    return results.report(workdir)
  return _module(method).report(workdir)


def main(config, workdir: str) -> dict:
  """`launch.py search`: runs the search, then prints its report and where to look."""
  board = f'tensorboard --logdir {workdir} --host 127.0.0.1'
  print(f'TensorBoard: {board}', flush=True)
  summary = run(config, workdir)
  if 'trained' in summary:  # A process > 0 of a candidate-parallel search: process 0 reports.
    print(f'process {summary["process"]}: trained {summary["trained"]} candidates')
    return summary
  report(workdir)
  print(f'\nInspect the search with:\n  {board}')
  if workdir_lib.method_of(config) != 'pipeline':
    print(f'Best architecture: {os.path.join(workdir, "best_arch.json")}')
  return summary
