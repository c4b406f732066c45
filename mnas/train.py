"""Training: the proxy task of the search and the final models.

Pure functions over an explicit `TrainState`; the data-parallel part lives in one place,
`parallelize` (a `jax.pmap` over a group of devices, axis name `AXIS`), which wraps the
per-replica steps `train_step` / `eval_step`. Moving to `shard_map` means changing that
one function. The group is all devices of all processes by default (multi-process
data-parallel training: each process feeds its local devices with its own shard of the
data, gradients and batch-norm statistics are averaged over every device; see
mnas/distributed.py), or one process's devices (a candidate of a candidate-parallel search).
Only process 0 writes summaries and result.json; all processes take part in orbax's
multi-process checkpoints (the data iterator's position is the same on every process).

The recipe follows MnasNet (Tan et al. 2019, section 5 and the TPU reference code
`tensorflow/tpu/models/official/mnasnet`) and MobileNetV3 (Howard et al. 2019, section 6.1):
RMSProp (decay 0.9, momentum 0.9, epsilon 1e-3 inside the square root, mean-square
accumulator initialised to 1 as TF1's RMSPropOptimizer), batch norm momentum 0.99 (in the
model), L2 weight decay 1e-5 on kernels, dropout 0.2, label smoothing 0.1, linear warmup,
exponential or cosine decay, an exponential moving average of the weights and batch-norm
statistics (decay 0.9999, with TF's `num_updates` ramp) used for evaluation. The learning
rate is `lr * batch_size / base_batch_size`. `experiments/train.py` documents every field of
the config and its source.

Public API:
  train_candidate(arch, config, workdir=None, *, budget_steps=None, budget_epochs=None,
                  seed=0, init_variables=None) -> TrainResult  # the proxy task (validation)
  train_and_evaluate(config, workdir) -> TrainResult   # `launch.py train`
"""

from __future__ import annotations

import dataclasses
import functools
import json
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

from mnas import checkpoints
from mnas.space import Architecture

AXIS = 'batch'  # The data-parallel axis name (pmap's axis_name and the model's bn_axis_name).

# Fallbacks for fields a config leaves out (e.g. a search config's `train` block). The
# documented values, with their sources, are in experiments/train.py; tests check that the
# two agree.
DEFAULTS = dict(
    arch='mobilenet_v3_small',
    width_multiplier=None,
    resolution=64,
    dataset='mnas_shapes',
    data_dir=None,
    num_classes=None,
    holdout=None,
    min_area=None,
    eval_split='test',
    batch_size=64,
    eval_batch_size=None,
    optimizer='rmsprop',
    lr=0.016,
    base_batch_size=256,
    schedule='cosine',
    warmup_epochs=0.2,
    lr_decay_rate=0.97,
    lr_decay_epochs=2.4,
    end_lr_ratio=0.0,
    momentum=0.9,
    nesterov=False,
    rmsprop_decay=0.9,
    rmsprop_epsilon=1e-3,
    rmsprop_initial_scale=1.0,
    weight_decay=1e-5,
    label_smoothing=0.1,
    dropout_rate=0.2,
    ema_decay=0.99,
    grad_clip_norm=0.0,
    divergence_loss=1e3,
    dtype='float32',
    depthwise_impl='auto',
    num_epochs=4.0,
    num_train_steps=-1,
    log_every_steps=50,
    eval_every_steps=-1,
    checkpoint_every_steps=500,
    keep_checkpoints=3,
    data_threads=2,
    seed=0,
)

_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}


def _cfg(config, name: str):
  """config.name, or the default when the config has no such field (or it is None)."""
  value = config.get(name) if hasattr(config, 'get') else getattr(config, name, None)
  return DEFAULTS.get(name) if value is None else value


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
# Optimiser and learning-rate schedule.


def peak_learning_rate(config) -> float:
  """lr scaled linearly with the global batch (Goyal et al. 2017): lr * batch / base_batch."""
  return float(_cfg(config, 'lr')) * _cfg(config, 'batch_size') / _cfg(config, 'base_batch_size')


