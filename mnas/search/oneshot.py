r"""One-shot weight-sharing search: TuNAS (Bender et al. 2020).

"Can Weight Sharing Outperform Random Architecture Search? An Investigation With TuNAS"
(CVPR 2020); the released code is google-research/tunas (mobile_architecture_search.py,
controller.py). Instead of training every candidate from scratch (`mnas.search.multi_trial`),
one supernet (`mnas.supernet`) is trained jointly with the controller, at the cost of about
one training run. Each step:

  1. every device samples its own architecture from the controller (independent
     categoricals, `mnas.controllers.Reinforce`); during the first `warmup_*_fraction` of
     the steps each op decision is replaced, with a probability decaying linearly from 1 to
     0, by all of its options at once ("op warm-up") and each filter decision by its largest
     option ("filter warm-up"), independently per decision (TuNAS
     `controller.independent_sample(increase_ops_probability, increase_filters_probability)`);
  2. the shared weights take one gradient step on a training batch (gradients averaged
     over the devices, each with its own architecture; TuNAS `CrossShardOptimizer`);
  3. with the updated weights, each device measures the accuracy of its architecture on a
     batch of the held-out validation split (`rl_batch_multiplier` times the training
     batch; batch norm with the batch's statistics, as TuNAS's stateless batch norm);
  4. the reward is the absolute reward Q + beta |T / T0 - 1| (`mnas.rewards.tunas_abs`)
     with T the latency predictor's estimate, and the controller takes one REINFORCE step
     on the devices' samples (moving-average baseline, Adam with beta1 = 0). No controller
     updates during the first `rl_delay_fraction` of the steps (TuNAS: 25%, after FBNet),
     then the controller's learning rate grows exponentially 10x by the end (TuNAS
     `use_exponential_rl_learning_rate_schedule`).

The final architecture is the most likely one (the argmax of every decision).

Every setting is a config field: `config.oneshot` (experiments/tunas_proxylessnas.py
`oneshot_block` documents each with its TuNAS source), the shared weights' training in
`config.train` (experiments/train.py; optimiser and schedule from `mnas.optim`); `run`
first checks every field it reads against what it allows (`check_config`).

The workdir holds what the multi-trial search writes:
  results.sqlite      one row per controller step and device (stage 'oneshot'): the
                      sampled architecture, its one-shot validation-batch accuracy, predicted
                      latency and reward
  checkpoints/        orbax: supernet weights, optimiser, controller, data iterators;
                      killing the process and running the same command resumes from the last
                      checkpoint (sampling is a function of (seed, step), so the resumed run
                      retraces the same path)
  tensorboard/        supernet loss/accuracy/learning rate, warm-up probabilities, rewards,
                      controller metrics and per-decision probabilities over time
  latency/            the latency table (built on first use, as in the multi-trial search)
  best_arch.json      the final architecture ({'arch': ..., ...}: `launch.py train
                      --config experiments/train.py --config.arch=WORKDIR/best_arch.json`)
  oneshot.json        the run's summary

Public API:
  run(config, workdir, *, predictor=None) -> dict       (`launch.py search` with
                                                         config.method = 'oneshot')
  report(workdir) -> dict
  most_likely(space, probabilities) -> decision indices
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import threading
import time
from typing import Any, Callable

from absl import logging
import flax
import flax.struct
import jax
from jax import lax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mnas import checkpoints, config as cfg, counting, jsonfile, optim, parallel, rewards
from mnas import steps as steps_lib
from mnas import supernet as supernet_lib
from mnas import train as train_lib
from mnas.controllers import Reinforce
from mnas.errors import ConfigError, DataError
from mnas.parallel import AXIS
from mnas.search import checks, results
from mnas.search.evaluation import Candidate, Evaluator, Outcome
from mnas.search.store import Store
from mnas.search.summaries import SearchWriter

STAGE = 'oneshot'  # The results store's `stage` of one-shot rows.

# The config fields read here; experiments/tunas_proxylessnas.py holds each with its default.
ONESHOT_RULES = {
    'num_epochs': cfg.above(0), 'rl_learning_rate': cfg.NON_NEGATIVE,
    'rl_base_batch_size': cfg.POSITIVE, 'rl_exponential_schedule': cfg.BOOL,
    'rl_batch_multiplier': cfg.above(0), 'rl_delay_fraction': cfg.fraction(top_open=False),
    'warmup_ops_fraction': cfg.fraction(top_open=False),
    'warmup_filters_fraction': cfg.fraction(top_open=False),
    'baseline_momentum': cfg.fraction(), 'entropy_weight': cfg.NON_NEGATIVE,
    'log_every_steps': cfg.POSITIVE, 'checkpoint_every_steps': cfg.INT,
    'keep_checkpoints': cfg.POSITIVE, 'final_eval_batches': cfg.either(-1, cfg.POSITIVE),
    'max_seconds': cfg.NON_NEGATIVE}
# What the supernet's compiled steps read of config.train (their cache key).
STEP_FIELDS = optim.OPTIMIZER_FIELDS + ('weight_decay', 'label_smoothing')
# The fields read here beyond `checks.COMMON_RULES` (config.train: `train.RULES`).
RULES = {'controller': cfg.one_of('reinforce'),  # TuNAS's controller is trained here.
         'num_steps': cfg.either(-1, cfg.POSITIVE),  # -1: oneshot.num_epochs of the split.
         **{f'oneshot.{k}': v for k, v in ONESHOT_RULES.items()}}


def check_config(config, *, latency: bool = True, train: bool = True) -> None:
  """Raises ConfigError (or DataError) for a config this search cannot run, before any work;
  `latency` / `train`: check those blocks too (not when a predictor is given)."""
  checks.check(config, RULES, latency=latency, train=train)
  oc = config.oneshot
  if max(oc.warmup_ops_fraction, oc.warmup_filters_fraction) > oc.rl_delay_fraction:
    raise ConfigError('config.oneshot.warmup_ops_fraction / warmup_filters_fraction > '
                      'rl_delay_fraction is not allowed: the op/filter warm-up must end before '
                      'the controller starts learning, as in TuNAS')


@flax.struct.dataclass
class SupernetState:
  """The shared weights' training state; replicated over devices under pmap."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


