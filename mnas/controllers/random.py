"""Uniform random search: the baseline every NAS method must beat.

See e.g. Li & Talwalkar 2019, "Random Search and Reproducibility for Neural
Architecture Search", and Bender et al. 2020 (TuNAS) for its strength on
mobile search spaces.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from mnas.controllers import base


@dataclasses.dataclass(frozen=True)
class RandomSearch:
  """Samples every decision uniformly; update() only counts updates."""

  num_options: tuple[int, ...]

  def __post_init__(self):
    object.__setattr__(self, 'num_options',
                       base.check_num_options(self.num_options))

  def init(self, rng: jax.Array) -> base.State:
    del rng  # Nothing to initialise.
    return {'step': jnp.zeros((), jnp.int32)}

  @functools.partial(jax.jit, static_argnums=(0, 3))
  def sample(self, state, rng, n: int) -> jax.Array:
    del state
    return base.uniform_sample(rng, self.num_options, n)

  def update(self, state, indices, active, rewards):
    _, _, rewards = base.as_batch(indices, active, rewards,
                                  len(self.num_options))
    state = {'step': state['step'] + 1}
    return state, base.to_floats({'reward_mean': jnp.mean(rewards),
                                  'reward_max': jnp.max(rewards)})

  def probabilities(self, state) -> list[np.ndarray]:
    del state
    return [np.full(k, 1.0 / k) for k in self.num_options]
