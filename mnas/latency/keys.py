"""Entry keys: the readable names of a table's entries, and which entries a network needs.

  ir_r32_i16_o24_k3_x64_s2_se0_relu_res0     block: TYPE, input Resolution, cIn, cOut,
                                             Kernel, eXpanded width, Stride, SE width (with
                                             its gate, `hsig` for se_rule v3, `sig` for
                                             mnas), activation, identity residual 0/1
  stem_r64_i3_o16_k3_hs                      stem: input resolution, 3 channels in, cout,
                                             kernel, activation
  head_r2_i64_c192hs_pool_c256hs_n1000       head: input resolution, cin, 1x1 convs before
                                             the pool, dense layers after it, classes

`arch_keys` lists an architecture's entries, `space_keys` every entry a space can need and
`parse_key` reads a key back into the spec that `mnas.latency.entries` builds. The default
of 1000 classes is ImageNet's (the head entry's classifier width).
"""

from __future__ import annotations

import itertools
import re
from typing import Any, Iterable, Mapping, Sequence

from mnas import counting
from mnas.errors import SpaceError
from mnas.space import Architecture, Layer, Space, layer_row, make_divisible

GATES = {'v3': 'hsig', 'mnas': 'sig', 'anb': 'hsig'}  # SE gate of each se_rule (hard sigmoid /
_RULE_OF_GATE = {'hsig': 'v3', 'sig': 'mnas'}              # sigmoid); a key's width is explicit.
_ACTS = 'relu6|relu|hs|swish'


def block_key(row: Mapping[str, Any], se_rule: str) -> str:
  """Key of one row of `Architecture.describe_layers()`."""
  se = f'se{row["se"]}' + (GATES[se_rule] if row['se'] else '')
  return (f'{row["type"]}_r{row["input_resolution"]}_i{row["cin"]}_o{row["cout"]}'
          f'_k{row["kernel"]}_x{row["expanded"]}_s{row["stride"]}_{se}_{row["act"]}'
          f'_res{int(bool(row["residual"]))}')


def stem_key(resolution: int, cout: int, kernel: int, act: str, stride: int = 2) -> str:
  s = '' if stride == 2 else f'_s{stride}'
  return f'stem_r{resolution}_i3_o{cout}_k{kernel}{s}_{act}'


def head_key(resolution: int, cin: int, pre: Sequence[tuple[int, str]],
             post: Sequence[tuple[int, str]], num_classes: int) -> str:
  parts = [f'head_r{resolution}_i{cin}'] + [f'c{c}{a}' for c, a in pre] + ['pool']
  parts += [f'c{c}{a}' for c, a in post] + [f'n{num_classes}']
  return '_'.join(parts)


_BLOCK_RE = re.compile(rf'^(conv|ds|ir|id)_r(\d+)_i(\d+)_o(\d+)_k(\d+)_x(\d+)_s(\d+)'
                       rf'_se(\d+)(hsig|sig)?_({_ACTS})_res([01])$')
_STEM_RE = re.compile(rf'^stem_r(\d+)_i(\d+)_o(\d+)_k(\d+)(?:_s(\d))?_({_ACTS})$')
_HEAD_RE = re.compile(r'^head_r(\d+)_i(\d+)_(.*)_n(\d+)$')
_CONV_RE = re.compile(rf'^c(\d+)({_ACTS})$')


def parse_key(key: str) -> dict[str, Any]:
  """The entry spec of a key (what `mnas.latency.entries.entry_module` builds)."""
  if m := _BLOCK_RE.match(key):
    t, r, i, o, k, x, s, se, gate, act, res = m.groups()
    if int(se) and not gate:
      raise SpaceError(f'latency key {key!r}: an SE width needs its gate (hsig or sig)')
    return dict(kind='block', type=t, input_resolution=int(r), cin=int(i), cout=int(o),
                kernel=int(k), expanded=int(x), stride=int(s), se=int(se),
                se_rule=_RULE_OF_GATE.get(gate, 'v3'), act=act, residual=res == '1')
  if m := _STEM_RE.match(key):
    r, i, o, k, s, act = m.groups()
    return dict(kind='stem', input_resolution=int(r), cin=int(i), cout=int(o), kernel=int(k),
                stride=int(s or 2), act=act)
  if m := _HEAD_RE.match(key):
    r, i, body, n = m.groups()
    tokens = body.split('_')
    if tokens.count('pool') != 1:
      raise SpaceError(f'latency key {key!r}: a head key needs exactly one "pool"')
    cut = tokens.index('pool')
    convs = []
    for tok in tokens[:cut] + tokens[cut + 1:]:
      if not (c := _CONV_RE.match(tok)):
        raise SpaceError(f'latency key {key!r}: cannot parse head conv {tok!r} '
                         '(expected cWIDTHACT)')
      convs.append((int(c.group(1)), c.group(2)))
    return dict(kind='head', input_resolution=int(r), cin=int(i), pre=convs[:cut],
                post=convs[cut:], num_classes=int(n))
  raise SpaceError(f'latency key {key!r}: not a block, stem or head key '
                   '(e.g. ir_r32_i16_o24_k3_x64_s2_se0_relu_res0, stem_r64_i3_o16_k3_hs, '
                   'head_r2_i64_c192hs_pool_c256hs_n1000)')


