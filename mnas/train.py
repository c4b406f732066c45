"""Training: the proxy task of the search and the final models.

Pure functions over an explicit `TrainState`; the per-replica steps `train_step` /
`eval_step` are made data-parallel by `mnas.parallel.parallelize` (a `jax.pmap` over a group
of devices, axis name `AXIS`), the one place to change for `shard_map`. The group is all
devices of all processes by default (multi-process data-parallel training: each process
feeds its local devices with its own shard of the data, gradients and batch-norm statistics
are averaged over every device; see mnas/distributed.py), or one process's devices (a
candidate of a candidate-parallel search). Only process 0 writes summaries and result.json;
all processes take part in orbax's multi-process checkpoints (the data iterator's position
is the same on every process).

The recipe follows MnasNet (Tan et al. 2019, section 5 and the TPU reference code
`tensorflow/tpu/models/official/mnasnet`) and MobileNetV3 (Howard et al. 2019, section 6.1):
RMSProp (decay 0.9, momentum 0.9, epsilon 1e-3 inside the square root, mean-square
accumulator initialised to 1 as TF1's RMSPropOptimizer), batch norm momentum 0.99 (in the
model), L2 weight decay 1e-5 on kernels, dropout 0.2, label smoothing 0.1, linear warmup,
exponential or cosine decay, an exponential moving average of the weights and batch-norm
statistics (decay 0.9999, with TF's `num_updates` ramp) used for evaluation. The learning
rate is `lr * batch_size / base_batch_size`. The optimiser and the schedules are in
`mnas.optim` (shared with the one-shot supernet). Every default lives in the config:
`experiments/train.py` documents every field and its source; a config that lacks a field
the trainer reads (`FIELDS`, `RUN_FIELDS`) fails at once with a `ConfigError` naming it.

Public API:
  train_candidate(arch, config, workdir=None, *, budget_steps=None, budget_epochs=None,
                  seed=0, callbacks=(), devices=None, init_variables=None)
      -> TrainResult                                   # the proxy task (validation)
  train_and_evaluate(config, workdir) -> TrainResult   # `launch.py train`
  training_data(config) -> TrainingData                # the training split and its batches
  make_steps(arch, num_classes, config, devices=None) -> Steps   # compiled, cached
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import threading
import time
from typing import Any, Callable, Sequence

from absl import logging
import flax
import flax.struct
import jax
from jax import lax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mnas import checkpoints, jsonfile, metrics, optim, parallel
from mnas.config import require
from mnas.errors import ConfigError
from mnas.parallel import AXIS
from mnas.space import Architecture

# The fields of a train config read here; experiments/train.py holds each with its default
# and source. `train_candidate` reads FIELDS; `train_and_evaluate` RUN_FIELDS too.
DATA_FIELDS = ('dataset', 'data_dir', 'holdout', 'num_classes', 'batch_size', 'data_threads')
STEP_FIELDS = ('dropout_rate', 'dtype', 'depthwise_impl', 'weight_decay', 'label_smoothing',
               'ema_decay') + optim.OPTIMIZER_FIELDS  # The compiled steps' (static) ones.
FIELDS = tuple(dict.fromkeys(
    DATA_FIELDS + STEP_FIELDS + optim.FIELDS + (
        'min_area', 'eval_batch_size', 'num_epochs', 'num_train_steps', 'log_every_steps',
        'eval_every_steps', 'checkpoint_every_steps', 'keep_checkpoints', 'divergence_loss')))
RUN_FIELDS = ('arch', 'width_multiplier', 'resolution', 'eval_split', 'seed')
WHERE = 'the train config'  # How `require` names a train config (config.train, .final, ...).

_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}


# ---------------------------------------------------------------------------------------------
# State and results.


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training; replicated over devices under pmap."""
  step: jax.Array             # int32: number of updates applied.
  params: Any
  batch_stats: Any
  opt_state: Any
  ema_params: Any             # Exponential moving averages, used for evaluation.
  ema_batch_stats: Any
  rng: jax.Array              # uint32 [2] key; dropout draws fold in (step, device).


