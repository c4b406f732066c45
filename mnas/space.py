"""Search spaces and architectures: the types the rest of mnas speaks.

An `Architecture` is one concrete network: a stem, a flat tuple of `Layer`s, a head,
a width multiplier (alpha) and an input resolution (rho * 224). It is immutable,
hashable, JSON round-trippable and has a short string form, one token per group of
identical consecutive layers, in the spirit of the MnasNet/timm block strings:

  r224_w1.0_sev3 stem_c16_hs ir_r1_k3_s1_e1_c16_relu ir_r1_k3_s2_e4_c24_relu ...
  head_c960_hs_pool_c1280_hs

Block tokens are `TYPE_rR_kK_sS_(eE|xX)_cC[_seR][_noskip]_ACT`:
  TYPE  `conv` regular KxK conv; `ds` depthwise-separable as in MobileNetV1 (dw, pw,
        both followed by BN and the activation); `ir` inverted residual as in
        MobileNetV2 (1x1 expansion, dw, optional squeeze-excite, linear 1x1
        projection; with expansion 1 there is no expansion conv, which is also
        MnasNet's "SepConv"); MobileNetV3's block is `ir` with `se` and `hs`;
        `id` identity, written `id_rR_sS_cC` (no kernel, expansion or activation):
        nothing where the stride and width stay, else a 1x1 conv with that stride + BN
        and no activation (ResNet's projection shortcut; NAS-Bench-Macro's Identity
        op). An identity that changes nothing is no layer: the canonical form drops it,
        so networks that differ only in where such identities sit are one architecture.
  rR    number of layers; only the first has stride S.
  eE    expansion ratio of the block input; `xX` an explicit expanded width instead
        (MobileNetV3-Large's 184 = 80 * 2.3).
  cC    output channels before the width multiplier.
  seR   squeeze-excite ratio (0 = none); the width rule is global (`sev3`/`semnas`).
  noskip  no identity residual (only meaningful when stride 1 and in == out).

A `Space` is a declarative set of stages, each with per-stage or per-layer options;
it enumerates its decisions as a flat list of categorical choices (the controller's
view), decodes choice indices into an architecture, encodes one back, knows its size
and samples uniformly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from typing import Any, Sequence

import numpy as np

from mnas.errors import SpaceError  # pylint: disable=unused-import (mnas.space.SpaceError)

BLOCK_TYPES = ('conv', 'ds', 'ir', 'id')
ACTIVATIONS = ('relu', 'relu6', 'hs', 'swish')
KERNELS = (3, 5, 7)
STRIDES = (1, 2)
SE_RULES = ('v3', 'mnas')
RESOLUTION_MULTIPLE = 32


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
  """Rounds a channel count to a multiple of `divisor` (MobileNetV2 reference code).

  The rounding never goes below 90% of `v`; used for every width scaled by a width
  multiplier (MobileNetV2/V3, MnasNet) and for MobileNetV3's squeeze-excite width.
  """
  min_value = divisor if min_value is None else min_value
  new = max(min_value, int(v + divisor / 2) // divisor * divisor)
  if new < 0.9 * v:
    new += divisor
  return new


def _fmt(x: float) -> str:
  """Shortest exact string for a number: 6.0 -> '6', 0.25 -> '0.25'."""
  x = float(x)
  return str(int(x)) if x.is_integer() else repr(x)


@dataclasses.dataclass(frozen=True)
class Layer:
  """One layer (block) of a network; widths are before the width multiplier."""
  type: str
  kernel: int
  stride: int
  out: int
  expansion: float = 1.0
  expanded: int | None = None
  se_ratio: float = 0.0
  act: str = 'relu'
  skip: bool = True

  def validate(self, where: str = 'layer') -> None:
    def bad(field, value, allowed):
      raise SpaceError(f'{where}: {field}={value!r} is not allowed; allowed: {allowed}')
    if self.type not in BLOCK_TYPES:
      bad('type', self.type, BLOCK_TYPES)
    if self.type == 'id':
      if (self.kernel, self.expansion, self.expanded, self.se_ratio) != (1, 1.0, None, 0.0):
        bad('type', self.type, 'id with kernel 1, expansion 1 and no se (the token id_rR_sS_cC)')
    elif self.kernel not in KERNELS:
      bad('kernel', self.kernel, KERNELS)
    if self.stride not in STRIDES:
      bad('stride', self.stride, STRIDES)
    if self.act not in ACTIVATIONS:
      bad('act', self.act, ACTIVATIONS)
    if not isinstance(self.out, int) or self.out < 1:
      bad('out', self.out, 'a positive integer')
    if self.expansion < 1:
      bad('expansion', self.expansion, 'a ratio >= 1')
    if self.expanded is not None and (not isinstance(self.expanded, int) or self.expanded < 1):
      bad('expanded', self.expanded, 'a positive integer')
    if self.type != 'ir' and (self.expansion != 1 or self.expanded is not None):
      bad('expansion', self.expansion, f'1 for type {self.type!r} (only ir expands)')
    if not 0 <= self.se_ratio <= 1:
      bad('se_ratio', self.se_ratio, '0 <= se_ratio <= 1')

  def token(self, repeats: int = 1) -> str:
    if self.type == 'id':
      return f'id_r{repeats}_s{self.stride}_c{self.out}'
    parts = [self.type, f'r{repeats}', f'k{self.kernel}', f's{self.stride}']
    if self.type == 'ir':
      parts.append(f'x{self.expanded}' if self.expanded else f'e{_fmt(self.expansion)}')
    parts.append(f'c{self.out}')
    if self.se_ratio:
      parts.append(f'se{_fmt(self.se_ratio)}')
    if not self.skip:
      parts.append('noskip')
    parts.append(self.act)
    return '_'.join(parts)


def layer_row(layer: Layer, cin: int, resolution: int, width_multiplier: float,
              se_rule: str) -> dict[str, Any]:
  """A layer's actual widths when it is entered with `cin` channels at `resolution`: the row
  of `Architecture.describe_layers()` (without its index)."""
  scaled = lambda c: make_divisible(c * width_multiplier)
  cout = scaled(layer.out)
  if layer.type == 'ir':  # Width the depthwise conv and squeeze-excite work at.
    mid = (scaled(layer.expanded) if layer.expanded
           else (cin if layer.expansion == 1 else make_divisible(cin * layer.expansion)))
  else:
    mid = cout if layer.type in ('conv', 'id') else cin
  se = 0
  if layer.se_ratio:
    se = (make_divisible(mid * layer.se_ratio) if se_rule == 'v3'
          else max(1, int(cin * layer.se_ratio)))
  return dict(type=layer.type, kernel=layer.kernel, stride=layer.stride,
              input_resolution=resolution, cin=cin, expanded=mid, cout=cout, se=se, act=layer.act,
              residual=layer.type != 'id' and layer.skip and layer.stride == 1 and cin == cout)


_TOKEN_FIELDS = re.compile(r'^(r|k|s|e|x|c|se)(\d+(?:\.\d+)?)$')


def parse_block(token: str, where: str = 'block') -> list[Layer]:
  """Parses one block token into its layers (see the module docstring)."""
  parts = token.split('_')
  kind, fields = parts[0], {}
  if kind not in BLOCK_TYPES:
    raise SpaceError(f'{where} {token!r}: unknown block type {kind!r}; allowed: {BLOCK_TYPES}')
  act, skip = 'relu', True
  for p in parts[1:]:
    if p in ACTIVATIONS:
      act = p
    elif p == 'noskip':
      skip = False
    elif m := _TOKEN_FIELDS.match(p):
      fields[m.group(1)] = float(m.group(2))
    else:
      raise SpaceError(f'{where} {token!r}: cannot parse {p!r}; expected one of '
                       f'rN kN sN eN xN cN seR noskip {"/".join(ACTIVATIONS)}')
  if kind == 'id':
    fields.setdefault('k', 1.0)
  for need in ('k', 's', 'c'):
    if need not in fields:
      raise SpaceError(f'{where} {token!r}: missing field {need!r} (e.g. k3, s1, c24)')
  as_int = lambda f: int(fields[f]) if fields[f].is_integer() else fields[f]
  repeats = int(fields.get('r', 1))
  if repeats < 1:
    raise SpaceError(f'{where} {token!r}: repeats r{repeats} must be >= 1')
  first = Layer(type=kind, kernel=as_int('k'), stride=as_int('s'), out=as_int('c'),
                expansion=fields.get('e', 1.0),
                expanded=int(fields['x']) if 'x' in fields else None,
                se_ratio=fields.get('se', 0.0), act=act, skip=skip)
  first.validate(f'{where} {token!r}')
  return [first] + [dataclasses.replace(first, stride=1)] * (repeats - 1)


@dataclasses.dataclass(frozen=True)
class Stem:
  """The first KxK conv + BN + activation, stride 2 (ImageNet networks) or 1 (CIFAR ones,
  e.g. NAS-Bench-Macro's)."""
  out: int = 32
  act: str = 'relu'
  kernel: int = 3
  stride: int = 2

  def token(self) -> str:
    k = '' if self.kernel == 3 else f'_k{self.kernel}'
    s = '' if self.stride == 2 else f'_s{self.stride}'
    return f'stem{k}{s}_c{self.out}_{self.act}'


@dataclasses.dataclass(frozen=True)
class Head:
  """1x1 convs before the global pool (with BN) and after it (with bias, no BN).

  MobileNetV2: pre=((1280, 'relu6'),). MobileNetV3: pre=((960, 'hs'),),
  post=((1280, 'hs'),) ("efficient last stage", Howard et al. 2019 section 5.1).
  The last conv keeps its width for width multipliers below 1 (MobileNetV2
  section 6.1; `finegrain_classification_mode` of the slim code).
  """
  pre: tuple[tuple[int, str], ...] = ((1280, 'relu'),)
  post: tuple[tuple[int, str], ...] = ()
  fixed: bool = False  # The last conv never scales (MnasNet: 1280 at every multiplier).

  def token(self) -> str:
    parts = ['head'] + [f'c{c}_{a}' for c, a in self.pre]
    if self.post:
      parts += ['pool'] + [f'c{c}_{a}' for c, a in self.post]
    return '_'.join(parts + ['fixed'] * self.fixed)


def _parse_stem(token: str) -> Stem:
  m = re.fullmatch(r'stem(?:_k(\d))?(?:_s(\d))?_c(\d+)_(\w+)', token)
  if not m or m.group(4) not in ACTIVATIONS:
    raise SpaceError(f'stem {token!r}: expected stem[_kK][_sS]_cC_ACT with ACT in {ACTIVATIONS}')
  return Stem(out=int(m.group(3)), act=m.group(4), kernel=int(m.group(1) or 3),
              stride=int(m.group(2) or 2))


def _parse_head(token: str) -> Head:
  if not token.startswith('head'):
    raise SpaceError(f'head {token!r}: expected head[_cC_ACT...][_pool_cC_ACT...]')
  pre, post, fixed = [], [], False
  cur = pre
  for p in token.split('_')[1:]:
    if p == 'fixed':
      fixed = True
    elif p == 'pool':
      cur = post
    elif m := re.fullmatch(r'c(\d+)', p):
      cur.append([int(m.group(1)), None])
    elif p in ACTIVATIONS and cur and cur[-1][1] is None:
      cur[-1][1] = p
    else:
      raise SpaceError(f'head {token!r}: cannot parse {p!r}; '
                       f'expected cC followed by one of {ACTIVATIONS}')
  if any(a is None for _, a in pre + post):
    raise SpaceError(f'head {token!r}: every cC needs an activation from {ACTIVATIONS}')
  return Head(pre=tuple((c, a) for c, a in pre), post=tuple((c, a) for c, a in post), fixed=fixed)


@dataclasses.dataclass(frozen=True)
class Architecture:
  """A concrete network: one point of a search space. Immutable and hashable."""
  layers: tuple[Layer, ...]
  stem: Stem = Stem()
  head: Head = Head()
  width_multiplier: float = 1.0
  resolution: int = 224
  se_rule: str = 'v3'

  def __post_init__(self):
    if not self.layers:
      raise SpaceError('architecture: needs at least one layer')
    object.__setattr__(self, 'layers', tuple(self.layers))
    if self.se_rule not in SE_RULES:
      raise SpaceError(f'architecture: se_rule={self.se_rule!r} not allowed; allowed: {SE_RULES}')
    if not self.width_multiplier > 0:
      raise SpaceError(f'architecture: width_multiplier={self.width_multiplier} must be > 0')
    if self.resolution < RESOLUTION_MULTIPLE or self.resolution % RESOLUTION_MULTIPLE:
      raise SpaceError(f'architecture: resolution={self.resolution} must be a positive '
                       f'multiple of {RESOLUTION_MULTIPLE} (the network downsamples 32x)')
    if (self.stem.act not in ACTIVATIONS or self.stem.kernel not in KERNELS
        or self.stem.stride not in STRIDES):
      raise SpaceError(f'architecture: stem {self.stem} needs act in {ACTIVATIONS}, '
                       f'kernel in {KERNELS}, stride in {STRIDES}')
    # Canonical form: the skip flag only matters where a residual is possible, an identity
    # that keeps stride and width is no layer.
    layers, cin = [], self.stem.out
    for i, layer in enumerate(self.layers):
      layer.validate(f'layer {i}')
      if layer.type == 'id' and layer.stride == 1 and cin == layer.out:
        continue
      if layer.type == 'id':  # No activation to choose, no residual around it.
        layer = dataclasses.replace(layer, skip=True, act='relu')
      elif not layer.skip and not (layer.stride == 1 and cin == layer.out):
        layer = dataclasses.replace(layer, skip=True)
      layers.append(layer)
      cin = layer.out
    if not layers:
      raise SpaceError('architecture: needs at least one layer that is not an identity')
    object.__setattr__(self, 'layers', tuple(layers))

  # --- widths after the width multiplier -------------------------------------------
  def scaled(self, channels: int) -> int:
    return make_divisible(channels * self.width_multiplier)

  @property
  def stem_resolution(self) -> int:
    """The resolution after the stem (TF 'SAME' and PyTorch's k // 2 padding agree)."""
    return -(-self.resolution // self.stem.stride)

  def describe_layers(self) -> list[dict[str, Any]]:
    """Per-layer table: actual channels, expanded width, SE width, resolution."""
    rows, cin, res = [], self.scaled(self.stem.out), self.stem_resolution
    for i, layer in enumerate(self.layers):
      rows.append(dict(index=i, **layer_row(layer, cin, res, self.width_multiplier,
                                            self.se_rule)))
      cin, res = rows[-1]['cout'], -(-res // layer.stride)
    return rows

  def head_widths(self) -> tuple[tuple[int, str], ...]:
    """Head convs after the width multiplier; the last keeps its width for alpha < 1."""
    convs = list(self.head.pre) + list(self.head.post)
    last_alpha = 1.0 if self.head.fixed else max(1.0, self.width_multiplier)
    out = []
    for j, (c, a) in enumerate(convs):
      last = j == len(convs) - 1
      out.append((make_divisible(c * last_alpha) if last else self.scaled(c), a))
    return tuple(out)

  # --- string / JSON forms ------------------------------------------------------------
  def __str__(self) -> str:
    tokens = [f'r{self.resolution}_w{_fmt(self.width_multiplier)}_se{self.se_rule}',
              self.stem.token()]
    i = 0
    while i < len(self.layers):
      j = i + 1
      while (j < len(self.layers)
             and self.layers[j] == dataclasses.replace(self.layers[i], stride=1)):
        j += 1
      tokens.append(self.layers[i].token(j - i))
      i = j
    tokens.append(self.head.token())
    return ' '.join(tokens)

  def to_json(self) -> dict[str, Any]:
    return {'arch': str(self), 'id': self.id}

  @classmethod
  def from_json(cls, obj: dict[str, Any] | str) -> Architecture:
    if isinstance(obj, str):
      obj = json.loads(obj)
    if 'arch' not in obj:
      raise SpaceError(f'architecture JSON needs an "arch" field; got keys {sorted(obj)}')
    return parse(obj['arch'])

  @property
  def id(self) -> str:
    """A stable identity: the same architecture has the same id in every process."""
    return hashlib.sha1(str(self).encode()).hexdigest()[:16]

  def replace(self, **kw) -> Architecture:
    return dataclasses.replace(self, **kw)


def parse(text: str) -> Architecture:
  """Parses the string form of an architecture (see the module docstring)."""
  tokens = text.replace(',', ' ').split()
  if len(tokens) < 3:
    raise SpaceError(f'architecture string {text!r}: '
                     'expected "rR_wW_seRULE stem_... BLOCKS... head..."')
  m = re.fullmatch(r'r(\d+)_w(\d+(?:\.\d+)?)_se(\w+)', tokens[0])
  if not m:
    raise SpaceError(f'architecture string: first token {tokens[0]!r} must be rRES_wALPHA_seRULE '
                     f'(e.g. r224_w1.0_sev3), RULE in {SE_RULES}')
  layers = []
  for i, tok in enumerate(tokens[2:-1]):
    layers += parse_block(tok, where=f'block {i}')
  return Architecture(layers=tuple(layers), stem=_parse_stem(tokens[1]),
                      head=_parse_head(tokens[-1]), width_multiplier=float(m.group(2)),
                      resolution=int(m.group(1)), se_rule=m.group(3))


# ---------------------------------------------------------------------------------
# Search spaces.
# ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Decision:
  """One categorical choice of a space: the controller's unit of action."""
  name: str
  options: tuple


@dataclasses.dataclass(frozen=True)
class Stage:
  """A stage of a search space: a run of layers with one output width.

  Option tuples list what a layer may be; with `per_layer` every layer decides its
  own (ProxylessNAS, TuNAS), otherwise the stage decides once for all its layers
  (MnasNet's factorized hierarchical space). `block` options are (type, expansion)
  pairs, so one decision can choose between e.g. a regular conv and MBConv6, or
  (type, expansion, kernel) triples that fix the kernel too (NAS-Bench-Macro's ops:
  ('id', 1, 1), ('ir', 3, 3) MBConv3 3x3, ('ir', 6, 5) MBConv6 5x5).
  """
  stride: int
  out: tuple[int, ...]
  depth: tuple[int, ...]
  block: tuple[tuple, ...] = (('ir', 6.0),)
  kernel: tuple[int, ...] = (3,)
  se_ratio: tuple[float, ...] = (0.0,)
  act: tuple[str, ...] = ('relu',)
  skip: tuple[bool, ...] = (True,)
  per_layer: bool = False

  LAYER_FIELDS = ('block', 'kernel', 'se_ratio', 'act', 'skip')

  def unit_choices(self) -> int:
    return math.prod(len(getattr(self, f)) for f in self.LAYER_FIELDS)

  def layer(self, block: tuple, kernel: int, stride: int, out: int, se_ratio: float, act: str,
            skip: bool) -> Layer:
    """The layer of one choice of each field (a block triple's kernel wins)."""
    btype, expansion, *fixed_kernel = block
    return Layer(type=btype, kernel=fixed_kernel[0] if fixed_kernel else kernel, stride=stride,
                 out=out, expansion=float(expansion), se_ratio=float(se_ratio), act=act,
                 skip=skip)

  @staticmethod
  def block_of(layer: Layer, options: tuple) -> tuple:
    """The `block` option value of `layer`, in the form of `options` (pairs or triples)."""
    value = (layer.type, layer.expansion)
    return value + (layer.kernel,) if len(options[0]) == 3 else value

  def has_identity(self) -> bool:
    return any(b[0] == 'id' for b in self.block)


@dataclasses.dataclass(frozen=True)
class Space:
  """A declarative search space (see `search_spaces/` for the ones we ship)."""
  name: str
  stages: tuple[Stage, ...]
  stem: Stem = Stem()
  head: Head = Head()
  se_rule: str = 'v3'
  width_multiplier: tuple[float, ...] = (1.0,)
  resolution: tuple[int, ...] = (224,)
  paper: str = ''

  def __post_init__(self):
    for i, st in enumerate(self.stages):
      for field in ('out', 'depth') + Stage.LAYER_FIELDS:
        if not getattr(st, field):
          raise SpaceError(f'space {self.name}: stage {i} has no options for {field!r}')
      if len({len(b) for b in st.block}) != 1:
        raise SpaceError(f'space {self.name}: stage {i} mixes (type, expansion) and '
                         '(type, expansion, kernel) block options')
      for b, k, se, a in ((b, k, s, a) for b in st.block for k in st.kernel
                          for s in st.se_ratio for a in st.act):
        st.layer(b, k, st.stride, st.out[0], se, a, True).validate(f'space {self.name} stage {i}')
    for r in self.resolution:
      if r % RESOLUTION_MULTIPLE:
        raise SpaceError(f'space {self.name}: resolution {r} is not a multiple of '
                         f'{RESOLUTION_MULTIPLE}')

  # --- decisions ------------------------------------------------------------------
  def _decision_plan(self) -> list[tuple[str, tuple, int | None, int | None, str]]:
    """(name, options, stage, layer-unit, field) for every decision with >1 option."""
    plan = []
    for g, opts in (('resolution', self.resolution), ('width_multiplier', self.width_multiplier)):
      plan.append((g, tuple(opts), None, None, g))
    for i, st in enumerate(self.stages):
      plan.append((f's{i}/depth', st.depth, i, None, 'depth'))
      plan.append((f's{i}/out', st.out, i, None, 'out'))
      units = range(max(st.depth)) if st.per_layer else [None]
      for u in units:
        prefix = f's{i}/l{u}' if u is not None else f's{i}'
        for f in Stage.LAYER_FIELDS:
          plan.append((f'{prefix}/{f}', tuple(getattr(st, f)), i, u, f))
    return [p for p in plan if len(p[1]) > 1]

  @property
  def decisions(self) -> tuple[Decision, ...]:
    return tuple(Decision(n, o) for n, o, *_ in self._decision_plan())

  def decision_sites(self) -> tuple[tuple[int | None, int | None, str], ...]:
    """(stage, layer, field) of every decision, in the order of `decisions`.

    `field` is what the decision sets: 'resolution', 'width_multiplier' (stage and layer
    None), 'depth', 'out' (layer None) or one of `Stage.LAYER_FIELDS`; `layer` is None when
    the stage decides once for all its layers, else the layer's index in the stage.
    """
    return tuple((st, u, f) for _, _, st, u, f in self._decision_plan())

  @property
  def num_options(self) -> tuple[int, ...]:
    return tuple(len(d.options) for d in self.decisions)

  def _fixed(self, stage: int, field: str):
    return getattr(self.stages[stage], field)[0]

  def decode(self, indices: Sequence[int]) -> Architecture:
    """Turns one option index per decision into an architecture."""
    plan = self._decision_plan()
    indices = [int(i) for i in np.asarray(indices).reshape(-1)]
    if len(indices) != len(plan):
      raise SpaceError(f'space {self.name}: expected {len(plan)} decision indices, '
                       f'got {len(indices)}')
    chosen: dict[tuple, Any] = {}
    for (name, opts, st, u, f), idx in zip(plan, indices):
      if not 0 <= idx < len(opts):
        raise SpaceError(f'space {self.name}: decision {name} index {idx} out of range '
                         f'[0, {len(opts)})')
      chosen[(st, u, f)] = opts[idx]
    get = lambda st, u, f: chosen.get((st, u, f), chosen.get((st, None, f)))
    layers = []
    for i, st in enumerate(self.stages):
      depth = chosen.get((i, None, 'depth'), st.depth[0])
      out = chosen.get((i, None, 'out'), st.out[0])
      for j in range(depth):
        u = j if st.per_layer else None
        val = lambda f: (v if (v := get(i, u, f)) is not None else self._fixed(i, f))
        layers.append(st.layer(val('block'), val('kernel'), st.stride if j == 0 else 1, out,
                               val('se_ratio'), val('act'), val('skip')))
    return Architecture(
        layers=tuple(layers), stem=self.stem, head=self.head, se_rule=self.se_rule,
        width_multiplier=chosen.get((None, None, 'width_multiplier'), self.width_multiplier[0]),
        resolution=chosen.get((None, None, 'resolution'), self.resolution[0]))

  def active(self, indices: Sequence[int]) -> np.ndarray:
    """Which decisions matter for these indices (per-layer choices beyond the depth do not)."""
    plan = self._decision_plan()
    depth = {st: opts[int(i)] for (n, opts, st, u, f), i in zip(plan, indices) if f == 'depth'}
    return np.array([u is None or u < depth.get(st, self.stages[st].depth[0])
                     for (_, _, st, u, _) in plan], dtype=bool)

  def encode(self, arch: Architecture) -> np.ndarray:
    """Inverse of `decode`; inactive decisions get index 0. Raises if not a member."""
    plan = self._decision_plan()
    for groups in self._stage_splits(list(arch.layers), 0, arch.stem.out):
      idx = self._encode_groups(plan, arch, groups)
      if idx is not None and self.decode(idx) == arch:
        return idx
    raise SpaceError(f'space {self.name}: architecture is not a member of this space:\n  {arch}')

  def _stage_splits(self, layers: list[Layer], stage: int, cin: int):
    """Yields every way of cutting `layers` into this space's stages (by depth options).

    In a stage with an identity option a group may be shorter than its depth: the canonical
    form dropped its identities that change nothing, which come back at the stage's end.
    """
    if stage == len(self.stages):
      if not layers:
        yield []
      return
    st = self.stages[stage]
    for d in st.depth:
      for n in (range(d, -1, -1) if st.has_identity() else [d]):
        head = layers[:n]
        out = head[0].out if head else cin
        if (len(head) < n or len({layer.out for layer in head} | {out}) != 1
            or (head[0].stride if head else 1) != st.stride):
          continue
        pad = [Layer('id', 1, st.stride if not head else 1, out)] + [Layer('id', 1, 1, out)] * d
        for rest in self._stage_splits(layers[n:], stage + 1, out):
          yield [head + pad[:d - n] if head else pad[:d]] + rest

  @staticmethod
  def _encode_groups(plan, arch: Architecture, groups: list[list[Layer]]) -> np.ndarray | None:
    idx = []
    for name, opts, st, u, f in plan:
      if st is None:
        value = getattr(arch, f)
      elif f == 'depth':
        value = len(groups[st])
      elif f == 'out':
        value = groups[st][0].out
      elif (u or 0) >= len(groups[st]):
        idx.append(0)
        continue
      else:
        layer = groups[st][u or 0]
        value = (Stage.block_of(layer, opts) if f == 'block' else getattr(layer, f))
        if f == 'skip':  # Only where a residual is possible does skip show; decode checks.
          value = groups[st][-1 if u is None else u].skip
          value = value if value in opts else opts[0]
      if value not in opts:
        return None
      idx.append(opts.index(value))
    return np.array(idx, dtype=np.int32)

  def contains(self, arch: Architecture) -> bool:
    try:
      self.encode(arch)
      return True
    except SpaceError:
      return False

  # --- size and sampling --------------------------------------------------------
  def _stage_counts(self, st: Stage) -> list[int]:
    """Number of distinct layer configurations per depth option."""
    c = st.unit_choices()
    return [c ** d if st.per_layer else c for d in st.depth]

  @property
  def size(self) -> int:
    """Number of distinct decision assignments: the architectures, except that in a space with
    identity options several assignments can be one network (NAS-Bench-Macro: 6,561 and 3,969)."""
    n = len(self.width_multiplier) * len(self.resolution)
    for st in self.stages:
      n *= len(st.out) * sum(self._stage_counts(st))
    return n

  @property
  def log10_size(self) -> float:
    return math.log10(self.size)

  def sample_indices(self, rng: np.random.Generator | Any) -> np.ndarray:
    """Decision indices of a uniform sample over the space's architectures.

    Depth is drawn in proportion to the number of architectures at each depth, so
    that every architecture is equally likely; inactive decisions get index 0.
    `rng` is a numpy Generator or a JAX PRNG key.
    """
    if not isinstance(rng, np.random.Generator):
      import jax  # Local import: the space itself does not need JAX.
      is_key = jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key)
      rng = np.random.default_rng(np.asarray(jax.random.key_data(rng) if is_key else rng)
                                  .astype(np.uint32).tolist())
    plan = self._decision_plan()
    idx = np.array([rng.integers(len(opts)) for _, opts, *_ in plan], dtype=np.int32)
    for k, (name, opts, st, u, f) in enumerate(plan):
      if f == 'depth':
        w = np.array(self._stage_counts(self.stages[st]), dtype=np.float64)
        idx[k] = rng.choice(len(opts), p=w / w.sum())
    return np.where(self.active(idx), idx, 0).astype(np.int32)

  def sample(self, rng) -> Architecture:
    return self.decode(self.sample_indices(rng))

  def describe(self) -> dict[str, Any]:
    return dict(name=self.name, paper=self.paper, size=self.size,
                log10_size=round(self.log10_size, 2), decisions=len(self.decisions),
                options={d.name: [str(o) for o in d.options] for d in self.decisions})