def linear_decay(step: int, steps: int) -> float:
  """1 at step 0, falling linearly to 0 at `steps` (TuNAS custom_layers.linear_decay)."""
  return max(0.0, 1.0 - step / steps) if steps > 0 else 0.0


def most_likely(space, probabilities) -> np.ndarray:
  """The argmax of every decision: the controller's final architecture."""
  idx = np.array([int(np.argmax(p)) for p in probabilities], np.int32)
  return np.where(space.active(idx), idx, 0).astype(np.int32)


# ---------------------------------------------------------------------------------------------
# Compiled steps (cached per supernet, static config and devices: no recompilation per run).


@dataclasses.dataclass
class Steps:
  net: supernet_lib.Supernet
  tx: optax.GradientTransformation
  train: Callable       # (state, arrays, batch, lr) -> (state, metrics); per-device arrays.
  validate: Callable    # (params, batch_stats, arrays, batch) -> per-device sums.
  devices: tuple
  traces: collections.Counter  # Times each step was traced (compiled): tests check 1.


_STEPS: dict = {}
_STEPS_LOCK = threading.Lock()


def make_steps(net: supernet_lib.Supernet, tcfg, devices) -> Steps:
  """The pmapped supernet steps; the architecture is an argument (arrays), not a constant.

  `tcfg` is the train config (`config.train`); it must have STEP_FIELDS.
  """
  cfg.require(tcfg, STEP_FIELDS, 'config.train')
  key = (net, tuple(tcfg[f] for f in STEP_FIELDS), tuple(d.id for d in devices))
  with _STEPS_LOCK:
    if key in _STEPS:
      return _STEPS[key]
  tx = optim.make_optimizer(tcfg)
  wd, smoothing = float(tcfg.weight_decay), float(tcfg.label_smoothing)
  traces = collections.Counter()

  def train_step(state: SupernetState, arrays, batch, lr):
    traces['train'] += 1  # Python side effect: runs once per trace.
    labels = batch['label']

    def loss_fn(params):
      logits, stats = net.apply({'params': params, 'batch_stats': state.batch_stats}, arrays,
                                batch['image'], train=True)
      ce = steps_lib.smoothed_cross_entropy(logits, labels, net.num_classes, smoothing)
      l2 = optim.l2_loss(params)
      return ce + wd * l2, (ce, l2, logits, stats)

    grads, (ce, l2, logits, stats) = jax.grad(loss_fn, has_aux=True)(state.params)
    grads = lax.pmean(grads, AXIS)
    # Each device updates the running statistics of its own architecture's channels; the
    # mean keeps the replicas identical.
    stats = lax.pmean(stats, AXIS)
    params, opt_state = optim.apply_gradients(tx, grads, state.opt_state, state.params, lr)
    metrics = lax.pmean(steps_lib.step_metrics(ce, l2, logits, labels, grads), AXIS)
    return state.replace(step=state.step + 1, params=params, batch_stats=stats,
                         opt_state=opt_state), metrics

  def validate_step(params, batch_stats, arrays, batch):
    traces['validate'] += 1
    logits, _ = net.apply({'params': params, 'batch_stats': batch_stats}, arrays,
                          batch['image'], train=True)  # TuNAS: stateless batch norm.
    return steps_lib.eval_sums(logits, batch)

  steps = Steps(
      net=net, tx=tx, devices=tuple(devices), traces=traces,
      train=parallel.parallelize(train_step, devices, in_axes=(0, 0, 0, None),
                                 donate_argnums=(0,)),
      validate=parallel.parallelize(validate_step, devices, in_axes=(0, 0, 0, 0)))
  with _STEPS_LOCK:
    _STEPS[key] = steps
  return steps


