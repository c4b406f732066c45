"""Regularized (aging) evolution, Real et al. 2019, Algorithm 1.

"Regularized Evolution for Image Classifier Architecture Search" (AmoebaNet).
Until the population holds P members, architectures are sampled uniformly.
Afterwards each child is a copy of the best (highest reward) of S members
drawn at random with replacement (as in Algorithm 1), with one decision
mutated to a different option; the mutated decision is drawn among the
decisions active in the parent when there is one (mutating an inactive choice
changes nothing). update() inserts evaluated children and, once the
population is full, each insertion removes the OLDEST member, not the worst.

Defaults P = 100, S = 25: to our knowledge the values of the paper's main
(large-scale) experiments, not re-verified here. Larger S/P means stronger
selection pressure (S = 1 is random walk, S = P greedy hill climbing).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from mnas.controllers import base


@dataclasses.dataclass(frozen=True)
class Evolution(base.BatchUpdate):
  """Aging evolution over a fixed-size population stored as arrays."""

  num_options: tuple[int, ...]
  population_size: int = 100
  tournament_size: int = 25

  def __post_init__(self):
    object.__setattr__(self, 'num_options',
                       base.check_num_options(self.num_options))
    if not 1 <= self.tournament_size <= self.population_size:
      raise ValueError('need 1 <= tournament_size <= population_size, got '
                       f'{self.tournament_size}, {self.population_size}.')

  def init(self, rng: jax.Array) -> base.State:
    """Empty population: born = -1 marks free slots."""
    del rng
    p, d = self.population_size, len(self.num_options)
    return {'indices': jnp.zeros((p, d), jnp.int32),
            'active': jnp.zeros((p, d), bool),
            'rewards': jnp.full((p,), -jnp.inf, jnp.float32),
            'born': jnp.full((p,), -1, jnp.int32),  # Insertion counter.
            'count': jnp.zeros((), jnp.int32)}  # Children inserted so far.

  @functools.partial(jax.jit, static_argnums=(0, 3))
  def sample(self, state, rng, n: int) -> jax.Array:
    num_options = jnp.array(self.num_options)
    p, s, d = self.population_size, self.tournament_size, len(num_options)
    # One uniform draw per child: [decision choices | tournament | mutation].
    u = jax.random.uniform(rng, (n, d + s + 2))
    u_genes, u_tour, u_dec, u_opt = jnp.split(u, [d, d + s, d + s + 1], 1)
    uniform = jnp.floor(u_genes * num_options).astype(jnp.int32)

    # Tournament: the best of S members drawn with replacement.
    contestants = jnp.floor(u_tour * p).astype(jnp.int32)  # [n, S]
    winner = jnp.take_along_axis(
        contestants, jnp.argmax(state['rewards'][contestants], 1)[:, None], 1)
    genes = state['indices'][winner[:, 0]]  # [n, D]
    active = state['active'][winner[:, 0]]

    # Mutate one decision, uniformly among the parent's active decisions with
    # more than one option (or among all those when none is active).
    mutable = num_options > 1
    candidates = jnp.where(jnp.any(mutable & active, 1, keepdims=True),
                           mutable & active, mutable)
    cdf = jnp.cumsum(candidates, 1) / jnp.maximum(
        jnp.sum(candidates, 1, keepdims=True), 1)
    which = jnp.minimum(jnp.sum(cdf <= u_dec, 1), d - 1)  # [n]
    k = num_options[which]
    # A different option: shift by 1 .. k-1 (modulo k).
    shift = 1 + jnp.floor(u_opt[:, 0] * (k - 1)).astype(jnp.int32)
    old = jnp.take_along_axis(genes, which[:, None], 1)[:, 0]
    new = jnp.where(jnp.any(mutable), (old + shift) % k, old)
    mutants = jnp.where(jnp.arange(d) == which[:, None], new[:, None], genes)

    full = state['count'] >= p
    return jnp.where(full, mutants, uniform)

  @functools.partial(jax.jit, static_argnums=0)
  def _update(self, state, indices, active, rewards):

    def insert(state, child):
      # Free slots have born = -1, so they are filled first; afterwards the
      # slot with the smallest insertion counter (the oldest) is replaced.
      slot = jnp.argmin(state['born'])
      x, a, r = child
      return {'indices': state['indices'].at[slot].set(x),
              'active': state['active'].at[slot].set(a),
              'rewards': state['rewards'].at[slot].set(r),
              'born': state['born'].at[slot].set(state['count']),
              'count': state['count'] + 1}, None

    state, _ = jax.lax.scan(insert, state, (indices, active, rewards))
    valid = state['born'] >= 0
    freqs = self._frequencies(state)
    entropy = -jnp.sum(jnp.where(freqs > 0, freqs * jnp.log(freqs), 0.0))
    metrics = {
        'reward_mean': jnp.mean(rewards), 'reward_max': jnp.max(rewards),
        'population_reward_best': jnp.max(state['rewards']),
        'population_reward_mean': (jnp.sum(jnp.where(valid, state['rewards'],
                                                     0.0))
                                   / jnp.maximum(jnp.sum(valid), 1)),
        'population_size': jnp.sum(valid), 'entropy': entropy,
    }
    return state, metrics

  @functools.partial(jax.jit, static_argnums=0)
  def _frequencies(self, state):
    """[D, K] option frequencies in the population (uniform when empty)."""
    valid = (state['born'] >= 0).astype(jnp.float32)
    onehot = jax.nn.one_hot(state['indices'], max(self.num_options))
    counts = jnp.einsum('p,pdk->dk', valid, onehot)
    uniform = base.option_mask(self.num_options) / jnp.array(
        self.num_options)[:, None]
    return jnp.where(jnp.sum(valid) > 0, counts / jnp.sum(valid), uniform)

  def probabilities(self, state) -> list[np.ndarray]:
    return base.split_probabilities(self._frequencies(state),
                                    self.num_options)
