"""Rewards against hand-computed values.

Logarithms used below (natural log):
  ln(80/75) = ln(1.0666667) = 0.0645385
  ln(70/75) = ln(0.9333333) = -0.0689929
  ln(60/50) = ln(1.2)       = 0.1823216
  ln(40/50) = ln(0.8)       = -0.2231436
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnas import rewards

APPROX = dict(rel=1e-6)


@pytest.mark.parametrize('kind, latency, expected', [
    # MnasNet soft, w = -0.07 on both sides of T = 75:
    # 0.75 * exp(-0.07 * 0.0645385) = 0.75 * 0.9954925 = 0.7466194
    ('mnasnet_soft', 80.0, 0.7466194),
    # 0.75 * exp(-0.07 * -0.0689929) = 0.75 * 1.0048412 = 0.7536309
    ('mnasnet_soft', 70.0, 0.7536309),
    ('mnasnet', 80.0, 0.7466194),  # 'mnasnet' defaults to the soft reward.
    ('mnasnet', 70.0, 0.7536309),
    # MnasNet hard, alpha = 0, beta = -1: above T: 0.75 * 75 / 80 = 0.703125,
    ('mnasnet_hard', 80.0, 0.703125),
    # below T: 0.75 * 1 (no bonus for being faster), at T: 0.75.
    ('mnasnet_hard', 70.0, 0.75),
    ('mnasnet_hard', 75.0, 0.75),
    # MobileNetV3-Small, w = -0.15:
    # 0.75 * exp(-0.15 * 0.0645385) = 0.75 * 0.9903659 = 0.7427744
    ('v3_small', 80.0, 0.7427744),
    # 0.75 * exp(-0.15 * -0.0689929) = 0.75 * 1.0104027 = 0.7578020
    ('v3_small', 70.0, 0.7578020),
    # TuNAS abs, beta = -0.1: 0.75 - 0.1 * |80/75 - 1| = 0.75 - 0.0066667,
    ('tunas_abs', 80.0, 0.7433333),
    # symmetric: 0.75 - 0.1 * |70/75 - 1| = 0.75 - 0.0066667 = 0.7433333,
    ('tunas_abs', 70.0, 0.7433333),
    ('tunas_abs', 75.0, 0.75),
    # TuNAS mnas, beta = -0.1: 0.75 * exp(-0.1 * 0.0645385) = 0.75 * 0.9935669
    ('tunas_mnas', 80.0, 0.7451752),
    # 0.75 * exp(-0.1 * -0.0689929) = 0.75 * 1.0069231 = 0.7551924
    ('tunas_mnas', 70.0, 0.7551924),
    # TuNAS mnas_hard: min(., 1) only caps the bonus below the target.
    ('tunas_mnas_hard', 80.0, 0.7451752),
    ('tunas_mnas_hard', 70.0, 0.75),
])
def test_rewards_hand_computed(kind, latency, expected):
  reward = rewards.make_reward(kind, target_ms=75.0)
  assert reward(0.75, latency) == pytest.approx(expected, **APPROX)


def test_custom_alpha_beta():
  reward = rewards.make_reward('mnasnet', 50.0, alpha=-0.05, beta=-0.2)
  # Above T, w = beta: 0.8 * exp(-0.2 * 0.1823216) = 0.8 * 0.9641925 = 0.771354
  assert reward(0.8, 60.0) == pytest.approx(0.7713540, **APPROX)
  # Below T, w = alpha: 0.8 * exp(-0.05 * -0.2231436) = 0.8 * 1.0112197
  assert reward(0.8, 40.0) == pytest.approx(0.8089757, **APPROX)


def test_overrides():
  # Hard constraint with a softer penalty: 0.75 * (80/75) ** -0.5
  # = 0.75 * exp(-0.5 * 0.0645385) = 0.75 * 0.9682458 = 0.7261844.
  reward = rewards.make_reward('mnasnet_hard', 75.0, beta=-0.5)
  assert reward(0.75, 80.0) == pytest.approx(0.7261844, **APPROX)
  assert reward(0.75, 70.0) == pytest.approx(0.75, **APPROX)
  # TuNAS abs with beta = -0.5: 0.75 - 0.5 * 0.0666667 = 0.7166667.
  reward = rewards.make_reward('tunas_abs', 75.0, beta=-0.5)
  assert reward(0.75, 80.0) == pytest.approx(0.7166667, **APPROX)


def test_functions_match_paper_formulas():
  acc, lat, t = 0.7, np.array([50.0, 90.0]), 75.0
  np.testing.assert_allclose(
      rewards.mnasnet(acc, lat, t, alpha=-0.07, beta=-0.07),
      acc * (lat / t) ** -0.07)
  np.testing.assert_allclose(rewards.v3_small(acc, lat, t),
                             acc * (lat / t) ** -0.15)
  np.testing.assert_allclose(rewards.tunas_abs(acc, lat, t),
                             acc - 0.1 * np.abs(lat / t - 1))


def test_soft_reward_is_monotone_in_latency():
  reward = rewards.make_reward('mnasnet_soft', 75.0)
  lat = np.linspace(10.0, 200.0, 50)
  assert np.all(np.diff(reward(0.75, lat)) < 0)


def test_hard_reward_is_flat_below_target():
  reward = rewards.make_reward('mnasnet_hard', 75.0)
  np.testing.assert_allclose(reward(0.6, np.array([10.0, 50.0, 75.0])), 0.6)
  assert reward(0.6, 150.0) == pytest.approx(0.3, **APPROX)  # 0.6 * 75/150.


@pytest.mark.parametrize('kind', rewards.KINDS)
def test_broadcasting_numpy_jax_and_jit(kind):
  reward = rewards.make_reward(kind, 75.0)
  acc = np.array([0.7, 0.75, 0.8])
  lat = np.array([[60.0], [75.0], [90.0]])  # [3, 1] x [3] -> [3, 3].
  expected = np.array([[reward(a, lat_ms) for a in acc] for lat_ms in lat[:, 0]])
  np.testing.assert_allclose(reward(acc, lat), expected, rtol=1e-12)
  np.testing.assert_allclose(reward(jnp.asarray(acc), jnp.asarray(lat)),
                             expected, rtol=1e-5)
  np.testing.assert_allclose(jax.jit(reward)(acc, lat), expected, rtol=1e-5)
  assert isinstance(reward(0.75, 80.0), float)


def test_errors():
  with pytest.raises(ValueError, match='kind.*mnasnet_soft.*tunas_abs'):
    rewards.make_reward('mnas', 75.0)
  for target in (0.0, -1.0, float('nan')):
    with pytest.raises(ValueError, match='target_ms'):
      rewards.make_reward('mnasnet_soft', target)
  with pytest.raises(ValueError, match=r"gamma.*allowed: \['beta'\]"):
    rewards.make_reward('tunas_abs', 75.0, gamma=1.0)
