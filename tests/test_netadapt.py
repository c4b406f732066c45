"""NetAdapt (mnas.search.netadapt): proposals against MobileNetV3 section 4.2's rule, weight
inheritance against NetAdapt's largest-L1 rule on hand-built weights, the resumable loop."""

import os

import jax
import numpy as np
import pytest

import conftest
import search_spaces
from conftest import MacsPredictor
from mnas import counting, latency, models
from mnas.search import netadapt, store as store_lib
from mnas.space import parse


def macs_ms(arch):
  return conftest.macs_ms(arch, 10)


def _references():
  return [search_spaces.get_reference('mobilenet_v3_small', 1.0, 64),
          search_spaces.get_reference('mobilenet_v3_large', 0.75, 64),
          search_spaces.get_reference('mnasnet_a1', 0.5, 64)]


@pytest.mark.parametrize('arch', _references(), ids=lambda a: a.id)
def test_materialize_is_the_same_network(arch):
  m = netadapt.materialize(arch)
  assert m.width_multiplier == 1.0
  assert m.describe_layers() == arch.describe_layers()
  assert m.head_widths() == arch.head_widths()
  assert counting.count(m, 10) == counting.count(arch, 10)
  assert latency.arch_keys(m, 10) == latency.arch_keys(arch, 10)  # Same table entries.
  assert netadapt.materialize(m) == m


def test_residual_chains_of_mobilenet_v3_large():
  arch = search_spaces.get_reference('mobilenet_v3_large')
  chains = netadapt.residual_chains(arch)
  # Table 1: the stem's 16 channels feed the first (residual) bneck; 24 twice, 40 x3, ...
  assert chains[:4] == [(-1, 0), (1, 2), (3, 4, 5), (6, 7, 8, 9)]
  rows = arch.describe_layers()
  for chain in chains:
    widths = {rows[i]['cout'] for i in chain if i >= 0}
    assert len(widths) == 1
    assert all(rows[i]['residual'] for i in chain[1:])


def _check_chains(arch):
  """Every block with an identity residual outputs its input's width (the chain's)."""
  rows = arch.describe_layers()
  for chain in netadapt.residual_chains(arch):
    width = arch.scaled(arch.stem.out) if chain[0] < 0 else rows[chain[0]]['cout']
    for i in chain[1:]:
      assert rows[i]['residual'] and rows[i]['cin'] == rows[i]['cout'] == width


@pytest.mark.parametrize('arch', _references(), ids=lambda a: a.id)
def test_each_proposal_is_the_smallest_reduction_that_cuts_delta(arch):
  base = macs_ms(arch)
  delta = 0.01 * base  # MobileNetV3 section 4.2.
  props = netadapt.proposals(arch, macs_ms, delta)
  parent = netadapt.materialize(arch)
  prow = parent.describe_layers()
  n_expand = sum(r['type'] == 'ir' and r['expanded'] != r['cin'] for r in prow)
  kinds = [p.kind for p in props]
  assert kinds.count('expanded') >= n_expand // 2 and kinds.count('bottleneck') >= 2
  for p in props:
    assert base - macs_ms(p.arch) >= delta - 1e-12, p.describe()
    assert p.cut_ms == pytest.approx(base - macs_ms(p.arch))
    assert p.after % 8 == 0 and p.after >= 8 and p.after < p.before
    # The smallest reduction: the next larger width (of the same structure) does not cut delta.
    for w in range(p.after + 8, p.before, 8):
      bigger = netadapt._with_width(parent, p.kind, p.layers, w)
      if netadapt.structure(bigger) == netadapt.structure(parent):
        assert base - macs_ms(bigger) < delta, (p.describe(), w)
        break
    crow = p.arch.describe_layers()
    assert [r['residual'] for r in crow] == [r['residual'] for r in prow]
    _check_chains(p.arch)
    changed = {(i, f) for i, (a, b) in enumerate(zip(prow, crow)) for f in a if a[f] != b[f]}
    if p.kind == 'expanded':
      (i,) = p.layers
      assert ({f for _, f in changed} <= {'expanded', 'se'}) and {j for j, _ in changed} == {i}
      assert prow[i]['expanded'] == p.before and crow[i]['expanded'] == p.after
    else:
      members = [i for i in p.layers if i >= 0]
      nxt = p.layers[-1] + 1
      for i, f in changed:  # Only the chain's width (and what is derived from it) moves.
        assert (i in members and f in ('cout', 'cin', 'expanded', 'se')) or (
            i == nxt and f in ('cin', 'expanded', 'se')), (i, f)
      for i in members:
        assert crow[i]['cout'] == p.after