def init_state(net: supernet_lib.Supernet, tx, seed: int) -> SupernetState:
  variables = net.init(seed)
  params = jax.tree.map(jnp.asarray, variables['params'])
  return jax.device_get(SupernetState(step=jnp.zeros((), jnp.int32), params=params,
                                      batch_stats=variables['batch_stats'],
                                      opt_state=tx.init(params)))


def stack(trees: list) -> Any:
  """Per-device pytrees -> one pytree with a leading device axis."""
  return jax.tree.map(lambda *xs: np.stack(xs), *trees)


# ---------------------------------------------------------------------------------------------
# Data.


class _Validation:
  """An endless stream of full validation batches (evaluation preprocessing, in order)."""

  def __init__(self, make):
    self._make = make
    self._it = make()

  def __next__(self):
    for _ in range(2):
      for batch in self._it:
        if 'mask' not in batch or np.min(batch['mask']) > 0:  # Drop the padded last batch.
          return batch
      parallel.close_iterator(self._it)
      self._it = self._make()
    raise ValueError('the validation split is smaller than one RL batch')

  def one_pass(self):
    """A new iterator over the whole validation split, once (the last batch padded)."""
    return self._make()

  def get_state(self):
    return self._it.get_state()

  def set_state(self, state):
    self._it.set_state(state)

  def close(self):
    parallel.close_iterator(self._it)


# ---------------------------------------------------------------------------------------------
# The search.


def _controller(config, num_options, rl_steps: int, batch_size: int) -> Reinforce:
  oc = config.oneshot
  lr = float(oc.rl_learning_rate) * batch_size / float(oc.rl_base_batch_size)
  if oc.rl_exponential_schedule:
    # TuNAS: lr * 10 ** progress, progress from 0 (first RL step) to 1 (last step). The
    # count is the controller's own update count (no updates during the RL delay).
    horizon = float(max(1, rl_steps))
    learning_rate = lambda count: lr * 10.0 ** (jnp.minimum(count, horizon) / horizon)
  else:
    learning_rate = lr
  return Reinforce(tuple(num_options), learning_rate=learning_rate,
                   baseline_momentum=float(oc.baseline_momentum),
                   entropy_weight=float(oc.entropy_weight))


def _plan_masks(space) -> tuple[np.ndarray, np.ndarray]:
  """Which decisions op warm-up mixes and which filter warm-up maxes (by the field set)."""
  fields = [f for *_, f in space.decision_sites()]
  return (np.array([f in supernet_lib.OP_FIELDS for f in fields]),
          np.array([f in supernet_lib.FILTER_FIELDS for f in fields]))


