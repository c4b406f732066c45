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

selection='nsga2' makes it a multi-objective search that keeps a whole Pareto
front instead (Deb, Pratap, Agarwal & Meyarivan 2002, "A Fast and Elitist
Multiobjective Genetic Algorithm: NSGA-II"): update() takes objectives [n, M]
(`num_objectives` = M, each maximised, e.g. accuracy and -latency); the
population keeps the best P of parents + children by (front rank ascending,
crowding distance descending), elitist as in NSGA-II, an architecture already
in the population or earlier in the batch (equal on its active decisions) not
entering twice (like pymoo's duplicate elimination); a parent is the winner
of a binary tournament on (rank, crowding) (tournament_size is not used);
children are one-decision mutants as above (no crossover). Until P distinct
architectures were seen, samples are uniform (throughout, in a space of fewer
than P architectures). The batch size of update() is
the number of children per generation (Deb et al.: P; 1 is steady-state).
Ranks come from O(P^2) domination counts, all in jnp (jittable, vmappable);
mnas/pareto.py is the numpy reference.
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
  selection: str = 'aging'  # Or 'nsga2'.
  num_objectives: int = 2  # Only with selection='nsga2'.

  def __post_init__(self):
    object.__setattr__(self, 'num_options',
                       base.check_num_options(self.num_options))
    if self.selection not in SELECTIONS:
      raise ValueError(f'selection must be one of {SELECTIONS}, got {self.selection!r}.')
    if self.selection == 'aging' and not 1 <= self.tournament_size <= self.population_size:
      raise ValueError('need 1 <= tournament_size <= population_size, got '
                       f'{self.tournament_size}, {self.population_size}.')
    if self.population_size < 1 or self.num_objectives < 1:
      raise ValueError('need population_size >= 1 and num_objectives >= 1, got '
                       f'{self.population_size}, {self.num_objectives}.')

  def _objectives(self):
    return self.num_objectives if self.selection == 'nsga2' else None

  def init(self, rng: jax.Array) -> base.State:
    """Empty population: born = -1 marks free slots. Rewards are [P], or [P, M] objectives
    with selection='nsga2'."""
    del rng
    p, d = self.population_size, len(self.num_options)
    m = () if self.selection == 'aging' else (self.num_objectives,)
    return {'indices': jnp.zeros((p, d), jnp.int32),
            'active': jnp.zeros((p, d), bool),
            'rewards': jnp.full((p, *m), -jnp.inf, jnp.float32),
            'born': jnp.full((p,), -1, jnp.int32),  # Insertion counter.
            'count': jnp.zeros((), jnp.int32)}  # Children inserted so far.

  @functools.partial(jax.jit, static_argnums=(0, 3))
  def sample(self, state, rng, n: int) -> jax.Array:
    num_options = jnp.array(self.num_options)
    p, d = self.population_size, len(num_options)
    s = self.tournament_size if self.selection == 'aging' else 2  # NSGA-II: binary.
    # One uniform draw per child: [decision choices | tournament | mutation].
    u = jax.random.uniform(rng, (n, d + s + 2))
    u_genes, u_tour, u_dec, u_opt = jnp.split(u, [d, d + s, d + s + 1], 1)
    uniform = jnp.floor(u_genes * num_options).astype(jnp.int32)

    # Tournament: the best of S members drawn with replacement.
    contestants = jnp.floor(u_tour * p).astype(jnp.int32)  # [n, S]
    if self.selection == 'aging':
      fitness = state['rewards']
    else:  # Binary tournament on (rank, crowding): lower rank, then less crowded.
      rank = nondominated_ranks(state['rewards'], state['born'] >= 0)
      crowd = crowding_distance(state['rewards'], rank)
      fitness = -rank + jnp.arctan(crowd) / jnp.pi  # arctan: order-preserving into [0, 1/2].
    winner = jnp.take_along_axis(
        contestants, jnp.argmax(fitness[contestants], 1)[:, None], 1)
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

    if self.selection == 'aging':
      full = state['count'] >= p
    else:  # Duplicates do not enter: the population fills with P distinct members.
      full = jnp.all(state['born'] >= 0)
    return jnp.where(full, mutants, uniform)

  @functools.partial(jax.jit, static_argnums=0)
  def _update(self, state, indices, active, rewards):
    if self.selection == 'nsga2':
      return self._update_nsga2(state, indices, active, rewards)

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

  def _update_nsga2(self, state, indices, active, objectives):
    """Keeps the best P of population + children by (rank, crowding), Deb et al. 2002."""
    p, n = self.population_size, indices.shape[0]
    cat = lambda a, b: jnp.concatenate([a, b])
    x, a, f = (cat(state['indices'], indices), cat(state['active'], active),
               cat(state['rewards'], objectives))
    born = cat(state['born'], state['count'] + jnp.arange(n, dtype=jnp.int32))
    valid = born >= 0
    # An architecture equal (on its active decisions) to a valid earlier one does not enter.
    key = jnp.where(a, x, -1)
    same = jnp.all(key[:, None] == key[None], -1)
    earlier = jnp.arange(p + n)[None] < jnp.arange(p + n)[:, None]
    valid &= ~jnp.any(same & earlier & valid[None], 1)
    f = jnp.where(valid[:, None], f, 0.0)
    rank = nondominated_ranks(f, valid)
    crowd = crowding_distance(f, rank)
    keep = jnp.lexsort((-crowd, rank))[:p]  # Invalid entries (rank p + n) come last.
    kept = valid[keep]
    state = {'indices': x[keep], 'active': a[keep],
             'rewards': jnp.where(kept[:, None], f[keep], -jnp.inf),
             'born': jnp.where(kept, born[keep], -1), 'count': state['count'] + n}
    freqs = self._frequencies(state)
    entropy = -jnp.sum(jnp.where(freqs > 0, freqs * jnp.log(freqs), 0.0))
    best = jnp.max(jnp.where(kept[:, None], f[keep], -jnp.inf), 0)
    metrics = {'population_size': jnp.sum(kept), 'entropy': entropy,
               'front_size': jnp.sum(kept & (rank[keep] == 0)),
               **{f'objective{m}_best': best[m] for m in range(self.num_objectives)}}
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


SELECTIONS = ('aging', 'nsga2')


def nondominated_ranks(objectives: jax.Array, valid: jax.Array) -> jax.Array:
  """Front index of each row of objectives [N, M] (all maximised), int32 [N]; rows with
  valid False neither dominate nor are ranked (rank N). NSGA-II's non-dominated sorting
  (Deb et al. 2002, Sec. III-A): fronts are peeled off one at a time; O(N^2 M) per front."""
  n = objectives.shape[0]
  ge = jnp.all(objectives[:, None] >= objectives[None], -1)
  gt = jnp.any(objectives[:, None] > objectives[None], -1)
  dom = ge & gt & valid[:, None] & valid[None]  # dom[i, j]: i dominates j.

  def peel(carry):
    rank, left, r = carry
    front = left & ~jnp.any(dom & left[:, None], 0)
    return jnp.where(front, r, rank), left & ~front, r + 1

  rank, _, _ = jax.lax.while_loop(lambda c: jnp.any(c[1]), peel,
                                  (jnp.full(n, n, jnp.int32), valid, jnp.int32(0)))
  return rank


def crowding_distance(objectives: jax.Array, rank: jax.Array) -> jax.Array:
  """Crowding distance of each row of objectives [N, M] within its front (rows of equal
  rank), float32 [N] (Deb et al. 2002, Sec. III-B; as mnas.pareto.crowding_distance):
  per objective, a front's two extremes get infinity, every other member the gap between
  its neighbours over the front's range of that objective (0 when the range is 0)."""
  objectives = jnp.where(jnp.isfinite(objectives), objectives, 0.0)
  same = rank[:, None] == rank[None]

  def one(f):
    order = jnp.lexsort((f, rank))
    fs, rs = f[order], rank[order]
    lo = jnp.min(jnp.where(same, f[None], jnp.inf), 1)[order]
    hi = jnp.max(jnp.where(same, f[None], -jnp.inf), 1)[order]
    inner = (jnp.concatenate([jnp.array([False]), rs[1:] == rs[:-1]])
             & jnp.concatenate([rs[:-1] == rs[1:], jnp.array([False])]))
    gap = jnp.roll(fs, -1) - jnp.roll(fs, 1)
    d = jnp.where(hi > lo, gap / jnp.where(hi > lo, hi - lo, 1.0), 0.0)
    return jnp.zeros_like(f).at[order].set(jnp.where(inner, d, jnp.inf))

  return jnp.sum(jax.vmap(one, in_axes=1, out_axes=1)(objectives), 1)