@dataclasses.dataclass
class TrainResult:
  """The outcome of one training run."""
  status: str                  # 'done' or 'failed'.
  reason: str = ''             # Why it failed ('' when done).
  val_accuracy: float = 0.0    # Top-1 on the evaluation split (validation for the proxy).
  val_loss: float = float('nan')
  train_seconds: float = 0.0   # Wall time of the run (compilation, data, evaluation included).
  steps: int = 0               # Updates applied in total (including restored ones).
  images_per_second: float = 0.0  # Training throughput after compilation.
  params: int = 0              # Parameter count of the model.
  eval_split: str = ''
  arch: str = ''
  start_step: int = 0          # First step run by this call (> 0 after a resume).
  train_losses: list = dataclasses.field(default_factory=list)  # Per step from start_step.
  evals: list = dataclasses.field(default_factory=list)  # [(step, accuracy, loss)].

  def to_json(self) -> dict:
    d = dataclasses.asdict(self)
    d.pop('train_losses')
    return d


class Diverged(FloatingPointError):
  """The training loss became NaN or infinite, or exceeded config.divergence_loss."""


# ---------------------------------------------------------------------------------------------
# Per-replica steps (the supernet's, mnas.oneshot, share the loss and the sums).


def smoothed_cross_entropy(logits, labels, num_classes: int, label_smoothing: float):
  """Mean softmax cross-entropy with label smoothing (Szegedy et al. 2016)."""
  targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
  return jnp.mean(optax.softmax_cross_entropy(logits, targets))


def step_metrics(ce, l2, logits, labels, grads) -> dict[str, jax.Array]:
  """What a train step reports: loss (the smoothed cross-entropy), accuracy, l2, grad_norm."""
  return dict(loss=ce, accuracy=jnp.mean(jnp.argmax(logits, -1) == labels), l2=l2,
              grad_norm=optax.global_norm(grads))


def eval_sums(logits, batch: dict) -> dict[str, jax.Array]:
  """Sums over the real (mask 1) examples: correct, loss (plain cross-entropy), count."""
  mask = batch.get('mask', jnp.ones(batch['label'].shape, jnp.float32))
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
  correct = (jnp.argmax(logits, -1) == batch['label']).astype(jnp.float32)
  return dict(correct=jnp.sum(correct * mask), loss=jnp.sum(ce * mask), count=jnp.sum(mask))


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """The static (compile-time) part of a training run."""
  num_classes: int
  label_smoothing: float
  weight_decay: float
  ema_decay: float


def train_step(state: TrainState, batch: dict, lr: jax.Array, *, model, tx, cfg: StepConfig,
               axis_name: str | None = AXIS) -> tuple[TrainState, dict]:
  """One update on this replica's part of the batch; gradients averaged across replicas.

  Loss: softmax cross-entropy with label smoothing + weight_decay * l2_loss(kernels).
  Dropout draws from fold_in(fold_in(rng, step), replica). Returns the new state and
  replica-averaged metrics (loss = the smoothed cross-entropy, accuracy, l2, grad_norm).
  """
  replica = lax.axis_index(axis_name) if axis_name else 0
  dropout_rng = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), replica)
  labels = batch['label']

  def loss_fn(params):
    logits, new_vars = model.apply(
        {'params': params, 'batch_stats': state.batch_stats}, batch['image'], train=True,
        rngs={'dropout': dropout_rng}, mutable=['batch_stats'])
    ce = smoothed_cross_entropy(logits, labels, cfg.num_classes, cfg.label_smoothing)
    l2 = optim.l2_loss(params)
    return ce + cfg.weight_decay * l2, (ce, l2, logits, new_vars['batch_stats'])

  grads, (ce, l2, logits, batch_stats) = jax.grad(loss_fn, has_aux=True)(state.params)
  if axis_name:
    grads = lax.pmean(grads, axis_name)
  params, opt_state = optim.apply_gradients(tx, grads, state.opt_state, state.params, lr)

  # TF's ExponentialMovingAverage(decay, num_updates=step): decay ramps up early in training.
  t = state.step.astype(jnp.float32)
  d = jnp.minimum(cfg.ema_decay, (1.0 + t) / (10.0 + t)) if cfg.ema_decay > 0 else 0.0
  ema = lambda e, p: d * e + (1.0 - d) * p
  new_state = state.replace(
      step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state,
      ema_params=jax.tree.map(ema, state.ema_params, params),
      ema_batch_stats=jax.tree.map(ema, state.ema_batch_stats, batch_stats))
  metrics = step_metrics(ce, l2, logits, labels, grads)
  return new_state, lax.pmean(metrics, axis_name) if axis_name else metrics