def run(config: ml_collections.ConfigDict, workdir: str, *, predictor=None) -> dict:
  """Runs (or resumes) a one-shot search; writes best_arch.json; returns a summary.

  `predictor`: the latency predictor (`predict_batch(archs)`); by default the search's
  table in workdir/latency (`mnas.latency.predictor_for_search(config.latency, ...)`).
  Raises ConfigError for a config it cannot run (`check_config`).
  """
  import search_spaces
  from mnas import data
  check_config(config, latency=False, train=False)
  cfg.check(config.train, train_lib.RULES, 'config.train')
  t_start = time.time()
  space = search_spaces.get_space(config.space)
  oc, tcfg = config.oneshot, config.train
  res = int(config.resolution or space.resolution[0])
  devices = jax.local_devices()
  n_dev = len(devices)
  seed = int(config.seed)

  td = train_lib.training_data(tcfg)
  dataset, data_dir, holdout, batch_size = td.dataset, td.data_dir, td.holdout, td.batch_size
  valid_batch = int(round(batch_size * float(oc.rl_batch_multiplier) / n_dev)) * n_dev
  steps_per_epoch = td.steps_per_epoch
  total = int(config.num_steps or 0)
  if total <= 0:
    total = int(math.ceil(float(oc.num_epochs) * steps_per_epoch))
  rl_delay = int(float(oc.rl_delay_fraction) * total)
  warm_ops = int(float(oc.warmup_ops_fraction) * total)
  warm_filters = int(float(oc.warmup_filters_fraction) * total)
  os.makedirs(workdir, exist_ok=True)

  net = supernet_lib.Supernet.create(space, td.num_classes, res, tcfg.depthwise_impl)
  steps = make_steps(net, tcfg, devices)
  schedule = optim.make_schedule(tcfg, steps_per_epoch, total)
  controller = _controller(config, space.num_options, total - rl_delay, batch_size)
  reward_fn = rewards.from_config(config.reward)
  if predictor is None:
    from mnas import latency
    predictor = latency.predictor_for_search(config.latency, space,
                                             os.path.join(workdir, 'latency'))
  is_op, is_filter = _plan_masks(space)
  count_classes = int(config.num_classes or td.num_classes)

  rng = jax.random.key(seed)
  init_rng, rng = jax.random.split(rng)
  template = {'supernet': init_state(net, steps.tx, seed), 'controller': controller.init(init_rng)}
  ckpt = checkpoints.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                  max_to_keep=int(oc.keep_checkpoints))
  restored = ckpt.restore(template)
  payload, data_state, start = template, {}, 0
  if restored is not None:
    start, payload, data_state = restored
    logging.info('one-shot search: resuming at step %d of %d', start, total)
  host_state, ctrl_state = payload['supernet'], payload['controller']
  store = Store(os.path.join(workdir, 'results.sqlite'))
  if start > rl_delay and not store.finished(STAGE):
    raise DataError(f'{store.path} holds no sample, but the search was checkpointed after step '
                    f'{start} (controller steps from {rl_delay}): the store was lost or '
                    'truncated. Restore it, or start a new --workdir')
  evaluator = Evaluator(store, stage=STAGE, reward_fn=reward_fn,
                        failure_reward=config.failure_reward, reuse=False,
                        num_classes=count_classes)
  # One HParams trial per sample would be thousands of runs.
  writer = SearchWriter(os.path.join(workdir, 'tensorboard'), space, config, hparams=False)
  tb = writer.writer
  _write_json(os.path.join(workdir, 'oneshot.json'),
              dict(status='running', space=space.name, resolution=res, steps=total,
                   rl_delay_steps=rl_delay, warmup_ops_steps=warm_ops,
                   warmup_filters_steps=warm_filters, devices=n_dev, batch_size=batch_size,
                   rl_batch_size=valid_batch))
  logging.info('one-shot search over %s (%d decisions, 10^%.1f architectures) at %dx%d: %d '
               'steps (%.2f epochs of %d), batch %d on %d devices, RL from step %d, warm-up '
               'ops %d / filters %d steps', space.name, len(space.num_options),
               space.log10_size, res, res, total, total / steps_per_epoch, td.num_examples,
               batch_size, n_dev, rl_delay, warm_ops, warm_filters)

  common = dict(image_size=res, data_dir=data_dir, seed=seed, holdout=holdout,
                num_devices=n_dev, num_threads=td.data_threads)
  train_it = data.create_input_iterator(dataset, 'train', batch_size=batch_size,
                                        min_area=tcfg.min_area, **common)
  valid_it = _Validation(lambda: data.create_input_iterator(
      dataset, 'validation', batch_size=valid_batch, **common))
  if data_state.get('train'):
    train_it.set_state(data_state['train'])
  if data_state.get('valid'):
    valid_it.set_state(data_state['valid'])

  state = parallel.replicate(host_state, devices)
  del host_state
  log_every = max(1, int(oc.log_every_steps))
  ckpt_every = int(oc.checkpoint_every_steps)
  max_seconds = float(oc.max_seconds)
  step, window = start, [time.time(), start]
  stopped = False
  try:
    while step < total:
      t0 = time.time()
      p_ops, p_filters = linear_decay(step, warm_ops), linear_decay(step, warm_filters)
      idx = np.asarray(controller.sample(ctrl_state, jax.random.fold_in(rng, step), n_dev),
                       np.int32)
      gen = np.random.default_rng([seed, step, 7])
      archs, arrays = [], []
      for d in range(n_dev):
        ops_mix = is_op & (gen.random(len(is_op)) < p_ops)
        filters_max = is_filter & (gen.random(len(is_op)) < p_filters)
        arch, a = net.sample_arrays(idx[d], ops_mix, filters_max, resolution=res)
        archs.append(arch)
        arrays.append(a)
      arrays = stack(arrays)
      lr = schedule(step)
      state, metrics = steps.train(state, arrays, next(train_it), np.float32(lr))
      rl = step >= rl_delay
      cands, cmetrics = [], {}
      if rl:
        sums = jax.device_get(steps.validate(state.params, state.batch_stats, arrays,
                                             next(valid_it)))
        acc = sums['correct'] / np.maximum(sums['count'], 1.0)
        lat = np.asarray(predictor.predict_batch(archs), np.float64)
        for d, arch in enumerate(archs):  # One store row per step and device.
          cands.append(evaluator.evaluate(
              step, Candidate(d, arch, idx[d], float(lat[d])),
              proxy=lambda _, a=float(acc[d]): Outcome('done', a),
              extra=dict(loss=float(sums['loss'][d] / max(sums['count'][d], 1.0)),
                         step_seconds=time.time() - t0)))
        active = np.stack([space.active(i) for i in idx])
        ctrl_state, cmetrics = controller.update(
            ctrl_state, idx, active, np.array([c.reward for c in cands], np.float32))
      step += 1
      m = None
      if step % log_every == 0 or step == total:
        m = jax.device_get(jax.tree.map(lambda x: x[0], metrics))
        if not math.isfinite(float(m['loss'])):
          raise train_lib.Diverged(f'supernet loss is {m["loss"]} at step {step}')
        now = time.time()
        sps = (step - window[1]) / max(now - window[0], 1e-9)
        window[:] = [now, step]
        probs = controller.probabilities(ctrl_state)
        scalars = {'supernet/loss': m['loss'], 'supernet/accuracy': m['accuracy'],
                   'supernet/l2': m['l2'], 'supernet/grad_norm': m['grad_norm'],
                   'supernet/learning_rate': lr, 'oneshot/warmup_ops_probability': p_ops,
                   'oneshot/warmup_filters_probability': p_filters,
                   'oneshot/steps_per_second': sps,
                   'oneshot/rl_learning_rate': _rl_lr(controller, ctrl_state) if rl else 0.0}
        tb.write_scalars(step, scalars)
        final = space.decode(most_likely(space, probs)).replace(resolution=res)
        tb.write_texts(step, {'oneshot/most_likely': f'`{final}`'})
        if cands:
          writer.write_step(step, cands, cmetrics, probs, store, seconds=time.time() - t0,
                            stage=STAGE)
        else:
          tb.flush()
        logging.info('step %d/%d: loss %.4f, accuracy %.3f, lr %.4g, %.2f steps/s%s', step,
                     total, float(m['loss']), float(m['accuracy']), lr, sps,
                     f', reward {np.mean([c.reward for c in cands]):.4f}' if cands else
                     f', warm-up p {p_ops:.2f}/{p_filters:.2f}')
      out_of_time = max_seconds > 0 and time.time() - t_start > max_seconds
      if (ckpt_every > 0 and step % ckpt_every == 0) or step == total or out_of_time:
        ckpt.save(step, {'supernet': parallel.unreplicate(state), 'controller': ctrl_state},
                  {'train': train_it.get_state(), 'valid': valid_it.get_state()})
      if out_of_time and step < total:
        logging.warning('one-shot search: max_seconds reached at step %d; run again to resume',
                        step)
        stopped = True
        break
    ckpt.wait()
    summary = {'workdir': workdir, 'evaluations': len(store.finished(STAGE)), 'steps': step,
               'total_steps': total, 'seconds': time.time() - t_start}
    if not stopped:
      best = _finish(net, steps, state, controller, ctrl_state, valid_it, predictor, reward_fn,
                     space, res, count_classes, int(oc.final_eval_batches), workdir)
      summary['best'] = best
      _write_json(os.path.join(workdir, 'oneshot.json'),
                  dict(status='done', space=space.name, resolution=res, steps=total,
                       rl_delay_steps=rl_delay, devices=n_dev, batch_size=batch_size,
                       rl_batch_size=valid_batch, best=best,
                       search_seconds=summary['seconds']))
  finally:
    for it in (train_it, valid_it):
      parallel.close_iterator(it)
    writer.close()
    ckpt.close()
    store.close()
  return summary


