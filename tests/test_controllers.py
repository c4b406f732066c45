"""Controllers: interface, learning a planted optimum, masks, aging."""

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnas import controllers

NUM_OPTIONS = (2, 3, 4, 5, 6, 2, 3, 4, 5, 6)  # 518400 architectures.
PLANT = np.array([1, 0, 3, 2, 5, 0, 2, 1, 4, 3])
BATCH, STEPS = 50, 60  # 3000 samples.

# Learning-rate / population settings for the short (3000-sample) budget; the
# defaults are meant for real searches.
LEARNERS = {
    'reinforce': ('reinforce', dict(learning_rate=0.05)),
    'mnasnet_ppo': ('mnasnet', dict(learning_rate=0.01)),
    'mnasnet_reinforce': ('mnasnet', dict(learning_rate=0.01,
                                          algorithm='reinforce')),
    'evolution': ('evolution', dict(population_size=50, tournament_size=10)),
}
ALL = dict(LEARNERS, random=('random', {}))


def make(key):
  name, kwargs = ALL[key]
  return controllers.make_controller(name, NUM_OPTIONS, **kwargs)


def planted_reward(indices, rng):
  """Fraction of decisions equal to the plant, plus N(0, 0.01) noise."""
  noise = 0.01 * np.asarray(jax.random.normal(rng, (indices.shape[0],)))
  return (np.asarray(indices) == PLANT).mean(-1) + noise


@functools.cache
def search(key, seed=0):
  """Runs 3000 samples; returns (controller, state, best match found)."""
  controller = make(key)
  rng = jax.random.PRNGKey(seed)
  state = controller.init(rng)
  best = 0.0
  for _ in range(STEPS):
    rng, k_sample, k_noise = jax.random.split(rng, 3)
    x = np.asarray(controller.sample(state, k_sample, BATCH))
    best = max(best, (x == PLANT).mean(-1).max())
    state, _ = controller.update(state, x, np.ones(x.shape, bool),
                                 planted_reward(x, k_noise))
  return controller, state, best


def assert_all_arrays(state):
  leaves = jax.tree.leaves(state)
  assert leaves and all(isinstance(x, jax.Array) for x in leaves)


def test_make_controller_unknown_name():
  with pytest.raises(ValueError, match='random.*evolution.*reinforce.*mnasnet'):
    controllers.make_controller('ppo', NUM_OPTIONS)


def test_bad_arguments():
  with pytest.raises(ValueError, match='num_options'):
    controllers.make_controller('reinforce', (3, 0))
  with pytest.raises(ValueError, match='algorithm'):
    controllers.make_controller('mnasnet', (3,), algorithm='a2c')
  with pytest.raises(ValueError, match='tournament_size'):
    controllers.make_controller('evolution', (3,), population_size=4,
                                tournament_size=5)
  c = controllers.make_controller('reinforce', (3, 2))
  with pytest.raises(ValueError, match='shape'):
    c.update(c.init(jax.random.PRNGKey(0)), np.zeros((4, 3), int),
             np.ones((4, 3), bool), np.zeros(4))


@pytest.mark.parametrize('key', sorted(ALL))
def test_interface_pytree_and_determinism(key):
  c = make(key)  # Same configs and batch size as below: compiled once.
  state = c.init(jax.random.PRNGKey(0))
  assert_all_arrays(state)
  x = c.sample(state, jax.random.PRNGKey(1), BATCH)
  assert x.shape == (BATCH, len(NUM_OPTIONS)) and x.dtype == jnp.int32
  assert np.all((0 <= x) & (x < np.array(NUM_OPTIONS)))
  np.testing.assert_array_equal(x, c.sample(state, jax.random.PRNGKey(1),
                                            BATCH))
  assert not np.array_equal(x, c.sample(state, jax.random.PRNGKey(2), BATCH))

  state, metrics = c.update(state, x, np.ones(x.shape, bool),
                            planted_reward(x, jax.random.PRNGKey(3)))
  assert_all_arrays(state)
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state)
             if x.dtype == jnp.float32)
  assert all(isinstance(v, float) for v in metrics.values())
  if key != 'random':
    assert 'entropy' in metrics
  if key.startswith(('reinforce', 'mnasnet')):
    assert {'baseline', 'loss'} <= set(metrics)
  # Same after an update (the evolution population is now partly filled).
  np.testing.assert_array_equal(
      c.sample(state, jax.random.PRNGKey(4), BATCH),
      c.sample(state, jax.random.PRNGKey(4), BATCH))
  probs = c.probabilities(state)
  assert [p.shape for p in probs] == [(k,) for k in NUM_OPTIONS]
  for p in probs:
    assert np.all(p >= 0) and p.sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize('key', sorted(LEARNERS))
