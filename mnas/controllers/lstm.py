"""MnasNet's controller: an autoregressive LSTM policy trained with PPO.

Tan et al. 2019 (MnasNet, Sec. 4.2) use the RNN controller of Zoph et al.
(2017, 2018): it emits the D decisions one after another, each conditioned on
the previous ones through the LSTM state, and is trained with Proximal Policy
Optimization (Schulman et al. 2017) to maximise the expected reward.

Policy: token 0 is a learned start input; after decision d the embedding of
its chosen option (a separate embedding per decision and option) is the next
LSTM input. Each decision has its own softmax head, padded to the largest
option count with -inf logits. Logits are shaped as in the ENAS/NAS
controllers: logits = tanh_constant * tanh(logits / temperature).

Inactive decisions are still sampled (the sequence has fixed length D and the
LSTM sees them), but they are excluded from log p(a), so their heads receive
no gradient from the loss.

Update: baseline <- m * baseline + (1 - m) * mean(R) (first update: mean(R)),
advantage A = R - baseline, then
  'ppo':       `num_epochs` Adam steps on the clipped surrogate
               -mean(min(r A, clip(r, 1 - eps, 1 + eps) A)),
               r = p_new(a) / p_old(a), with log p_old fixed before the epochs
               (computed from the state passed to update(), i.e. the policy
               that sampled the batch in a synchronous search loop);
  'reinforce': one Adam step on -mean(A log p(a)).

Defaults and sources: hidden size 100 and PPO with Adam lr 3.5e-4 are the
NASNet controller's (Zoph et al. 2018, Appendix A; also ENAS-pytorch's
defaults); temperature 5.0, tanh constant 2.5, baseline momentum 0.95 are the
ENAS-pytorch (carpedm20) defaults for this controller family; clip 0.2 is
PPO's (Schulman et al. 2017); 4 epochs per batch and entropy_weight 0 are our
choices (MnasNet does not report them). PPO's epochs stop once KL(old || new)
> 1.5 target_kl, target_kl = 0.01 (Spinning Up's PPO, Achiam 2018: its rule and
default); without it, Adam at 0.03 moved the quickstart's policy by up to 7
nats per update (the exact KL, `LSTMPolicy.kl`; 0.004-0.01 at 0.003). MnasNet
samples ~8K architectures per search; with a few thousand samples use a larger
rate (e.g. 0.01).
"""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mnas.controllers import base

ALGORITHMS = ('ppo', 'reinforce')


def _uniform(scale: float):
  """U[-scale, scale] initializer (Zoph & Le 2017 use 0.08, ENAS 0.1)."""
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)
  return init


class Network(nn.Module):
  """One step of the autoregressive policy: (carry, token, d) -> logits."""

  num_options: tuple[int, ...]
  hidden_size: int = 100

  def setup(self):
    d, k, h = len(self.num_options), max(self.num_options), self.hidden_size
    self.cell = nn.OptimizedLSTMCell(h)
    self.embed = nn.Embed(1 + sum(self.num_options), h,
                          embedding_init=_uniform(0.1))
    self.head_w = self.param('head_w', _uniform(0.1), (d, h, k))
    self.head_b = self.param('head_b', nn.initializers.zeros, (d, k))

  def __call__(self, carry, token, d):
    carry, h = self.cell(carry, self.embed(token))
    return carry, h @ self.head_w[d] + self.head_b[d]


