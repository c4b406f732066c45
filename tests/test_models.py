"""The Flax builder: its parameter tree and compiled cost agree with the analytical counts."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import search_spaces
from mnas import counting, models, steps


def _n_params(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize('name', sorted(search_spaces.REFERENCES))
def test_param_tree_matches_count(name):
  arch = search_spaces.get_reference(name)
  model = models.build_model(arch, num_classes=1000)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3))))
  assert _n_params(shapes['params']) == counting.count(arch)['params']
  assert 'batch_stats' in shapes


@pytest.mark.parametrize('name', ['mobilenet_v2', 'mobilenet_v3_small', 'mnasnet_a1'])
def test_macs_match_xla_cost_analysis(name):
  """XLA's flop count of the compiled forward pass is 2 x MACs plus elementwise work."""
  arch = search_spaces.get_reference(name, resolution=128)
  model = models.build_model(arch, num_classes=1000, depthwise_impl='grouped')
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 128, 128, 3))))
  fwd = jax.jit(lambda v, x: model.apply(v, x, train=False))
  cost = fwd.lower(variables, jax.ShapeDtypeStruct((1, 128, 128, 3), jnp.float32)).compile()
  analysis = cost.cost_analysis()
  analysis = analysis[0] if isinstance(analysis, list) else analysis
  macs = counting.count(arch)['macs']
  # Batch norm, activations, SE gates and pooling add a few percent of elementwise flops.
  assert 2 * macs <= analysis['flops'] <= 2 * macs * 1.15


def test_forward_train_and_eval_semantics():
  arch = search_spaces.get_reference('mobilenet_v3_small', resolution=64)
  model = models.build_model(arch, num_classes=10, depthwise_impl='grouped')
  variables = models.init_variables(model, jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (2, 64, 64, 3))
  logits, updates = jax.jit(lambda v, x: model.apply(
      v, x, train=True, rngs={'dropout': jax.random.key(2)}, mutable=['batch_stats']))(
          variables, x)
  assert logits.shape == (2, 10) and np.isfinite(np.asarray(logits)).all()
  # Training updates the moving statistics (momentum 0.99); evaluation does not use dropout.
  before = jax.tree.leaves(variables['batch_stats'])
  after = jax.tree.leaves(updates['batch_stats'])
  assert any(not np.allclose(a, b) for a, b in zip(before, after))
  evaluate = jax.jit(lambda v, x: model.apply(v, x, train=False))
  e1, e2 = evaluate(variables, x), evaluate(variables, x)
  np.testing.assert_array_equal(e1, e2)


@pytest.mark.parametrize('name', sorted(search_spaces.SPACES))
def test_space_samples_build_and_run(name):
  """A uniform sample of each space runs a forward pass at a small resolution."""
  space = search_spaces.get_space(name)
  rng = np.random.default_rng(0)
  arch = space.sample(rng).replace(resolution=32)
  # The grouped convolution compiles fastest; tests/test_ops.py pins the fast one to it.
  model = models.build_model(arch, num_classes=10, depthwise_impl='grouped')
  variables = models.init_variables(model, jax.random.key(0), batch_size=2)
  out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, jnp.ones((2, 32, 32, 3)))
  assert out.shape == (2, 10) and np.isfinite(np.asarray(out)).all()
  assert _n_params(variables['params']) == counting.count(arch, 10)['params']


@pytest.mark.parametrize('name', sorted(search_spaces.SPACES))
def test_thousand_samples_count(name):
  space = search_spaces.get_space(name)
  rng = np.random.default_rng(1)
  for _ in range(1000):
    arch = space.sample(rng)
    assert models.build_model(arch).arch is arch
    c = counting.count(arch, 1000)
    assert c['params'] > 0 and c['macs'] > 0


