"""Architectures, block strings and search spaces."""
import json
import subprocess
import sys

import hypothesis
import jax
import numpy as np
import pytest
from hypothesis import strategies as st

import search_spaces
from mnas import space as space_lib
from mnas.space import Architecture, SpaceError, make_divisible, parse

SPACE_NAMES = sorted(search_spaces.SPACES)


def test_make_divisible_reference_values():
  # MobileNetV2 reference code: never below 90% of the input; minimum is the divisor.
  assert make_divisible(32 * 0.35) == 16
  assert make_divisible(18) == 24
  assert make_divisible(960 * 0.75) == 720
  assert make_divisible(4) == 8
  assert make_divisible(184.0) == 184


@pytest.mark.parametrize('name', sorted(search_spaces.REFERENCES))
def test_reference_round_trips_and_membership(name):
  arch = search_spaces.get_reference(name)
  text, space_name = search_spaces.REFERENCES[name]
  assert str(arch) == text
  assert parse(str(arch)) == arch
  assert Architecture.from_json(json.dumps(arch.to_json())) == arch
  space = search_spaces.get_space(space_name)
  assert space.contains(arch)
  assert space.decode(space.encode(arch)) == arch


def test_v1_grid_members():
  space = search_spaces.get_space('mobilenet_v1')
  assert space.size == 16
  assert space.contains(search_spaces.get_reference('mobilenet_v1', 0.5, 160))
  assert not space.contains(search_spaces.get_reference('mobilenet_v1', 0.6, 160))


def test_token_fields():
  [layer] = space_lib.parse_block('ir_r1_k5_s2_x184_c80_se0.25_hs')
  assert (layer.kernel, layer.stride, layer.expanded, layer.out, layer.se_ratio, layer.act) == (
      5, 2, 184, 80, 0.25, 'hs')
  layers = space_lib.parse_block('ir_r3_k3_s2_e6_c24_relu6')
  assert [layer.stride for layer in layers] == [2, 1, 1]
  # The explicit expanded width scales with the width multiplier.
  arch = parse('r224_w0.5_sev3 stem_c16_hs ir_r1_k3_s2_x184_c80_hs head_c960_hs')
  assert arch.describe_layers()[0]['expanded'] == make_divisible(92)


@pytest.mark.parametrize('bad, words', [
    ('ir_r1_k4_s1_e6_c24', ['kernel', '4', '(3, 5, 7)']),
    ('ir_r1_k3_s3_e6_c24', ['stride', '3']),
    ('xx_r1_k3_s1_e6_c24', ['block type', "'xx'", 'conv']),
    ('ir_r1_k3_s1_e0.5_c24', ['expansion', '0.5', '>= 1']),
    ('ir_r1_k3_s1_e6_c24_gelu', ['gelu']),
    ('ir_r1_s1_e6_c24', ["'k'"]),
    ('ds_r1_k3_s1_e6_c24', ['expansion', 'only ir']),
])
def test_bad_blocks_name_block_field_and_allowed(bad, words):
  with pytest.raises(SpaceError) as e:
    parse(f'r224_w1_sev3 stem_c16_hs {bad} head_c960_hs')
  assert 'block 0' in str(e.value)
  for w in words:
    assert w in str(e.value)


def test_bad_resolution_and_global_errors():
  with pytest.raises(SpaceError, match='multiple of 32'):
    search_spaces.get_reference('mobilenet_v2', resolution=200)
  with pytest.raises(SpaceError, match='known'):
    search_spaces.get_reference('resnet50')
  with pytest.raises(SpaceError, match='rRES'):
    parse('stem_c16_hs ir_r1_k3_s1_e6_c24 head')
  assert issubclass(SpaceError, ValueError)


def test_space_refuses_a_stride_it_fixes():
  space = search_spaces.get_space('mnasnet')
  a1 = search_spaces.get_reference('mnasnet_a1')
  layers = list(a1.layers)
  layers[1] = layers[1].__class__(**{**layers[1].__dict__, 'stride': 1})
  assert not space.contains(a1.replace(layers=tuple(layers)))
  with pytest.raises(SpaceError, match='not a member'):
    space.encode(a1.replace(layers=tuple(layers)))