def test_a_limited_iteration_is_a_random_subset_of_the_proposals():
  arch = _references()[1]
  delta = 0.01 * macs_ms(arch)
  full = {(p.kind, p.layers): p for p in netadapt.proposals(arch, macs_ms, delta)}
  calls = []
  def counted(a):
    calls.append(a)
    return macs_ms(a)
  picks = set()
  for seed in range(3):
    some = netadapt.proposals(arch, counted, delta, limit=3, rng=np.random.default_rng(seed))
    assert len(some) == 3
    for p in some:
      assert full[(p.kind, p.layers)] == p
    picks |= {(p.kind, p.layers) for p in some}
  assert len(picks) > 3  # Different seeds, different subsets.
  assert len(calls) < 3 * len(netadapt.sites(netadapt.materialize(arch))) * 8


def test_proposals_refuse_a_nonpositive_delta():
  with pytest.raises(ValueError, match='delta'):
    netadapt.proposals(_references()[0], macs_ms, 0.0)


# --- weight inheritance ------------------------------------------------------------------------

def _variables(arch, seed=0):
  return jax.tree.map(np.asarray, models.init_variables(models.build_model(arch, 10), seed))


def _shapes(arch):
  return jax.tree.map(np.shape, _variables(arch))


def test_inherit_keeps_exactly_the_largest_l1_expansion_filters():
  parent = parse('r32_w1_sev3 stem_c8_relu ir_r1_k3_s2_x24_c16_se0.25_relu head_c16_relu')
  child = netadapt._with_width(parent, 'expanded', (0,), 16)
  v = _variables(parent)
  rng = np.random.default_rng(0)
  scale = rng.permutation(24) + 1.0  # Filter j of the expansion conv has L1 norm 8 * scale[j].
  kernel = np.ones((1, 1, 8, 24)) * scale
  kernel[0, 0, 0] *= -1  # Signs do not matter to an L1 norm.
  v['params']['block0']['expand']['kernel'] = kernel.astype(np.float32)
  keep = np.flatnonzero(scale > 8)  # The 16 largest of 1..24, in their order.
  assert len(keep) == 16
  out = netadapt.inherit(v, parent, child)
  assert jax.tree.map(np.shape, out) == _shapes(child)
  p, q = v['params']['block0'], out['params']['block0']
  np.testing.assert_array_equal(q['expand']['kernel'], p['expand']['kernel'][..., keep])
  for m in ('expand_bn', 'depthwise_bn'):
    for leaf in ('scale', 'bias'):
      np.testing.assert_array_equal(q[m][leaf], p[m][leaf][keep])
  np.testing.assert_array_equal(q['depthwise']['kernel'], p['depthwise']['kernel'][..., keep])
  np.testing.assert_array_equal(q['se']['reduce']['kernel'],
                                p['se']['reduce']['kernel'][:, :, keep])
  np.testing.assert_array_equal(q['se']['expand']['kernel'], p['se']['expand']['kernel'][..., keep])
  np.testing.assert_array_equal(q['se']['expand']['bias'], p['se']['expand']['bias'][keep])
  np.testing.assert_array_equal(q['project']['kernel'], p['project']['kernel'][:, :, keep])
  np.testing.assert_array_equal(out['batch_stats']['block0']['expand_bn']['mean'],
                                v['batch_stats']['block0']['expand_bn']['mean'][keep])
  # Untouched widths are untouched.
  np.testing.assert_array_equal(out['params']['stem']['kernel'], v['params']['stem']['kernel'])
  np.testing.assert_array_equal(q['project_bn']['scale'], p['project_bn']['scale'])