def arch_keys(arch: Architecture, num_classes: int = 1000) -> list[str]:
  """The entries of an architecture, in order: stem, blocks, head."""
  keys = [stem_key(arch.resolution, arch.scaled(arch.stem.out), arch.stem.kernel, arch.stem.act,
                   arch.stem.stride)]
  keys += [block_key(row, arch.se_rule) for row in arch.describe_layers()]
  widths = arch.head_widths()
  npre = len(arch.head.pre)
  keys.append(head_key(counting.res_final(arch), arch.scaled(arch.layers[-1].out), widths[:npre],
                       widths[npre:], num_classes))
  return keys


def keys_for(archs: Iterable[Architecture], num_classes: int = 1000) -> list[str]:
  """The unique entries a set of architectures needs (first-seen order)."""
  return list(dict.fromkeys(k for a in archs for k in arch_keys(a, num_classes)))


def space_keys(space: Space, width_multiplier: float | None = None, resolution: int | None = None,
               num_classes: int = 1000) -> list[str]:
  """Every entry an architecture of `space` can need at one width multiplier and resolution.

  Per stage: the possible input widths (from the previous stage's width options), the
  stage's output widths, its first (strided) and later (stride-1) layer positions, times
  the per-layer options; then the head for every possible last width.
  """
  w = float(width_multiplier or space.width_multiplier[0])
  r0 = int(resolution or space.resolution[0])
  scaled = lambda c: make_divisible(c * w)
  keys = {stem_key(r0, scaled(space.stem.out), space.stem.kernel, space.stem.act,
                  space.stem.stride)}
  states = {(scaled(space.stem.out), -(-r0 // space.stem.stride))}
  for st in space.stages:
    new_states = set()
    options = list(itertools.product(st.block, st.kernel, st.se_ratio, st.act, st.skip))
    for (cin, res), out in itertools.product(sorted(states), st.out):
      cout, res1 = scaled(out), -(-res // st.stride)
      for d in st.depth:
        new_states.add((cout, res1) if d > 0 else (cin, res))
      positions = [(cin, st.stride, res)] + ([(cout, 1, res1)] if max(st.depth) > 1 else [])
      for (ci, s, r), (block, k, ratio, act, skip) in itertools.product(positions, options):
        layer = st.layer(block, k, s, out, ratio, act, skip)
        if layer.type == 'id' and s == 1 and ci == cout:
          continue  # An identity that changes nothing is no layer (mnas.space).
        keys.add(block_key(layer_row(layer, ci, r, w, space.se_rule), space.se_rule))
    states = new_states
  probe = Architecture(layers=(Layer('ir', 3, 1, 8),), stem=space.stem, head=space.head,
                       width_multiplier=w, resolution=r0, se_rule=space.se_rule)
  widths, npre = probe.head_widths(), len(space.head.pre)
  for cin, res in states:
    keys.add(head_key(res, cin, widths[:npre], widths[npre:], num_classes))
  order = {'stem': 0, 'head': 2}
  return sorted(keys, key=lambda k: (order.get(k.split('_')[0], 1), k))


def entry_params(key: str) -> int:
  """Weights (parameters) an entry reads per call: what streams from memory at batch 1."""
  spec = parse_key(key)
  if spec['kind'] == 'block':
    return counting.layer_counts(spec)[0]
  if spec['kind'] == 'stem':
    return spec['kernel'] ** 2 * spec['cin'] * spec['cout'] + 2 * spec['cout']
  p, c = 0, spec['cin']
  for w, _ in spec['pre']:
    p, c = p + c * w + 2 * w, w
  for w, _ in spec['post']:
    p, c = p + c * w + w, w
  return p + c * spec['num_classes'] + spec['num_classes']


def parses(key: str) -> bool:
  """Whether `key` is a block, stem or head key."""
  try:
    parse_key(key)
    return True
  except SpaceError:
    return False