def test_bfloat16_forward():
  arch = search_spaces.get_space('tiny').sample(np.random.default_rng(0))
  model = models.build_model(arch, num_classes=10, dtype=jnp.bfloat16)
  variables = models.init_variables(model, jax.random.key(0))
  out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, jnp.ones((1, 64, 64, 3)))
  assert out.dtype == jnp.bfloat16 and np.isfinite(np.asarray(out, np.float32)).all()
  # The losses of the train and eval steps compute in float32 all the same.
  labels = jnp.zeros((1,), jnp.int32)
  assert steps.smoothed_cross_entropy(out, labels, 10, 0.1).dtype == jnp.float32
  assert steps.eval_sums(out, {'label': labels})['loss'].dtype == jnp.float32


def test_float64_model_returns_float64_logits():
  """The logits keep the model's dtype: a float64 model is float64 end to end (its
  agreement with a reference is not cut to float32 at the classifier)."""
  with jax.enable_x64(True):
    arch = search_spaces.load_arch(
        'r32_w1_sev3 stem_c16_hs ir_r1_k3_s2_e3_c24_se0.25_relu head_c64_hs_pool_c96_hs')
    model = models.build_model(arch, num_classes=10, dtype=jnp.float64, depthwise_impl='grouped')
    variables = models.init_variables(model, 0)
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3), jnp.float64)
    out = model.apply(variables, x, train=False)
    assert out.dtype == jnp.float64
    assert steps.smoothed_cross_entropy(out, jnp.zeros((2,), jnp.int32), 10, 0.1).dtype == \
        jnp.float64
  assert not jax.config.jax_enable_x64  # The context restored the default.


def _train_and_eval_outputs(model, variables, x):
  """Train-mode logits, moving statistics and gradients of sum(sin(logits)); eval logits."""
  def loss(params):
    logits, upd = model.apply({**variables, 'params': params}, x, train=True,
                              mutable=['batch_stats'], rngs={'dropout': jax.random.key(2)})
    return jnp.sum(jnp.sin(logits)), (logits, upd['batch_stats'])
  (_, (logits, stats)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(
      variables['params'])
  eval_logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  return dict(logits=logits, stats=stats, grads=grads, eval_logits=eval_logits)


# float64 (gradients too) on a small network with V3-Small's layer kinds (SE with the
# hard-sigmoid gate, h-swish and ReLU, expansion 1 and residual blocks, head before and after
# the pool) and on V3-Small itself (slow, ~50 s); float32 (forward) on MnasNet-A1 (SE with
# the sigmoid gate; slow, ~28 s). tests/test_ops.py pins the fused batch norm's values and
# gradients for every activation (ReLU6 included) on its own.
SMALL_V3 = ('r64_w1_sev3 stem_c8_hs ir_r1_k3_s2_e1_c8_se0.25_relu ir_r1_k5_s2_e3_c16_hs '
            'ir_r1_k3_s1_e3_c16_se0.25_hs head_c32_hs_pool_c64_hs')


@pytest.mark.parametrize('name,dtype', [
    pytest.param(SMALL_V3, 'float64', id='small_v3-float64'),
    pytest.param('mobilenet_v3_small', 'float64', marks=pytest.mark.slow),
    pytest.param('mnasnet_a1', 'float32', marks=pytest.mark.slow)])
def test_fused_layers_match_flax_layers(name, dtype):
  """layer_impl 'fused' (dot 1x1 convs, fused batch norm + activation; the CPU default) has
  the parameters of 'flax' (nn.Conv, nn.BatchNorm + activation) and computes the same
  function: train-mode logits, moving statistics and gradients, eval-mode logits.

  In float64 they agree to 1e-9. In float32 the gradients of these deep, small-batch nets
  are ill-conditioned (a ReLU6 mask flipped by one rounding moves a depthwise kernel
  gradient by ~2%), so float32 checks the forward values only.
  """
  with jax.enable_x64(dtype == 'float64'):
    arch = search_spaces.load_arch(name, resolution=64)
    fused, ref = (models.build_model(arch, num_classes=10, layer_impl=impl, dtype=dtype,
                                     depthwise_impl='grouped') for impl in ('fused', 'flax'))
    variables = models.init_variables(fused, jax.random.key(0), batch_size=4)
    ref_shapes = jax.eval_shape(lambda: ref.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))
    assert jax.tree.map(jnp.shape, variables) == jax.tree.map(jnp.shape, ref_shapes)
    x = jax.random.normal(jax.random.key(1), (4, 64, 64, 3), dtype)
    actual = _train_and_eval_outputs(fused, variables, x)
    expected = _train_and_eval_outputs(ref, variables, x)
  for group in (actual if dtype == 'float64' else ('logits', 'stats', 'eval_logits')):
    # Eval mode: flax computes rsqrt(var + eps) * scale in the float32 of the variables.
    rel = 1e-9 if dtype == 'float64' and group != 'eval_logits' else 1e-4
    # Tolerance relative to the group's largest value: some leaves are zero up to rounding
    # (gradients of a bias followed by batch norm).
    scale = max(float(np.abs(v).max()) for v in jax.tree.leaves(expected[group]))
    for a, e in zip(jax.tree.leaves(actual[group]), jax.tree.leaves(expected[group])):
      np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=0, atol=rel * scale,
                                 err_msg=group)


