"""The multi-trial hardware-aware search loop (MnasNet, Tan et al. 2019, section 3, Figure 1).

Each controller step: sample a batch of architectures, predict their latency from the
measured table (cheap, before training), with `config.screen` keep the best predicted of k
times as many samples (`mnas.search.screening`), evaluate each candidate on the proxy task
(`mnas.search.evaluation`), compute rewards, update the controller, log, checkpoint.
Everything lands in the workdir:

  workdir/results.sqlite   one row per candidate evaluation (`mnas.search.store`)
  workdir/controller/      checkpoints of the controller state (`mnas.checkpoints`)
  workdir/latency/         the measured latency table (built on first use)
  workdir/tensorboard/     the search's summaries (one run; mnas.search.summaries)
  workdir/hparams/         one HParams trial per candidate (a run each)

Resume: killing the process at any moment and running the same command continues from the
last controller checkpoint; the step's samples are drawn again from the same RNG, finished
candidates of that step are read back from the store (neither lost nor duplicated) and the
ones that were in flight are evaluated again. A step's summaries are written before its
checkpoint, so a kill loses none.

With several processes (`jax.distributed`), process 0 runs this loop and deals the
candidates that need training to every process (`mnas.search.candidate_parallel`).
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import time

import jax
import ml_collections
import numpy as np
from absl import logging

import search_spaces
from mnas import accel_nasbench, checkpoints, config as config_lib, distributed, nasbench, rewards
from mnas import controllers
from mnas.controllers import make_controller
from mnas.search import candidate_parallel, checks, results, screening
from mnas.errors import ConfigError, DataError
from mnas.search.evaluation import Candidate, CandidatesFailedError, Evaluator, Proxy
from mnas.search.store import Store
from mnas.search.summaries import SearchWriter

# The fields read here beyond `checks.COMMON_RULES`, and their allowed values.
RULES = {
    'controller': config_lib.one_of(*controllers.NAMES),
    'controller_kwargs': (lambda v: hasattr(v, 'keys') and set(v) <= set(controllers.NAMES),
                          f'a dict of hyperparameters by controller, {controllers.NAMES}'),
    'num_steps': config_lib.POSITIVE, 'candidates_per_step': config_lib.POSITIVE,
    'max_seconds': config_lib.NON_NEGATIVE,
    'max_latency_ms': config_lib.optional(config_lib.above(0))}


def check_config(config, *, latency: bool = True, train: bool = True) -> None:
  """Raises ConfigError (or DataError) for a config this search cannot run, before any work;
  `latency` / `train`: check those blocks too (not when a predictor / proxy is given)."""
  nasbench.check_proxy(config)
  if config.proxy.kind == 'accel_nasbench':
    accel_nasbench.check_proxy(config)
  screening.check_config(config)
  checks.check(config, RULES, latency=latency and config.proxy.kind != 'accel_nasbench',
               train=train and config.proxy.kind == 'train')
  controller = make_controller(config.controller,
                               search_spaces.get_space(config.space).num_options,
                               **controller_kwargs(config))
  multi = getattr(controller, 'selection', None) == 'nsga2'
  pareto = config.reward.kind == 'pareto'
  if multi != pareto and config.controller != 'random':
    which = (f'config.reward.kind={config.reward.kind!r}' if multi else
             f"config.reward.kind='pareto' with controller {config.controller!r}")
    raise ConfigError(
        f'{which} is not allowed: a multi-objective search is reward.kind=\'pareto\' with '
        "controller 'evolution' and controller_kwargs.evolution.selection='nsga2' (or "
        "'random'); the other controllers learn from one reward")


def controller_kwargs(config) -> dict:
  """The chosen controller's hyperparameters that differ from its defaults."""
  return dict(config.controller_kwargs.get(config.controller, {}))


def make_proxy(config: ml_collections.ConfigDict) -> Proxy:
  """`config.proxy.kind`: training on `config.train`, or a benchmark's table (mnas.nasbench);
  Accel-NASBench's surrogates come from `mnas.search.run` (mnas.accel_nasbench.search_parts)."""
  if config.proxy.kind == 'accel_nasbench':
    raise ConfigError("config.proxy.kind='accel_nasbench' runs through mnas.search.run, in one "
                      'process: its surrogates answer in milliseconds')
  return train_proxy(config) if config.proxy.kind == 'train' else nasbench.proxy_for(config)


