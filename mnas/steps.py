"""The compiled steps of a training run: the per-replica train and eval steps of one
architecture, made data-parallel and cached.

Pure functions over an explicit `TrainState`; `train_step` / `eval_step` are made
data-parallel by `mnas.parallel.parallelize` (a `jax.pmap` over a group of devices, axis
name `AXIS`), the one place to change for `shard_map`. `make_steps` builds them once per
(architecture, static config, devices) and caches the result, so a search that meets an
architecture again, or NetAdapt fine-tuning a network it trained, compiles nothing. A
`Steps` compiles its programs on first use, or ahead of time on another thread
(`Steps.compile`): a search compiles its next candidate while the current one trains.
The one-shot supernet (`mnas.search.oneshot`) shares the loss and the evaluation sums.

The loss is MnasNet's (Tan et al. 2019, section 5): softmax cross-entropy with label
smoothing (Szegedy et al. 2016) plus weight_decay * L2 of the kernels; the weights and
batch-norm statistics are averaged with TF's ExponentialMovingAverage for evaluation.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from typing import Any, Callable, Sequence

import flax
import flax.struct
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import optax

from mnas import config as config_lib, ops, optim, parallel
from mnas.parallel import AXIS
from mnas.space import Architecture

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}
# The static (compile-time) fields of a train config (experiments/train.py documents each).
RULES = {
    'dropout_rate': config_lib.fraction(), 'head_zeroinit': config_lib.BOOL,
    'dtype': config_lib.one_of(*DTYPES),
    'depthwise_impl': config_lib.one_of(*ops.IMPLS), 'weight_decay': config_lib.NON_NEGATIVE,
    'label_smoothing': config_lib.fraction(), 'ema_decay': config_lib.fraction(),
    **optim.OPTIMIZER_RULES}
FIELDS = tuple(RULES)


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



# ---------------------------------------------------------------------------------------------
# Per-replica steps (the supernet's, mnas.oneshot, share the loss and the sums).


def _loss_precision(logits):
  """bfloat16/float16 logits (the model's compute dtype) as float32 for the softmax;
  float32 and float64 unchanged."""
  return logits.astype(jnp.promote_types(logits.dtype, jnp.float32))


def smoothed_cross_entropy(logits, labels, num_classes: int, label_smoothing: float):
  """Mean softmax cross-entropy with label smoothing (Szegedy et al. 2016), in at least
  float32."""
  logits = _loss_precision(logits)
  targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
  return jnp.mean(optax.softmax_cross_entropy(logits, targets))


def step_metrics(ce, l2, logits, labels, grads) -> dict[str, jax.Array]:
  """What a train step reports: loss (the smoothed cross-entropy), accuracy, l2, grad_norm."""
  return dict(loss=ce, accuracy=jnp.mean(jnp.argmax(logits, -1) == labels), l2=l2,
              grad_norm=optax.global_norm(grads))


def eval_sums(logits, batch: dict) -> dict[str, jax.Array]:
  """Sums over the real (mask 1) examples: correct, loss (plain cross-entropy, in at least
  float32), count."""
  logits = _loss_precision(logits)
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


_FAST_COMPILE = {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True}


class Steps:
  """The model and its compiled functions for one (architecture, config, devices).

  `init(seed)`, `train(state, batch, lr)` and `evaluate(params, batch_stats, batch)` run
  programs compiled once per batch shape and kept here. They compile on first use, or ahead
  of time: `compile(batch_size, eval_batch_size)` compiles them for those global batch sizes,
  called on a thread (while another candidate trains: `mnas.train.compile_ahead`; while this
  one initialises: `mnas.train`). Each program compiles once: a call that needs one being
  compiled on another thread waits for it. Programs are told apart by the batch's shape: the
  state's structure is the one `init` makes. With several processes the pmapped functions
  run directly (JAX compiles them on first call and converts host-local arrays, which a
  compiled program would not).
  """

  def __init__(self, model, tx: optax.GradientTransformation, init_fn: Callable,
               train_fn: Callable, eval_fn: Callable, devices: tuple):
    self.model, self.tx, self.devices = model, tx, devices
    self._init_fn = init_fn                       # jit: rng -> host TrainState.
    self._shapes = jax.eval_shape(init_fn, jax.random.PRNGKey(0))  # The state's.
    self.num_params = int(sum(np.prod(x.shape) for x in jax.tree.leaves(self._shapes.params)))
    self._fns = {'train': train_fn, 'evaluate': eval_fn}  # pmapped.
    self._programs: dict = {}                     # name or (name, image shape) -> Compiled.
    self._locks: dict = {}                        # The same keys -> the lock of its compile.
    self._lock = threading.Lock()
    self._local = jax.process_count() == 1

  def init(self, seed: int) -> TrainState:
    """A fresh host (unreplicated) state."""
    key = jax.random.PRNGKey(seed)
    return jax.device_get(self._compile_init(key)(key))

  def train(self, state: TrainState, batch: dict, lr) -> tuple[TrainState, dict]:
    """One data-parallel update (replicated state in and out; metrics with a device axis)."""
    return self._program('train', state, batch, lr)(state, batch, lr)

  def evaluate(self, params, batch_stats, batch: dict) -> dict:
    """`eval_step`'s sums, summed over the devices (with a device axis)."""
    return self._program('evaluate', params, batch_stats, batch)(params, batch_stats, batch)

  def compile(self, batch_size: int, eval_batch_size: int, init: bool = True) -> None:
    """Compiles train, evaluate and (with `init`) init now, for these global batch sizes."""
    if not self._local:
      return
    key = jax.random.PRNGKey(0)
    n, res, shapes = len(self.devices), self.model.arch.resolution, self._shapes
    rep = lambda tree: jax.tree.map(
        lambda x: jax.ShapeDtypeStruct((n,) + x.shape, x.dtype), tree)

    def batch(size: int, mask: bool) -> dict:
      per = size // n
      b = {'image': jax.ShapeDtypeStruct((n, per, res, res, 3), jnp.float32),
           'label': jax.ShapeDtypeStruct((n, per), jnp.int32)}
      if mask:
        b['mask'] = jax.ShapeDtypeStruct((n, per), jnp.float32)
      return b
    self._program('train', rep(shapes), batch(batch_size, False),
                  jax.ShapeDtypeStruct((), jnp.float32))
    self._program('evaluate', rep(shapes.ema_params), rep(shapes.ema_batch_stats),
                  batch(eval_batch_size, True))
    if init:
      self._compile_init(key)

  def _compile_init(self, key):
    # XLA's cheapest optimisation level halves the compile time of the ~100 random
    # initialisers (deterministic all the same).
    return self._compiled('init', lambda: self._init_fn.lower(key).compile(
        compiler_options=_FAST_COMPILE))

  def _program(self, name: str, *args) -> Callable:
    """The program of `name` for the shape of the batch argument (compiled here once)."""
    if not self._local:
      return self._fns[name]
    key = (name, tuple(args[-1 if name == 'evaluate' else 1]['image'].shape))
    return self._compiled(key, lambda: self._fns[name].lower(*args).compile())

  def _compiled(self, key, compile: Callable[[], Any]):
    """The program under `key`, made by `compile()` once (other threads wait for it)."""
    program = self._programs.get(key)
    if program is None:
      with self._lock:
        lock = self._locks.setdefault(key, threading.Lock())
      with lock:
        program = self._programs.get(key)
        if program is None:
          program = self._programs[key] = compile()
    return program


_STEPS_CACHE: dict = {}
_STEPS_CACHE_SIZE = 8  # Then `release_compiled`: XLA's per-program memory maps are bounded.
_STEPS_LOCK = threading.RLock()


def _static_key(arch: Architecture, num_classes: int, config, devices) -> tuple:
  return (str(arch), num_classes, tuple(config[f] for f in FIELDS),
          tuple(d.id for d in devices))


def make_steps(arch: Architecture, num_classes: int, config,
               devices: Sequence[jax.Device] | None = None) -> Steps:
  """Model, optimiser and pmapped train/eval steps (memoised: no recompilation per call).

  `devices` (default: all of `jax.devices()`, i.e. of every process) form the data-parallel
  group; see `mnas.parallel.parallelize`. Raises ConfigError when the config lacks one of
  FIELDS or has a value that is not allowed. Thread-safe: a thread compiling a candidate
  ahead of time and the training loop asking for it get the same `Steps`.
  """
  from mnas import models
  config_lib.check(config, RULES, 'the train config')
  devices = tuple(devices or jax.devices())
  key = _static_key(arch, num_classes, config, devices)
  with _STEPS_LOCK:
    if key in _STEPS_CACHE:
      return _STEPS_CACHE[key]
    model = models.build_model(arch, num_classes, dropout_rate=float(config.dropout_rate),
                               dtype=DTYPES[config.dtype], depthwise_impl=config.depthwise_impl,
                               bn_axis_name=AXIS, head_zeroinit=bool(config.head_zeroinit))
    tx = optim.make_optimizer(config)
    cfg = StepConfig(num_classes=num_classes, label_smoothing=float(config.label_smoothing),
                     weight_decay=float(config.weight_decay), ema_decay=float(config.ema_decay))
    res = arch.resolution

    @jax.jit
    def init(rng):
      init_rng, dropout_rng = jax.random.split(rng)
      variables = model.init(init_rng, jnp.zeros((1, res, res, 3), jnp.float32), train=False)
      params, batch_stats = variables['params'], variables.get('batch_stats', {})
      return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                        opt_state=tx.init(params), ema_params=params,
                        ema_batch_stats=batch_stats, rng=dropout_rng)

    train = parallel.parallelize(functools.partial(train_step, model=model, tx=tx, cfg=cfg),
                                 devices, in_axes=(0, 0, None), donate_argnums=(0,))
    evaluate = parallel.parallelize(functools.partial(eval_step, model=model), devices,
                                    in_axes=(0, 0, 0))
    if len(_STEPS_CACHE) >= _STEPS_CACHE_SIZE:
      release_compiled()
    steps = _STEPS_CACHE[key] = Steps(model, tx, init, train, evaluate, devices)
    return steps


def release_compiled() -> None:
  """Drops every cached compiled step, and JAX's own caches with them.

  XLA:CPU maps ~2,000 memory regions per compiled candidate (its JIT code) and frees them
  only when JAX's caches let go of the executable; dropping our reference is not enough.
  Linux allows 65,530 maps per process by default (vm.max_map_count): a search process that
  kept every candidate's program aborted ("LLVM ERROR: Unable to allocate section memory")
  after ~45 candidates. Called when the cache is full; measured: 2,900 maps -> 800. A
  `Steps` still in use keeps its own programs.
  """
  with _STEPS_LOCK:
    _STEPS_CACHE.clear()
    jax.clear_caches()



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