@dataclasses.dataclass(frozen=True)
class LSTMPolicy:
  """The policy's math, separate from its training hyperparameters (so that
  controllers differing only in those share compiled sampling code)."""

  num_options: tuple[int, ...]
  hidden_size: int = 100
  temperature: float | None = 5.0
  tanh_constant: float | None = 2.5

  @property
  def _net(self):
    return Network(self.num_options, self.hidden_size)

  def _start(self, n):
    zeros = jnp.zeros((n, self.hidden_size), jnp.float32)
    return (zeros, zeros), jnp.zeros((n,), jnp.int32)

  def _step(self, params, carry, token, d):
    """One decision: returns the new carry and masked logits [n, K]."""
    carry, logits = self._net.apply({'params': params}, carry, token, d)
    if self.temperature is not None:
      logits = logits / self.temperature
    if self.tanh_constant is not None:
      logits = self.tanh_constant * jnp.tanh(logits)
    valid = base.option_mask(self.num_options)[d]
    return carry, jnp.where(valid, logits, -jnp.inf)

  def _next_token(self, d, choice):
    """Embedding id of `choice` at decision d (id 0 is the start token)."""
    offsets = 1 + np.cumsum((0,) + self.num_options[:-1])
    return jnp.array(offsets, jnp.int32)[d] + choice

  @functools.partial(jax.jit, static_argnums=0)
  def init(self, rng):
    carry, token = self._start(1)
    return self._net.init(rng, carry, token, 0)['params']

  def rollout(self, params, rng, n: int):
    """Samples n sequences; returns choices [n, D], probs [D, n, K]."""
    num_d = len(self.num_options)

    def step(state, xs):
      carry, token = state
      d, key = xs
      carry, logits = self._step(params, carry, token, d)
      choice = jax.random.categorical(key, logits).astype(jnp.int32)
      return (carry, self._next_token(d, choice)), (choice,
                                                    jax.nn.softmax(logits))

    _, (choices, probs) = jax.lax.scan(
        step, self._start(n), (jnp.arange(num_d), jax.random.split(rng, num_d)))
    return choices.T, probs

  @functools.partial(jax.jit, static_argnums=(0, 3))
  def sample(self, params, rng, n: int) -> jax.Array:
    return self.rollout(params, rng, n)[0]

  @functools.partial(jax.jit, static_argnums=(0, 3))
  def marginals(self, params, rng, n: int) -> jax.Array:
    """[D, K] Monte-Carlo estimate of the marginals p(a_d = k).

    Rao-Blackwellised: the mean over n sampled prefixes of the conditional
    probabilities of decision d.
    """
    return jnp.mean(self.rollout(params, rng, n)[1], axis=1)

  def conditionals(self, params, indices):
    """Teacher-forced log-probabilities [n, D, K] of every option of each decision given
    the decisions before it in `indices` (-inf for padding options)."""
    def step(state, xs):
      carry, token = state
      d, choice = xs
      carry, logits = self._step(params, carry, token, d)
      return (carry, self._next_token(d, choice)), jax.nn.log_softmax(logits)

    _, logp = jax.lax.scan(step, self._start(indices.shape[0]),
                           (jnp.arange(len(self.num_options)), indices.T))
    return jnp.swapaxes(logp, 0, 1)

  def log_prob(self, params, indices, active):
    """Teacher-forced log p(a) over active decisions [n] and entropies [n, D].

    Entropies are of each step's conditional distribution (all decisions).
    """
    logp = self.conditionals(params, indices)
    chosen = jnp.take_along_axis(logp, indices[..., None], -1)[..., 0]
    return jnp.sum(jnp.where(active, chosen, 0.0), axis=-1), base.masked_entropy(logp)

  def kl(self, old_params, new_params, indices):
    """KL(old || new) between the policies' distributions over whole decision sequences,
    estimated on `indices` sampled from the old one: by the chain rule, the mean over the
    samples of the sum over decisions of the exact KL between the two conditionals at the
    sample's prefix. Never negative, and of far lower variance than the mean of
    log p_old(a) - log p_new(a) (negative for 2 samples as often as not)."""
    old, new = self.conditionals(old_params, indices), self.conditionals(new_params, indices)
    per_option = jnp.where(jnp.isfinite(old), jnp.exp(old) * (old - new), 0.0)
    return jnp.mean(jnp.sum(per_option, axis=(1, 2)))


