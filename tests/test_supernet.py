"""The supernet: every architecture of a small space equals its stand-alone model (outputs and
gradients), one compilation for all of them, TuNAS warm-up arrays, unsupported spaces."""

import collections
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import search_spaces
from mnas import models, supernet
from mnas.space import Head, Space, SpaceError, Stage, Stem

# Every decision kind the supernet shares weights for, in 256 decision assignments: width
# multiplier, output width, expansion 1 (no expansion conv) vs 3, kernel 3 vs 5 (centre of
# 5), depth (a skippable layer), squeeze-excite, activation, residual on/off.
SMALL = Space(
    name='test_small', stem=Stem(8, 'hs'), head=Head(pre=((32, 'hs'),), post=((48, 'relu'),)),
    stages=(Stage(stride=2, out=(8, 16), depth=(1,), block=(('ir', 1.0), ('ir', 3.0)),
                  kernel=(3, 5)),
            Stage(stride=1, out=(16,), depth=(1, 2), block=(('ir', 2.0),), se_ratio=(0.0, 0.25),
                  act=('relu', 'hs'), skip=(True, False))),
    width_multiplier=(1.0, 1.5), resolution=(32,))


def _all_archs(space):
  seen = {}
  for idx in itertools.product(*[range(k) for k in space.num_options]):
    arch = space.decode(idx)
    seen.setdefault(arch.id, arch)
  return list(seen.values())


def _perturbed(variables, seed=1):
  """BN parameters and running statistics away from their initial 0/1, so that slicing
  mistakes show."""
  rng = np.random.default_rng(seed)

  def leaf(path, x):
    name = str(getattr(path[-1], 'key', path[-1]))
    if name in ('scale', 'bias', 'mean'):
      return x + rng.normal(0, 0.2, x.shape).astype(np.float32)
    if name == 'var':
      return x * rng.uniform(0.5, 2.0, x.shape).astype(np.float32)
    return x
  return jax.tree_util.tree_map_with_path(leaf, variables)


def _images(n=4, res=32, seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(n, res, res, 3)), jnp.float32)


def _standalone(net, variables, arch, x, train):
  model = models.build_model(arch, net.num_classes, dropout_rate=0.0,
                             depthwise_impl=net.depthwise_impl)
  v = net.extract_params(variables, arch)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  assert jax.tree.structure(shapes) == jax.tree.structure(v)
  assert [s.shape for s in jax.tree.leaves(shapes)] == [np.shape(a) for a in jax.tree.leaves(v)]
  if train:
    return model.apply(v, x, train=True, mutable=['batch_stats'])[0]
  return model.apply(v, x, train=False)


@pytest.mark.slow  # ~40 s: every one of ~150 architectures; the tiny-space test below samples.
def test_every_architecture_of_a_small_space_equals_its_standalone_model():
  net = supernet.Supernet.create(SMALL, num_classes=10, depthwise_impl='grouped')
  variables = _perturbed(net.init(0))
  x = _images()
  traces = collections.Counter()

  def fwd(v, a, x, train):
    traces[train] += 1
    return net.apply(v, a, x, train=train)[0]
  fwd = jax.jit(fwd, static_argnums=3)
  archs = _all_archs(SMALL)
  assert len(archs) >= 150
  worst = 0.0
  for i, arch in enumerate(archs):
    arrays = net.arrays(arch)
    got = fwd(variables, arrays, x, False)  # Running averages: the sliced batch_stats.
    want = _standalone(net, variables, arch, x, train=False)
    worst = max(worst, float(jnp.max(jnp.abs(got - want))))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=str(arch))
    if i % 37 == 0:  # Batch statistics (the search's mode) on a subset.
      got = fwd(variables, arrays, x, True)
      want = _standalone(net, variables, arch, x, train=True)
      np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=str(arch))
  assert traces == {False: 1, True: 1}, 'the architecture must not be part of the trace'