def eval_step(params, batch_stats, batch: dict, *, model,
              axis_name: str | None = AXIS) -> dict[str, jax.Array]:
  """`eval_sums` of this replica's part of the batch, summed over the replicas."""
  logits = model.apply({'params': params, 'batch_stats': batch_stats}, batch['image'],
                       train=False)
  sums = eval_sums(logits, batch)
  return lax.psum(sums, axis_name) if axis_name else sums


# ---------------------------------------------------------------------------------------------
# Compiled steps, cached per (architecture, static config, devices).


@dataclasses.dataclass
class Steps:
  """The model and its compiled functions for one (architecture, config, devices)."""
  model: Any
  tx: optax.GradientTransformation
  init: Callable[[int], TrainState]   # seed -> host (unreplicated) state.
  train: Callable                     # (replicated state, batch, lr) -> (state, metrics).
  evaluate: Callable                  # (params, batch_stats, batch) -> sums.
  devices: tuple
  num_params: int = 0


_FAST_COMPILE = {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True}
_STEPS_CACHE: dict = {}
_STEPS_CACHE_SIZE = 8  # Then `release_compiled`: XLA's per-program memory maps are bounded.
_STEPS_LOCK = threading.Lock()


def _static_key(arch: Architecture, num_classes: int, config, devices) -> tuple:
  return (str(arch), num_classes, tuple(config[f] for f in STEP_FIELDS),
          tuple(d.id for d in devices))


def make_steps(arch: Architecture, num_classes: int, config,
               devices: Sequence[jax.Device] | None = None) -> Steps:
  """Model, optimiser and pmapped train/eval steps (memoised: no recompilation per call).

  `devices` (default: all of `jax.devices()`, i.e. of every process) form the data-parallel
  group; see `mnas.parallel.parallelize`. Raises ConfigError when the config lacks one of
  STEP_FIELDS or has a value that is not allowed.
  """
  from mnas import models
  require(config, STEP_FIELDS, WHERE)
  devices = tuple(devices or jax.devices())
  key = _static_key(arch, num_classes, config, devices)
  with _STEPS_LOCK:
    if key in _STEPS_CACHE:
      return _STEPS_CACHE[key]
  if config.dtype not in _DTYPES:
    raise ConfigError(f'train config field dtype={config.dtype!r} is not allowed: one of '
                      f'{", ".join(_DTYPES)}')
  model = models.build_model(arch, num_classes, dropout_rate=float(config.dropout_rate),
                             dtype=_DTYPES[config.dtype], depthwise_impl=config.depthwise_impl,
                             bn_axis_name=AXIS)
  tx = optim.make_optimizer(config)
  cfg = StepConfig(num_classes=num_classes, label_smoothing=float(config.label_smoothing),
                   weight_decay=float(config.weight_decay), ema_decay=float(config.ema_decay))
  res = arch.resolution

  @jax.jit
  def _init(rng):
    init_rng, dropout_rng = jax.random.split(rng)
    variables = model.init(init_rng, jnp.zeros((1, res, res, 3), jnp.float32), train=False)
    params, batch_stats = variables['params'], variables.get('batch_stats', {})
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                      opt_state=tx.init(params), ema_params=params, ema_batch_stats=batch_stats,
                      rng=dropout_rng)

  compiled_init = []

  def init(seed: int) -> TrainState:
    key = jax.random.PRNGKey(seed)
    if not compiled_init:  # Runs once per model: XLA's cheapest optimisation level halves
      # the compile time of the ~100 random initialisers (deterministic all the same).
      compiled_init.append(_init.lower(key).compile(compiler_options=_FAST_COMPILE))
    return jax.device_get(compiled_init[0](key))

  train = parallel.parallelize(functools.partial(train_step, model=model, tx=tx, cfg=cfg),
                               devices, in_axes=(0, 0, None), donate_argnums=(0,))
  evaluate = parallel.parallelize(functools.partial(eval_step, model=model), devices,
                                  in_axes=(0, 0, 0))
  shapes = jax.eval_shape(_init, jax.random.PRNGKey(0))
  num_params = int(sum(np.prod(x.shape) for x in jax.tree.leaves(shapes.params)))
  steps = Steps(model=model, tx=tx, init=init, train=train, evaluate=evaluate, devices=devices,
                num_params=num_params)
  with _STEPS_LOCK:
    if len(_STEPS_CACHE) >= _STEPS_CACHE_SIZE:
      release_compiled()
    _STEPS_CACHE[key] = steps
  return steps


