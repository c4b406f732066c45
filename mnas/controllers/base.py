"""Controller interface and helpers shared by the controllers.

A search space is seen as D categorical decisions, decision d having
`num_options[d]` options. An architecture is an int32 vector of D option
indices; `active` [D] bool marks which decisions matter for that sample (e.g.
per-layer choices beyond the sampled depth are inactive).

Controllers are frozen dataclasses holding hyperparameters only; all mutable
state is an explicit pytree of arrays (a dict), so it can be jitted over and
checkpointed with orbax.
"""

from typing import Any, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np

State = Any  # A pytree (dict) of arrays.


class Controller(Protocol):
  """What the search loop needs from a controller."""

  num_options: tuple[int, ...]

  def init(self, rng: jax.Array) -> State:
    """Returns the initial state."""

  def sample(self, state: State, rng: jax.Array, n: int) -> jax.Array:
    """Samples n architectures, int32 [n, D]. Deterministic given rng."""

  def update(self, state: State, indices, active,
             rewards) -> tuple[State, dict[str, float]]:
    """Learns from n evaluated samples: indices [n, D], active [n, D] bool,
    rewards [n] (or objectives [n, M] for a multi-objective controller, e.g.
    Evolution(selection='nsga2')). Returns the new state and scalar metrics."""

  def probabilities(self, state: State) -> list[np.ndarray]:
    """Per decision, the current option probabilities [num_options[d]]."""


class BatchUpdate:
  """`update` for a controller whose jitted `_update(state, indices, active, rewards)` takes
  the batch as arrays (`as_batch`) and returns (state, metrics as arrays)."""

  def update(self, state: State, indices, active, rewards) -> tuple[State, dict[str, float]]:
    batch = as_batch(indices, active, rewards, len(self.num_options), self._objectives())
    state, metrics = self._update(state, *batch)
    return state, to_floats(metrics)

  def _objectives(self) -> int | None:
    """None when update takes one reward per sample [n], M when it takes M objectives [n, M]."""
    return None


def check_num_options(num_options: Sequence[int]) -> tuple[int, ...]:
  num_options = tuple(int(k) for k in num_options)
  if not num_options or min(num_options) < 1:
    raise ValueError('num_options must be a non-empty sequence of ints >= 1, '
                     f'got {num_options}.')
  return num_options


def option_mask(num_options: tuple[int, ...]) -> jax.Array:
  """[D, K] bool, True where option k exists for decision d (K = max)."""
  return jnp.arange(max(num_options)) < jnp.array(num_options)[:, None]


def mask_logits(logits: jax.Array, num_options: tuple[int, ...]) -> jax.Array:
  """Sets the logits of padded (non-existent) options to -inf."""
  return jnp.where(option_mask(num_options), logits, -jnp.inf)


def masked_entropy(logits: jax.Array) -> jax.Array:
  """Entropy over the last axis of logits with -inf padding (NaN-safe)."""
  logp = jax.nn.log_softmax(logits)
  logp = jnp.where(jnp.isfinite(logits), logp, 0.0)
  return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def uniform_sample(rng: jax.Array, num_options: tuple[int, ...],
                   n: int) -> jax.Array:
  """n uniformly random architectures, int32 [n, D]."""
  u = jax.random.uniform(rng, (n, len(num_options)))
  return jnp.floor(u * jnp.array(num_options)).astype(jnp.int32)


def ema_baseline(baseline, num_updates, rewards, momentum):
  """Moving-average reward baseline (TuNAS: momentum 0.95).

  baseline <- momentum * baseline + (1 - momentum) * mean(rewards); the first
  update (num_updates == 0) sets it to mean(rewards).
  """
  mean = jnp.mean(rewards)
  ema = momentum * baseline + (1.0 - momentum) * mean
  return jnp.where(num_updates == 0, mean, ema)


def as_batch(indices, active, rewards, d: int, objectives: int | None = None):
  """Converts an update's inputs to int32 [n, D], bool [n, D], float32 [n].

  With `objectives` = M (a multi-objective controller), rewards are float32 [n, M].
  """
  indices = jnp.asarray(indices, jnp.int32)
  active = jnp.asarray(active, bool)
  rewards = jnp.asarray(rewards, jnp.float32)
  n = rewards.shape[0] if rewards.ndim else -1
  shape = (n,) if objectives is None else (n, objectives)
  if indices.shape != (n, d) or active.shape != (n, d) or rewards.shape != shape:
    expected = '[n]' if objectives is None else f'[n, {objectives}]'
    raise ValueError(f'expected indices and active of shape [n, {d}] and '
                     f'rewards {expected}; got {indices.shape}, {active.shape}, '
                     f'{rewards.shape}.')
  return indices, active, rewards


def to_floats(metrics: dict[str, jax.Array]) -> dict[str, float]:
  return {k: float(v) for k, v in jax.device_get(metrics).items()}


def split_probabilities(probs,
                        num_options: tuple[int, ...]) -> list[np.ndarray]:
  """[D, K] padded probabilities -> list of [num_options[d]] numpy arrays."""
  probs = np.asarray(jax.device_get(probs), np.float64)
  return [probs[d, :k] for d, k in enumerate(num_options)]