def test_learns_planted_optimum(key):
  controller, state, best = search(key)
  assert best == 1.0  # The plant was sampled...
  if key == 'evolution':
    # ...and the best living member (the plant itself may have aged out)
    # matches >= 90% of it.
    living = np.asarray(state['indices'][jnp.argmax(state['rewards'])])
    assert (living == PLANT).mean() >= 0.9
  else:  # ...and the most likely option of every decision is the plant's.
    found = np.array([p.argmax() for p in controller.probabilities(state)])
    np.testing.assert_array_equal(found, PLANT)
  # Clearly better than random search with the same budget, which finds no
  # architecture matching more than 90% of the plant.
  _, _, random_best = search('random')
  assert random_best <= 0.9
  # The controller now samples near-optimal architectures.
  x = np.concatenate([controller.sample(state, jax.random.PRNGKey(i), BATCH)
                      for i in range(4)])
  random_controller, random_state, _ = search('random')
  random_x = np.concatenate([random_controller.sample(
      random_state, jax.random.PRNGKey(i), BATCH) for i in range(4)])
  assert (x == PLANT).mean() > 0.7 > 0.4 > (random_x == PLANT).mean()


def test_reinforce_inactive_decisions_get_no_gradient():
  c = controllers.make_controller('reinforce', NUM_OPTIONS,
                                  learning_rate=0.1, entropy_weight=0.01)
  state = c.init(jax.random.PRNGKey(0))
  active = np.ones((BATCH, len(NUM_OPTIONS)), bool)
  active[:, 4] = False  # Decision 4 is never active...
  active[::2, 8] = False  # ...decision 8 half of the time.

  # Per-sample gradient rows of inactive decisions are exactly zero.
  x = c.sample(state, jax.random.PRNGKey(1), BATCH)
  grads = jax.grad(lambda p: c.log_prob(p, x, active).sum())(state['params'])
  assert np.all(grads['logits'][4] == 0)
  assert np.any(grads['logits'][8] != 0)

  rng = jax.random.PRNGKey(2)
  for _ in range(20):
    rng, k1, k2 = jax.random.split(rng, 3)
    x = np.asarray(c.sample(state, k1, BATCH))
    # The reward even depends on the inactive decision: it must not matter.
    r = planted_reward(x, k2) + (x[:, 4] == 0)
    state, _ = c.update(state, x, active, r)
  logits = np.asarray(state['params']['logits'])
  np.testing.assert_array_equal(logits[4], 0.0)
  assert np.all(np.abs(logits[np.arange(10) != 4, 0]) > 0)
  np.testing.assert_allclose(c.probabilities(state)[4], 1 / 6)


@pytest.mark.parametrize('key', ['mnasnet_ppo', 'mnasnet_reinforce'])
def test_lstm_inactive_decision_head_unchanged(key):
  c = make(key)
  if key == 'mnasnet_ppo':  # Entropy bonus only over active decisions too.
    c = dataclasses.replace(c, entropy_weight=0.01)
  state = c.init(jax.random.PRNGKey(0))
  params0 = state['params']
  active = np.ones((BATCH, len(NUM_OPTIONS)), bool)
  active[:, 4] = False
  rng = jax.random.PRNGKey(1)
  for _ in range(5):
    rng, k1, k2 = jax.random.split(rng, 3)
    x = np.asarray(c.sample(state, k1, BATCH))
    state, _ = c.update(state, x, active, planted_reward(x, k2) + x[:, 4])
  for name in ('head_w', 'head_b'):
    new, old = state['params'][name], params0[name]
    np.testing.assert_array_equal(new[4], old[4])
    assert np.any(new[3] != old[3])