def test_layer_impl_auto_and_bad():
  assert models.resolve_layer_impl('auto') == 'fused'  # tests run on CPU
  with pytest.raises(ValueError, match='layer_impl'):
    models.resolve_layer_impl('cudnn')


def test_host_init_has_the_initialisers_distributions():
  """init_variables (numpy) draws every kernel from its module's initialiser: the TF
  reference's N(0, 2 / fan_out), with a depthwise kernel's fan_out k * k (TF's [k, k, C, 1]),
  and the classifier's U(+-1 / sqrt(classes)); compared with flax's own init."""
  arch = search_spaces.load_arch(
      'r32_w1_sev3 stem_c16_hs ir_r1_k5_s2_e6_c64_se0.25_hs head_c256_hs_pool_c512_hs')
  model = models.build_model(arch, num_classes=1000, depthwise_impl='grouped')
  ours = models.init_variables(model, 0)['params']
  flax_init = jax.jit(lambda k: model.init(k, jnp.zeros((1, 32, 32, 3)), train=False))
  ref = flax_init(jax.random.key(0))['params']
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(ours), jax.tree.leaves(ref)):
    if a.size < 200:
      continue  # Too few values for a standard deviation.
    np.testing.assert_allclose(np.std(a), np.std(b), rtol=0.2,
                               err_msg=jax.tree_util.keystr(path))
  dw = ours['block0']['depthwise']['kernel']  # (5, 5, 1, 384)
  assert abs(np.std(dw) - np.sqrt(2.0 / 25)) < 0.02


