"""The hardware-aware search loop (MnasNet, Tan et al. 2019, section 3 and Figure 1).

Each controller step: sample a batch of architectures, predict their latency from the
measured table (cheap, before training), train each candidate on the proxy task, compute
rewards, update the controller, log, checkpoint. Everything lands in the workdir:

  workdir/results.sqlite   one row per candidate evaluation (`mnas.store`)
  workdir/controller/      orbax checkpoints of the controller (params, optimiser, baseline,
                           RNG, step)
  workdir/latency/         the measured latency table (built on first use)
  workdir/tensorboard/     summaries; workdir/tensorboard/hparams/ one HParams trial per candidate

Resume: killing the process at any moment and running the same command continues from the
last controller checkpoint; the step's samples are drawn again from the same RNG, finished
candidates of that step are read back from the store (neither lost nor duplicated) and the
ones that were in flight are trained again.

Candidate-parallel search (several processes joined by `jax.distributed`, see
`mnas.distributed`): every process runs `run` with the same config. Process 0 samples,
predicts latencies, owns the store, the controller, its checkpoints and the summaries; the
candidates of a step that need training are dealt round-robin to the P processes, which
train them on their own local devices (`parallel_evaluate`, `serve_candidates`). The plan
and the results travel through the coordinator's key-value store; process 0 records every
result in the store as soon as it arrives, so if any process dies only the candidates in
flight are lost, and the usual resume re-runs exactly those. Throughput scales with P
(candidates per step / P trainings per process), the controller update stays sequential.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import json
import os
import time
import types
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

import search_spaces
from mnas import counting, distributed, rewards, store as store_lib
from mnas.controllers import make_controller


@dataclasses.dataclass
class Candidate:
  slot: int
  indices: np.ndarray
  arch: Any
  latency_ms: float
  status: str = 'pending'
  accuracy: float | None = None
  reward: float | None = None
  reason: str | None = None
  train_seconds: float = 0.0


def make_reward_fn(config: ml_collections.ConfigDict):
  cfg = config.reward
  return rewards.make_reward(cfg.kind, cfg.target_ms, **dict(cfg.get('params', {})))


class ControllerCheckpoints:
  """Orbax checkpoints of {controller state, step, rng} in workdir/controller."""

  def __init__(self, directory: str, keep: int = 3):
    import orbax.checkpoint as ocp
    self._ocp = ocp
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    if jax.process_count() > 1:  # Only process 0 holds the controller: no cross-process
      os.makedirs(directory, exist_ok=True)  # barriers (orbax then wants the directory made).
      options.create = False
      options.multiprocessing_options = ocp.options.MultiprocessingOptions(
          primary_host=jax.process_index(), active_processes={jax.process_index()})
    self.manager = ocp.CheckpointManager(os.path.abspath(directory), options=options)
    # With several processes orbax refuses process-local jax.Arrays: save host copies.
    self._host = jax.device_get if jax.process_count() > 1 else (lambda tree: tree)

  def restore(self, template: dict) -> dict | None:
    ocp = self._ocp
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        return self.manager.restore(step, args=ocp.args.StandardRestore(self._host(template)))
      except Exception as e:  # A partial checkpoint: fall back to the previous one.
        logging.warning('controller checkpoint %d unreadable (%s); trying an older one', step, e)
    return None

  def save(self, step: int, payload: dict) -> None:
    self.manager.save(step, args=self._ocp.args.StandardSave(self._host(payload)))
    self.manager.wait_until_finished()


def _evaluate(cand: Candidate, config, store, step, reward_fn, train_fn) -> Candidate:
  """Trains one candidate (or reuses an earlier result) and records it in the store."""
  arch = cand.arch
  counts = counting.count(arch, config.get('num_classes', 1000))
  common = dict(latency_ms=cand.latency_ms, params=counts['params'], macs=counts['macs'])
  earlier = store.slot(step, cand.slot)
  if earlier and earlier['status'] != 'running':  # Finished before a restart.
    cand.status, cand.accuracy, cand.reward = earlier['status'], earlier['accuracy'], earlier['reward']
    cand.reason = earlier['reason']
    return cand
  row = store.start(step=step, slot=cand.slot, arch=arch, decisions=cand.indices, **common)
  seen = store.lookup(arch.id)
  limit = config.get('max_latency_ms')
  if seen is not None:
    cand.status, cand.accuracy, cand.reason = 'reused', seen['accuracy'], seen['reason']
    if seen['status'] == 'failed':
      cand.reward = config.failure_reward
    else:
      cand.reward = float(reward_fn(cand.accuracy, cand.latency_ms))
  elif limit and cand.latency_ms > limit:  # Hopeless: not worth training.
    cand.status, cand.reward = 'failed', config.failure_reward
    cand.reason = f'skipped: predicted latency {cand.latency_ms:.2f} ms > max_latency_ms {limit}'
  else:
    t0 = time.time()
    try:
      result = train_fn(arch)
      cand.status, cand.reason = result.status, result.reason
      cand.accuracy = result.val_accuracy
    except Exception as e:  # A crashed candidate is a failed candidate, not a crashed search.
      logging.exception('candidate %s crashed', arch.id)
      cand.status, cand.reason = 'failed', f'{type(e).__name__}: {e}'
    cand.train_seconds = time.time() - t0
    cand.reward = (float(reward_fn(cand.accuracy, cand.latency_ms)) if cand.status == 'done'
                   else config.failure_reward)
  store.finish(row, status=cand.status, reason=cand.reason, accuracy=cand.accuracy,
               reward=cand.reward, train_seconds=cand.train_seconds)
  return cand


def make_train_fn(config: ml_collections.ConfigDict, workdir: str):
  """The proxy task: `arch -> TrainResult` (mnas.train.train_candidate).

  A candidate trains on this process's devices only, whatever the number of processes.
  """
  from mnas import train as train_lib
  def train_fn(arch):
    return train_lib.train_candidate(arch, config.train, workdir=None,
                                     budget_steps=config.train.get('budget_steps'),
                                     budget_epochs=config.train.get('budget_epochs'),
                                     seed=config.seed, devices=jax.local_devices())
  return train_fn


def _decode(space, config, indices):
  arch = space.decode(np.asarray(indices))
  if config.get('resolution'):  # E.g. a CPU-sized run of a 224x224 space.
    arch = arch.replace(resolution=config.resolution)
  return arch


# ---------------------------------------------------------------------------------------------
# Candidate-parallel evaluation over processes.


def _needs_training(cand: Candidate, config, store, step) -> bool:
  """Whether `_evaluate` would train `cand` (not finished earlier, seen, or skipped)."""
  earlier = store.slot(step, cand.slot)
  limit = config.get('max_latency_ms')
  return (not (earlier and earlier['status'] != 'running') and store.lookup(cand.arch.id) is None
          and not (limit and cand.latency_ms > limit))


def _remote_train_fn(step: int, slot: int):
  """A train_fn that waits for the result another process publishes for (step, slot)."""
  def train_fn(arch):
    del arch  # Trained by the process the slot was dealt to (`serve_candidates`).
    return types.SimpleNamespace(**json.loads(distributed.kv_get(f'search/result/{step}/{slot}')))
  return train_fn


def parallel_evaluate(cands, config, store, step, reward_fn, train_fn, plan_id: int) -> None:
  """Process 0: trains the step's candidates on all processes, recording each as it finishes.

  The candidates `_evaluate` would train (first occurrence of each architecture) are dealt
  round-robin to the processes; the plan goes to the key-value store under `plan_id`. One
  thread per process records that process's candidates in order (its own Store connection),
  so the 'running' rows are the candidates really in flight. Afterwards every candidate of
  the step is in the store, and `_evaluate` reads them back (or resolves the rest).
  """
  todo, ids = [], set()
  for c in cands:
    if c.arch.id not in ids and _needs_training(c, config, store, step):
      todo.append(c)
      ids.add(c.arch.id)
  groups = [todo[p::jax.process_count()] for p in range(jax.process_count())]
  distributed.kv_set(f'search/plan/{plan_id}', json.dumps(
      {'step': step, 'work': [[[c.slot, c.indices.tolist()] for c in g] for g in groups]}))

  def record(p):
    own = store_lib.Store(store.path)
    try:
      for c in groups[p]:
        fn = train_fn if p == 0 else _remote_train_fn(step, c.slot)
        _evaluate(c, config, own, step, reward_fn, fn)
    finally:
      own.close()

  with concurrent.futures.ThreadPoolExecutor(len(groups)) as pool:
    for f in [pool.submit(record, p) for p in range(len(groups))]:
      f.result()


def serve_candidates(config, space, train_fn) -> dict:
  """Processes > 0: trains the candidates process 0 deals out until it says it is done."""
  trained = 0
  for plan_id in itertools.count():
    plan = json.loads(distributed.kv_get(f'search/plan/{plan_id}'))
    if plan is None:
      break
    for slot, indices in plan['work'][jax.process_index()]:
      t0 = time.time()
      try:
        r = train_fn(_decode(space, config, indices))
        out = dict(status=r.status, reason=r.reason, val_accuracy=r.val_accuracy)
      except Exception as e:  # A crashed candidate is a failed candidate, as in `_evaluate`.
        logging.exception('candidate of step %d slot %d crashed', plan['step'], slot)
        out = dict(status='failed', reason=f'{type(e).__name__}: {e}', val_accuracy=None)
      logging.info('step %d slot %d: %s in %.1fs', plan['step'] + 1, slot, out['status'],
                   time.time() - t0)
      distributed.kv_set(f'search/result/{plan["step"]}/{slot}', json.dumps(out))
      trained += 1
  return {'process': jax.process_index(), 'trained': trained}


def run(config: ml_collections.ConfigDict, workdir: str, *, train_fn=None,
        predictor=None) -> dict:
  """Runs (or resumes) a search; returns a summary with the best candidate."""
  from mnas import summaries
  space = search_spaces.get_space(config.space)
  train_fn = train_fn or make_train_fn(config, workdir)
  if not distributed.is_main():  # Candidate-parallel: only process 0 writes to the workdir.
    return serve_candidates(config, space, train_fn)
  os.makedirs(workdir, exist_ok=True)
  if predictor is None:
    from mnas import latency
    predictor = latency.predictor_for_search(config.latency, space, os.path.join(workdir, 'latency'))
  reward_fn = make_reward_fn(config)
  controller = make_controller(config.controller, space.num_options,
                               **dict(config.get('controller_kwargs', {})))
  store = store_lib.Store(os.path.join(workdir, 'results.sqlite'))
  ckpts = ControllerCheckpoints(os.path.join(workdir, 'controller'))
  rng = jax.random.key(config.seed)
  init_rng, rng = jax.random.split(rng)
  # 'step' as a 0-d array: orbax restores no numpy scalars (np.int64) into a template.
  template = {'state': controller.init(init_rng), 'step': np.zeros((), np.int64)}
  restored = ckpts.restore(template)
  payload = restored if restored is not None else template
  state, start = payload['state'], int(payload['step'])
  if start:
    logging.info('resuming the search at controller step %d (%d evaluations in the store)',
                 start, store.count())
  writer = summaries.SearchWriter(os.path.join(workdir, 'tensorboard'), space, config)
  max_seconds, t_start = float(config.get('max_seconds') or 0.0), time.time()
  end = start
  for step in range(start, config.num_steps):
    t0 = time.time()
    idx = np.asarray(controller.sample(state, jax.random.fold_in(rng, step),
                                       config.candidates_per_step), np.int32)
    archs = [_decode(space, config, i) for i in idx]
    lat = np.asarray(predictor.predict_batch(archs), np.float64)
    cands = [Candidate(s, idx[s], archs[s], float(lat[s])) for s in range(len(archs))]
    if jax.process_count() > 1:
      parallel_evaluate(cands, config, store, step, reward_fn, train_fn, step - start)
    for c in cands:
      _evaluate(c, config, store, step, reward_fn, train_fn)
      logging.info('step %d/%d slot %d %s: %s acc=%s lat=%.2fms reward=%.4f %s', step + 1,
                   config.num_steps, c.slot, c.arch.id, c.status,
                   None if c.accuracy is None else round(c.accuracy, 4), c.latency_ms, c.reward,
                   c.reason or '')
    active = np.stack([space.active(i) for i in idx])
    rew = np.array([c.reward for c in cands], np.float32)
    state, metrics = controller.update(state, idx, active, rew)
    ckpts.save(step + 1, {'state': state, 'step': np.asarray(step + 1, np.int64)})
    writer.write_step(step + 1, cands, metrics, controller.probabilities(state), store,
                      seconds=time.time() - t0)
    end = step + 1
    if max_seconds and time.time() - t_start > max_seconds and end < config.num_steps:
      logging.warning('search: max_seconds %g reached after step %d of %d; run again to resume',
                      max_seconds, end, config.num_steps)
      break
  if jax.process_count() > 1:
    distributed.kv_set(f'search/plan/{end - start}', 'null')  # Done: the plans' end.
  writer.close()
  best = best_rows(store, 1)
  summary = {'workdir': workdir, 'evaluations': len(store.finished()),
             'best': best[0] if best else None}
  store.close()
  return summary


def best_rows(store, k: int) -> list[dict]:
  rows = [r for r in store.finished() if r['reward'] is not None and r['status'] != 'failed']
  return sorted(rows, key=lambda r: -r['reward'])[:k]


def pareto_front(rows: list[dict]) -> list[dict]:
  """Rows not dominated in (higher accuracy, lower latency)."""
  front, best_acc = [], -np.inf
  for r in sorted(rows, key=lambda r: (r['latency_ms'], -r['accuracy'])):
    if r['accuracy'] > best_acc:
      front.append(r)
      best_acc = r['accuracy']
  return front


def report(workdir: str, top: int = 10) -> dict:
  """Prints the Pareto front and top candidates; writes pareto.png and best_arch.json."""
  from mnas import summaries
  path = os.path.join(workdir, 'results.sqlite')
  if not os.path.exists(path):
    raise FileNotFoundError(f'no results store at {path}: run a search into this workdir first')
  store = store_lib.Store(path)
  rows = {}
  for r in store.finished():  # One row per architecture (reuses repeat it).
    if r['status'] in ('done', 'reused') and r['accuracy'] is not None:
      rows.setdefault(r['arch_id'], r)
  rows = list(rows.values())
  front = pareto_front(rows)
  best = sorted(rows, key=lambda r: -(r['reward'] or -np.inf))[:top]
  header = f'{"reward":>8} {"acc":>6} {"lat_ms":>7} {"params":>9} {"MACs(M)":>8}  architecture'
  fmt = lambda r: (f'{r["reward"]:8.4f} {r["accuracy"]:6.3f} {r["latency_ms"]:7.2f} '
                   f'{r["params"]:9d} {r["macs"] / 1e6:8.1f}  {r["arch"]}')
  print(f'{len(rows)} architectures evaluated ({store.count("failed")} failed rows)')
  print('\nPareto front (accuracy vs predicted latency):\n' + header)
  print('\n'.join(fmt(r) for r in front))
  print(f'\nTop {len(best)} by reward:\n' + header)
  print('\n'.join(fmt(r) for r in best))
  summaries.pareto_plot(rows, front, os.path.join(workdir, 'pareto.png'))
  out = {}
  if best:
    out = {'arch': best[0]['arch'], 'id': best[0]['arch_id'], 'accuracy': best[0]['accuracy'],
           'latency_ms': best[0]['latency_ms'], 'reward': best[0]['reward'],
           'params': best[0]['params'], 'macs': best[0]['macs']}
    with open(os.path.join(workdir, 'best_arch.json'), 'w') as f:
      json.dump(out, f, indent=1)
    print(f'\nwrote {workdir}/pareto.png and {workdir}/best_arch.json '
          '(accepted by describe, train and latency predict as --arch)')
  store.close()
  return out