@pytest.mark.parametrize('key', ['reinforce', 'mnasnet_ppo'])
def test_baseline_moving_average(key):
  c = make(key)
  state = c.init(jax.random.PRNGKey(0))
  x = np.asarray(c.sample(state, jax.random.PRNGKey(1), BATCH))
  active = np.ones(x.shape, bool)
  state, m = c.update(state, x, active, np.linspace(1.0, 3.0, BATCH))
  assert m['baseline'] == pytest.approx(2.0)  # First update: mean reward.
  state, m = c.update(state, x, active, np.full(BATCH, 4.0))
  assert m['baseline'] == pytest.approx(0.95 * 2.0 + 0.05 * 4.0)


def _evolution_state(c, members, rewards, active=None):
  """Inserts `members` (oldest first) into an empty population."""
  members = np.asarray(members)
  active = np.ones(members.shape, bool) if active is None else active
  state, _ = c.update(c.init(jax.random.PRNGKey(0)), members, active, rewards)
  return state


def _population(state):
  order = np.argsort(np.asarray(state['born']))  # Oldest first.
  return (np.asarray(state['indices'])[order].tolist(),
          np.asarray(state['rewards'])[order].tolist())


def test_evolution_removes_oldest_even_if_best():
  c = controllers.make_controller('evolution', (4, 4), population_size=4,
                                  tournament_size=2)
  # The oldest member is by far the best.
  state = _evolution_state(c, [[0, 0], [1, 1], [2, 2], [3, 3]],
                           [1.0, 0.1, 0.2, 0.3])
  state, m = c.update(state, [[0, 1]], [[True, True]], [0.0])
  members, rewards = _population(state)
  assert members == [[1, 1], [2, 2], [3, 3], [0, 1]]  # [0, 0] is gone.
  np.testing.assert_allclose(rewards, [0.1, 0.2, 0.3, 0.0])
  assert m['population_reward_best'] == pytest.approx(0.3)
  # Next, the oldest remaining goes, although the newcomer is worse.
  state, _ = c.update(state, [[1, 0]], [[True, True]], [-1.0])
  members, _ = _population(state)
  assert members == [[2, 2], [3, 3], [0, 1], [1, 0]]
  # A batch larger than the population keeps the newest P.
  state, _ = c.update(state, np.arange(12).reshape(6, 2) % 4,
                      np.ones((6, 2), bool), np.arange(6.0))
  members, _ = _population(state)
  assert members == [[0, 1], [2, 3], [0, 1], [2, 3]]
  assert int(state['count']) == 12


def test_evolution_uniform_until_full_then_mutates_one_active_decision():
  c = controllers.make_controller('evolution', (1, 3, 4, 5, 6),
                                  population_size=8, tournament_size=3)
  parent = [0, 1, 2, 3, 4]
  # Not full yet: samples are uniform (do not depend on the population).
  partial = _evolution_state(c, [parent] * 7, [1.0] * 7)
  np.testing.assert_array_equal(
      c.sample(partial, jax.random.PRNGKey(1), 500),
      c.sample(c.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), 500))

  # Full population of clones where only decisions 2 and 4 are active.
  active = np.tile([False, False, True, False, True], (8, 1))
  state = _evolution_state(c, [parent] * 8, [1.0] * 8, active)
  children = np.asarray(c.sample(state, jax.random.PRNGKey(2), 500))
  diff = children != np.array(parent)
  assert np.all(diff.sum(-1) == 1)  # Exactly one decision mutated...
  assert set(np.nonzero(diff)[1]) == {2, 4}  # ...always an active one.

  # No active decision: mutate any decision with > 1 option.
  state = _evolution_state(c, [parent] * 8, [1.0] * 8, np.zeros((8, 5), bool))
  children = np.asarray(c.sample(state, jax.random.PRNGKey(3), 500))
  diff = children != np.array(parent)
  assert np.all(diff.sum(-1) == 1)
  assert set(np.nonzero(diff)[1]) == {1, 2, 3, 4}  # Decision 0 has 1 option.