def release_compiled() -> None:
  """Drops every cached compiled step, and JAX's own caches with them.

  XLA:CPU maps ~2,000 memory regions per compiled candidate (its JIT code) and frees them
  only when JAX's caches let go of the executable; dropping our reference is not enough.
  Linux allows 65,530 maps per process by default (vm.max_map_count): a search process that
  kept every candidate's program aborted ("LLVM ERROR: Unable to allocate section memory")
  after ~45 candidates. Called when the cache is full; measured: 2,900 maps -> 800.
  """
  _STEPS_CACHE.clear()
  jax.clear_caches()


def _fmt_seconds(s: float) -> str:
  s = int(max(0, s))
  return f'{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}'


# ---------------------------------------------------------------------------------------------
# The training loop.


@dataclasses.dataclass(frozen=True)
class TrainingData:
  """The training split a train config names (`training_data`): the trainer's and the
  one-shot supernet's."""
  dataset: str
  data_dir: str | None
  holdout: int | str          # Examples of 'train' held out as the validation split.
  num_classes: int
  batch_size: int             # Global.
  num_examples: int           # Of the training split (the holdout taken out).
  data_threads: int

  @property
  def steps_per_epoch(self) -> int:
    return self.num_examples // self.batch_size

  def iterator(self, kind: str, devices: Sequence[jax.Device], *, image_size: int, seed: int,
               batch_size: int | None = None, min_area: float | None = None):
    """Batches of split `kind` for the data-parallel group `devices` (this process's share)."""
    from mnas import data
    return data.create_input_iterator(
        self.dataset, kind, batch_size=batch_size or self.batch_size, image_size=image_size,
        data_dir=self.data_dir, seed=seed, holdout=self.holdout, min_area=min_area,
        num_devices=len(parallel.local_devices(devices)),
        shard_options=parallel.shard_options(devices), num_threads=self.data_threads)


def training_data(config) -> TrainingData:
  """The dataset, holdout (None: the dataset's default), classes (None: the dataset's) and
  batch of a train config. Raises ConfigError when batch_size exceeds the training split."""
  from mnas import data
  require(config, DATA_FIELDS, WHERE)
  holdout = data.default_holdout(config.dataset) if config.holdout is None else config.holdout
  num_classes = (config.num_classes
                 or data.dataset_info(config.dataset, config.data_dir).num_classes)
  n = data.num_examples(config.dataset, 'train', config.data_dir, holdout)
  if int(config.batch_size) > n:
    raise ConfigError(f'train config field batch_size={config.batch_size} exceeds the {n} '
                      f'training examples of {config.dataset} (holdout {holdout}): allowed '
                      f'1 to {n}')
  return TrainingData(dataset=config.dataset, data_dir=config.data_dir, holdout=holdout,
                      num_classes=int(num_classes), batch_size=int(config.batch_size),
                      num_examples=n, data_threads=config.data_threads)


