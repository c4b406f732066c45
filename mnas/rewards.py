"""Latency-aware search rewards.

All reward functions are pure and work on Python floats, numpy arrays and jax
arrays (also under `jax.jit`) with ordinary broadcasting. Latencies and targets
must be in the same unit (milliseconds throughout this codebase).

References:
  [MnasNet] Tan et al. 2019, "MnasNet: Platform-Aware Neural Architecture
    Search for Mobile", Eq. 2.
  [V3] Howard et al. 2019, "Searching for MobileNetV3", Sec. 4.1 (w = -0.15
    for the small model search).
  [TuNAS] Bender et al. 2020, "Can Weight Sharing Outperform Random
    Architecture Search? An Investigation With TuNAS"; reward definitions as in
    the released code (tunas/search_space_utils.py,
    reward_for_single_cost_model), whose default exponent is beta = -0.10.
"""

from typing import Callable

import jax
import numpy as np
import jax.numpy as jnp

from mnas.errors import ConfigError

# Default exponents. MnasNet Eq. 2: soft constraint alpha = beta = -0.07,
# hard constraint alpha = 0, beta = -1. MobileNetV3-Small: w = -0.15.
# TuNAS: --rl_cost_model_exponent default -0.10.
MNASNET_SOFT = dict(alpha=-0.07, beta=-0.07)
MNASNET_HARD = dict(alpha=0.0, beta=-1.0)
V3_SMALL = dict(alpha=-0.15, beta=-0.15)
TUNAS_BETA = -0.10


def _xp(*xs):
  """Array namespace: jax.numpy if any input is a jax array, else numpy."""
  return jnp if any(isinstance(x, jax.Array) for x in xs) else np


def mnasnet(accuracy, latency_ms, target_ms, alpha=-0.07, beta=-0.07):
  """MnasNet reward, Tan et al. 2019, Eq. 2.

    reward = ACC(m) * (LAT(m) / T) ** w,  w = alpha if LAT(m) <= T else beta.

  alpha = beta = -0.07 is the soft constraint used for MnasNet; alpha = 0,
  beta = -1 is the hard constraint (no bonus below T, sharp penalty above).
  """
  w = beta + (alpha - beta) * (latency_ms <= target_ms)
  return accuracy * (latency_ms / target_ms) ** w


def v3_small(accuracy, latency_ms, target_ms, w=-0.15):
  """MobileNetV3-Small search reward, Howard et al. 2019, Sec. 4.1.

  MnasNet Eq. 2 with alpha = beta = w = -0.15 (instead of -0.07), because
  accuracy changes much faster with latency for small models.
  """
  return mnasnet(accuracy, latency_ms, target_ms, alpha=w, beta=w)


def tunas_mnas(quality, cost, target, beta=TUNAS_BETA):
  """TuNAS 'mnas' reward: Q(a) * (T(a) / T0) ** beta (MnasNet soft, w=beta)."""
  return quality * (cost / target) ** beta


def tunas_mnas_hard(quality, cost, target, beta=TUNAS_BETA):
  """TuNAS 'mnas_hard' reward: Q(a) * min((T(a) / T0) ** beta, 1)."""
  xp = _xp(quality, cost, target)
  return quality * xp.minimum((cost / target) ** beta, 1.0)


def tunas_abs(quality, cost, target, beta=TUNAS_BETA):
  """TuNAS absolute-value reward: Q(a) + beta * |T(a) / T0 - 1|.

  Bender et al. 2020's main reward: with beta < 0 it penalises architectures
  both slower and faster than the target T0, pushing the search to T0.
  """
  return quality + beta * abs(cost / target - 1.0)


def pareto(accuracy, latency_ms, target_ms):
  """The recorded reward of a multi-objective search ('pareto'): the accuracy.

  Its controller (`Evolution(selection='nsga2')`) learns from the objectives
  (accuracy, -latency) (`objectives`), not from this number, and keeps a Pareto front
  instead of a target: `target_ms` is not used.
  """
  del target_ms
  return accuracy + 0.0 * latency_ms  # Broadcast like the other rewards.


def objectives(accuracy, latency_ms):
  """[..., 2] objectives of a multi-objective search, both maximised: accuracy, -latency."""
  xp = _xp(accuracy, latency_ms)
  return xp.stack([xp.asarray(accuracy, dtype=float), -xp.asarray(latency_ms, dtype=float)], -1)


# kind -> (function, default parameters). Every parameter is overridable.
_KINDS = {
    'mnasnet': (mnasnet, MNASNET_SOFT),
    'mnasnet_soft': (mnasnet, MNASNET_SOFT),
    'mnasnet_hard': (mnasnet, MNASNET_HARD),
    'v3_small': (mnasnet, V3_SMALL),
    'tunas_abs': (tunas_abs, dict(beta=TUNAS_BETA)),
    'tunas_mnas': (tunas_mnas, dict(beta=TUNAS_BETA)),
    'tunas_mnas_hard': (tunas_mnas_hard, dict(beta=TUNAS_BETA)),
    'pareto': (pareto, {}),
}
KINDS = tuple(_KINDS)


def make_reward(kind: str, target_ms: float,
                **params) -> Callable[..., float]:
  """Returns `reward(accuracy, latency_ms)` for a reward `kind`.

  Args:
    kind: one of KINDS. 'mnasnet' / 'mnasnet_soft': Eq. 2 with
      alpha = beta = -0.07; 'mnasnet_hard': alpha = 0, beta = -1;
      'v3_small': alpha = beta = -0.15; 'tunas_*': TuNAS rewards, beta = -0.10;
      'pareto': a multi-objective search (see `pareto`).
    target_ms: latency target T (T0 in TuNAS), > 0.
    **params: overrides of the kind's parameters ('alpha', 'beta' for the
      MnasNet kinds; 'beta' for the TuNAS kinds).
  """
  if kind not in _KINDS:
    raise ConfigError(f'reward.kind={kind!r} is not allowed; allowed: one of {KINDS}')
  if not target_ms > 0:  # Also rejects NaN.
    raise ConfigError(f'reward.target_ms={target_ms!r} is not allowed; allowed: > 0 '
                      '(milliseconds of the latency table)')
  fn, defaults = _KINDS[kind]
  unknown = set(params) - set(defaults)
  if unknown:
    raise ConfigError(f'reward.params has {sorted(unknown)}, not a parameter of reward kind '
                      f'{kind!r}; allowed: {sorted(defaults)}')
  kw = {**defaults, **{k: float(v) for k, v in params.items()}}
  target_ms = float(target_ms)

  def reward(accuracy, latency_ms):
    return fn(accuracy, latency_ms, target_ms, **kw)
  reward.__name__ = reward.__qualname__ = f'{kind}_reward'
  return reward


def from_config(config) -> Callable[..., float]:
  """The reward of a search config's `reward` block: kind, target_ms, params."""
  return make_reward(config.kind, config.target_ms, **dict(config.params))
