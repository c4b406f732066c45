"""The optimiser, learning-rate schedule and weight decay of every trained network.

Shared by the trainer (`mnas.train`: the proxy task and the final models) and the one-shot
supernet (`mnas.oneshot`). The recipe is MnasNet's (Tan et al. 2019, section 5 and the TPU
reference code `tensorflow/tpu/models/official/mnasnet`) and MobileNetV3's (Howard et al.
2019, section 6.1): RMSProp with TF1's semantics (decay 0.9, momentum 0.9, epsilon inside
the square root, mean square starting at 1) or SGD with momentum (or Adam, Kingma & Ba 2015,
for short CPU proxies: `experiments/train.py:short_proxy_64`), the learning rate scaled
linearly with the batch (Goyal et al. 2017) after a linear warmup, then cosine, exponential
(staircase) or constant, and L2 weight decay on the conv and dense kernels.
`experiments/train.py` documents every field with its source.

Public API:
  FIELDS                                      the config fields read here
  peak_learning_rate(config) -> float
  make_schedule(config, steps_per_epoch, total_steps) -> step -> learning rate
  make_optimizer(config) -> optax.GradientTransformation (learning rate injected)
  set_learning_rate(opt_state, lr) -> opt_state
  apply_gradients(tx, grads, opt_state, params, lr) -> (params, opt_state)
  decayed(params) -> mask;  l2_loss(params) -> sum of ||kernel||^2 / 2
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from mnas import config as cfg
from mnas.errors import ConfigError

SCHEDULES = ('cosine', 'exponential', 'constant')
OPTIMIZERS = ('rmsprop', 'sgd', 'momentum', 'adam')  # 'momentum' is another name for 'sgd'.

# The config fields read here and their allowed values (`mnas.config.check`).
SCHEDULE_RULES = {
    'lr': cfg.NON_NEGATIVE, 'batch_size': cfg.POSITIVE, 'base_batch_size': cfg.POSITIVE,
    'schedule': cfg.one_of(*SCHEDULES), 'warmup_epochs': cfg.NON_NEGATIVE,
    'end_lr_ratio': cfg.NON_NEGATIVE, 'lr_decay_epochs': cfg.above(0),
    'lr_decay_rate': cfg.above(0)}
OPTIMIZER_RULES = {
    'optimizer': cfg.one_of(*OPTIMIZERS), 'momentum': cfg.fraction(), 'nesterov': cfg.BOOL,
    'rmsprop_decay': cfg.fraction(), 'rmsprop_epsilon': cfg.above(0),
    'rmsprop_initial_scale': cfg.NON_NEGATIVE, 'adam_b2': cfg.fraction(),
    'adam_epsilon': cfg.above(0), 'grad_clip_norm': cfg.NON_NEGATIVE}
SCHEDULE_FIELDS, OPTIMIZER_FIELDS = tuple(SCHEDULE_RULES), tuple(OPTIMIZER_RULES)
FIELDS = SCHEDULE_FIELDS + OPTIMIZER_FIELDS


def _allowed(name: str, value: Any, allowed: tuple[str, ...]) -> ConfigError:
  return ConfigError(f'train config field {name}={value!r} is not allowed: one of '
                     f'{", ".join(allowed)}')


def peak_learning_rate(config) -> float:
  """lr scaled linearly with the global batch (Goyal et al. 2017): lr * batch / base_batch."""
  return float(config.lr) * config.batch_size / config.base_batch_size


def make_schedule(config, steps_per_epoch: int, total_steps: int) -> Callable[[int], float]:
  """step -> learning rate of update `step` (0-based), as a host-side Python function.

  Linear warmup over `warmup_epochs` (reaching the peak at the end of warmup), then
  'cosine' (to end_lr_ratio * peak at total_steps), 'exponential' (TPU MnasNet code:
  peak * lr_decay_rate ** floor(step / (lr_decay_epochs * steps_per_epoch)), counted from
  step 0, staircase) or 'constant'.
  """
  peak = peak_learning_rate(config)
  kind = config.schedule
  if kind not in SCHEDULES:
    raise _allowed('schedule', kind, SCHEDULES)
  warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), total_steps)
  end = peak * config.end_lr_ratio
  decay_steps = max(1.0, config.lr_decay_epochs * steps_per_epoch)
  rate = config.lr_decay_rate

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
  """RMSProp (TF1 semantics), SGD with (Nesterov) momentum or Adam (b1 = `momentum`);
  optional global-norm clipping.

  The learning rate is an injected hyperparameter (`opt_state.hyperparams`), set by the
  train step from its `lr` argument (`set_learning_rate`), so a schedule change never
  recompiles.
  """
  name = config.optimizer
  if name not in OPTIMIZERS:
    raise _allowed('optimizer', name, OPTIMIZERS)
  momentum = config.momentum or None
  nesterov = bool(config.nesterov)

  def build(learning_rate):
    if name == 'rmsprop':
      # TF: ms = decay ms + (1 - decay) g^2 (ms starts at 1), mom = momentum mom +
      # lr g / sqrt(ms + eps), w -= mom. optax's rmsprop with eps_in_sqrt=True is the same.
      core = optax.rmsprop(learning_rate, decay=config.rmsprop_decay,
                           eps=config.rmsprop_epsilon,
                           initial_scale=config.rmsprop_initial_scale,
                           eps_in_sqrt=True, momentum=momentum, nesterov=nesterov)
    elif name == 'adam':  # Kingma & Ba 2015; weight decay stays the loss's L2 term.
      core = optax.adam(learning_rate, b1=config.momentum, b2=config.adam_b2,
                        eps=config.adam_epsilon, nesterov=nesterov)
    else:
      core = optax.sgd(learning_rate, momentum=momentum, nesterov=nesterov)
    clip = config.grad_clip_norm
    return optax.chain(optax.clip_by_global_norm(clip), core) if clip and clip > 0 else core

  return optax.inject_hyperparams(build)(learning_rate=0.0)


def set_learning_rate(opt_state, lr):
  """The state of a `make_optimizer` optimiser with its learning rate set to `lr`."""
  hyperparams = dict(opt_state.hyperparams)
  hyperparams['learning_rate'] = jnp.asarray(lr, hyperparams['learning_rate'].dtype)
  return opt_state._replace(hyperparams=hyperparams)


def apply_gradients(tx: optax.GradientTransformation, grads, opt_state, params, lr):
  """One optimiser update at learning rate `lr`: (new params, new optimiser state)."""
  opt_state = set_learning_rate(opt_state, lr)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


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