def _evaluate(steps: Steps, state, config, td: TrainingData, kind: str,
              seed: int) -> tuple[float, float]:
  """(accuracy, mean loss) of the EMA weights on split kind ('validation' or 'test')."""
  it = td.iterator(kind, steps.devices, image_size=steps.model.arch.resolution, seed=seed,
                   batch_size=config.eval_batch_size)
  totals = None
  try:
    for batch in it:
      sums = steps.evaluate(state.ema_params, state.ema_batch_stats, batch)
      totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  finally:
    parallel.close_iterator(it)
  if totals is None:
    return 0.0, float('nan')
  totals = parallel.unreplicate(totals)
  count = max(float(totals['count']), 1.0)
  return float(totals['correct']) / count, float(totals['loss']) / count


def state_from_variables(steps: Steps, variables: dict, seed: int) -> TrainState:
  """A fresh train state (step 0) that starts from given `{'params', 'batch_stats'}`.

  The optimiser state is new and the EMA starts at the given weights; the dropout key is
  the one `steps.init(seed)` would draw. Used to fine-tune inherited weights (NetAdapt).
  Raises ValueError naming the first variable whose shape does not fit the model.
  """
  res = steps.model.arch.resolution
  expected = jax.eval_shape(lambda: steps.model.init(
      jax.random.key(0), jnp.zeros((1, res, res, 3), jnp.float32), train=False))
  given = {'params': variables['params'], 'batch_stats': variables.get('batch_stats', {})}
  flat_given = dict(jax.tree_util.tree_flatten_with_path(given)[0])
  for path, leaf in jax.tree_util.tree_flatten_with_path(
      {'params': expected['params'], 'batch_stats': expected.get('batch_stats', {})})[0]:
    if path not in flat_given or np.shape(flat_given[path]) != leaf.shape:
      got = np.shape(flat_given[path]) if path in flat_given else 'nothing'
      raise ValueError(f'init_variables{jax.tree_util.keystr(path)}: expected shape '
                       f'{leaf.shape}, got {got}')
  params = jax.tree.map(lambda x: np.asarray(x, np.float32), given['params'])
  batch_stats = jax.tree.map(lambda x: np.asarray(x, np.float32), given['batch_stats'])
  _, dropout_rng = jax.random.split(jax.random.PRNGKey(seed))
  return TrainState(step=np.zeros((), np.int32), params=params, batch_stats=batch_stats,
                    opt_state=jax.device_get(steps.tx.init(params)), ema_params=params,
                    ema_batch_stats=batch_stats, rng=np.asarray(dropout_rng))