def test_decode_errors():
  space = search_spaces.get_space('tiny')
  with pytest.raises(SpaceError, match='expected 30 decision indices'):
    space.decode([0, 1])
  idx = np.zeros(len(space.decisions), int)
  idx[0] = 99
  with pytest.raises(SpaceError, match='out of range'):
    space.decode(idx)


@pytest.mark.parametrize('name', SPACE_NAMES)
def test_space_size_decisions_and_uniform_samples(name):
  space = search_spaces.get_space(name)
  assert space.size >= 16 and space.log10_size == pytest.approx(np.log10(float(space.size)))
  rng = np.random.default_rng(0)
  seen = set()
  for _ in range(1000):
    idx = space.sample_indices(rng)
    arch = space.decode(idx)
    assert len(idx) == len(space.decisions)
    assert all(0 <= i < len(d.options) for i, d in zip(idx, space.decisions))
    assert space.decode(space.encode(arch)) == arch
    seen.add(arch)
  # nas_bench_macro: 6,561 assignments, 3,969 networks (identities), ~880 of 1000 distinct.
  assert len(seen) > min(850, space.size * 0.5)


def test_sample_with_jax_key_is_deterministic():
  space = search_spaces.get_space('mobilenet_v3_large')
  a = space.sample(jax.random.key(3))
  assert a == space.sample(jax.random.key(3)) and a != space.sample(jax.random.key(4))
  assert space.sample(jax.random.PRNGKey(3)) == space.sample(jax.random.PRNGKey(3))


def test_depth_sampling_is_uniform_over_architectures():
  # proxylessnas: a stage of depth d has 6**d configurations, so depth 4 dominates.
  space = search_spaces.get_space('proxylessnas')
  rng = np.random.default_rng(1)
  k = [d.name for d in space.decisions].index('s1/depth')
  depths = [space.sample_indices(rng)[k] for _ in range(2000)]
  expected = 6 ** 4 / (6 + 36 + 216 + 1296)
  assert np.mean(np.array(depths) == 3) == pytest.approx(expected, abs=0.04)


def test_active_mask():
  space = search_spaces.get_space('tiny')
  idx = space.sample_indices(np.random.default_rng(0))
  names = [d.name for d in space.decisions]
  idx[names.index('s0/depth')] = 0  # depth 1: layer 1 choices are inactive.
  active = space.active(idx)
  assert not active[names.index('s0/l1/kernel')] and active[names.index('s0/l0/kernel')]


# --- property tests ----------------------------------------------------------------
@st.composite
def architectures(draw):
  space = search_spaces.get_space(draw(st.sampled_from(SPACE_NAMES)))
  return space, space.sample_indices(np.random.default_rng(draw(st.integers(0, 2**32 - 1))))


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(architectures())
def test_string_round_trip(sample):
  space, idx = sample
  arch = space.decode(idx)
  text = str(arch)
  assert parse(text) == arch and str(parse(text)) == text
  assert hash(parse(text)) == hash(arch) and parse(text).id == arch.id


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(architectures())
def test_decode_encode(sample):
  space, idx = sample
  arch = space.decode(idx)
  assert space.decode(space.encode(arch)) == arch


@hypothesis.settings(max_examples=50, deadline=None)
@hypothesis.given(st.sampled_from(sorted(search_spaces.REFERENCES)),
                  st.sampled_from([0.35, 0.5, 0.75, 1.0, 1.4]), st.sampled_from([96, 128, 224]))
def test_scaled_reference_round_trip(name, alpha, res):
  arch = search_spaces.get_reference(name, alpha, res)
  assert parse(str(arch)) == arch


def test_identity_stable_across_processes():
  names = sorted(search_spaces.REFERENCES)
  here = [search_spaces.get_reference(n).id for n in names]
  code = ('import search_spaces, sys; '
          f'print(",".join(search_spaces.get_reference(n).id for n in {names!r}))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True,
                       env={'PYTHONHASHSEED': '123', 'PATH': '', 'PYTHONPATH': '.'})
  assert out.stdout.strip().split(',') == here