class TrainProxy:
  """The proxy task: `arch -> TrainResult` (`mnas.train.train_candidate` on `train_config`,
  `budget_steps` if given, else the config's).

  `prepare(arch)` names the candidate to train next: its programs are compiled on a
  background thread (`mnas.train.compile_ahead`) once the current candidate's first step is
  done (its train program compiled; its evaluation program may still be compiling).
  `Evaluator.evaluate_all` calls it. A candidate trains on this process's devices only,
  whatever the number of processes.
  """

  def __init__(self, train_config, seed: int, budget_steps: int | None = None):
    self.config, self.seed, self.budget_steps = train_config, seed, budget_steps
    self._ahead = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='compile_ahead')
    self._next = None

  def prepare(self, arch, now: bool = False) -> None:
    """Compiles `arch` ahead: `now`, or once the current candidate's first step is done."""
    if now:
      self._ahead.submit(self._compile, arch)
    else:
      self._next = arch

  def __call__(self, arch):
    from mnas import train as train_lib
    following, self._next = self._next, None  # Not kept for another run if this one fails.

    def compile_next(step, metrics):
      nonlocal following
      if following is not None:
        self._ahead.submit(self._compile, following)
        following = None
    return train_lib.train_candidate(arch, self.config, workdir=None, seed=self.seed,
                                     budget_steps=self.budget_steps, callbacks=[compile_next],
                                     devices=jax.local_devices())

  def _compile(self, arch) -> None:
    from mnas import train as train_lib
    try:
      train_lib.compile_ahead(arch, self.config, jax.local_devices())
    except Exception as e:  # It compiles again when it trains, and fails there if it must.
      logging.warning('compiling %s ahead of time failed: %s', arch.id, e)


def train_proxy(config: ml_collections.ConfigDict) -> Proxy:
  """The proxy task of a search config: a `TrainProxy` on `config.train`."""
  return TrainProxy(config.train, config.seed)


def decode(space, config, indices) -> search_spaces.Architecture:
  """The architecture of decision `indices`, at `config.resolution` when that is set."""
  arch = space.decode(np.asarray(indices))
  return arch.replace(resolution=config.resolution) if config.resolution else arch


def feedback(config, cands: list[Candidate]) -> np.ndarray:
  """What the controller learns from: the rewards [n], or with reward.kind 'pareto' the
  objectives [n, 2] (accuracy, -latency; a failed candidate's accuracy is failure_reward)."""
  if config.reward.kind != 'pareto':
    return np.array([c.reward for c in cands], np.float32)
  acc = [c.accuracy if c.ok else config.failure_reward for c in cands]
  return np.asarray(rewards.objectives(np.array(acc), np.array([c.latency_ms for c in cands])),
                    np.float32)


def stop_if_all_failed(step: int, cands: list[Candidate]) -> None:
  """Raises CandidatesFailedError when every candidate of a step (of several) failed for the
  same reason: a broken setting, not a bad architecture; the search would learn nothing."""
  reasons = {c.reason for c in cands if c.status == 'failed'}
  if len(cands) > 1 and all(c.status == 'failed' for c in cands) and len(reasons) == 1:
    raise CandidatesFailedError(f'every candidate of step {step + 1} failed: {reasons.pop()}. '
                                'Fix the cause and start a new --workdir')


def log_progress(where: str, cands, store: Store, seconds: float, steps_done: int,
                 steps_left: int) -> None:
  """One line a step: its rewards, the best so far, candidates done, time and ETA."""
  from mnas.train import fmt_seconds
  rewards = [c.reward for c in cands]
  best = results.best_rows(store.finished(), 1)
  eta = seconds / max(steps_done, 1) * steps_left
  logging.info('%s done: reward mean %.4f, max %.4f; best so far %s; %d candidates; %s, '
               'ETA %s', where, np.mean(rewards), np.max(rewards),
               f'{best[0]["reward"]:.4f} (step {best[0]["step"]} slot {best[0]["slot"]})'
               if best else '-', store.count('done') + store.count('reused'),
               fmt_seconds(seconds), fmt_seconds(eta))


