"""TuNAS's controller: independent categoricals trained with REINFORCE.

Bender et al. 2020, "Can Weight Sharing Outperform Random Architecture
Search? An Investigation With TuNAS". One logit vector per decision (padded to
the largest option count, padding masked with -inf); the log-probability of an
architecture sums over the decisions that are *active* in it, so inactive
decisions get no gradient. Update (as in tunas/mobile_architecture_search.py):

  baseline <- 0.95 * baseline + 0.05 * mean(R)   (first update: mean(R))
  loss      = -mean((R - baseline) * log p(a)) - entropy_weight * H
  Adam(lr, b1=0, b2=0.999, eps=1e-8).

Defaults: TuNAS's flag is rl_learning_rate = 3e-4 per 256 training images,
scaled linearly with the batch size, i.e. 0.0048 at its batch size of 4096
(TuNAS also delays RL for the first 25% of the search and raises the rate 10x
over the rest; pass an optax schedule as `learning_rate` for that). TuNAS
takes one REINFORCE step per training step, hundreds of thousands in total;
for short searches a larger rate (e.g. 0.05) is needed. entropy_weight = 0 and
baseline_momentum = 0.95 are TuNAS's defaults.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mnas.controllers import base

DEFAULT_LEARNING_RATE = 0.0048  # TuNAS: 3e-4 * 4096 / 256.


@dataclasses.dataclass(frozen=True)
class Reinforce(base.BatchUpdate):
  """Independent categorical policy + REINFORCE with an EMA baseline."""

  num_options: tuple[int, ...]
  learning_rate: float | optax.Schedule = DEFAULT_LEARNING_RATE
  baseline_momentum: float = 0.95
  entropy_weight: float = 0.0

  def __post_init__(self):
    object.__setattr__(self, 'num_options',
                       base.check_num_options(self.num_options))

  def _tx(self):
    return optax.adam(self.learning_rate, b1=0.0, b2=0.999, eps=1e-8)

  def _logits(self, state):
    return base.mask_logits(state['params']['logits'], self.num_options)

  def init(self, rng: jax.Array) -> base.State:
    del rng  # Uniform initial distribution, as in TuNAS.
    shape = (len(self.num_options), max(self.num_options))
    params = {'logits': jnp.zeros(shape, jnp.float32)}
    return {'params': params,
            'opt_state': self._tx().init(params),
            'baseline': jnp.zeros((), jnp.float32),
            'step': jnp.zeros((), jnp.int32)}

  @functools.partial(jax.jit, static_argnums=(0, 3))
  def sample(self, state, rng, n: int) -> jax.Array:
    logits = self._logits(state)
    return jax.random.categorical(
        rng, logits, shape=(n, len(self.num_options))).astype(jnp.int32)

  def log_prob(self, params, indices, active):
    """Sum over active decisions of log p(indices), [n]."""
    logits = base.mask_logits(params['logits'], self.num_options)
    logp = jax.nn.log_softmax(logits)  # [D, K]
    chosen = jnp.take_along_axis(logp[None], indices[..., None], -1)[..., 0]
    return jnp.sum(jnp.where(active, chosen, 0.0), axis=-1)

  @functools.partial(jax.jit, static_argnums=0)
  def _update(self, state, indices, active, rewards):
    baseline = base.ema_baseline(state['baseline'], state['step'], rewards,
                                 self.baseline_momentum)
    advantage = rewards - baseline

    def loss_fn(params):
      logits = base.mask_logits(params['logits'], self.num_options)
      pg_loss = -jnp.mean(advantage * self.log_prob(params, indices, active))
      # Expected entropy of the active decisions (all-zero for never-active).
      entropy = jnp.mean(
          active.astype(jnp.float32) @ base.masked_entropy(logits))
      return pg_loss - self.entropy_weight * entropy, pg_loss

    (loss, pg_loss), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state['params'])
    updates, opt_state = self._tx().update(grads, state['opt_state'],
                                           state['params'])
    params = optax.apply_updates(state['params'], updates)
    new_state = {'params': params, 'opt_state': opt_state,
                 'baseline': baseline, 'step': state['step'] + 1}
    metrics = {
        'loss': loss, 'pg_loss': pg_loss, 'baseline': baseline,
        'reward_mean': jnp.mean(rewards), 'reward_max': jnp.max(rewards),
        'advantage_abs': jnp.mean(jnp.abs(advantage)),
        'entropy': jnp.sum(base.masked_entropy(self._logits(new_state))),
    }
    return new_state, metrics

  @functools.partial(jax.jit, static_argnums=0)
  def _probs(self, state):
    return jax.nn.softmax(self._logits(state))

  def probabilities(self, state) -> list[np.ndarray]:
    return base.split_probabilities(self._probs(state), self.num_options)