def test_evolution_tournament_picks_best_of_sample():
  c = controllers.make_controller('evolution', (8, 8), population_size=4,
                                  tournament_size=4)
  state = _evolution_state(c, [[0, 0], [1, 1], [2, 2], [7, 7]],
                           [0.1, 0.2, 0.9, 0.3])
  children = np.asarray(c.sample(state, jax.random.PRNGKey(0), 2000))
  # Parent [2, 2] wins every tournament it enters (S = 4 draws with
  # replacement): 1 - (3/4)^4 = 68.4%. Its children keep one 2; other
  # parents' children contain a 2 when the mutation picks it (1/7):
  # expected 0.684 + 0.316 / 7 = 0.729.
  from_best = np.any(children == 2, axis=-1).mean()
  assert from_best == pytest.approx(0.729, abs=0.04)


def test_random_search_update_is_noop():
  c = controllers.make_controller('random', NUM_OPTIONS)
  state = c.init(jax.random.PRNGKey(0))
  x = c.sample(state, jax.random.PRNGKey(1), 8)
  new_state, _ = c.update(state, x, np.ones(x.shape, bool), np.ones(8))
  assert int(new_state['step']) == 1
  np.testing.assert_array_equal(c.sample(new_state, jax.random.PRNGKey(1), 8),
                                x)
  np.testing.assert_allclose(c.probabilities(new_state)[4], np.full(6, 1 / 6))


def test_lstm_is_autoregressive():
  # Decision 1's distribution depends on the option chosen at decision 0.
  c = make('mnasnet_ppo')
  params = c.init(jax.random.PRNGKey(0))['params']
  x = np.zeros((BATCH, len(NUM_OPTIONS)), np.int32)
  x[1::2, 0] = 1
  active = np.zeros(x.shape, bool)
  active[:, 1] = True  # log p(x) = log p(x_1 | x_0).
  logp, _ = jax.jit(c.log_prob)(params, x, active)
  assert logp[0] != logp[1]
  assert logp[0] == logp[2] and logp[1] == logp[3]


def test_lstm_sampling_is_fast():
  num_options = (7, 3, 4, 2, 6) * 10  # D = 50.
  c = controllers.make_controller('mnasnet', num_options)
  state = c.init(jax.random.PRNGKey(0))
  c.sample(state, jax.random.PRNGKey(0), 4096).block_until_ready()  # Compile.
  start = time.perf_counter()
  for i in range(3):
    c.sample(state, jax.random.PRNGKey(i), 4096).block_until_ready()
  per_second = 3 * 4096 / (time.perf_counter() - start)
  assert per_second > 2000, per_second


def test_states_orbax_roundtrip(tmp_path):
  ocp = pytest.importorskip('orbax.checkpoint')
  keys = ('reinforce', 'mnasnet_ppo', 'evolution')
  states = {k: search(k)[1] for k in keys}
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(tmp_path / 'states', states)
    ckpt.wait_until_finished()
    restored = ckpt.restore(tmp_path / 'states', states)
  jax.tree.map(np.testing.assert_array_equal, restored, states)
  for k in keys:
    c = make(k)
    np.testing.assert_array_equal(
        c.sample(restored[k], jax.random.PRNGKey(2), BATCH),
        c.sample(states[k], jax.random.PRNGKey(2), BATCH))


def test_evolution_aging_unchanged():
  # Samples of the aging evolution before selection='nsga2' was added (commit 7d75a45).
  c = controllers.make_controller('evolution', (2, 3, 4), population_size=5,
                                  tournament_size=3)
  state, out, rng = c.init(jax.random.PRNGKey(0)), [], jax.random.PRNGKey(7)
  for _ in range(4):
    rng, k = jax.random.split(rng)
    x = np.asarray(c.sample(state, k, 3))
    state, _ = c.update(state, x, np.ones(x.shape, bool), x.sum(-1) - 0.1 * x[:, 0])
    out.append(x)
  assert np.concatenate(out).tolist() == [
      [1, 2, 1], [1, 0, 0], [1, 0, 2], [1, 0, 0], [1, 1, 1], [1, 1, 2], [1, 2, 2], [1, 2, 0],
      [1, 1, 0], [0, 2, 0], [1, 1, 1], [1, 0, 0]]


def _nsga2(num_options, p, **kw):
  return controllers.make_controller('evolution', num_options, population_size=p,
                                     selection='nsga2', **kw)