# The activation of every reference architecture, written from the implementations, not from
# mnas's strings: (stem, one per layer, one per head conv before and after the pool).
#   mobilenet_v1: ReLU6 after the stem and after both convs of every depthwise-separable
#     layer; no head conv. keras/src/applications/mobilenet.py (`layers.ReLU(6.0)` in
#     _conv_block, _depthwise_conv_block), TF-slim research/slim/nets/mobilenet_v1.py
#     (mobilenet_v1_arg_scope: tf.nn.relu6), timm/models/efficientnet.py (_gen_mobilenet_v1:
#     relu6). The paper's text says ReLU.
#   mobilenet_v2: ReLU6 everywhere, the 1280 head conv included (projections are linear).
#     keras/src/applications/mobilenet_v2.py (`layers.ReLU(6.0)`), timm/models/efficientnet.py
#     (_gen_mobilenet_v2: relu6).
#   mobilenet_v3_large / _small: h-swish stem; ReLU for the first 6 (Large) / 3 (Small)
#     layers, h-swish after (Howard et al. 2019, Tables 1-2); both head convs h-swish.
#     keras/src/applications/mobilenet_v3.py (MobileNetV3Large / MobileNetV3Small stack_fn:
#     `relu` then `activation` = hard_swish; Conv and the two head convs hard_swish),
#     timm/models/mobilenetv3.py (_gen_mobilenet_v3: `_nre` blocks are ReLU).
#   mnasnet_a1 / _b1: ReLU everywhere. tensorflow/tpu models/official/mnasnet/
#     mnasnet_models.py and mnasnet_model.py (relu_fn defaults to tf.nn.relu), timm
#     timm/models/efficientnet.py (_gen_mnasnet_a1 / _gen_mnasnet_b1: default ReLU).
EXPECTED_ACTIVATIONS = {
    'mobilenet_v1': ('relu6', ['relu6'] * 13, []),
    'mobilenet_v2': ('relu6', ['relu6'] * 17, ['relu6']),
    'mobilenet_v3_large': ('hs', ['relu'] * 6 + ['hs'] * 9, ['hs', 'hs']),
    'mobilenet_v3_small': ('hs', ['relu'] * 3 + ['hs'] * 8, ['hs', 'hs']),
    'mnasnet_a1': ('relu', ['relu'] * 16, ['relu']),
    'mnasnet_b1': ('relu', ['relu'] * 17, ['relu']),
    'anb_efficientnet_b0': ('relu', ['relu'] * 16, ['relu']),  # Accel-NASBench's: all ReLU.
}


def test_head_zeroinit_starts_at_chance():
  # With 10 classes the TPU code's classifier init, U(+-1/sqrt(10)), starts far from uniform
  # predictions; a zero classifier gives logits 0, i.e. the loss ln(10). Both init paths.
  arch = search_spaces.load_arch(
      'r32_w1_sev3 stem_c8_hs ir_r1_k3_s2_e2_c8_se0.25_hs head_c16_hs_pool_c64_hs')
  x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
  for zero in (False, True):
    model = models.build_model(arch, 10, head_zeroinit=zero)
    for variables in (jax.jit(model.init)(jax.random.key(0), x[:1]),  # Eager: 10x slower.
                      models.init_variables(model, 0)):
      kernel = variables['params']['classifier']['kernel']
      assert (np.abs(kernel).max() == 0) == zero, np.abs(kernel).max()
  logits = jax.jit(model.apply)(variables, x)  # The bias starts at 0 too.
  assert np.abs(logits).max() == 0 and np.abs(x).max() > 0


def test_every_reference_has_an_expected_activation_list():
  assert sorted(EXPECTED_ACTIVATIONS) == sorted(search_spaces.REFERENCES)


@pytest.mark.parametrize('name', sorted(EXPECTED_ACTIVATIONS))
def test_reference_activations_match_the_implementations(name, monkeypatch):
  """The architecture's activations, and the ones the built model calls, in order."""
  stem, layers, head = EXPECTED_ACTIVATIONS[name]
  arch = search_spaces.get_reference(name, resolution=32)
  assert arch.stem.act == stem
  assert [row['act'] for row in arch.describe_layers()] == layers
  assert [a for _, a in arch.head.pre + arch.head.post] == head

  # The Flax model: every activation call (after a BN, or a head dense layer), in order.
  calls = []
  for key, fn in list(models.ACTIVATIONS.items()):
    monkeypatch.setitem(models.ACTIVATIONS, key,
                        lambda x, key=key, fn=fn: calls.append(key) or fn(x))
  model = models.build_model(arch, num_classes=10, layer_impl='flax', depthwise_impl='grouped')
  jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
  # Activated convs per layer: depthwise-separable 2 (dw, pw); inverted residual 2 (expansion,
  # dw; the projection is linear), 1 without an expansion conv; regular conv 1.
  per_layer = [2 if r['type'] == 'ds' or (r['type'] == 'ir' and r['expanded'] != r['cin'])
               else 1 for r in arch.describe_layers()]
  want = [stem] + [a for a, n in zip(layers, per_layer) for _ in range(n)] + head
  assert calls == want