def test_tiny_space_outputs_and_gradients_equal_the_standalone_model():
  """The shipped `tiny` space (expansions 1/3/6, kernels 3/5/7, SE, h-swish, widths, depth)
  with the CPU depthwise implementation; gradients of the shared weights are those of the
  stand-alone model on its slices and zero elsewhere."""
  space = search_spaces.get_space('tiny')
  net = supernet.Supernet.create(space, num_classes=10, resolution=32)
  variables = _perturbed(net.init(3))
  x, labels = _images(seed=1), jnp.arange(4) % 10

  def loss(params, arrays):
    logits, _ = net.apply({'params': params, 'batch_stats': variables['batch_stats']}, arrays,
                          x, train=True)
    return jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(4), labels]), logits
  grad_fn = jax.jit(jax.grad(loss, has_aux=True))
  for seed in range(1):  # One sample: SE, h-swish and mixed kernels are in it (seed 0).
    arch = space.sample(np.random.default_rng(seed)).replace(resolution=32)
    grads, logits = grad_fn(variables['params'], net.arrays(arch))
    model = models.build_model(arch, 10, dropout_rate=0.0)
    v = net.extract_params(variables, arch)

    def ref_loss(params):
      out, _ = model.apply({'params': params, 'batch_stats': v['batch_stats']}, x, train=True,
                           mutable=['batch_stats'])
      return jnp.mean(-jax.nn.log_softmax(out)[jnp.arange(4), labels]), out
    ref_grads, ref_logits = jax.jit(jax.grad(ref_loss, has_aux=True))(v['params'])
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-4)
    sliced = net.extract_params({'params': grads, 'batch_stats': variables['batch_stats']},
                                arch)['params']
    for (path, g), r in zip(jax.tree_util.tree_leaves_with_path(sliced),
                            jax.tree.leaves(ref_grads)):
      np.testing.assert_allclose(g, r, rtol=2e-3, atol=2e-5, err_msg=jax.tree_util.keystr(path))
    # All the gradient is on the slices: weights the architecture does not use get none.
    total = sum(float(np.sum(np.abs(g))) for g in jax.tree.leaves(grads))
    on_slices = sum(float(np.sum(np.abs(g))) for g in jax.tree.leaves(sliced))
    assert abs(total - on_slices) <= 1e-5 * total


def test_warmup_arrays_have_the_same_structure_and_mix_the_options():
  space = search_spaces.get_space('tiny')
  net = supernet.Supernet.create(space, num_classes=10, resolution=32)
  idx = np.zeros(len(space.num_options), np.int32)  # Smallest options everywhere.
  ops = np.array([f in supernet.OP_FIELDS for *_, f in space.decision_sites()])
  filters = np.array([f in supernet.FILTER_FIELDS for *_, f in space.decision_sites()])
  arch0, exact = net.sample_arrays(idx)
  arch, mixed = net.sample_arrays(idx, ops_mix=ops, filters_max=filters)
  spec = lambda t: jax.tree.map(lambda a: (np.shape(a), np.asarray(a).dtype), t)
  assert spec(exact) == spec(mixed) == spec(net.empty_arrays())
  # Filter warm-up: the largest architecture (widths, expansion 6, full depth).
  assert len(arch.layers) == 6 and len(arch0.layers) == 3
  assert [layer.out for layer in arch.layers] == [24, 24, 40, 40, 64, 64]
  assert all(layer.expansion == 6.0 for layer in arch.layers)
  a = mixed['slots']['s1_l1']
  assert a['present'] == 1 and a['branch'] == 2  # The 7x7 branch, with mixed taps:
  np.testing.assert_allclose(a['kernel'][3, 3], 1.0)  # centre in all of 3, 5, 7;
  np.testing.assert_allclose(a['kernel'][0, 0], 1 / 3)  # corner only in 7x7.
  np.testing.assert_allclose(a['act'], [0.5, 0.5])
  assert a['se'] == 0.5 and a['residual'] == 1.0
  # Exact arrays are one-hot.
  b = exact['slots']['s0_l0']
  assert b['branch'] == 0 and b['kernel'].sum() == 9 and b['se'] == 0 and list(b['act']) == [1, 0]
  logits, _ = jax.jit(net.apply)(net.init(0), mixed, _images())
  assert np.all(np.isfinite(logits))


def test_unsupported_spaces_and_architectures_are_rejected():
  with pytest.raises(SpaceError, match='inverted residuals'):
    supernet.Supernet.create(search_spaces.get_space('mnasnet'))  # Regular conv blocks.
  with pytest.raises(SpaceError, match='one resolution'):
    supernet.Supernet.create(search_spaces.get_space('mobilenet_v1'))
  net = supernet.Supernet.create(SMALL, 10)
  with pytest.raises(SpaceError):
    net.arrays(search_spaces.get_reference('mobilenet_v2', resolution=32))


def test_extract_params_from_a_space_name_warm_starts_a_standalone_model():
  space = search_spaces.get_space('tiny')
  net = supernet.Supernet.create(space, num_classes=10, resolution=64)
  variables = net.init(0)
  arch = space.sample(np.random.default_rng(5))
  v = supernet.extract_params(variables, arch, 'tiny')
  got = jax.tree.map(np.shape, v)
  want = jax.tree.map(np.shape, models.init_variables(models.build_model(arch, 10), 0))
  assert got == want