def test_inherit_ranks_a_chain_by_the_l1_of_every_projection_into_it():
  parent = parse('r32_w1_sev3 stem_c8_relu ir_r1_k3_s2_x24_c16_relu ir_r1_k3_s1_x32_c16_relu '
                 'ir_r1_k3_s2_x32_c24_relu head_c16_relu')
  assert netadapt.residual_chains(parent)[1] == (0, 1)
  child = netadapt._with_width(parent, 'bottleneck', (0, 1), 8)
  v = _variables(parent)
  a = np.arange(16, dtype=np.float64)  # Layer 0's projection alone would keep channels 8..15,
  b = np.zeros(16)
  b[:4] = 100.0  # but layer 1's residual projection writes 0..3 much harder.
  v['params']['block0']['project']['kernel'] = (np.ones((1, 1, 24, 16)) * a / 24).astype(np.float32)
  v['params']['block1']['project']['kernel'] = (np.ones((1, 1, 32, 16)) * b / 32).astype(np.float32)
  keep = np.array([0, 1, 2, 3, 12, 13, 14, 15])  # The 8 largest of a + b.
  out = netadapt.inherit(v, parent, child)
  assert jax.tree.map(np.shape, out) == _shapes(child)
  p, q = v['params'], out['params']
  np.testing.assert_array_equal(q['block0']['project']['kernel'],
                                p['block0']['project']['kernel'][..., keep])
  np.testing.assert_array_equal(q['block0']['project_bn']['bias'],
                                p['block0']['project_bn']['bias'][keep])
  np.testing.assert_array_equal(q['block1']['expand']['kernel'],
                                p['block1']['expand']['kernel'][:, :, keep])
  np.testing.assert_array_equal(q['block1']['project']['kernel'],
                                p['block1']['project']['kernel'][..., keep])
  np.testing.assert_array_equal(q['block2']['expand']['kernel'],
                                p['block2']['expand']['kernel'][:, :, keep])
  np.testing.assert_array_equal(q['block1']['expand']['kernel'].shape, (1, 1, 8, 32))
  # The stem's chain is a bottleneck too: the stem conv's filters, then block 0's input.
  stem_child = netadapt._with_width(parent, 'bottleneck', (-1,), 8)
  stem_keep = netadapt.largest_l1(np.abs(v['params']['stem']['kernel']).sum((0, 1, 2)), 8)
  out = netadapt.inherit(v, parent, stem_child)
  np.testing.assert_array_equal(out['params']['block0']['expand']['kernel'],
                                p['block0']['expand']['kernel'][:, :, stem_keep])


def test_inherited_weights_fit_every_proposal_and_the_model_runs():
  arch = search_spaces.get_reference('mobilenet_v3_small', 1.0, 32)
  v = _variables(netadapt.materialize(arch))
  for p in netadapt.proposals(arch, macs_ms, 0.02 * macs_ms(arch)):
    out = netadapt.inherit(v, netadapt.materialize(arch), p.arch)
    assert jax.tree.map(np.shape, out) == jax.tree.map(np.shape, jax.eval_shape(
        lambda: models.init_variables(models.build_model(p.arch, 10), 0))), p.describe()
  model = models.build_model(p.arch, 10)
  y = jax.jit(model.apply)(out, np.ones((1, 32, 32, 3), np.float32))  # Eager: 10x slower.
  assert y.shape == (1, 10) and np.all(np.isfinite(y))


def test_inherit_refuses_another_structure():
  parent = parse('r32_w1_sev3 stem_c8_relu ir_r1_k3_s2_x24_c16_relu head_c16_relu')
  other = parse('r32_w1_sev3 stem_c8_relu ir_r1_k3_s2_x24_c16_se0.25_relu head_c16_relu')
  with pytest.raises(ValueError, match='structure'):
    netadapt.inherit(_variables(parent), parent, other)


# --- the loop ------------------------------------------------------------------------------------

class FakeTrainer:
  """Accuracy grows with parameters; weights are the inherited ones (kept in memory)."""

  def __init__(self, memory, crash_on=(), interrupt_after=None):
    self.memory, self.crash_on, self.calls, self.interrupt_after = (
        memory, crash_on, 0, interrupt_after)

  def train(self, arch, workdir, steps, init_variables=None):
    self.calls += 1
    if self.interrupt_after is not None and self.calls > self.interrupt_after:
      raise KeyboardInterrupt('killed')
    if os.path.basename(workdir) in self.crash_on:
      raise ValueError('out of memory')
    self.memory[workdir] = init_variables if init_variables is not None else _variables(arch)
    acc = 0.5 + counting.count(arch, 10)['params'] * 1e-6

    class R:
      status, reason, val_accuracy = 'done', '', acc
    return R()

  def variables(self, workdir):
    return self.memory[workdir]


def _config(**kw):
  import ml_collections
  c = ml_collections.ConfigDict(dict(delta_ratio=0.05, target_ms=0.0, target_ratio=0.6,
                                     max_iterations=10, seed_steps=1, finetune_steps=1,
                                     proposals_per_iteration=0, divisor=8, min_width=8,
                                     keep_checkpoints=False))
  c.update(kw)
  return c


SEED = 'r32_w1_sev3 stem_c16_hs ir_r1_k3_s2_x48_c16_relu ir_r1_k3_s1_x48_c16_relu ' \
       'ir_r1_k5_s2_x64_c24_se0.25_hs head_c64_hs_pool_c96_hs'