@dataclasses.dataclass(frozen=True)
class LSTMController(base.BatchUpdate):
  """MnasNet/NASNet-style LSTM controller trained with PPO or REINFORCE."""

  num_options: tuple[int, ...]
  algorithm: str = 'ppo'
  learning_rate: float | optax.Schedule = 3.5e-4
  hidden_size: int = 100
  temperature: float | None = 5.0
  tanh_constant: float | None = 2.5
  clip_epsilon: float = 0.2
  num_epochs: int = 4
  baseline_momentum: float = 0.95
  entropy_weight: float = 0.0
  target_kl: float | None = 0.01
  num_probability_samples: int = 256  # Monte-Carlo size for probabilities().

  def __post_init__(self):
    object.__setattr__(self, 'num_options',
                       base.check_num_options(self.num_options))
    if self.algorithm not in ALGORITHMS:
      raise ValueError(f'algorithm must be one of {ALGORITHMS}, got '
                       f'{self.algorithm!r}.')

  @property
  def policy(self) -> LSTMPolicy:
    return LSTMPolicy(self.num_options, self.hidden_size, self.temperature,
                      self.tanh_constant)

  def _tx(self):
    return optax.adam(self.learning_rate)

  def init(self, rng: jax.Array) -> base.State:
    params = self.policy.init(rng)
    return {'params': params,
            'opt_state': self._tx().init(params),
            'baseline': jnp.zeros((), jnp.float32),
            'step': jnp.zeros((), jnp.int32)}

  def sample(self, state, rng, n: int) -> jax.Array:
    return self.policy.sample(state['params'], rng, n)

  def log_prob(self, params, indices, active):
    return self.policy.log_prob(params, indices, active)

  @functools.partial(jax.jit, static_argnums=0)
  def _update(self, state, indices, active, rewards):
    baseline = base.ema_baseline(state['baseline'], state['step'], rewards,
                                 self.baseline_momentum)
    advantage = rewards - baseline
    old_logp, old_entropy = self.log_prob(state['params'], indices, active)
    old_logp = jax.lax.stop_gradient(old_logp)

    def loss_fn(params):
      logp, entropy = self.log_prob(params, indices, active)
      if self.algorithm == 'ppo':
        ratio = jnp.exp(logp - old_logp)
        clipped = jnp.clip(ratio, 1 - self.clip_epsilon, 1 + self.clip_epsilon)
        pg_loss = -jnp.mean(jnp.minimum(ratio * advantage, clipped * advantage))
      else:
        pg_loss = -jnp.mean(advantage * logp)
      active_entropy = jnp.mean(jnp.sum(jnp.where(active, entropy, 0.0), -1))
      return pg_loss - self.entropy_weight * active_entropy

    tx = self._tx()
    max_kl = jnp.inf if self.target_kl is None else 1.5 * self.target_kl

    def epoch(carry, _):
      params, opt_state, epochs = carry
      # Spinning Up's early stop: no more epochs once the policy is max_kl away.
      go = self.policy.kl(state['params'], params, indices) <= max_kl
      loss, grads = jax.value_and_grad(loss_fn)(params)
      updates, new_opt_state = tx.update(grads, opt_state, params)
      carry = (optax.apply_updates(params, updates), new_opt_state, epochs + 1)
      return jax.tree.map(lambda a, b: jnp.where(go, a, b), carry,
                          (params, opt_state, epochs)), loss

    num_epochs = self.num_epochs if self.algorithm == 'ppo' else 1
    (params, opt_state, epochs), losses = jax.lax.scan(
        epoch, (state['params'], state['opt_state'], jnp.zeros((), jnp.int32)),
        length=num_epochs)
    new_state = {'params': params, 'opt_state': opt_state,
                 'baseline': baseline, 'step': state['step'] + 1}
    metrics = {
        'loss': losses[0], 'baseline': baseline,
        'reward_mean': jnp.mean(rewards), 'reward_max': jnp.max(rewards),
        'advantage_abs': jnp.mean(jnp.abs(advantage)),
        # Sum over decisions of the conditional entropies along the batch.
        'entropy': jnp.mean(jnp.sum(old_entropy, -1)),
        'kl': self.policy.kl(state['params'], params, indices), 'epochs': epochs,
    }
    return new_state, metrics

  def probabilities(self, state) -> list[np.ndarray]:
    """Per-decision marginal option probabilities (Monte-Carlo estimate with
    a fixed key per step, so it is deterministic)."""
    rng = jax.random.fold_in(jax.random.PRNGKey(0), state['step'])
    probs = self.policy.marginals(state['params'], rng,
                                  self.num_probability_samples)
    return base.split_probabilities(probs, self.num_options)