def make_schedule(config, steps_per_epoch: int, total_steps: int) -> Callable[[int], float]:
  """step -> learning rate of update `step` (0-based), as a host-side Python function.

  Linear warmup over `warmup_epochs` (reaching the peak at the end of warmup), then
  'cosine' (to end_lr_ratio * peak at total_steps), 'exponential' (TPU MnasNet code:
  peak * lr_decay_rate ** floor(step / (lr_decay_epochs * steps_per_epoch)), counted from
  step 0, staircase) or 'constant'.
  """
  peak = peak_learning_rate(config)
  kind = _cfg(config, 'schedule')
  if kind not in ('cosine', 'exponential', 'constant'):
    raise ValueError(f'unknown schedule {kind!r}: cosine, exponential or constant')
  warmup = min(int(round(_cfg(config, 'warmup_epochs') * steps_per_epoch)), total_steps)
  end = peak * _cfg(config, 'end_lr_ratio')
  decay_steps = max(1.0, _cfg(config, 'lr_decay_epochs') * steps_per_epoch)
  rate = _cfg(config, 'lr_decay_rate')

  def schedule(step: int) -> float:
    if step < warmup:
      return peak * (step + 1) / warmup
    if kind == 'cosine':
      t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
      return end + (peak - end) * 0.5 * (1 + math.cos(math.pi * t))
    if kind == 'exponential':
      return peak * rate ** math.floor(step / decay_steps)
    return peak
  return schedule


def make_optimizer(config) -> optax.GradientTransformation:
  """RMSProp (TF1 semantics) or SGD with (Nesterov) momentum; optional global-norm clipping.

  The learning rate is an injected hyperparameter (`opt_state.hyperparams`), set by the
  train step from its `lr` argument, so a schedule change never recompiles.
  """
  name = _cfg(config, 'optimizer')
  momentum = _cfg(config, 'momentum') or None

  def build(learning_rate):
    if name == 'rmsprop':
      # TF: ms = decay ms + (1 - decay) g^2 (ms starts at 1), mom = momentum mom +
      # lr g / sqrt(ms + eps), w -= mom. optax's rmsprop with eps_in_sqrt=True is the same.
      core = optax.rmsprop(learning_rate, decay=_cfg(config, 'rmsprop_decay'),
                           eps=_cfg(config, 'rmsprop_epsilon'),
                           initial_scale=_cfg(config, 'rmsprop_initial_scale'),
                           eps_in_sqrt=True, momentum=momentum,
                           nesterov=bool(_cfg(config, 'nesterov')))
    elif name in ('sgd', 'momentum'):
      core = optax.sgd(learning_rate, momentum=momentum, nesterov=bool(_cfg(config, 'nesterov')))
    else:
      raise ValueError(f'unknown optimizer {name!r}: rmsprop or sgd')
    clip = _cfg(config, 'grad_clip_norm')
    return optax.chain(optax.clip_by_global_norm(clip), core) if clip and clip > 0 else core

  return optax.inject_hyperparams(build)(learning_rate=0.0)


def _set_learning_rate(opt_state, lr):
  hyperparams = dict(opt_state.hyperparams)
  hyperparams['learning_rate'] = jnp.asarray(lr, hyperparams['learning_rate'].dtype)
  return opt_state._replace(hyperparams=hyperparams)


def decayed(params) -> Any:
  """Mask of the parameters under weight decay: conv and dense kernels (not BN, not biases)."""
  def is_kernel(path, _):
    last = path[-1]
    name = getattr(last, 'key', getattr(last, 'name', str(last)))
    return str(name).endswith('kernel')
  return jax.tree_util.tree_map_with_path(is_kernel, params)


def l2_loss(params) -> jax.Array:
  """sum over kernels of ||w||^2 / 2 (TF's tf.nn.l2_loss convention)."""
  mask = decayed(params)
  leaves = [jnp.sum(jnp.square(p.astype(jnp.float32)))
            for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(mask)) if m]
  return 0.5 * sum(leaves) if leaves else jnp.zeros((), jnp.float32)