def _run(arch: Architecture, config, workdir: str | None, *, seed: int,
         budget_steps: int | None, budget_epochs: float | None, eval_kind: str,
         callbacks: Sequence[Callable[[int, dict], None]] = (),
         devices: Sequence[jax.Device] | None = None,
         init_variables: dict | None = None) -> TrainResult:
  t_start = time.time()
  devices = list(devices or jax.devices())  # The data-parallel group (mnas.parallel).
  td = training_data(config)
  batch_size, steps_per_epoch = td.batch_size, td.steps_per_epoch
  if budget_steps:
    total_steps = int(budget_steps)
  elif budget_epochs:
    total_steps = int(math.ceil(budget_epochs * steps_per_epoch))
  elif config.num_train_steps and config.num_train_steps > 0:
    total_steps = int(config.num_train_steps)
  else:
    total_steps = int(math.ceil(config.num_epochs * steps_per_epoch))
  schedule = optim.make_schedule(config, steps_per_epoch, total_steps)
  steps = make_steps(arch, td.num_classes, config, devices)
  result = TrainResult(status='done', arch=str(arch), params=steps.num_params,
                       eval_split=eval_kind)
  logging.info('Training %s (%d params) for %d steps (%.2f epochs of %d examples), global '
               'batch %d on %d devices, peak lr %.4g.', arch.id, steps.num_params, total_steps,
               total_steps / steps_per_epoch, td.num_examples, batch_size, len(devices),
               optim.peak_learning_rate(config))

  host_state = (steps.init(seed) if init_variables is None
                else state_from_variables(steps, init_variables, seed))
  ckpt = None
  data_state = None
  if workdir:
    os.makedirs(workdir, exist_ok=True)
    ckpt = checkpoints.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                    max_to_keep=config.keep_checkpoints)
    restored = ckpt.restore(host_state)
    if restored is not None:
      _, host_state, data_state = restored
  step = int(host_state.step)
  result.start_step = step
  summaries = metrics.MetricWriter(workdir)
  summaries.write_texts(step, {'config': '```\n' + str(config) + f'\narch: {arch}\n```'})
  it = None
  try:
    state = parallel.replicate(host_state, devices)
    del host_state
    it = td.iterator('train', devices, image_size=arch.resolution, seed=seed,
                     min_area=config.min_area)
    if data_state:
      it.set_state(data_state)
    log_every = max(1, int(config.log_every_steps))
    eval_every = int(config.eval_every_steps)
    ckpt_every = int(config.checkpoint_every_steps)
    max_loss = float(config.divergence_loss or math.inf)
    pending = None  # (step, lr, metrics on device): fetched one step late to keep dispatch async.
    timer_start, timed_images, paused = None, 0, 0.0
    window = [time.time(), 0]  # For the per-log-line throughput.

    def finish(pending_step, lr, on_device):
      nonlocal timer_start, timed_images
      m = parallel.unreplicate(on_device)
      loss = float(m['loss'])
      result.train_losses.append(loss)
      if not (math.isfinite(loss) and math.isfinite(float(m['l2']))):
        what = 'loss' if not math.isfinite(loss) else 'weight norm'
        raise Diverged(f'training {what} is NaN/inf at step {pending_step} (loss {loss}): the '
                       f'run diverged (lr {lr:.4g})')
      if loss > max_loss:
        raise Diverged(f'training loss {loss:.4g} > divergence_loss {max_loss:g} at step '
                       f'{pending_step}: the run diverged (lr {lr:.4g}); not NaN yet, but '
                       'batch norm keeps a blown-up network finite')
      if timer_start is None:  # First step done: compilation is over.
        timer_start = time.time()
        window[:] = [timer_start, 0]
      else:
        timed_images += batch_size
        window[1] += batch_size
      done = pending_step + 1
      for cb in callbacks:
        cb(done, dict(m, lr=lr))
      if done % log_every == 0 or done == total_steps:
        now = time.time()
        ips = window[1] / max(now - window[0], 1e-9)
        eta = (total_steps - done) * batch_size / ips if ips > 0 else float('nan')
        logging.info('step %d/%d: loss %.4f, accuracy %.3f, lr %.4g, %.1f images/s, ETA %s',
                     done, total_steps, loss, float(m['accuracy']), lr, ips,
                     _fmt_seconds(eta) if math.isfinite(eta) else '?')
        summaries.write_scalars(done, {'train/loss': loss, 'train/accuracy': m['accuracy'],
                                       'train/learning_rate': lr,
                                       'train/images_per_second': ips, 'train/l2': m['l2'],
                                       'train/grad_norm': m['grad_norm']})
        window[:] = [now, 0]

    def evaluate() -> tuple[float, float]:
      acc, loss = _evaluate(steps, state, config, td, eval_kind, seed)
      result.evals.append((step, acc, loss))
      summaries.write_scalars(step, {'eval/accuracy': acc, 'eval/loss': loss})
      return acc, loss

    try:
      while step < total_steps:
        batch = next(it)
        lr = schedule(step)
        state, on_device = steps.train(state, batch, np.float32(lr))
        if pending is not None:
          finish(*pending)
        pending = (step, lr, on_device)
        step += 1
        save = ckpt and ckpt_every > 0 and step % ckpt_every == 0
        evaluating = eval_every > 0 and step % eval_every == 0 and step < total_steps
        if save or evaluating:
          finish(*pending)
          pending = None
          t0 = time.time()
          if evaluating:
            logging.info('step %d: %s accuracy %.4f, loss %.4f', step, eval_kind, *evaluate())
          if save:
            ckpt.save(step, parallel.unreplicate(state), it.get_state())
          paused += time.time() - t0
          window[0] += time.time() - t0
      if pending is not None:
        finish(*pending)
        pending = None
    except Diverged as e:
      logging.error('%s: %s', arch.id, e)
      result.status, result.reason = 'failed', str(e)
    result.steps = step if result.status == 'done' else int(parallel.unreplicate(state.step))
    if timer_start is not None and timed_images:
      result.images_per_second = timed_images / max(time.time() - timer_start - paused, 1e-9)
    if result.status == 'done':
      if ckpt and (ckpt.latest_step() or 0) < step:
        ckpt.save(step, parallel.unreplicate(state), it.get_state())
      acc, loss = result.val_accuracy, result.val_loss = evaluate()
      logging.info('%s after %d steps: %s accuracy %.4f, loss %.4f, %.1f images/s.', arch.id,
                   step, eval_kind, acc, loss, result.images_per_second)
  finally:
    if it is not None:
      parallel.close_iterator(it)
    summaries.close()
    if ckpt:
      ckpt.close()
  result.train_seconds = time.time() - t_start
  if workdir and jax.process_index() == 0:
    jsonfile.write(os.path.join(workdir, 'result.json'), result.to_json())
  return result