def test_nsga2_rewards_are_objectives():
  c = _nsga2((3, 3), 4)
  state = c.init(jax.random.PRNGKey(0))
  assert state['rewards'].shape == (4, 2)
  x, active = np.zeros((2, 2), int), np.ones((2, 2), bool)
  with pytest.raises(ValueError, match=r'rewards \[n, 2\]'):
    c.update(state, x, active, np.zeros(2))
  aging = controllers.make_controller('evolution', (3, 3), population_size=4,
                                      tournament_size=2)
  with pytest.raises(ValueError, match=r'rewards \[n\]'):
    aging.update(aging.init(jax.random.PRNGKey(0)), x, active, np.zeros((2, 2)))
  with pytest.raises(ValueError, match='selection'):
    controllers.make_controller('evolution', (3,), selection='nsga3')
  # tournament_size is not used by NSGA-II (binary tournament): not checked against P.
  assert _nsga2((3,), 4, tournament_size=25).population_size == 4


def test_nsga2_keeps_best_by_rank_then_crowding():
  c = _nsga2((8, 8), 4)
  state = c.init(jax.random.PRNGKey(0))
  # Not full yet (3 members): samples are uniform.
  x = [[1, 1], [2, 2], [3, 3]]
  state, m = c.update(state, x, np.ones((3, 2), bool), [[0, 4], [1, 3.5], [2, 3]])
  assert m['population_size'] == 3
  np.testing.assert_array_equal(c.sample(state, jax.random.PRNGKey(1), 100),
                                c.sample(c.init(None), jax.random.PRNGKey(1), 100))
  # Front A [0, 4], B [1, 3.5], C [2, 3], D [3, 1], E [4, 0]; F [0.5, 0.5] is dominated;
  # a copy of C does not enter. Crowding over ranges 4 and 4: A, E inf, B 2/4 + 1/4,
  # C 2/4 + 2.5/4, D 2/4 + 3/4: B goes.
  x = [[4, 4], [5, 5], [6, 6], [2, 2]]
  state, m = c.update(state, x, np.ones((4, 2), bool), [[3, 1], [4, 0], [0.5, 0.5], [9, 9]])
  assert sorted(map(tuple, np.asarray(state['indices']).tolist())) == [
      (1, 1), (3, 3), (4, 4), (5, 5)]
  assert m['population_size'] == 4 and m['front_size'] == 4
  assert m['objective0_best'] == 4 and m['objective1_best'] == 4
  assert int(state['count']) == 7
  probs = c.probabilities(state)
  np.testing.assert_allclose(probs[0][[1, 3, 4, 5]], 0.25)
  # Elitist: a dominated child never displaces a front member.
  state, _ = c.update(state, [[7, 7]], [[True, True]], [[0.1, 0.1]])
  assert 7 not in np.asarray(state['indices'])


def test_nsga2_binary_tournament():
  c = _nsga2((8, 8), 4)
  # [0, 0] dominates the other three (which are one front): it enters a tournament of two
  # draws with replacement with probability 1 - (3/4)^2 = 7/16 and then always wins.
  # Its children keep a 0; the others' children get one when mutated to it (1/7):
  # expected 7/16 + 9/16 / 7 = 0.518.
  state, _ = c.update(c.init(None), [[0, 0], [3, 3], [5, 5], [7, 7]], np.ones((4, 2), bool),
                      [[5, 5], [0, 3], [1, 2], [3, 0]])
  children = np.asarray(c.sample(state, jax.random.PRNGKey(0), 2000))
  assert np.all((children != np.asarray(state['indices'])[:, None]).sum(-1).min(0) == 1)
  assert np.any(children == 0, -1).mean() == pytest.approx(0.518, abs=0.04)