# ---------------------------------------------------------------------------------------------
# Per-replica steps.


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
    targets = optax.smooth_labels(jax.nn.one_hot(labels, cfg.num_classes), cfg.label_smoothing)
    ce = jnp.mean(optax.softmax_cross_entropy(logits, targets))
    l2 = l2_loss(params)
    return ce + cfg.weight_decay * l2, (ce, l2, logits, new_vars['batch_stats'])

  grads, (ce, l2, logits, batch_stats) = jax.grad(loss_fn, has_aux=True)(state.params)
  if axis_name:
    grads = lax.pmean(grads, axis_name)
  opt_state = _set_learning_rate(state.opt_state, lr)
  updates, opt_state = tx.update(grads, opt_state, state.params)
  params = optax.apply_updates(state.params, updates)

  # TF's ExponentialMovingAverage(decay, num_updates=step): decay ramps up early in training.
  t = state.step.astype(jnp.float32)
  d = jnp.minimum(cfg.ema_decay, (1.0 + t) / (10.0 + t)) if cfg.ema_decay > 0 else 0.0
  ema = lambda e, p: d * e + (1.0 - d) * p
  new_state = state.replace(
      step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state,
      ema_params=jax.tree.map(ema, state.ema_params, params),
      ema_batch_stats=jax.tree.map(ema, state.ema_batch_stats, batch_stats))
  metrics = dict(loss=ce, accuracy=jnp.mean(jnp.argmax(logits, -1) == labels),
                 l2=l2, grad_norm=optax.global_norm(grads))
  if axis_name:
    metrics = lax.pmean(metrics, axis_name)
  return new_state, metrics


def eval_step(params, batch_stats, batch: dict, *, model,
              axis_name: str | None = AXIS) -> dict[str, jax.Array]:
  """Sums over the real (mask 1) examples: correct, loss (plain cross-entropy), count."""
  logits = model.apply({'params': params, 'batch_stats': batch_stats}, batch['image'],
                       train=False)
  mask = batch.get('mask', jnp.ones(batch['label'].shape, jnp.float32))
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
  correct = (jnp.argmax(logits, -1) == batch['label']).astype(jnp.float32)
  sums = dict(correct=jnp.sum(correct * mask), loss=jnp.sum(ce * mask), count=jnp.sum(mask))
  return lax.psum(sums, axis_name) if axis_name else sums


def parallelize(per_replica: Callable, devices: Sequence[jax.Device], *, in_axes,
                donate_argnums=()) -> Callable:
  """The one data-parallel wrapper: pmap over `devices` with axis name AXIS.

  `in_axes` has one entry per argument: 0 for per-device (leading device axis), None for
  broadcast. Outputs carry a leading device axis. When `devices` are the devices of several
  processes (multi-process training: all of `jax.devices()`), the axis spans them all and
  each process feeds its local ones (pmap with devices=None); when they are this process's
  own (single-process runs, a candidate of a candidate-parallel search), it spans just those.
  """
  return jax.pmap(per_replica, axis_name=AXIS, in_axes=in_axes,
                  devices=None if spans_processes(devices) else list(devices),
                  donate_argnums=donate_argnums)


def spans_processes(devices: Sequence[jax.Device]) -> bool:
  """Whether `devices` belong to several processes (then they must be all of jax.devices())."""
  if len({d.process_index for d in devices}) == 1:
    return False
  if sorted(d.id for d in devices) != sorted(d.id for d in jax.devices()):
    raise ValueError('a data-parallel group spanning processes must hold all of jax.devices()')
  return True


def local_devices(devices: Sequence[jax.Device]) -> list[jax.Device]:
  """This process's share of `devices` (what it feeds with its shard of the batch)."""
  return [d for d in devices if d.process_index == jax.process_index()]


def _shard_options(devices: Sequence[jax.Device]):
  """Each process reads its own shard of the data iff the group spans processes."""
  import grain
  if spans_processes(devices):
    return grain.sharding.ShardByJaxProcess(drop_remainder=True)
  return grain.sharding.NoSharding()


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
  fields = ('dropout_rate', 'dtype', 'depthwise_impl', 'optimizer', 'momentum', 'nesterov',
            'rmsprop_decay', 'rmsprop_epsilon', 'rmsprop_initial_scale', 'grad_clip_norm',
            'weight_decay', 'label_smoothing', 'ema_decay')
  return (str(arch), num_classes, tuple(_cfg(config, f) for f in fields),
          tuple(d.id for d in devices))


