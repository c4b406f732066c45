"""Candidate-parallel search: the candidates of a step trained on every process at once.

Several processes joined by `jax.distributed` (see `mnas.distributed`) run the same search
command. Process 0 samples, predicts latencies, owns the store, the controller, its
checkpoints and the summaries (`mnas.search.multi_trial`); the candidates of a step that
need training are dealt round-robin to the P processes, which train them on their own
local devices. The plan and the results travel through the coordinator's key-value store;
process 0 records every result in the store as soon as it arrives, so if any process dies
only the candidates in flight are lost, and the usual resume re-runs exactly those.
Throughput scales with P (candidates per step / P trainings per process); the controller
update stays sequential.
"""

from __future__ import annotations

import concurrent.futures
import copy
import itertools
import json
import time
from typing import Callable

import jax
from absl import logging

from mnas import distributed
from mnas.search.evaluation import Candidate, Evaluator, Outcome, Proxy
from mnas.search.store import Store


def _remote(step: int, slot: int) -> Proxy:
  """A proxy that waits for the result another process publishes for (step, slot)."""
  def proxy(arch):
    del arch  # Trained by the process the slot was dealt to (`serve`).
    return Outcome(**json.loads(distributed.kv_get(f'search/result/{step}/{slot}')))
  return proxy


def evaluate(evaluator: Evaluator, step: int, cands: list[Candidate], plan_id: int) -> None:
  """Process 0: evaluates the step's candidates on all processes, recording each as it ends.

  The candidates `evaluator` would evaluate (first occurrence of each architecture) are
  dealt round-robin to the processes; the plan goes to the key-value store under `plan_id`.
  One thread per process records that process's candidates in order (its own store
  connection), so the 'running' rows are the candidates really in flight. Afterwards every
  candidate of the step is in the store, and `evaluator.evaluate` reads them back.
  """
  todo, ids = [], set()
  for c in cands:
    if c.arch.id not in ids and evaluator.action(step, c)[0] == 'evaluate':
      todo.append(c)
      ids.add(c.arch.id)
  groups = [todo[p::jax.process_count()] for p in range(jax.process_count())]
  distributed.kv_set(f'search/plan/{plan_id}', json.dumps(
      {'step': step, 'work': [[[c.slot, c.indices.tolist()] for c in g] for g in groups]}))

  def record(p):
    own = copy.copy(evaluator)
    own.store = Store(evaluator.store.path)
    try:
      for c in groups[p]:
        own.evaluate(step, c, proxy=None if p == 0 else _remote(step, c.slot))
    finally:
      own.store.close()

  with concurrent.futures.ThreadPoolExecutor(len(groups)) as pool:
    for f in [pool.submit(record, p) for p in range(len(groups))]:
      f.result()


def finish(plan_id: int) -> None:
  """Process 0: tells the other processes that no plan follows."""
  distributed.kv_set(f'search/plan/{plan_id}', 'null')


def serve(decode: Callable, proxy: Proxy) -> dict:
  """Processes > 0: trains the candidates process 0 deals out until it says it is done."""
  trained = 0
  for plan_id in itertools.count():
    plan = json.loads(distributed.kv_get(f'search/plan/{plan_id}'))
    if plan is None:
      break
    for slot, indices in plan['work'][jax.process_index()]:
      t0 = time.time()
      cand = Candidate(slot, decode(indices))
      Evaluator.run_proxy(cand, proxy)
      logging.info('step %d slot %d: %s in %.1fs', plan['step'] + 1, slot, cand.status,
                   time.time() - t0)
      distributed.kv_set(f'search/result/{plan["step"]}/{slot}', json.dumps(
          dict(status=cand.status, reason=cand.reason, val_accuracy=cand.accuracy)))
      trained += 1
  return {'process': jax.process_index(), 'trained': trained}
