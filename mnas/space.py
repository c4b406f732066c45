"""Search spaces: declarative sets of architectures (`mnas.architecture`), the controller's
view of them as categorical decisions.

A `Space` is a declarative set of stages, each with per-stage or per-layer options;
it enumerates its decisions as a flat list of categorical choices (the controller's
view), decodes choice indices into an architecture, encodes one back, knows its size
and samples uniformly. The architecture types are re-exported here (`from mnas.space
import Architecture, parse, ...`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from mnas.architecture import (ACTIVATIONS, BLOCK_TYPES, KERNELS, RESOLUTION_MULTIPLE,  # noqa: F401
                               SE_GATES, SE_RULES, STRIDES, Architecture, Head, Layer, Stem,
                               layer_row, make_divisible, parse, parse_block)
from mnas.errors import SpaceError

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