def make_steps(arch: Architecture, num_classes: int, config,
               devices: Sequence[jax.Device] | None = None) -> Steps:
  """Model, optimiser and pmapped train/eval steps (memoised: no recompilation per call).

  `devices` (default: all of `jax.devices()`, i.e. of every process) form the data-parallel
  group; see `parallelize`.
  """
  from mnas import models
  devices = tuple(devices or jax.devices())
  key = _static_key(arch, num_classes, config, devices)
  with _STEPS_LOCK:
    if key in _STEPS_CACHE:
      return _STEPS_CACHE[key]
  dtype = _DTYPES[_cfg(config, 'dtype')]
  model = models.build_model(arch, num_classes, dropout_rate=float(_cfg(config, 'dropout_rate')),
                             dtype=dtype, depthwise_impl=_cfg(config, 'depthwise_impl'),
                             bn_axis_name=AXIS)
  tx = make_optimizer(config)
  cfg = StepConfig(num_classes=num_classes, label_smoothing=float(_cfg(config, 'label_smoothing')),
                   weight_decay=float(_cfg(config, 'weight_decay')),
                   ema_decay=float(_cfg(config, 'ema_decay')))
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

  train = parallelize(functools.partial(train_step, model=model, tx=tx, cfg=cfg), devices,
                      in_axes=(0, 0, None), donate_argnums=(0,))
  evaluate = parallelize(functools.partial(eval_step, model=model), devices, in_axes=(0, 0, 0))
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


def replicate(tree, devices: Sequence[jax.Device]):
  """Host pytree -> one copy per device (a leading device axis), laid out as pmap's outputs."""
  mesh = jax.sharding.Mesh(np.asarray(devices), (AXIS,))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(AXIS))
  n = len(devices)
  return jax.tree.map(
      lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (n,) + np.shape(x)), sharding),
      tree)


def _first_replica(x):
  """The first device's copy of a pmapped array as numpy, without running a slicing op."""
  if isinstance(x, jax.Array) and not x.is_fully_replicated:
    return np.asarray(x.addressable_shards[0].data)[0]
  return np.asarray(x)[0]


def unreplicate(tree):
  """The first device's copy of a replicated pytree, on the host (numpy)."""
  return jax.tree.map(_first_replica, tree)


# ---------------------------------------------------------------------------------------------
# Summaries.


class _Summaries:
  """TensorBoard scalars/text in `logdir` (tensorboardX); a no-op without one or off process 0."""

  def __init__(self, logdir: str | None):
    self.writer = None
    if logdir and jax.process_index() == 0:
      from tensorboardX import SummaryWriter
      self.writer = SummaryWriter(logdir)

  def scalars(self, step: int, values: dict[str, float]) -> None:
    if self.writer:
      for k, v in values.items():
        self.writer.add_scalar(k, float(v), step)

  def text(self, step: int, tag: str, text: str) -> None:
    if self.writer:
      self.writer.add_text(tag, text, step)

  def close(self) -> None:
    if self.writer:
      self.writer.flush()
      self.writer.close()


def _fmt_seconds(s: float) -> str:
  s = int(max(0, s))
  return f'{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}'


# ---------------------------------------------------------------------------------------------
# The training loop.


def _close(it) -> None:
  close = getattr(it, 'close', None)
  if close:
    close()