def _rl_lr(controller: Reinforce, ctrl_state) -> float:
  lr = controller.learning_rate
  return float(lr(jnp.asarray(ctrl_state['step']))) if callable(lr) else float(lr)


def _finish(net, steps, state, controller, ctrl_state, valid_it, predictor, reward_fn, space,
            res, num_classes, max_batches, workdir) -> dict:
  """The most likely architecture, its one-shot accuracy on the validation split."""
  probs = controller.probabilities(ctrl_state)
  idx = most_likely(space, probs)
  arch, arrays = net.sample_arrays(idx, resolution=res)
  arrays = stack([arrays] * len(steps.devices))
  it = valid_it.one_pass()
  totals, n = None, 0
  try:
    for batch in it:
      if 0 <= max_batches <= n:
        break
      sums = jax.device_get(steps.validate(state.params, state.batch_stats, arrays, batch))
      sums = {k: float(np.sum(v)) for k, v in sums.items()}
      totals = sums if totals is None else {k: totals[k] + sums[k] for k in sums}
      n += 1
  finally:
    parallel.close_iterator(it)
  acc = totals['correct'] / max(totals['count'], 1.0) if totals else float('nan')
  lat = float(np.asarray(predictor.predict_batch([arch]))[0])
  counts = counting.count(arch, num_classes)
  best = {'arch': str(arch), 'id': arch.id, 'method': 'oneshot', 'oneshot_accuracy': acc,
          'latency_ms': lat, 'reward': float(reward_fn(acc, lat)), 'params': counts['params'],
          'macs': counts['macs'], 'decisions': [int(i) for i in idx],
          'probabilities': {d.name: {str(o): round(float(p), 4) for o, p in zip(d.options, q)}
                            for d, q in zip(space.decisions, probs)}}
  _write_json(os.path.join(workdir, 'best_arch.json'), best)
  logging.info('one-shot search: final architecture %s (one-shot accuracy %.4f, %.2f ms, '
               'reward %.4f)', arch, acc, lat, best['reward'])
  return best


