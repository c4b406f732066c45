"""Architectures: the type the rest of mnas speaks (search spaces: `mnas.space`).

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
  seR   squeeze-excite ratio (0 = none); the width rule and gate are global (`sev3`/`semnas`/
        `seanb`, `SE_GATES`).
  noskip  no identity residual (only meaningful when stride 1 and in == out).

"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any

from mnas.errors import SpaceError

BLOCK_TYPES = ('conv', 'ds', 'ir', 'id')
ACTIVATIONS = ('relu', 'relu6', 'hs', 'swish')
KERNELS = (3, 5, 7)
STRIDES = (1, 2)
SE_RULES = ('v3', 'mnas', 'anb')
# The squeeze-excite gate of each rule. Widths: 'v3' rounds expanded * ratio to a multiple of
# 8 (MobileNetV3); 'mnas' and 'anb' take int(block input * ratio), at least 1 (MnasNet's TPU
# code; Accel-NASBench's torchvision-style MBConv, `max(1, input_channels // 4)`, with the
# hard sigmoid its ReLU networks use: ANB-DatasetCollection models/accelbenchnet.py).
SE_GATES = {'v3': 'hard_sigmoid', 'mnas': 'sigmoid', 'anb': 'hard_sigmoid'}
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