def _evaluate(steps: Steps, state, config, kind: str, seed: int, holdout) -> tuple[float, float]:
  """(accuracy, mean loss) of the EMA weights on split kind ('validation' or 'test')."""
  from mnas import data
  bs = _cfg(config, 'eval_batch_size') or _cfg(config, 'batch_size')
  it = data.create_input_iterator(
      _cfg(config, 'dataset'), kind, batch_size=bs, image_size=steps.model.arch.resolution,
      data_dir=_cfg(config, 'data_dir'), seed=seed, holdout=holdout,
      num_devices=len(local_devices(steps.devices)), shard_options=_shard_options(steps.devices),
      num_threads=_cfg(config, 'data_threads'))
  totals = None
  try:
    for batch in it:
      sums = steps.evaluate(state.ema_params, state.ema_batch_stats, batch)
      totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  finally:
    _close(it)
  if totals is None:
    return 0.0, float('nan')
  totals = unreplicate(totals)
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
  from mnas import data
  t_start = time.time()
  devices = list(devices or jax.devices())  # The data-parallel group (see `parallelize`).
  local = local_devices(devices)
  dataset, data_dir = _cfg(config, 'dataset'), _cfg(config, 'data_dir')
  holdout = config.get('holdout') if hasattr(config, 'get') else None
  holdout = data.default_holdout(dataset) if holdout is None else holdout
  batch_size = int(_cfg(config, 'batch_size'))
  num_classes = _cfg(config, 'num_classes') or data.dataset_info(dataset, data_dir).num_classes
  n_train = data.num_examples(dataset, 'train', data_dir, holdout)
  steps_per_epoch = n_train // batch_size
  if steps_per_epoch < 1:
    raise ValueError(f'batch_size {batch_size} exceeds the {n_train} training examples')
  if budget_steps:
    total_steps = int(budget_steps)
  elif budget_epochs:
    total_steps = int(math.ceil(budget_epochs * steps_per_epoch))
  elif _cfg(config, 'num_train_steps') and _cfg(config, 'num_train_steps') > 0:
    total_steps = int(_cfg(config, 'num_train_steps'))
  else:
    total_steps = int(math.ceil(_cfg(config, 'num_epochs') * steps_per_epoch))
  schedule = make_schedule(config, steps_per_epoch, total_steps)
  steps = make_steps(arch, num_classes, config, devices)
  result = TrainResult(status='done', arch=str(arch), params=steps.num_params,
                       eval_split=eval_kind)
  logging.info('Training %s (%d params) for %d steps (%.2f epochs of %d examples), global '
               'batch %d on %d devices, peak lr %.4g.', arch.id, steps.num_params, total_steps,
               total_steps / steps_per_epoch, n_train, batch_size, len(devices),
               peak_learning_rate(config))

  host_state = (steps.init(seed) if init_variables is None
                else state_from_variables(steps, init_variables, seed))
  ckpt = None
  data_state = None
  if workdir:
    os.makedirs(workdir, exist_ok=True)
    ckpt = checkpoints.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                    max_to_keep=_cfg(config, 'keep_checkpoints'))
    restored = ckpt.restore(host_state)
    if restored is not None:
      _, host_state, data_state = restored
  step = int(host_state.step)
  result.start_step = step
  summaries = _Summaries(workdir)
  summaries.text(step, 'config', '```\n' + str(config) + f'\narch: {arch}\n```')
  it = None
  try:
    state = replicate(host_state, devices)
    del host_state
    it = data.create_input_iterator(
        dataset, 'train', batch_size=batch_size, image_size=arch.resolution, data_dir=data_dir,
        seed=seed, holdout=holdout, min_area=_cfg(config, 'min_area'), num_devices=len(local),
        shard_options=_shard_options(devices), num_threads=_cfg(config, 'data_threads'))
    if data_state:
      it.set_state(data_state)
    log_every = max(1, int(_cfg(config, 'log_every_steps')))
    eval_every = int(_cfg(config, 'eval_every_steps'))
    ckpt_every = int(_cfg(config, 'checkpoint_every_steps'))
    max_loss = float(_cfg(config, 'divergence_loss') or math.inf)
    pending = None  # (step, lr, metrics on device): fetched one step late to keep dispatch async.
    timer_start, timed_images, paused = None, 0, 0.0
    window = [time.time(), 0]  # For the per-log-line throughput.

    def finish(pending_step, lr, metrics):
      nonlocal timer_start, timed_images
      m = unreplicate(metrics)
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
        summaries.scalars(done, {'train/loss': loss, 'train/accuracy': m['accuracy'],
                                 'train/learning_rate': lr, 'train/images_per_second': ips,
                                 'train/l2': m['l2'], 'train/grad_norm': m['grad_norm']})
        window[:] = [now, 0]

    try:
      while step < total_steps:
        batch = next(it)
        lr = schedule(step)
        state, metrics = steps.train(state, batch, np.float32(lr))
        if pending is not None:
          finish(*pending)
        pending = (step, lr, metrics)
        step += 1
        if (ckpt and ckpt_every > 0 and step % ckpt_every == 0) or (
            eval_every > 0 and step % eval_every == 0 and step < total_steps):
          finish(*pending)
          pending = None
          t0 = time.time()
          if eval_every > 0 and step % eval_every == 0 and step < total_steps:
            acc, loss = _evaluate(steps, state, config, eval_kind, seed, holdout)
            result.evals.append((step, acc, loss))
            summaries.scalars(step, {'eval/accuracy': acc, 'eval/loss': loss})
            logging.info('step %d: %s accuracy %.4f, loss %.4f', step, eval_kind, acc, loss)
          if ckpt and ckpt_every > 0 and step % ckpt_every == 0:
            ckpt.save(step, unreplicate(state), it.get_state())
          paused += time.time() - t0
          window[0] += time.time() - t0
      if pending is not None:
        finish(*pending)
        pending = None
    except Diverged as e:
      logging.error('%s: %s', arch.id, e)
      result.status, result.reason = 'failed', str(e)
    result.steps = step if result.status == 'done' else int(unreplicate(state.step))
    if timer_start is not None and timed_images:
      result.images_per_second = timed_images / max(time.time() - timer_start - paused, 1e-9)
    if result.status == 'done':
      if ckpt and (ckpt.latest_step() or 0) < step:
        ckpt.save(step, unreplicate(state), it.get_state())
      acc, loss = _evaluate(steps, state, config, eval_kind, seed, holdout)
      result.val_accuracy, result.val_loss = acc, loss
      result.evals.append((step, acc, loss))
      summaries.scalars(step, {'eval/accuracy': acc, 'eval/loss': loss})
      logging.info('%s after %d steps: %s accuracy %.4f, loss %.4f, %.1f images/s.', arch.id,
                   step, eval_kind, acc, loss, result.images_per_second)
  finally:
    if it is not None:
      _close(it)
    summaries.close()
    if ckpt:
      ckpt.close()
  result.train_seconds = time.time() - t_start
  if workdir and jax.process_index() == 0:
    with open(os.path.join(workdir, 'result.json'), 'w') as f:
      json.dump(result.to_json(), f, indent=1)
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
  keeps a blown-up network's loss finite, so a loss above config.divergence_loss counts too.) `callbacks`
  are called as cb(step, metrics) after every step (an exception stops the run).
  Compiled steps are cached per (architecture, static config, devices). `devices` (default:
  all of `jax.devices()`) is the data-parallel group; a candidate-parallel search passes
  `jax.local_devices()` so that each process trains its own candidates. `init_variables`
  ({'params', 'batch_stats'} of this architecture's model) starts from those weights instead
  of a random initialisation (NetAdapt fine-tunes inherited weights; a checkpoint in
  `workdir` still wins, so a killed fine-tune resumes).
  """
  return _run(arch, config, workdir, seed=seed, budget_steps=budget_steps,
              budget_epochs=budget_epochs, eval_kind='validation', callbacks=callbacks,
              devices=devices, init_variables=init_variables)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainResult:
  """Trains `config.arch` (a reference name, string form or JSON file) and evaluates it.

  Evaluates on `config.eval_split` ('test' by default; 'validation' = the holdout). Set
  `holdout=0` to train a final model on the whole training split. Checkpoints, summaries and
  result.json go to `workdir`; an interrupted run resumes from its latest checkpoint.
  """
  import search_spaces
  arch = search_spaces.load_arch(_cfg(config, 'arch'), config.get('width_multiplier'),
                                 config.get('resolution'))
  eval_kind = _cfg(config, 'eval_split')
  result = _run(arch, config, workdir, seed=int(_cfg(config, 'seed')), budget_steps=None,
                budget_epochs=None, eval_kind=eval_kind)
  if result.status != 'done':
    logging.error('Training failed: %s', result.reason)
  return result