def _write_json(path: str, obj) -> None:
  if jax.process_index() == 0:
    jsonfile.write(path, obj)


def report(workdir: str, top: int = 10) -> dict:
  """Prints the final architecture and what the controller sampled; writes pareto.png."""
  info = jsonfile.read(os.path.join(workdir, 'oneshot.json'))
  store = Store.open_existing(os.path.join(workdir, 'results.sqlite'))
  rows = store.finished(STAGE)
  store.close()
  print(f'one-shot search over {info["space"]} at {info["resolution"]}x{info["resolution"]}: '
        f'{info["steps"]} steps, RL from step {info["rl_delay_steps"]}, {len(rows)} sampled '
        f'architectures recorded ({info["status"]})')
  if rows:
    last = [r for r in rows if r['step'] >= rows[-1]['step'] - max(1, len(rows) // 10)]
    print(f'last 10% of the samples: mean one-shot accuracy '
          f'{np.mean([r["accuracy"] for r in last]):.4f}, latency '
          f'{np.mean([r["latency_ms"] for r in last]):.2f} ms, reward '
          f'{np.mean([r["reward"] for r in last]):.4f}')
    freq = collections.Counter(r['arch'] for r in last).most_common(top)
    print('most sampled there:')
    for a, k in freq:
      print(f'  {k:5d}x  {a}')
    by_arch = {}
    for r in rows:  # Mean one-shot accuracy per architecture.
      by_arch.setdefault(r['arch_id'], []).append(r)
    pts = [dict(rs[0], accuracy=float(np.mean([r['accuracy'] for r in rs])))
           for rs in by_arch.values()]
    results.pareto_plot(pts, results.pareto_front(pts), os.path.join(workdir, 'pareto.png'))
  best = info.get('best')
  if best:
    print(f'\nfinal (most likely) architecture: one-shot accuracy {best["oneshot_accuracy"]:.4f}, '
          f'predicted latency {best["latency_ms"]:.2f} ms, reward {best["reward"]:.4f}, '
          f'{best["params"]} params, {best["macs"] / 1e6:.1f}M MACs\n  {best["arch"]}')
    print(f'wrote {workdir}/best_arch.json: train it from scratch with\n  python launch.py train '
          f'--config experiments/train.py --config.arch={workdir}/best_arch.json --workdir DIR')
  return best or {}
