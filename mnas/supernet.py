"""A weight-sharing supernet ("one-shot model") of a search space.

One set of shared weights from which every architecture of a `Space` is a sub-network,
compiled once: the sampled architecture enters as arrays (masks, weights and branch
indices: `Supernet.arrays`), never as a new trace. This is the one-shot model of TuNAS
(Bender et al. 2020, "Can Weight Sharing Outperform Random Architecture Search? An
Investigation With TuNAS", CVPR 2020, section 3; code: google-research/tunas,
rematlib/mobile_model_v3.py), for the inverted-residual spaces of `search_spaces`.

How each decision shares weights:
  * output widths, expansion ratios, width multiplier: every layer holds the weights of
    its largest width; a narrower choice uses the first channels and masks the rest with a
    sequence mask after each batch norm (TuNAS `_oneof_filters_to_int_or_mask`,
    `MaskedConv2D`, `MaskedStatelessBatchNorm`). Expansion 1 has no expansion conv
    (`mnas.models.Block`): the depthwise conv then reads the block input directly (a
    select, `lax.cond`, between the two paths).
  * kernel sizes: the KxK choice is the centre of the largest kernel (the "superkernel" of
    Single-Path NAS, Stamoulis et al. 2019; Once-for-All). TuNAS keeps separate weights per
    kernel size; sharing the centre is this codebase's choice. The depthwise conv runs at
    the sampled size only (`lax.switch` over the kernel options, on the sliced centre).
    With TF "SAME" padding, a centred zero-padded kernel gives exactly the same output as
    the small one, so a mixture of kernel sizes (op warm-up) is one conv with the largest
    kernel times a per-tap coefficient map.
  * depth: layers beyond the sampled depth of a stage are identities (skipped by
    `lax.cond`, so they cost nothing); the first layer of every stage is always present.
  * squeeze-excite on/off, activation, residual on/off: weights mixing the alternatives,
    `w * se(x) + (1 - w) * x`, `sum_a w_a * act_a(x)`, `f(x) + r * x`; a sampled
    architecture has one-hot weights (exact), TuNAS's op warm-up uniform ones.

Batch norm: per-channel statistics of the batch (TuNAS forces "stateless" batch norm in
the search, `mobile_classifier_factory.get_model_for_search`), per device (each device
trains its own architecture, so there is no cross-replica mean). Running averages are kept
as well, updated only on the channels in use, so `extract_params` can hand a stand-alone
model batch statistics too (e.g. to warm-start it).

Public API:
  Supernet.create(space, num_classes, resolution=None) -> Supernet
  net.init(seed) -> {'params', 'batch_stats'}                 (host numpy, no XLA compile)
  net.arrays(arch) -> arrays                                   (host numpy)
  net.sample_arrays(indices, ops_mix, filters_max) -> (arch, arrays)   (TuNAS warm-up)
  net.apply(variables, arrays, images, train=True) -> (logits, new batch_stats)
  net.extract_params(variables, arch) -> the stand-alone `mnas.models` variables
  extract_params(variables, arch, space) -> the same, from a Space (or its name)
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Sequence

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from mnas import models, ops
from mnas.space import SE_GATES, Architecture, Layer, Space, SpaceError, Stem

# Decision fields by TuNAS's tags (basic_specs.OP_TAG / FILTERS_TAG): op warm-up enables
# all the options of an op decision at once, filter warm-up takes the largest option.
# TuNAS's depth is a per-layer "zero" op; here a stage's depth is a filter-like decision:
# warm-up turns on every layer.
OP_FIELDS = ('kernel', 'se_ratio', 'act', 'skip')
FILTER_FIELDS = ('block', 'out', 'width_multiplier', 'depth')


@dataclasses.dataclass(frozen=True)
class Slot:
  """One layer position (stage, layer) of the supernet, with its largest widths."""
  name: str
  stage: int
  layer: int
  stride: int
  cin: int          # Largest input width.
  mid: int          # Largest expanded width (the depthwise conv's).
  cout: int         # Largest output width.
  se: int           # Largest squeeze-excite width (0: never SE).
  kernels: tuple[int, ...]
  acts: tuple[str, ...]
  expand: bool      # Some choice has an expansion conv (expanded != input width).
  bypass: bool      # Some choice has none (expansion 1).
  optional: bool    # Beyond the smallest depth of the stage: may be skipped.
  residual: bool    # Some choice has an identity residual.

  @property
  def kmax(self) -> int:
    return max(self.kernels)


def _seq(n: int, size: int) -> np.ndarray:
  return (np.arange(size) < n).astype(np.float32)


def _centre(k: int, kmax: int) -> np.ndarray:
  m = np.zeros((kmax, kmax), np.float32)
  c = (kmax - k) // 2
  m[c:c + k, c:c + k] = 1.0
  return m


def _fit(x: jax.Array, c: int) -> jax.Array:
  """Zero-pads or crops the channels of x to c (the cropped ones are zero by the masks)."""
  n = x.shape[-1]
  if n == c:
    return x
  if n > c:
    return x[..., :c]
  return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, c - n)])


def _conv(x, kernel, stride: int = 1):
  """nn.Conv(use_bias=False, padding='SAME') as in mnas.models (NHWC, HWIO)."""
  return lax.conv_general_dilated(x, kernel, (stride, stride), 'SAME',
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _mix_act(names: Sequence[str], weights, x):
  if len(names) == 1:
    return models.ACTIVATIONS[names[0]](x)
  return sum(weights[i] * models.ACTIVATIONS[a](x) for i, a in enumerate(names))


def _layer_row(space: Space, w: float, cin: int, layer: Layer) -> dict:
  """describe_layers() row of `layer` after an input of `cin` (unscaled) channels."""
  arch = Architecture(layers=(layer,), stem=Stem(cin, space.stem.act, space.stem.kernel),
                      head=space.head, width_multiplier=w, resolution=32,
                      se_rule=space.se_rule)
  return arch.describe_layers()[0]


@dataclasses.dataclass(frozen=True)
class Supernet:
  """The one-shot model of `space` at one input resolution (see the module docstring)."""
  space: Space
  num_classes: int
  resolution: int
  slots: tuple[Slot, ...]
  stem: int                                 # Largest stem width.
  head: tuple[tuple[int, str], ...]         # Largest head widths (pre-pool, then post).
  depthwise_impl: str = 'auto'

  # --- construction -------------------------------------------------------------
  @classmethod
  def create(cls, space: Space, num_classes: int = 1000, resolution: int | None = None,
             depthwise_impl: str = 'auto') -> Supernet:
    """The supernet of `space`; `resolution` overrides the space's (which must be one)."""
    if resolution is None:
      if len(space.resolution) != 1:
        raise SpaceError(f'supernet: space {space.name} searches the resolution '
                         f'{space.resolution}; give one resolution (the supernet is compiled '
                         'for one input shape)')
      resolution = space.resolution[0]
    widths = space.width_multiplier
    scaled = lambda c: {Architecture(layers=(Layer('ir', 3, 1, 8),), width_multiplier=w)
                        .scaled(c) for w in widths}
    slots = []
    if space.stem.stride != 2:
      raise SpaceError(f'supernet: space {space.name} has a stride-{space.stem.stride} stem; '
                       'the supernet builds stride-2 stems only')
    for i, st in enumerate(space.stages):
      for t, *_ in st.block:
        if t != 'ir':
          raise SpaceError(f'supernet: space {space.name} stage {i} has block type {t!r}; '
                           'the supernet shares weights between inverted residuals (ir) only')
      if min(st.depth) < 1:
        raise SpaceError(f'supernet: space {space.name} stage {i} allows depth 0')
      prev = (space.stem.out,) if i == 0 else space.stages[i - 1].out
      for j in range(max(st.depth)):
        stride = st.stride if j == 0 else 1
        rows = [_layer_row(space, w, c, Layer('ir', 3, stride, o, expansion=float(e),
                                              se_ratio=float(se)))
                for w, c, o, (_, e), se in itertools.product(
                    widths, prev if j == 0 else st.out, st.out, st.block, st.se_ratio)]
        slot = Slot(name=f's{i}_l{j}', stage=i, layer=j, stride=stride,
                    cin=max(r['cin'] for r in rows), mid=max(r['expanded'] for r in rows),
                    cout=max(r['cout'] for r in rows), se=max(r['se'] for r in rows),
                    kernels=tuple(sorted(st.kernel)), acts=tuple(st.act),
                    expand=any(r['expanded'] != r['cin'] for r in rows),
                    bypass=any(r['expanded'] == r['cin'] for r in rows),
                    optional=j >= min(st.depth),
                    residual=any(r['residual'] for r in rows) and any(st.skip))
        if slot.optional and slot.cin != slot.cout:
          raise SpaceError(f'supernet: slot {slot.name} may be skipped but changes width')
        slots.append(slot)
    heads = [Architecture(layers=(Layer('ir', 3, 1, 8),), head=space.head,
                          width_multiplier=w).head_widths() for w in widths]
    head = tuple((max(h[j][0] for h in heads), heads[0][j][1]) for j in range(len(heads[0])))
    return cls(space=space, num_classes=int(num_classes), resolution=int(resolution),
               slots=tuple(slots), stem=max(scaled(space.stem.out)), head=head,
               depthwise_impl=depthwise_impl)

  @functools.cached_property
  def _slot_at(self) -> dict[tuple[int, int], Slot]:
    return {(s.stage, s.layer): s for s in self.slots}

  @functools.cached_property
  def _plan(self) -> tuple[tuple[tuple, int | None, int | None, str], ...]:
    """(options, stage, layer, field) of every decision of the space."""
    return tuple((d.options, *site)
                 for d, site in zip(self.space.decisions, self.space.decision_sites()))

  @property
  def n_pre(self) -> int:
    return len(self.space.head.pre)

  # --- variables ---------------------------------------------------------------
  def shapes(self) -> dict:
    """{'params': ..., 'batch_stats': ...} as nested dicts of shape tuples."""
    bn = lambda c: {'scale': (c,), 'bias': (c,)}
    st = lambda c: {'mean': (c,), 'var': (c,)}
    p = {'stem': {'kernel': (self.space.stem.kernel,) * 2 + (3, self.stem)},
         'stem_bn': bn(self.stem)}
    s = {'stem_bn': st(self.stem)}
    for sl in self.slots:
      q, t = {}, {}
      if sl.expand:
        q['expand'] = {'kernel': (1, 1, sl.cin, sl.mid)}
        q['expand_bn'], t['expand_bn'] = bn(sl.mid), st(sl.mid)
      q['depthwise'] = {'kernel': (sl.kmax, sl.kmax, 1, sl.mid)}
      q['depthwise_bn'], t['depthwise_bn'] = bn(sl.mid), st(sl.mid)
      if sl.se:
        q['se'] = {'reduce': {'kernel': (1, 1, sl.mid, sl.se), 'bias': (sl.se,)},
                   'expand': {'kernel': (1, 1, sl.se, sl.mid), 'bias': (sl.mid,)}}
      q['project'] = {'kernel': (1, 1, sl.mid, sl.cout)}
      q['project_bn'], t['project_bn'] = bn(sl.cout), st(sl.cout)
      p[sl.name], s[sl.name] = q, t
    c = self.slots[-1].cout if self.slots else self.stem
    for j, (w, _) in enumerate(self.head):
      if j < self.n_pre:
        p[f'head{j}'] = {'kernel': (1, 1, c, w)}
        p[f'head{j}_bn'], s[f'head{j}_bn'] = bn(w), st(w)
      else:
        p[f'head_post{j - self.n_pre}'] = {'kernel': (c, w), 'bias': (w,)}
      c = w
    p['classifier'] = {'kernel': (c, self.num_classes), 'bias': (self.num_classes,)}
    return {'params': p, 'batch_stats': s}

  def init(self, rng) -> dict:
    """Shared weights and batch statistics drawn on the host (as models.init_variables).

    Same distributions as `mnas.models` at the largest widths: conv kernels
    N(0, 2 / fan_out), the classifier U(+-1/sqrt(fan_out)), BN scale 1 / bias 0, SE
    biases 0, moving mean 0 / variance 1. Deterministic in `rng` (int seed or JAX key).
    """
    seed = models._seed_of(rng)  # pylint: disable=protected-access

    def leaf(path, shape):
      names = [str(getattr(k, 'key', k)) for k in path]
      return models.init_leaf(names, shape, seed).astype(np.float32)

    return jax.tree_util.tree_map_with_path(leaf, self.shapes(),
                                            is_leaf=lambda x: isinstance(x, tuple))

  # --- architectures as arrays ------------------------------------------------------
  def empty_arrays(self) -> dict:
    """The arrays of no architecture (every optional layer off): the pytree's template."""
    slots = {}
    for sl in self.slots:
      a = {'present': np.float32(0), 'kernel': _centre(sl.kernels[0], sl.kmax),
           'branch': np.int32(0), 'expand': np.float32(0),
           'mid': np.zeros(sl.mid, np.float32), 'out': np.zeros(sl.cout, np.float32),
           'act': np.eye(len(sl.acts), dtype=np.float32)[0], 'residual': np.float32(0)}
      if sl.se:
        a['se'] = np.float32(0)
        a['se_mask'] = np.zeros(sl.se, np.float32)
      slots[sl.name] = a
    return {'stem': np.zeros(self.stem, np.float32), 'slots': slots,
            'head': {str(j): np.zeros(w, np.float32) for j, (w, _) in enumerate(self.head)}}

  def depths(self, arch: Architecture) -> list[int]:
    """Layers per stage of an architecture of the space (`Space.encode`)."""
    idx = self.space.encode(arch.replace(resolution=self.space.resolution[0]))
    return self._depths_of(idx)

  def _depths_of(self, idx) -> list[int]:
    chosen = {st: opts[int(i)] for (opts, st, _, f), i in zip(self._plan, idx) if f == 'depth'}
    return [chosen.get(i, st.depth[0]) for i, st in enumerate(self.space.stages)]

  def arrays(self, arch: Architecture, depths: Sequence[int] | None = None) -> dict:
    """Masks, weights and branch indices that select `arch` (a member of the space)."""
    depths = self.depths(arch) if depths is None else list(depths)
    if arch.stem != self.space.stem or arch.head != self.space.head or (
        arch.se_rule != self.space.se_rule):
      raise SpaceError(f'supernet: architecture stem/head/se_rule differ from space '
                       f'{self.space.name}:\n  {arch}')
    rows = arch.describe_layers()
    if len(rows) != sum(depths):
      raise SpaceError(f'supernet: {len(rows)} layers but stage depths {depths}')
    out = self.empty_arrays()
    out['stem'] = _seq(arch.scaled(arch.stem.out), self.stem)
    i = 0
    for st, d in enumerate(depths):
      for j in range(d):
        row, sl = rows[i], self._slot_at[(st, j)]
        i += 1
        if (row['cin'] > sl.cin or row['expanded'] > sl.mid or row['cout'] > sl.cout or
            row['se'] > sl.se or row['kernel'] not in sl.kernels or row['act'] not in sl.acts
            or row['stride'] != sl.stride):
          raise SpaceError(f'supernet: layer {row["index"]} does not fit slot {sl.name}')
        a = out['slots'][sl.name]
        a['present'] = np.float32(1)
        a['kernel'] = _centre(row['kernel'], sl.kmax)
        a['branch'] = np.int32(sl.kernels.index(row['kernel']))
        a['expand'] = np.float32(row['expanded'] != row['cin'])
        a['mid'] = _seq(row['expanded'], sl.mid)
        a['out'] = _seq(row['cout'], sl.cout)
        a['act'] = np.eye(len(sl.acts), dtype=np.float32)[sl.acts.index(row['act'])]
        a['residual'] = np.float32(row['residual'])
        if sl.se:
          a['se'] = np.float32(row['se'] > 0)
          a['se_mask'] = _seq(row['se'], sl.se)
    for j, (c, _) in enumerate(arch.head_widths()):
      out['head'][str(j)] = _seq(c, self.head[j][0])
    return out

  def sample_arrays(self, indices, ops_mix=None, filters_max=None,
                    resolution: int | None = None) -> tuple[Architecture, dict]:
    """The arrays of decision indices, with TuNAS's op and filter warm-up.

    `ops_mix[d]` (bool per decision): enable all the options of op decision d at once
    (kernel: the mean of the centred kernels; SE and residual: weight = the share of
    options that have them; activation: the mean of the activations), as TuNAS's
    `controller.independent_sample(increase_ops_probability=...)`. `filters_max[d]`: take
    the largest option of filter decision d (expansion, width, width multiplier, depth),
    as `increase_filters_probability`. Returns the (largest-path) architecture and arrays.
    """
    idx = np.asarray(indices, np.int64).reshape(-1).copy()
    n = len(idx)
    ops_mix = np.zeros(n, bool) if ops_mix is None else np.asarray(ops_mix, bool)
    filters_max = np.zeros(n, bool) if filters_max is None else np.asarray(filters_max, bool)
    def largest(opts, key=lambda o: o):
      return max(range(len(opts)), key=lambda k: key(opts[k]))
    for d, (opts, _, _, f) in enumerate(self._plan):
      if filters_max[d] and f in FILTER_FIELDS:  # Block options are (type, expansion).
        idx[d] = largest(opts, (lambda o: o[1]) if f == 'block' else (lambda o: o))
      elif ops_mix[d] and f in ('kernel', 'se_ratio'):  # Widths of the largest option.
        idx[d] = largest(opts)
      elif ops_mix[d] and f == 'skip' and True in opts:
        idx[d] = opts.index(True)
    arch = self.space.decode(idx)
    if resolution:
      arch = arch.replace(resolution=int(resolution))
    depths = self._depths_of(idx)
    arrays = self.arrays(arch, depths)
    for d, (opts, st, u, f) in enumerate(self._plan):
      if not (ops_mix[d] and f in OP_FIELDS):
        continue
      for j in (range(depths[st]) if u is None else [u] if u < depths[st] else []):
        sl = self._slot_at[(st, j)]
        a = arrays['slots'][sl.name]
        if f == 'kernel':
          a['kernel'] = np.mean([_centre(k, sl.kmax) for k in opts], axis=0)
          a['branch'] = np.int32(len(sl.kernels) - 1)
        elif f == 'se_ratio' and sl.se:
          a['se'] = np.float32(np.mean([o > 0 for o in opts]) if a['se'] > 0 else 0)
        elif f == 'act':
          a['act'] = np.array([np.mean([o == n for o in opts]) for n in sl.acts], np.float32)
        elif f == 'skip':
          a['residual'] = np.float32(np.mean(opts) if a['residual'] > 0 else 0)
    return arch, arrays

  # --- forward ---------------------------------------------------------------------
  def _bn(self, x, p, s, mask, train: bool):
    """Batch norm as flax.linen.BatchNorm (fast variance); running stats updated on `mask`."""
    if train:
      mean = jnp.mean(x, axis=(0, 1, 2))
      var = jnp.maximum(0.0, jnp.mean(jnp.square(x), axis=(0, 1, 2)) - jnp.square(mean))
      m = models.BN_MOMENTUM
      on = mask > 0
      new = {'mean': jnp.where(on, m * s['mean'] + (1 - m) * mean, s['mean']),
             'var': jnp.where(on, m * s['var'] + (1 - m) * var, s['var'])}
    else:
      mean, var, new = s['mean'], s['var'], s
    y = (x - mean) * (lax.rsqrt(var + models.BN_EPSILON) * p['scale']) + p['bias']
    return y, new

  def _depthwise(self, sl: Slot, h, kernel, branch):
    def run(k):
      c = (sl.kmax - k) // 2
      return lambda h, w: ops.depthwise_conv(h, w[c:c + k, c:c + k], sl.stride,
                                             impl=self.depthwise_impl)
    import os
    if len(sl.kernels) == 1 or os.environ.get('ONEBRANCH'):
      return run(sl.kmax)(h, kernel)
    return lax.switch(branch, [run(k) for k in sl.kernels], h, kernel)

  def _block(self, sl: Slot, p, a, train: bool, x, s):
    new = dict(s)
    act = functools.partial(_mix_act, sl.acts, a['act'])
    if sl.expand:
      def expand(x, st):
        h, st = self._bn(_conv(x, p['expand']['kernel']), p['expand_bn'], st, a['mid'], train)
        return act(h) * a['mid'], st
      if sl.bypass:
        h, new['expand_bn'] = lax.cond(a['expand'] > 0, expand,
                                       lambda x, st: (_fit(x, sl.mid), st), x, s['expand_bn'])
      else:
        h, new['expand_bn'] = expand(x, s['expand_bn'])
    else:
      h = _fit(x, sl.mid)
    kernel = p['depthwise']['kernel'] * a['kernel'][:, :, None, None]
    h = self._depthwise(sl, h, kernel, a['branch'])
    h, new['depthwise_bn'] = self._bn(h, p['depthwise_bn'], s['depthwise_bn'], a['mid'], train)
    h = act(h) * a['mid']
    if sl.se:
      q = p['se']
      g = jnp.mean(h, axis=(1, 2), keepdims=True)
      g = jax.nn.relu(_conv(g, q['reduce']['kernel']) + q['reduce']['bias']) * a['se_mask']
      g = _conv(g, q['expand']['kernel']) + q['expand']['bias']
      hard = SE_GATES[self.space.se_rule] == 'hard_sigmoid'
      g = jax.nn.hard_sigmoid(g) if hard else jax.nn.sigmoid(g)
      h = a['se'] * (h * g) + (1 - a['se']) * h
    h = _conv(h, p['project']['kernel'])
    h, new['project_bn'] = self._bn(h, p['project_bn'], s['project_bn'], a['out'], train)
    h = h * a['out']
    if sl.residual:
      h = h + a['residual'] * _fit(x, sl.cout)
    return h, new

  def apply(self, variables: dict, arrays: dict, images, train: bool = True):
    """Logits of the architecture selected by `arrays`, and the new batch statistics.

    train=True: batch norm with the batch's statistics (as in the search; the returned
    running averages are updated on the channels in use); False: with the running averages.
    """
    p, s, new = variables['params'], variables['batch_stats'], {}
    x = images.astype(jnp.float32)
    x = _conv(x, p['stem']['kernel'], 2)
    x, new['stem_bn'] = self._bn(x, p['stem_bn'], s['stem_bn'], arrays['stem'], train)
    x = models.ACTIVATIONS[self.space.stem.act](x) * arrays['stem']
    for sl in self.slots:
      fn = functools.partial(self._block, sl, p[sl.name], arrays['slots'][sl.name], train)
      if sl.optional:
        x, new[sl.name] = lax.cond(arrays['slots'][sl.name]['present'] > 0, fn,
                                   lambda x, st: (x, st), x, s[sl.name])
      else:
        x, new[sl.name] = fn(x, s[sl.name])
    for j, (_, a) in enumerate(self.head[:self.n_pre]):  # 1x1 convs + BN before the pool.
      mask = arrays['head'][str(j)]
      x = _conv(x, p[f'head{j}']['kernel'])
      x, new[f'head{j}_bn'] = self._bn(x, p[f'head{j}_bn'], s[f'head{j}_bn'], mask, train)
      x = models.ACTIVATIONS[a](x) * mask
    x = jnp.mean(x, axis=(1, 2))
    for j, (_, a) in enumerate(self.head[self.n_pre:]):  # Dense + bias after it.
      q, mask = p[f'head_post{j}'], arrays['head'][str(self.n_pre + j)]
      x = models.ACTIVATIONS[a](jnp.dot(x, q['kernel']) + q['bias']) * mask
    logits = jnp.dot(x, p['classifier']['kernel']) + p['classifier']['bias']
    return logits, new

  # --- stand-alone models ------------------------------------------------------------
  def extract_params(self, variables: dict, arch: Architecture,
                     depths: Sequence[int] | None = None) -> dict:
    """The stand-alone `mnas.models` variables of `arch`: slices of the shared weights.

    {'params', 'batch_stats'} with the names and shapes of `models.build_model(arch)`
    (`block{i}` is layer i of the architecture); kernels are the centre of the shared
    kernel, widths the first channels. Feeding them to the stand-alone model gives the
    supernet's outputs for `arch` (tests/test_supernet.py), e.g. to warm-start it.
    """
    depths = self.depths(arch) if depths is None else list(depths)
    P, S = variables['params'], variables.get('batch_stats', {})
    np_ = lambda x: np.asarray(x)
    bn = lambda q, c: {'scale': np_(q['scale'])[:c], 'bias': np_(q['bias'])[:c]}
    st = lambda q, c: {'mean': np_(q['mean'])[:c], 'var': np_(q['var'])[:c]}
    c = arch.scaled(arch.stem.out)
    params = {'stem': {'kernel': np_(P['stem']['kernel'])[..., :c]}, 'stem_bn': bn(P['stem_bn'], c)}
    stats = {'stem_bn': st(S['stem_bn'], c)}
    rows = arch.describe_layers()
    slots = [self._slot_at[(i, j)] for i, d in enumerate(depths) for j in range(d)]
    if len(slots) != len(rows):
      raise SpaceError(f'supernet: {len(rows)} layers but stage depths {depths}')
    for row, sl in zip(rows, slots):
      q, t = P[sl.name], S[sl.name]
      cin, mid, cout, se, k = row['cin'], row['expanded'], row['cout'], row['se'], row['kernel']
      b, bs = {}, {}
      if mid != cin:
        b['expand'] = {'kernel': np_(q['expand']['kernel'])[:, :, :cin, :mid]}
        b['expand_bn'], bs['expand_bn'] = bn(q['expand_bn'], mid), st(t['expand_bn'], mid)
      o = (sl.kmax - k) // 2
      b['depthwise'] = {'kernel': np_(q['depthwise']['kernel'])[o:o + k, o:o + k, :, :mid]}
      b['depthwise_bn'] = bn(q['depthwise_bn'], mid)
      bs['depthwise_bn'] = st(t['depthwise_bn'], mid)
      if se:
        r, e = q['se']['reduce'], q['se']['expand']
        b['se'] = {'reduce': {'kernel': np_(r['kernel'])[:, :, :mid, :se],
                              'bias': np_(r['bias'])[:se]},
                   'expand': {'kernel': np_(e['kernel'])[:, :, :se, :mid],
                              'bias': np_(e['bias'])[:mid]}}
      b['project'] = {'kernel': np_(q['project']['kernel'])[:, :, :mid, :cout]}
      b['project_bn'], bs['project_bn'] = bn(q['project_bn'], cout), st(t['project_bn'], cout)
      params[f'block{row["index"]}'], stats[f'block{row["index"]}'] = b, bs
      c = cout
    for j, (w, _) in enumerate(arch.head_widths()):
      if j < self.n_pre:
        params[f'head{j}'] = {'kernel': np_(P[f'head{j}']['kernel'])[:, :, :c, :w]}
        params[f'head{j}_bn'] = bn(P[f'head{j}_bn'], w)
        stats[f'head{j}_bn'] = st(S[f'head{j}_bn'], w)
      else:
        q = P[f'head_post{j - self.n_pre}']
        params[f'head_post{j - self.n_pre}'] = {'kernel': np_(q['kernel'])[:c, :w],
                                                'bias': np_(q['bias'])[:w]}
      c = w
    params['classifier'] = {'kernel': np_(P['classifier']['kernel'])[:c],
                            'bias': np_(P['classifier']['bias'])}
    return {'params': params, 'batch_stats': stats}


@functools.lru_cache(maxsize=16)
def _cached(space: Space, num_classes: int, resolution: int) -> Supernet:
  return Supernet.create(space, num_classes, resolution)


def extract_params(variables: dict, arch: Architecture, space: Space | Supernet | str) -> dict:
  """The stand-alone model variables of `arch` sliced from a supernet's `variables`.

  `space`: the supernet, its Space, or the space's name (search_spaces.SPACES).
  """
  if isinstance(space, Supernet):
    return space.extract_params(variables, arch)
  if isinstance(space, str):
    import search_spaces
    space = search_spaces.get_space(space)
  num_classes = int(np.shape(variables['params']['classifier']['bias'])[0])
  return _cached(space, num_classes, arch.resolution).extract_params(variables, arch)