def train_candidate(arch: Architecture, config, workdir: str | None = None, *,
                    budget_steps: int | None = None, budget_epochs: float | None = None,
                    seed: int = 0,
                    callbacks: Sequence[Callable[[int, dict], None]] = (),
                    devices: Sequence[jax.Device] | None = None,
                    init_variables: dict | None = None) -> TrainResult:
  """The proxy task: trains `arch` on 'train' minus the held-out validation split.

  Returns a `TrainResult` with the validation accuracy (top-1 of the EMA weights). The
  budget is `budget_steps`, else `budget_epochs`, else the config's num_train_steps /
  num_epochs. With a `workdir`, checkpoints (resumed from automatically) and TensorBoard
  summaries go there; without one nothing is written. A diverging run (NaN/inf loss) stops
  early and comes back with status 'failed' and the reason; it does not raise. (Batch norm
  keeps a blown-up network's loss finite, so a loss above config.divergence_loss counts
  too.) `callbacks` are called as cb(step, metrics) after every step (an exception stops the
  run). A config that lacks one of FIELDS raises ConfigError naming it, before anything runs.
  Compiled steps are cached per (architecture, static config, devices). `devices` (default:
  all of `jax.devices()`) is the data-parallel group; a candidate-parallel search passes
  `jax.local_devices()` so that each process trains its own candidates. `init_variables`
  ({'params', 'batch_stats'} of this architecture's model) starts from those weights instead
  of a random initialisation (NetAdapt fine-tunes inherited weights; a checkpoint in
  `workdir` still wins, so a killed fine-tune resumes).
  """
  require(config, FIELDS, WHERE)
  return _run(arch, config, workdir, seed=seed, budget_steps=budget_steps,
              budget_epochs=budget_epochs, eval_kind='validation', callbacks=callbacks,
              devices=devices, init_variables=init_variables)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainResult:
  """Trains `config.arch` (a reference name, string form or JSON file) and evaluates it.

  Evaluates on `config.eval_split` ('test' by default; 'validation' = the holdout). Set
  `holdout=0` to train a final model on the whole training split. Checkpoints, summaries and
  result.json go to `workdir`; an interrupted run resumes from its latest checkpoint. A
  config that lacks one of FIELDS or RUN_FIELDS raises ConfigError naming it.
  """
  import search_spaces
  require(config, FIELDS + RUN_FIELDS, WHERE)
  arch = search_spaces.load_arch(config.arch, config.width_multiplier, config.resolution)
  result = _run(arch, config, workdir, seed=int(config.seed), budget_steps=None,
                budget_epochs=None, eval_kind=config.eval_split)
  if result.status != 'done':
    logging.error('Training failed: %s', result.reason)
  return result