def test_run_meets_the_target_and_picks_the_best_ratio(tmp_path):
  memory = {}
  seed = parse(SEED)
  out = netadapt.run(seed, _config(), str(tmp_path), MacsPredictor(10),
                     trainer=FakeTrainer(memory, crash_on=('p01',)), num_classes=10)
  assert out['latency_ms'] <= 0.6 * macs_ms(seed) + 1e-12 and 'target met' in out['stopped']
  store = store_lib.Store(str(tmp_path / 'results.sqlite'))
  rows = store.finished('netadapt')
  assert rows[0]['step'] == 0 and rows[0]['extra']['kind'] == 'seed'
  assert any(r['status'] == 'failed' and 'out of memory' in r['reason'] for r in rows)
  parent_acc, parent_lat = rows[0]['accuracy'], macs_ms(seed)
  for it in range(1, out['iterations'] + 1):
    its = [r for r in rows if r['step'] == it and r['status'] == 'done']
    best = max(its, key=lambda r: (r['accuracy'] - parent_acc) / r['extra']['cut_ms'])
    for r in its:  # Each proposal cut delta off its parent.
      assert parent_lat - r['latency_ms'] >= 0.05 * macs_ms(seed) - 1e-12
    parent_acc, parent_lat = best['accuracy'], best['latency_ms']
  assert out['arch'] == best['arch'] and out['accuracy'] == best['accuracy']
  assert os.path.exists(tmp_path / 'tensorboard')
  # Losing proposals' training directories are removed.
  assert not os.path.exists(tmp_path / 'iter_001' / 'p00') or 'iter_001/p00' in out['workdir']


@pytest.mark.parametrize('field,value', [('delta_ratio', 0.0), ('target_ratio', 1.5),
                                         ('finetune_steps', 0), ('divisor', None)])
def test_bad_config_names_the_field(tmp_path, field, value):
  with pytest.raises(ValueError, match=f'netadapt.{field}=.*allowed'):
    netadapt.run(parse(SEED), _config(**{field: value}), str(tmp_path), MacsPredictor(10),
                 trainer=FakeTrainer({}), num_classes=10)
  assert not os.path.exists(tmp_path / 'state.json')


def test_run_resumes_after_a_kill_without_duplicates(tmp_path):
  seed = parse(SEED)
  reference = netadapt.run(seed, _config(), str(tmp_path / 'a'), MacsPredictor(10),
                           trainer=FakeTrainer({}), num_classes=10)
  memory = {}
  with pytest.raises(KeyboardInterrupt):
    netadapt.run(seed, _config(), str(tmp_path / 'b'), MacsPredictor(10),
                 trainer=FakeTrainer(memory, interrupt_after=7), num_classes=10)
  trainer = FakeTrainer(memory)
  resumed = netadapt.run(seed, _config(), str(tmp_path / 'b'), MacsPredictor(10), trainer=trainer,
                         num_classes=10)
  assert resumed['arch'] == reference['arch'] and resumed['iterations'] == reference['iterations']
  rows = store_lib.Store(str(tmp_path / 'b' / 'results.sqlite')).finished('netadapt')
  keys = [(r['step'], r['slot']) for r in rows]
  assert len(keys) == len(set(keys))
  total = len(store_lib.Store(str(tmp_path / 'a' / 'results.sqlite')).finished('netadapt'))
  assert len(rows) == total and trainer.calls == total - 7
  # Run again: everything is done, nothing trains.
  again = FakeTrainer(memory)
  netadapt.run(seed, _config(), str(tmp_path / 'b'), MacsPredictor(10), trainer=again,
               num_classes=10)
  assert again.calls == 0


def test_fine_tuning_starts_from_the_given_variables(tmp_path):
  """train_candidate(init_variables=...): with lr 0 the trained weights are the given ones."""
  from experiments import train as train_config
  from mnas import checkpoints, data, train
  d = os.environ.get('MNAS_TEST_DATA_DIR') or str(tmp_path / 'tfds')
  data.dataset_info('mnas_shapes/tiny', d)
  c = train_config.get_config()
  c.update(dict(dataset='mnas_shapes/tiny', data_dir=d, holdout=100, batch_size=8, lr=0.0,
                data_threads=1, weight_decay=0.0))
  arch = parse('r32_w1_sev3 stem_c8_hs ir_r1_k3_s2_x16_c8_relu head_c16_hs')
  v = _variables(arch, seed=3)
  r = train.train_candidate(arch, c, str(tmp_path / 'run'), budget_steps=2, init_variables=v)
  assert r.status == 'done' and r.steps == 2
  got = checkpoints.read_variables(str(tmp_path / 'run' / 'checkpoints'))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               got["params"], v["params"])
  bad = _variables(parse('r32_w1_sev3 stem_c8_hs ir_r1_k3_s2_x24_c8_relu head_c16_hs'))
  with pytest.raises(ValueError, match='expected shape'):
    train.train_candidate(arch, c, None, budget_steps=1, init_variables=bad)