def test_nsga2_beats_random_on_two_objectives():
  """Two conflicting additive objectives over 4^8 architectures: NSGA-II's samples cover
  more of the exact front's hypervolume than random search's at equal budget (200)."""
  from mnas import pareto
  num_options = (4,) * 8
  w = np.random.default_rng(0).normal(size=(2, 8, 4))
  w[1] = 0.5 * w[1] - w[0]

  def objectives(x):
    return np.stack([w[m][np.arange(8), np.asarray(x)].sum(-1) for m in range(2)], -1)

  everything = objectives(np.stack(np.unravel_index(np.arange(4 ** 8), num_options), -1))
  ref = everything.min(0)
  exact = pareto.hypervolume_2d(everything, ref)

  def hv(c, seed, multi):
    state, rng, xs = c.init(None), jax.random.PRNGKey(seed), []
    for _ in range(20):
      rng, k = jax.random.split(rng)
      x = np.asarray(c.sample(state, k, 10))
      f = objectives(x)
      state, _ = c.update(state, x, np.ones(x.shape, bool), f if multi else f[:, 0])
      xs.append(x)
    return pareto.hypervolume_2d(objectives(np.concatenate(xs)), ref) / exact

  nsga2, rand = _nsga2(num_options, 20), controllers.make_controller('random', num_options)
  ours = [hv(nsga2, s, True) for s in range(3)]
  theirs = [hv(rand, s, False) for s in range(3)]
  assert min(ours) > max(theirs) and np.mean(ours) > np.mean(theirs) + 0.05, (ours, theirs)


def _two_policies(num_options=(2, 3, 2)):
  """An LSTM policy and two of its parameter sets far apart (the second: the first plus
  noise; an initial policy is close to uniform)."""
  c = controllers.make_controller('mnasnet', num_options)
  old = c.init(jax.random.PRNGKey(1))['params']
  leaves, tree = jax.tree.flatten(old)
  keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
  new = jax.tree.unflatten(tree, [x + jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
  return c, old, new


def test_lstm_kl_is_the_exact_kl_between_sequence_distributions():
  """`LSTMPolicy.kl` on one sequence, weighted by its probability under the old policy and
  summed over every sequence, is KL(old || new) computed from the sequences' probabilities
  by enumeration (the chain rule, to float precision); on two samples it is never
  negative, unlike the mean of log p_old - log p_new that `approx_kl` used to report."""
  import itertools
  c, old, new = _two_policies()
  seqs = jnp.array(list(itertools.product(*map(range, c.num_options))), jnp.int32)
  active = jnp.ones(seqs.shape, bool)
  logp_old = c.log_prob(old, seqs, active)[0]
  logp_new = c.log_prob(new, seqs, active)[0]
  np.testing.assert_allclose(float(jnp.sum(jnp.exp(logp_old))), 1.0, rtol=1e-5)
  exact = float(jnp.sum(jnp.exp(logp_old) * (logp_old - logp_new)))
  kl = jax.jit(jax.vmap(lambda s: c.policy.kl(old, new, s)))  # Over batches of samples.
  per_seq = kl(seqs[:, None])
  assert exact > 0.01
  np.testing.assert_allclose(float(jnp.sum(jnp.exp(logp_old) * per_seq)), exact, rtol=1e-4)
  pairs = c.sample({'params': old}, jax.random.PRNGKey(3), 100).reshape(50, 2, -1)
  k1 = jax.jit(jax.vmap(lambda p: jnp.mean(c.log_prob(old, p, active[:2])[0]
                                           - c.log_prob(new, p, active[:2])[0])))(pairs)
  assert float(jnp.min(kl(pairs))) >= 0 > float(jnp.min(k1))


def test_ppo_stops_its_epochs_once_the_policy_moved_target_kl():
  """Spinning Up's rule: the epoch whose starting KL exceeds 1.5 x target_kl and every one
  after it are skipped, so with the target between the KLs after one and after two Adam
  steps the update is exactly the 2-epoch update without a target."""
  num_options = (2, 3, 2, 3)
  make = functools.partial(controllers.make_controller, 'mnasnet', num_options,
                           learning_rate=0.05, target_kl=None)
  state = make().init(jax.random.PRNGKey(0))
  idx = make().sample(state, jax.random.PRNGKey(3), 4)
  args = (idx, jnp.ones(idx.shape, bool), jnp.array([0.1, 0.9, 0.3, 0.6], jnp.float32))
  (_, one), (two, m2) = (make(num_epochs=k)._update(state, *args) for k in (1, 2))
  assert 0 < one['kl'] < m2['kl']
  target = (one['kl'] + m2['kl']) / 2 / 1.5
  stopped, m = make(target_kl=float(target))._update(state, *args)
  assert int(m['epochs']) == 2 and m['kl'] == pytest.approx(float(m2['kl']), rel=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), stopped, two)