def run(config: ml_collections.ConfigDict, workdir: str, *, proxy: Proxy | None = None,
        predictor=None, screen=None) -> dict:
  """Runs (or resumes) a search; returns a summary with the best candidate.

  `proxy` (default: `make_proxy`, training or a benchmark lookup), `predictor` (default:
  the measured table in workdir/latency) and `screen` (`archs -> predicted accuracies`;
  default: `config.screen.predictor`, see mnas.search.screening) can be injected, e.g. fakes
  in tests.
  """
  config_lib.check(config, {**checks.COMMON_RULES, **RULES})
  space = search_spaces.get_space(config.space)
  screen = screen or screening.predictor_for(config)
  proxy = proxy or make_proxy(config)
  if not distributed.is_main():  # Candidate-parallel: only process 0 writes to the workdir.
    return candidate_parallel.serve(lambda idx: decode(space, config, idx), proxy)
  os.makedirs(workdir, exist_ok=True)
  if predictor is None:
    from mnas import latency
    predictor = latency.predictor_for_search(config.latency, space,
                                             os.path.join(workdir, 'latency'))
  overhead = getattr(predictor, 'overhead_ms', None)  # A table's, in every prediction.
  if overhead and config.reward.kind != 'pareto' and config.reward.target_ms <= overhead:
    logging.warning('latency target T = %.4g ms is at or below the latency table\'s constant '
                    'overhead (%.4g ms, part of every prediction): no candidate can meet it',
                    config.reward.target_ms, overhead)
  controller = make_controller(config.controller, space.num_options, **controller_kwargs(config))
  store = Store(os.path.join(workdir, 'results.sqlite'))
  reward_fn = rewards.from_config(config.reward)
  evaluator = Evaluator(store, proxy=proxy, reward_fn=reward_fn,
                        failure_reward=config.failure_reward,
                        max_latency_ms=config.max_latency_ms, num_classes=config.num_classes)
  ckpt = checkpoints.Checkpointer(os.path.join(workdir, 'controller'), async_save=False,
                                  this_process_only=True)
  init_rng, rng = jax.random.split(jax.random.key(config.seed))
  state, start = controller.init(init_rng), 0
  restored = ckpt.restore(state)
  if restored is not None:
    start, state, _ = restored
    finished = len(store.finished())
    if not finished:
      raise DataError(f'{store.path} holds no evaluation, but the controller was checkpointed '
                      f'after step {start}: the store was lost or truncated. Restore it, or '
                      'start a new --workdir')
    logging.info('resuming the search at controller step %d (%d evaluations in the store)',
                 start, finished)
  writer = SearchWriter(os.path.join(workdir, 'tensorboard'), space, config,
                        plot=functools.partial(results.pareto_plot,
                                               info=results.plot_info(config, predictor)))
  from mnas.latency import runner
  measured_apart = runner.measured_apart(config.latency)  # A compile may run beside them.
  t_start, end, plans = time.time(), start, 0
  try:
    for step in range(start, config.num_steps):
      t0 = time.time()
      n = config.candidates_per_step
      idx = np.asarray(controller.sample(state, jax.random.fold_in(rng, step),
                                         n * (config.screen.factor if screen else 1)), np.int32)
      archs = [decode(space, config, i) for i in idx]
      if measured_apart and not screen:  # The first candidate compiles while the table's new
        evaluator.prepare(step, Candidate(0, archs[0], idx[0]))  # entries are measured.
      lat = np.asarray(predictor.predict_batch(archs), np.float64)
      if screen:  # The best predicted n of the k x n samples (mnas.search.screening).
        keep = screening.select(archs, lat, screen(archs), reward_fn, n)
        idx, lat, archs = idx[keep], lat[keep], [archs[i] for i in keep]
      cands = [Candidate(s, a, i, latency_ms=float(ms))
               for s, (a, i, ms) in enumerate(zip(archs, idx, lat))]
      if jax.process_count() > 1:
        candidate_parallel.evaluate(evaluator, step, cands, plan_id=plans)
        plans += 1
      where = f'step {step} ({step + 1} of {config.num_steps})'  # The store's step.
      for c in evaluator.evaluate_all(step, cands):
        logging.info('%s slot %d %s: %s, accuracy %s, latency %.4g ms, reward %.4f%s', where,
                     c.slot, c.arch.id, c.status,
                     '-' if c.accuracy is None else f'{c.accuracy:.4f}', c.latency_ms, c.reward,
                     f' ({c.reason})' if c.reason else '')
      stop_if_all_failed(step, cands)
      active = np.stack([space.active(i) for i in idx])
      state, metrics = controller.update(state, idx, active, feedback(config, cands))
      end = step + 1
      writer.write_step(step, cands, metrics, controller.probabilities(state), store,
                        seconds=time.time() - t0)
      ckpt.save(end, state)
      log_progress(where, cands, store, time.time() - t_start, end - start,
                   config.num_steps - end)
      out_of_time = config.max_seconds and time.time() - t_start > config.max_seconds
      if out_of_time and end < config.num_steps:
        logging.warning('search: max_seconds %g reached after step %d of %d; run again to resume',
                        config.max_seconds, end, config.num_steps)
        break
  finally:
    if jax.process_count() > 1:  # Also when this process stops early: the others end too.
      candidate_parallel.finish(plan_id=plans)
    writer.close()
    ckpt.close()
  finished = store.finished()
  store.close()
  best = results.best_rows(finished, 1)
  return {'workdir': workdir, 'evaluations': len(finished), 'best': best[0] if best else None}
