r"""Measured latency lookup tables and the latency predictor.

The unit of a table is one *entry*: a block configuration at its input shape (in the spirit
of ProxylessNAS / Once-for-All latency tables), plus the stem and the head. Keys are readable
strings:

  ir_r32_i16_o24_k3_x64_s2_se0_relu_res0     block: TYPE, input Resolution, cIn, cOut,
                                             Kernel, eXpanded width, Stride, SE width (with
                                             its gate, `hsig` for se_rule v3, `sig` for
                                             mnas), activation, identity residual 0/1
  stem_r64_i3_o16_k3_hs                      stem: input resolution, 3 channels in, cout,
                                             kernel, activation
  head_r2_i64_c192hs_pool_c256hs_n1000       head: input resolution, cin, 1x1 convs before
                                             the pool, dense layers after it, classes

A table (`LatencyTable`) is a JSON file with metadata (target, CPU model, library versions,
threads, batch, date, schema version, space, width multiplier, resolution, ...), the entries
(milliseconds with their robust statistics) and a calibration (the fitted constant overhead).
Loading a table made for another target, schema or space raises `TableMismatchError`.
`build_table` measures every entry a space can produce (small spaces) or the entries a set of
architectures needs (large ones; `Predictor` can fill missing entries on demand); it saves
every few entries and resumes where it stopped.

`Predictor` sums an architecture's entries plus the fitted overhead, vectorised (an
architecture -> entry-index cache and one `np.add.reduceat`), thousands of architectures a
second. `validate` measures random architectures end to end on the same target and reports
RMSE, MAPE, the share within +-5% / +-10% and Spearman's rank correlation (as nn-Meter does).

Where a plain sum of isolated timings goes wrong (xla-cpu, found while validating):
  * per-call overhead: each jitted call pays Python/PJRT dispatch and argument handling
    (~15-50 us of CPU); an end-to-end model pays it once, a sum of single-call timings once
    per entry. Entries are therefore timed as the *marginal* cost of one more block inside
    one compiled program (`method='marginal'`, see `mnas.latency_targets`).
  * shared weights are cache-hot: a chain of copies of one block that share weights reads
    them from cache for every copy but the first; the copies get their own weights.
  * load from other processes inflates wall time; one thread pinned to one core measured
    in process CPU time (`clock='cpu'`) is steady on a busy machine, and end-to-end timings
    are taken in several shuffled rounds keeping each architecture's best round.
  * what remains is a per-model cost the entries do not see: an entry timed alone keeps its
    weights in cache, a whole network streams its weights from memory on every call. The
    calibration (a constant overhead, or `calibration_model='weights'`: overhead + ms per
    million weights) is fitted on a few end-to-end measurements.

Command line (`launch.py latency VERB --config experiments/latency.py --workdir DIR`):
build | validate | predict --arch A | export | import RESULTS.csv.
"""

from __future__ import annotations

import csv
import datetime
import itertools
import json
import math
import os
import re
import sys
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from mnas import latency_targets as targets
from mnas.space import Architecture, Layer, Space, SpaceError, make_divisible

SCHEMA_VERSION = 1
TARGETS = targets.TARGETS
GATES = {'v3': 'hsig', 'mnas': 'sig'}  # SE gate of each se_rule (hard sigmoid / sigmoid).
_RULE_OF_GATE = {v: k for k, v in GATES.items()}
_ACTS = 'relu6|relu|hs|swish'
STATISTICS = ('median', 'p25', 'p10', 'min', 'mean')


class TableMismatchError(ValueError):
  """A table was made for another target / schema / space / shape than asked for."""

  def __init__(self, field: str, expected: Any, found: Any, path: str | None = None):
    self.field, self.expected, self.found, self.path = field, expected, found, path
    where = f'latency table {path}' if path else 'latency table'
    super().__init__(f'{where} was made for {field}={found!r}, but {field}={expected!r} was asked '
                     f'for; build a table for it (`launch.py latency build`) or use another workdir')


class MissingEntriesError(ValueError):
  """An architecture needs entries the table does not have."""

  def __init__(self, keys: Sequence[str], path: str | None = None):
    self.keys = list(keys)
    shown = ', '.join(self.keys[:5]) + (f' and {len(self.keys) - 5} more' if len(self.keys) > 5 else '')
    super().__init__(f'latency table {path or ""} lacks {len(self.keys)} entries: {shown}; '
                     'measure them (`Predictor(..., fill=...)`, `build_table(..., archs=[...])` or '
                     '`launch.py latency build`)')


# ------------------------------------------------------------------------------------------
# Keys.
# ------------------------------------------------------------------------------------------

def block_key(row: Mapping[str, Any], se_rule: str) -> str:
  """Key of one row of `Architecture.describe_layers()`."""
  se = f'se{row["se"]}' + (GATES[se_rule] if row['se'] else '')
  return (f'{row["type"]}_r{row["input_resolution"]}_i{row["cin"]}_o{row["cout"]}'
          f'_k{row["kernel"]}_x{row["expanded"]}_s{row["stride"]}_{se}_{row["act"]}'
          f'_res{int(bool(row["residual"]))}')


def stem_key(resolution: int, cout: int, kernel: int, act: str) -> str:
  return f'stem_r{resolution}_i3_o{cout}_k{kernel}_{act}'


def head_key(resolution: int, cin: int, pre: Sequence[tuple[int, str]],
             post: Sequence[tuple[int, str]], num_classes: int) -> str:
  parts = [f'head_r{resolution}_i{cin}'] + [f'c{c}{a}' for c, a in pre] + ['pool']
  parts += [f'c{c}{a}' for c, a in post] + [f'n{num_classes}']
  return '_'.join(parts)


_BLOCK_RE = re.compile(rf'^(conv|ds|ir)_r(\d+)_i(\d+)_o(\d+)_k(\d+)_x(\d+)_s(\d+)_se(\d+)(hsig|sig)?'
                       rf'_({_ACTS})_res([01])$')
_STEM_RE = re.compile(rf'^stem_r(\d+)_i(\d+)_o(\d+)_k(\d+)_({_ACTS})$')
_HEAD_RE = re.compile(r'^head_r(\d+)_i(\d+)_(.*)_n(\d+)$')
_CONV_RE = re.compile(rf'^c(\d+)({_ACTS})$')


def parse_key(key: str) -> dict[str, Any]:
  """The entry spec of a key (what `latency_targets.entry_module` builds)."""
  if m := _BLOCK_RE.match(key):
    t, r, i, o, k, x, s, se, gate, act, res = m.groups()
    if int(se) and not gate:
      raise SpaceError(f'latency key {key!r}: an SE width needs its gate (hsig or sig)')
    return dict(kind='block', type=t, input_resolution=int(r), cin=int(i), cout=int(o),
                kernel=int(k), expanded=int(x), stride=int(s), se=int(se),
                se_rule=_RULE_OF_GATE.get(gate, 'v3'), act=act, residual=res == '1')
  if m := _STEM_RE.match(key):
    r, i, o, k, act = m.groups()
    return dict(kind='stem', input_resolution=int(r), cin=int(i), cout=int(o), kernel=int(k), act=act)
  if m := _HEAD_RE.match(key):
    r, i, body, n = m.groups()
    tokens = body.split('_')
    if tokens.count('pool') != 1:
      raise SpaceError(f'latency key {key!r}: a head key needs exactly one "pool"')
    cut = tokens.index('pool')
    convs = []
    for tok in tokens[:cut] + tokens[cut + 1:]:
      if not (c := _CONV_RE.match(tok)):
        raise SpaceError(f'latency key {key!r}: cannot parse head conv {tok!r} (expected cWIDTHACT)')
      convs.append((int(c.group(1)), c.group(2)))
    return dict(kind='head', input_resolution=int(r), cin=int(i), pre=convs[:cut],
                post=convs[cut:], num_classes=int(n))
  raise SpaceError(f'latency key {key!r}: not a block, stem or head key '
                   '(e.g. ir_r32_i16_o24_k3_x64_s2_se0_relu_res0, stem_r64_i3_o16_k3_hs, '
                   'head_r2_i64_c192hs_pool_c256hs_n1000)')


def _final_resolution(arch: Architecture) -> int:
  res = -(-arch.resolution // 2)
  for layer in arch.layers:
    res = -(-res // layer.stride)
  return res


def arch_keys(arch: Architecture, num_classes: int = 1000) -> list[str]:
  """The entries of an architecture, in order: stem, blocks, head."""
  keys = [stem_key(arch.resolution, arch.scaled(arch.stem.out), arch.stem.kernel, arch.stem.act)]
  keys += [block_key(row, arch.se_rule) for row in arch.describe_layers()]
  widths = arch.head_widths()
  npre = len(arch.head.pre)
  keys.append(head_key(_final_resolution(arch), arch.scaled(arch.layers[-1].out), widths[:npre],
                       widths[npre:], num_classes))
  return keys


def keys_for(archs: Iterable[Architecture], num_classes: int = 1000) -> list[str]:
  """The unique entries a set of architectures needs (first-seen order)."""
  return list(dict.fromkeys(k for a in archs for k in arch_keys(a, num_classes)))


def _layer_row(layer: Layer, cin: int, cout: int, res: int, w: float, se_rule: str) -> dict:
  """The describe_layers() row of `layer` entered with `cin` channels (see space.py)."""
  scaled = lambda c: make_divisible(c * w)
  if layer.type == 'ir':
    mid = (scaled(layer.expanded) if layer.expanded
           else (cin if layer.expansion == 1 else make_divisible(cin * layer.expansion)))
  else:
    mid = cout if layer.type == 'conv' else cin
  se = 0
  if layer.se_ratio:
    se = make_divisible(mid * layer.se_ratio) if se_rule == 'v3' else max(1, int(cin * layer.se_ratio))
  return dict(type=layer.type, kernel=layer.kernel, stride=layer.stride, input_resolution=res,
              cin=cin, expanded=mid, cout=cout, se=se, act=layer.act,
              residual=layer.skip and layer.stride == 1 and cin == cout)


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
  keys = {stem_key(r0, scaled(space.stem.out), space.stem.kernel, space.stem.act)}
  states = {(scaled(space.stem.out), -(-r0 // 2))}
  for st in space.stages:
    new_states = set()
    options = list(itertools.product(st.block, st.kernel, st.se_ratio, st.act, st.skip))
    for (cin, res), out in itertools.product(sorted(states), st.out):
      cout, res1 = scaled(out), -(-res // st.stride)
      for d in st.depth:
        new_states.add((cout, res1) if d > 0 else (cin, res))
      positions = [(cin, st.stride, res)] + ([(cout, 1, res1)] if max(st.depth) > 1 else [])
      for (ci, s, r), ((btype, e), k, ratio, act, skip) in itertools.product(positions, options):
        layer = Layer(btype, k, s, out, expansion=float(e), se_ratio=float(ratio), act=act, skip=skip)
        keys.add(block_key(_layer_row(layer, ci, cout, r, w, space.se_rule), space.se_rule))
    states = new_states
  probe = Architecture(layers=(Layer('ir', 3, 1, 8),), stem=space.stem, head=space.head,
                       width_multiplier=w, resolution=r0, se_rule=space.se_rule)
  widths, npre = probe.head_widths(), len(space.head.pre)
  for cin, res in states:
    keys.add(head_key(res, cin, widths[:npre], widths[npre:], num_classes))
  order = {'stem': 0, 'head': 2}
  return sorted(keys, key=lambda k: (order.get(k.split('_')[0], 1), k))


# ------------------------------------------------------------------------------------------
# The table.
# ------------------------------------------------------------------------------------------

def table_filename(target: str, space: str, resolution: int, width_multiplier: float) -> str:
  return f'latency_{target}_{space}_r{resolution}_w{width_multiplier:g}.json'


class LatencyTable:
  """Entries (key -> statistics in ms), metadata and calibration; a JSON file."""

  def __init__(self, meta: dict, entries: dict | None = None, calibration: dict | None = None,
               path: str | None = None):
    self.meta = dict(meta)
    self.meta.setdefault('schema', SCHEMA_VERSION)
    self.meta.setdefault('statistic', 'median')
    self.entries: dict[str, dict] = dict(entries or {})
    self.calibration: dict = dict(calibration or {})
    self.path = path

  # --- lookup -------------------------------------------------------------------------
  @property
  def target(self) -> str:
    return self.meta['target']

  @property
  def overhead_ms(self) -> float:
    return float(self.calibration.get('overhead_ms', 0.0))

  def ms(self, key: str) -> float:
    if key not in self.entries:
      raise MissingEntriesError([key], self.path)
    return float(self.entries[key]['ms'])

  def missing(self, keys: Iterable[str]) -> list[str]:
    return [k for k in dict.fromkeys(keys) if k not in self.entries]

  def __contains__(self, key: str) -> bool:
    return key in self.entries

  def __len__(self) -> int:
    return len(self.entries)

  def add(self, key: str, stats: Mapping[str, Any]) -> None:
    stats = dict(stats)
    if 'ms' not in stats:  # A marginal cost below the noise can come out negative: 0.
      stats['ms'] = max(0.0, float(stats[self.meta['statistic']]))
    self.entries[key] = stats

  # --- files --------------------------------------------------------------------------
  def to_json(self) -> dict:
    return dict(meta=self.meta, calibration=self.calibration,
                entries={k: self.entries[k] for k in sorted(self.entries)})

  def save(self, path: str | None = None) -> str:
    """Writes the table atomically (a partial table is a valid table)."""
    path = path or self.path
    if not path:
      raise ValueError('LatencyTable.save needs a path')
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    self.meta['updated'] = _now()
    self.meta['n_entries'] = len(self.entries)
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'w') as f:
      json.dump(self.to_json(), f, indent=1)
    os.replace(tmp, path)
    self.path = path
    return path

  @classmethod
  def load(cls, path: str, expect: Mapping[str, Any] | None = None) -> LatencyTable:
    """Reads a table; `expect` fields (target, space, ...) must match (TableMismatchError)."""
    with open(path) as f:
      obj = json.load(f)
    if not isinstance(obj, dict) or 'meta' not in obj or 'entries' not in obj:
      raise ValueError(f'{path} is not a latency table (expected a JSON object with "meta" and '
                       '"entries")')
    table = cls(obj['meta'], obj['entries'], obj.get('calibration'), path)
    table.check(dict(expect or {}, schema=SCHEMA_VERSION))
    return table

  def check(self, expect: Mapping[str, Any]) -> None:
    """Raises TableMismatchError on the first field of `expect` that differs."""
    for field in ('schema',) + _MATCH_FIELDS:
      if field in expect and expect[field] is not None:
        want, have = expect[field], self.meta.get(field)
        if isinstance(want, float) or isinstance(have, float):
          same = have is not None and math.isclose(float(want), float(have))
        else:
          same = want == have
        if not same:
          raise TableMismatchError(field, want, have, self.path)


# Fields a table must match to be extended or used (beyond the schema version).
_MATCH_FIELDS = ('target', 'space', 'width_multiplier', 'resolution', 'num_classes', 'batch_size',
                 'threads', 'depthwise_impl', 'statistic', 'method', 'clock')


def model_code_hash() -> str:
  """A fingerprint of the model code the entries run (models.py, ops.py)."""
  import hashlib
  h = hashlib.sha1()
  here = os.path.dirname(os.path.abspath(__file__))
  for name in ('models.py', 'ops.py'):
    try:
      with open(os.path.join(here, name), 'rb') as f:
        h.update(f.read())
    except OSError:
      pass
  return h.hexdigest()[:12]


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')


# ------------------------------------------------------------------------------------------
# Building.
# ------------------------------------------------------------------------------------------

_SETTINGS = ('repeats', 'warmup', 'method', 'chain', 'max_spread', 'remeasure', 'min_seconds',
             'batch_size', 'depthwise_impl', 'seed', 'clock')


def measure_robust(measure: Callable[[dict], dict], settings: dict) -> dict:
  """Measures, and re-measures while the spread (IQR / median) exceeds `max_spread`.

  Keeps the attempt with the lowest median (load from other processes only ever adds
  time), records how many attempts it took.
  """
  best, attempts = None, 0
  for attempts in range(1, int(settings.get('remeasure', 2)) + 2):
    stats = measure(settings)
    if best is None or stats['median'] < best['median']:
      best = stats
    if targets.spread(stats) <= settings.get('max_spread', 0.1):
      break
  best = dict(best, attempts=attempts, spread=round(targets.spread(best), 4))
  return best


class Builder:
  """Measures table entries on a target, saving the table as it goes (resumable)."""

  def __init__(self, table: LatencyTable, runner=None, log_path: str | None = None,
               progress: bool = True, save_every: int = 10):
    self.table, self.progress, self.save_every = table, progress, save_every
    m = table.meta
    self._runner = runner
    self._own_runner = runner is None
    self._log_path = log_path
    self.settings = {k: m[k] for k in _SETTINGS if k in m}

  @property
  def runner(self):
    if self._runner is None:
      m = self.table.meta
      self._runner = targets.open_runner(m['target'], m['threads'], m['batch_size'],
                                         m['depthwise_impl'], self._log_path, m.get('pin', True))
      info = self._runner.info
      for k in ('cpu', 'cpu_count', 'cpu_affinity', 'python', 'platform', 'jax', 'jaxlib', 'flax',
                'numpy', 'ai_edge_litert', 'litert_converter', 'device_kind', 'xla_flags',
                'devices'):
        if k in info:
          m[k] = info[k]
    return self._runner

  def close(self) -> None:
    if self._runner is not None and self._own_runner:
      self._runner.close()
      self._runner = None

  def measure(self, keys: Sequence[str], desc: str = 'latency') -> int:
    """Measures the `keys` the table lacks; returns how many were measured."""
    todo = self.table.missing(keys)
    if not todo:
      return 0
    runner = self.runner
    bar = _progress(len(todo), desc, self.progress)
    t0 = time.time()
    try:
      for i, key in enumerate(todo):
        spec = parse_key(key)
        stats = measure_robust(lambda s: runner.measure_entry(spec, s), self.settings)
        self.table.add(key, stats)
        bar.set_postfix_str(f'{key[:40]} {self.table.entries[key]["ms"]:.3f} ms', refresh=False)
        bar.update(1)
        if self.table.path and (i + 1) % self.save_every == 0:
          self.table.save()
    finally:
      bar.close()
      self.table.meta['build_seconds'] = round(self.table.meta.get('build_seconds', 0.0)
                                               + time.time() - t0, 1)
      if self.table.path:
        self.table.save()
    return len(todo)

  def measure_archs(self, archs: Sequence[Architecture], num_classes: int,
                    desc: str = 'end to end', rounds: int = 3) -> list[dict]:
    """End-to-end statistics of whole architectures on the table's target.

    Measured in `rounds` passes over all architectures in shuffled order (each compiled
    once), keeping per architecture the round with the lowest median: a burst of load from
    other processes then spoils one round of a few architectures, not an architecture.
    """
    best: list[dict | None] = [None] * len(archs)
    rng = np.random.default_rng(0)
    settings = dict(self.settings, method='single')
    bar = _progress(len(archs) * rounds, desc, self.progress)
    try:
      for r in range(rounds):
        for i in (rng.permutation(len(archs)) if r else range(len(archs))):
          stats = measure_robust(lambda s: self.runner.measure_arch(str(archs[i]), num_classes, s),
                                 dict(settings, remeasure=0) if r else settings)
          old = best[i]
          medians = (old or {}).get('round_medians', []) + [round(stats['median'], 5)]
          if old is None or stats['median'] < old['median']:
            best[i] = dict(stats, compile_s=(old or stats).get('compile_s', 0.0))
          best[i]['round_medians'] = medians
          bar.update(1)
    finally:
      bar.close()
    for stats in best:
      stats['ms'] = float(stats[self.table.meta['statistic']])
    return best


def _progress(total: int, desc: str, enabled: bool):
  from tqdm import tqdm
  return tqdm(total=total, desc=desc, unit='entry' if 'latency' in desc else 'arch',
              disable=not enabled, dynamic_ncols=True, smoothing=0.1)


def new_table(space: Space | str, target: str = 'xla-cpu', *, width_multiplier: float | None = None,
              resolution: int | None = None, num_classes: int = 1000, threads: int = 1,
              batch_size: int = 1, repeats: int = 30, warmup: int = 5, method: str = 'marginal',
              chain: int = 2, max_spread: float = 0.2, remeasure: int = 2,
              min_seconds: float = 0.05, statistic: str = 'median', depthwise_impl: str = 'auto',
              clock: str = 'auto', pin: bool = True, seed: int = 0,
              path: str | None = None) -> LatencyTable:
  """An empty table with its metadata (see `build_table` for the arguments)."""
  if target not in TARGETS:
    raise ValueError(f'unknown latency target {target!r}; known: {TARGETS}')
  if statistic not in STATISTICS:
    raise ValueError(f'unknown statistic {statistic!r}; known: {STATISTICS}')
  if method not in ('marginal', 'single'):
    raise ValueError(f"unknown method {method!r}; known: ('marginal', 'single')")
  clock = targets.default_clock(target, threads) if clock == 'auto' else clock
  if clock not in targets.CLOCKS:
    raise ValueError(f'unknown clock {clock!r}; known: {tuple(targets.CLOCKS)} or auto')
  name = space if isinstance(space, str) else space.name
  if not isinstance(space, str):
    width_multiplier = float(width_multiplier or space.width_multiplier[0])
    resolution = int(resolution or space.resolution[0])
  meta = dict(schema=SCHEMA_VERSION, target=target, space=name,
              width_multiplier=None if width_multiplier is None else float(width_multiplier),
              resolution=resolution, num_classes=num_classes, threads=threads,
              batch_size=batch_size, dtype='float32', unit='ms', statistic=statistic,
              method=method, chain=chain if method == 'marginal' else 1, repeats=repeats,
              warmup=warmup, max_spread=max_spread, remeasure=remeasure, min_seconds=min_seconds,
              depthwise_impl=depthwise_impl, clock=clock, pin=bool(pin), seed=seed,
              model_code=model_code_hash(), created=_now(), complete=False,
              cpu=targets.cpu_model())
  return LatencyTable(meta, path=path)


def build_table(space: Space, target: str = 'xla-cpu', *, path: str | None = None,
                archs: Sequence[Architecture] | None = None, keys: Sequence[str] | None = None,
                width_multiplier: float | None = None, resolution: int | None = None,
                num_classes: int = 1000, threads: int = 1, batch_size: int = 1, repeats: int = 30,
                warmup: int = 5, method: str = 'marginal', chain: int = 2,
                max_spread: float = 0.2, remeasure: int = 2, min_seconds: float = 0.05,
                statistic: str = 'median', depthwise_impl: str = 'auto', clock: str = 'auto',
                pin: bool = True, calibration_archs: int = 8, calibration_model: str = 'constant',
                seed: int = 0, progress: bool = True, save_every: int = 10,
                runner=None) -> LatencyTable:
  """Builds (or resumes, or extends) the latency table of `space` on `target`.

  Measures every entry of the space (`space_keys`) unless `archs` or `keys` narrow it to
  the entries those architectures need. An existing table at `path` is loaded (its
  metadata must match: TableMismatchError) and only missing entries are measured; the table
  is saved every `save_every` entries. Then `calibration_archs` random architectures of the
  space are measured end to end and the constant overhead (median of measured - sum of
  entries) is stored in the table's calibration.

  Measurement: `warmup` calls, `repeats` timed calls (more while under `min_seconds`),
  `method` 'marginal' (in-program cost: a chain of `chain` copies minus one copy) or
  'single'; entries whose spread (IQR / median) exceeds `max_spread` are re-measured up to
  `remeasure` times; `statistic` of the samples is the entry's `ms`. `clock` 'cpu' (the
  default for one CPU thread: process CPU time, steady on a loaded machine) or 'wall';
  `pin` binds the measuring process to `threads` CPUs.
  """
  table = new_table(space, target, width_multiplier=width_multiplier, resolution=resolution,
                    num_classes=num_classes, threads=threads, batch_size=batch_size,
                    repeats=repeats, warmup=warmup, method=method, chain=chain,
                    max_spread=max_spread, remeasure=remeasure, min_seconds=min_seconds,
                    statistic=statistic, depthwise_impl=depthwise_impl, clock=clock, pin=pin,
                    seed=seed, path=path)
  if path and os.path.exists(path):
    old = LatencyTable.load(path, expect={f: table.meta[f] for f in _MATCH_FIELDS})
    old.meta.update({k: table.meta[k] for k in ('repeats', 'warmup', 'max_spread', 'remeasure',
                                                 'min_seconds', 'chain')})
    table = old
  w, r = table.meta['width_multiplier'], table.meta['resolution']
  table.meta['scope'] = 'all' if archs is None and keys is None else 'architectures'
  if keys is None:
    keys = (keys_for(archs, num_classes) if archs is not None
            else space_keys(space, w, r, num_classes))
  cal = sample_archs(space, calibration_archs, seed=10_000 + seed, width_multiplier=w,
                     resolution=r) if calibration_archs else []
  keys = list(dict.fromkeys(list(keys) + keys_for(cal, num_classes)))
  log_path = os.path.splitext(path)[0] + '.worker.log' if path else None
  builder = Builder(table, runner=runner, log_path=log_path, progress=progress,
                    save_every=save_every)
  try:
    builder.measure(keys, desc=f'latency {space.name} {target}')
    if cal and table.calibration.get('archs') != [str(a) for a in cal]:
      calibrate(table, cal, builder.measure_archs(cal, num_classes, desc='calibration'),
                calibration_model)
    table.meta['complete'] = not table.missing(keys)
    if table.path:
      table.save()
  finally:
    builder.close()
  return table


def sample_archs(space: Space, n: int, seed: int = 0, width_multiplier: float | None = None,
                 resolution: int | None = None) -> list[Architecture]:
  """`n` distinct uniform samples of `space` at one width multiplier and resolution."""
  rng = np.random.default_rng(seed)
  out, seen = [], set()
  for _ in range(50 * n):
    if len(out) == n:
      break
    a = space.sample(rng)
    kw = {}
    if width_multiplier:
      kw['width_multiplier'] = float(width_multiplier)
    if resolution:
      kw['resolution'] = int(resolution)
    a = a.replace(**kw) if kw else a
    if a not in seen:
      seen.add(a)
      out.append(a)
  return out


def calibrate(table: LatencyTable, archs: Sequence[Architecture], measured: Sequence[Any],
              model: str = 'constant') -> dict:
  """Fits the table's calibration on end-to-end measurements of `archs`.

  'constant': the overhead is the median over `archs` of measured - sum of entries; see
  `Predictor.fit` for 'linear' and 'weights'.
  """
  ms = np.array([m['ms'] if isinstance(m, dict) else float(m) for m in measured], np.float64)
  base = Predictor(table, overhead_ms=0.0, scale=1.0, per_mparam_ms=0.0)
  sums = base.sum_batch(archs)
  p = base.fit(archs, ms, model=model)
  table.calibration = dict(model=model, overhead_ms=p.overhead_ms, scale=p.scale,
                           per_mparam_ms=p.per_mparam_ms, archs=[str(a) for a in archs],
                           measured_ms=ms.round(5).tolist(), sum_ms=sums.round(5).tolist(),
                           date=_now())
  return table.calibration


# ------------------------------------------------------------------------------------------
# The predictor.
# ------------------------------------------------------------------------------------------

def entry_params(key: str) -> int:
  """Weights (parameters) an entry reads per call: what streams from memory at batch 1."""
  from mnas import counting
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


OVERHEAD_MODELS = ('constant', 'linear', 'weights')


class Predictor:
  """Predicted latency (ms) = scale * (sum of the entries of an architecture) + overhead
  [+ per_mparam_ms * (millions of weights of the architecture)].

  `overhead_ms` (and `scale`, `per_mparam_ms`) default to the table's calibration; `fit`
  refits them on end-to-end measurements. `fill(keys)`, when given, is called with the
  entries an architecture needs that the table lacks (e.g. `Builder.measure`) before
  predicting; without it those raise MissingEntriesError.
  """

  def __init__(self, table: LatencyTable, overhead_ms: float | None = None,
               scale: float | None = None, num_classes: int | None = None,
               fill: Callable[[list[str]], Any] | None = None,
               per_mparam_ms: float | None = None):
    self.table = table
    cal = table.calibration
    self.overhead_ms = table.overhead_ms if overhead_ms is None else float(overhead_ms)
    self.scale = float(cal.get('scale', 1.0) if scale is None else scale)
    self.per_mparam_ms = float(cal.get('per_mparam_ms', 0.0) if per_mparam_ms is None
                               else per_mparam_ms)
    self.num_classes = int(num_classes or table.meta.get('num_classes') or 1000)
    self.fill = fill
    self._cache: dict[Architecture, np.ndarray] = {}
    self._params: dict[str, float] = {}
    self._reindex()

  def _reindex(self) -> None:
    keys = list(self.table.entries)
    self._index = {k: i for i, k in enumerate(keys)}
    self._ms = np.array([float(self.table.entries[k]['ms']) for k in keys], np.float64)
    if self.per_mparam_ms:
      self._mparams = np.array([self._entry_mparams(k) for k in keys], np.float64)

  def _entry_mparams(self, key: str) -> float:
    if key not in self._params:
      self._params[key] = entry_params(key) / 1e6
    return self._params[key]

  def keys(self, arch: Architecture) -> list[str]:
    return arch_keys(arch, self.num_classes)

  def indices(self, arch: Architecture) -> np.ndarray:
    """Entry indices of `arch` (cached per architecture)."""
    idx = self._cache.get(arch)
    if idx is None:
      keys = self.keys(arch)
      if any(k not in self._index for k in keys):
        missing = self.table.missing(keys)
        if missing and self.fill is not None:
          self.fill(missing)
          missing = self.table.missing(keys)
        if missing:
          raise MissingEntriesError(missing, self.table.path)
        self._reindex()
      idx = np.fromiter((self._index[k] for k in keys), np.int64, len(keys))
      self._cache[arch] = idx
    return idx

  def _gather(self, archs: Sequence[Architecture]) -> tuple[np.ndarray, np.ndarray]:
    if self.fill is not None:  # Fill every missing entry of the batch in one go.
      need = [a for a in archs if a not in self._cache]
      if need:
        missing = self.table.missing(keys_for(need, self.num_classes))
        if missing:
          self.fill(missing)
          self._reindex()
    idx = [self.indices(a) for a in archs]
    lengths = np.fromiter((len(i) for i in idx), np.int64, len(idx))
    return np.concatenate(idx), np.concatenate([[0], np.cumsum(lengths)[:-1]])

  def sum_batch(self, archs: Sequence[Architecture]) -> np.ndarray:
    """Plain sums of entries, one per architecture (vectorised)."""
    if not len(archs):
      return np.zeros(0)
    flat, starts = self._gather(archs)
    return np.add.reduceat(self._ms[flat], starts)

  def mparams_batch(self, archs: Sequence[Architecture]) -> np.ndarray:
    """Millions of weights of each architecture (sum over its entries)."""
    if not len(archs):
      return np.zeros(0)
    flat, starts = self._gather(archs)
    if not self.per_mparam_ms:
      self.per_mparam_ms, keep = 1.0, self.per_mparam_ms  # Build the vector once.
      self._reindex()
      self.per_mparam_ms = keep
    return np.add.reduceat(self._mparams[flat], starts)

  def predict_batch(self, archs: Sequence[Architecture]) -> np.ndarray:
    """Predicted milliseconds of many architectures (float64 array)."""
    out = self.scale * self.sum_batch(archs) + self.overhead_ms
    if self.per_mparam_ms:
      out = out + self.per_mparam_ms * self.mparams_batch(archs)
    return out

  def predict(self, arch: Architecture) -> float:
    return float(self.predict_batch([arch])[0])

  __call__ = predict

  def breakdown(self, arch: Architecture) -> list[tuple[str, float]]:
    """(key, scale * ms [+ per_mparam_ms * Mparams]) of every entry, then ('overhead', ms)."""
    self.indices(arch)
    return [(k, self.scale * self.table.ms(k) + self.per_mparam_ms * self._entry_mparams(k))
            for k in self.keys(arch)] + [('overhead', self.overhead_ms)]

  def fit(self, archs: Sequence[Architecture], measured_ms: Sequence[float],
          linear: bool = True, model: str | None = None) -> Predictor:
    """A predictor refitted on end-to-end measurements (least squares).

    `model`: 'constant' (sum + overhead), 'linear' (scale * sum + overhead; the default
    with `linear=True`), 'weights' (sum + overhead + per_mparam_ms * Mparams: the cost of
    streaming weights that stay cache-hot when an entry is timed alone).
    """
    model = model or ('linear' if linear else 'constant')
    if model not in OVERHEAD_MODELS:
      raise ValueError(f'unknown model {model!r}; known: {OVERHEAD_MODELS}')
    y = np.asarray(measured_ms, np.float64)
    s = self.sum_batch(archs)
    scale, per_mparam = 1.0, 0.0
    if model == 'linear' and len(y) >= 3 and np.ptp(s) > 0:
      scale, overhead = np.polyfit(s, y, 1)
    elif model == 'weights' and len(y) >= 3:
      w = self.mparams_batch(archs)
      a = np.stack([np.ones_like(w), w], 1)
      (overhead, per_mparam), *_ = np.linalg.lstsq(a, y - s, rcond=None)
    else:
      overhead = float(np.median(y - s))
    return Predictor(self.table, overhead_ms=float(overhead), scale=float(scale),
                     num_classes=self.num_classes, fill=self.fill,
                     per_mparam_ms=float(per_mparam))


def fit(table: LatencyTable, measured: Mapping[Any, float] | Sequence[tuple[Any, float]],
        linear: bool = True) -> Predictor:
  """A predictor with a linear correction fitted on end-to-end measurements.

  `measured`: {architecture or its string: ms} or [(architecture, ms), ...].
  """
  from mnas.space import parse
  items = list(measured.items()) if isinstance(measured, Mapping) else list(measured)
  archs = [a if isinstance(a, Architecture) else parse(a) for a, _ in items]
  return Predictor(table).fit(archs, [float(m) for _, m in items], linear=linear)


# ------------------------------------------------------------------------------------------
# Validation.
# ------------------------------------------------------------------------------------------

def metrics(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
  """RMSE (ms), MAPE (%), share within +-5% / +-10%, Spearman and Pearson correlations."""
  from scipy import stats
  p, m = np.asarray(predicted, np.float64), np.asarray(measured, np.float64)
  rel = (p - m) / m
  out = dict(n=int(m.size), rmse_ms=float(np.sqrt(np.mean((p - m) ** 2))),
             mape_pct=float(100 * np.mean(np.abs(rel))), within_5pct=float(np.mean(np.abs(rel) <= 0.05)),
             within_10pct=float(np.mean(np.abs(rel) <= 0.10)), bias_pct=float(100 * np.mean(rel)),
             max_abs_error_pct=float(100 * np.max(np.abs(rel))))
  if m.size > 2 and np.ptp(m) > 0 and np.ptp(p) > 0:
    out['spearman'] = float(stats.spearmanr(p, m).statistic)
    out['pearson'] = float(stats.pearsonr(p, m).statistic)
  return out


def scatter_figure(predicted, measured, title: str):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
  p, m = np.asarray(predicted), np.asarray(measured)
  lo, hi = float(min(p.min(), m.min())) * 0.95, float(max(p.max(), m.max())) * 1.05
  xs = np.linspace(lo, hi, 2)
  ax.plot(xs, xs, 'k-', lw=1, label='y = x')
  ax.fill_between(xs, xs * 0.9, xs * 1.1, color='tab:green', alpha=0.12, label='+-10%')
  ax.fill_between(xs, xs * 0.95, xs * 1.05, color='tab:green', alpha=0.2, label='+-5%')
  ax.scatter(m, p, s=14, color='tab:blue', alpha=0.8, zorder=3)
  ax.set_xlim(lo, hi)
  ax.set_ylim(lo, hi)
  ax.set_xlabel('measured latency (ms)')
  ax.set_ylabel('predicted latency (ms)')
  ax.set_title(title, fontsize=9)
  ax.legend(loc='upper left', fontsize=8)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  return fig


def validate(table: LatencyTable, space: Space, n: int = 100, seed: int = 1, *,
             workdir: str | None = None, runner=None, progress: bool = True,
             archs: Sequence[Architecture] | None = None, recalibrate: bool = True,
             calibration_archs: int | None = None, calibration_model: str | None = None) -> dict:
  """Measures `n` random architectures end to end and compares them with the predictor.

  Missing entries of those architectures are measured first (and saved into the table).
  Returns (and, with `workdir`, writes as JSON, PNG and TensorBoard) the report: metrics of
  the predictor (sum of entries + calibrated overhead), of the plain sum, and of a linear
  correction fitted on half the architectures and evaluated on the other half.
  """
  meta = table.meta
  archs = list(archs) if archs is not None else sample_archs(
      space, n, seed=seed, width_multiplier=meta.get('width_multiplier'),
      resolution=meta.get('resolution'))
  num_classes = int(meta.get('num_classes', 1000))
  log_path = (os.path.splitext(table.path)[0] + '.worker.log') if table.path else None
  builder = Builder(table, runner=runner, log_path=log_path, progress=progress)
  t0 = time.time()
  try:
    builder.measure(keys_for(archs, num_classes), desc=f'latency {space.name} {meta["target"]}')
    if recalibrate or not table.calibration:
      # The end-to-end cost the entries miss (weights streaming from memory) moves with the
      # machine's state (other processes' memory traffic): calibrate now, on architectures
      # disjoint from the validation ones, as a user would before trusting the predictor.
      n_cal = int(calibration_archs or len(table.calibration.get('archs', [])) or 5)
      model = calibration_model or table.calibration.get('model') or 'constant'
      cal = sample_archs(space, n_cal, seed=10_000 + int(meta.get('seed', 0)),
                         width_multiplier=meta.get('width_multiplier'), resolution=meta.get('resolution'))
      builder.measure(keys_for(cal, num_classes), desc='latency calibration entries')
      calibrate(table, cal, builder.measure_archs(cal, num_classes, desc='calibration'), model)
      if table.path:
        table.save()
    measured_stats = builder.measure_archs(archs, num_classes, desc='validate end to end')
  finally:
    builder.close()
  measured = np.array([s['ms'] for s in measured_stats])
  pred = Predictor(table)
  predicted = pred.predict_batch(archs)
  sums = pred.sum_batch(archs)
  half = len(archs) // 2
  report = dict(
      target=meta['target'], space=space.name, n=len(archs), seed=seed,
      resolution=meta.get('resolution'), width_multiplier=meta.get('width_multiplier'),
      table=table.path, table_entries=len(table), calibration={
          k: table.calibration.get(k) for k in ('model', 'overhead_ms', 'scale', 'per_mparam_ms')},
      statistic=meta.get('statistic'), method=meta.get('method'), threads=meta.get('threads'),
      batch_size=meta.get('batch_size'), cpu=meta.get('cpu'), date=_now(),
      seconds=round(time.time() - t0, 1),
      predictor=metrics(predicted, measured),
      plain_sum=metrics(sums, measured),
      measured_spread_median=float(np.median([targets.spread(s) for s in measured_stats])),
  )
  if half >= 3:  # Corrections fitted on one half of the architectures, tested on the other.
    for model in OVERHEAD_MODELS:
      fitted = pred.fit(archs[:half], measured[:half], model=model)
      report[f'{model}_fit_holdout'] = dict(
          metrics(fitted.predict_batch(archs[half:]), measured[half:]), scale=fitted.scale,
          overhead_ms=fitted.overhead_ms, per_mparam_ms=fitted.per_mparam_ms)
  mparams = pred.mparams_batch(archs)
  report['architectures'] = [dict(arch=str(a), measured_ms=round(float(m), 5),
                                  predicted_ms=round(float(p), 5), sum_ms=round(float(s), 5),
                                  mparams=round(float(w), 5), spread=round(targets.spread(st), 4),
                                  round_medians=st.get('round_medians'))
                             for a, m, p, s, w, st in zip(archs, measured, predicted, sums, mparams,
                                                          measured_stats)]
  if workdir:
    _write_validation(report, predicted, measured, workdir)
  return report


def _write_validation(report: dict, predicted, measured, workdir: str) -> None:
  os.makedirs(workdir, exist_ok=True)
  stem = f'validation_{report["target"]}_{report["space"]}_r{report["resolution"]}'
  r = report['predictor']
  title = (f'{report["space"]} on {report["target"]} (n={report["n"]}): MAPE {r["mape_pct"]:.1f}%, '
           f'+-10% {100 * r["within_10pct"]:.0f}%, Spearman {r.get("spearman", float("nan")):.3f}')
  fig = scatter_figure(predicted, measured, title)
  report['plot'] = os.path.join(workdir, stem + '.png')
  fig.savefig(report['plot'])
  report['report'] = os.path.join(workdir, stem + '.json')
  try:
    from tensorboardX import SummaryWriter
    tb = os.path.join(workdir, 'tensorboard')
    with SummaryWriter(tb) as w:
      w.add_figure(f'latency/{report["target"]}/predicted_vs_measured', fig, global_step=0)
      for k in ('rmse_ms', 'mape_pct', 'within_5pct', 'within_10pct', 'spearman'):
        if k in r:
          w.add_scalar(f'latency/{report["target"]}/{k}', r[k], 0)
    report['tensorboard'] = tb
  except ImportError:  # pragma: no cover
    pass
  import matplotlib.pyplot as plt
  plt.close(fig)
  with open(report['report'], 'w') as f:
    json.dump(report, f, indent=1)


# ------------------------------------------------------------------------------------------
# Another device: export the entries as .tflite files, import the timings back.
# ------------------------------------------------------------------------------------------

BENCHMARK_SCRIPT = r'''#!/bin/sh
# Times every .tflite of this folder with LiteRT's benchmark tool on an attached phone and
# writes results.csv (key,ms) for `launch.py latency import`.
#   BENCHMARK=/data/local/tmp/benchmark_model THREADS=1 sh run_benchmarks.sh
set -e
BENCHMARK=${BENCHMARK:-/data/local/tmp/benchmark_model}
THREADS=${THREADS:-1}
adb push ./*.tflite /data/local/tmp/mnas_latency/ >/dev/null
echo "key,ms" > results.csv
for f in *.tflite; do
  key=${f%.tflite}
  us=$(adb shell "$BENCHMARK --graph=/data/local/tmp/mnas_latency/$f --num_threads=$THREADS \
       --use_xnnpack=true --warmup_runs=10 --num_runs=100" | sed -n 's/.*Inference (avg): \([0-9.e+]*\).*/\1/p' | tail -1)
  echo "$key,$(echo "$us / 1000" | bc -l)" >> results.csv
done
'''


def export_entries(keys: Sequence[str], out_dir: str, meta: Mapping[str, Any] | None = None,
                   depthwise_impl: str = 'auto', progress: bool = True) -> str:
  """Writes KEY.tflite for every key plus manifest.json and run_benchmarks.sh; returns the manifest."""
  os.makedirs(out_dir, exist_ok=True)
  manifest_path = os.path.join(out_dir, 'manifest.json')
  manifest = dict(schema=SCHEMA_VERSION, meta=dict(meta or {}), created=_now(), entries=[],
                  instructions='Time every KEY.tflite (batch 1, float32) on the device, e.g. '
                               'with run_benchmarks.sh, and import a CSV of key,ms '
                               '(`launch.py latency import RESULTS.csv`).')
  if os.path.exists(manifest_path):
    with open(manifest_path) as f:
      manifest['entries'] = json.load(f).get('entries', [])
  done = {e['key'] for e in manifest['entries']}
  todo = [k for k in dict.fromkeys(keys) if k not in done]
  bar = _progress(len(todo), 'latency export', progress)
  try:
    for i, key in enumerate(todo):
      spec = parse_key(key)
      data = targets.entry_tflite(spec, depthwise_impl)
      fname = key + '.tflite'
      with open(os.path.join(out_dir, fname), 'wb') as f:
        f.write(data)
      manifest['entries'].append(dict(key=key, file=fname, bytes=len(data),
                                      input_shape=[1, spec['input_resolution'],
                                                   spec['input_resolution'], spec['cin']]))
      bar.update(1)
      if (i + 1) % 20 == 0:
        _write_json(manifest_path, manifest)
  finally:
    bar.close()
    _write_json(manifest_path, manifest)
  with open(os.path.join(out_dir, 'run_benchmarks.sh'), 'w') as f:
    f.write(BENCHMARK_SCRIPT)
  return manifest_path


def _write_json(path: str, obj: Any) -> None:
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=1)
  os.replace(tmp, path)


def read_results(path: str) -> dict[str, float]:
  """key -> ms from a CSV (key,ms with an optional header) or JSON ({key: ms} or entries)."""
  if path.endswith('.json'):
    with open(path) as f:
      obj = json.load(f)
    obj = obj.get('entries', obj) if isinstance(obj, dict) else obj
    if isinstance(obj, list):
      obj = {e['key']: e['ms'] for e in obj}
    return {k: float(v['ms'] if isinstance(v, dict) else v) for k, v in obj.items()}
  out = {}
  with open(path, newline='') as f:
    for row in csv.reader(f):
      if not row or row[0].startswith('#'):
        continue
      try:
        out[row[0].strip()] = float(row[1])
      except (ValueError, IndexError):
        if row[0].strip().lower() != 'key':
          raise ValueError(f'{path}: cannot read row {row!r}; expected key,ms')
  return out


def import_results(results: Mapping[str, float], meta: Mapping[str, Any], path: str | None = None,
                   table: LatencyTable | None = None) -> LatencyTable:
  """A table (new, or `table` extended) of device timings; every key must parse."""
  if table is None:
    table = LatencyTable(dict(meta, schema=SCHEMA_VERSION, created=_now(), method='single',
                              statistic='median', unit='ms'), path=path)
  bad = [k for k in results if not _parses(k)]
  if bad:
    raise ValueError(f'{len(bad)} imported keys are not latency keys, e.g. {bad[:3]}')
  for k, v in results.items():
    if not v > 0:
      raise ValueError(f'imported entry {k!r}: {v} ms is not a positive time')
    table.add(k, dict(ms=float(v), median=float(v), imported=True))
  if path:
    table.save(path)
  return table


def _parses(key: str) -> bool:
  try:
    parse_key(key)
    return True
  except SpaceError:
    return False


# ------------------------------------------------------------------------------------------
# Search and command line.
# ------------------------------------------------------------------------------------------

def _cfg(config, name, default=None):
  try:
    v = config.get(name, default) if hasattr(config, 'get') else getattr(config, name, default)
  except Exception:
    v = default
  return default if v is None else v


def _resolve(config, space: Space) -> tuple[str, float, int]:
  target = _cfg(config, 'target', 'xla-cpu')
  w = float(_cfg(config, 'width_multiplier', 0) or space.width_multiplier[0])
  r = int(_cfg(config, 'resolution', 0) or space.resolution[0])
  return target, w, r


def table_path(config, space: Space, workdir: str) -> str:
  """`config.table` when set, else workdir/latency_TARGET_SPACE_rRES_wALPHA.json."""
  if _cfg(config, 'table', ''):
    return _cfg(config, 'table')
  target, w, r = _resolve(config, space)
  return os.path.join(workdir, table_filename(target, space.name, r, w))


def _build_kwargs(config) -> dict:
  defaults = dict(num_classes=1000, threads=1, batch_size=1, repeats=30, warmup=5,
                  method='marginal', chain=2, max_spread=0.2, remeasure=2, min_seconds=0.05,
                  statistic='median', depthwise_impl='auto', clock='auto', pin=True,
                  calibration_archs=8, calibration_model='constant', seed=0, save_every=10)
  return {k: type(v)(_cfg(config, k, v)) for k, v in defaults.items()}


def _scope(config, space: Space, w: float, r: int, default: str = 'auto'):
  """What a build covers: (scope, architectures or None for every entry of the space).

  'all' every entry of the space; 'sampled' the entries of `build_archs` random
  architectures; 'on_demand' only the calibration architectures (the predictor measures the
  rest when asked); 'auto' all when the space has at most `max_full_entries`, else sampled.
  """
  scope = _cfg(config, 'scope', default)
  if scope == 'auto':
    n = len(space_keys(space, w, r, int(_cfg(config, 'num_classes', 1000))))
    scope = 'all' if n <= int(_cfg(config, 'max_full_entries', 2000)) else 'sampled'
  if scope == 'all':
    return scope, None
  if scope == 'on_demand':
    return scope, []
  if scope == 'sampled':
    return scope, sample_archs(space, int(_cfg(config, 'build_archs', 100)),
                               seed=int(_cfg(config, 'seed', 0)) + 20_000, width_multiplier=w,
                               resolution=r)
  raise ValueError(f"config.scope={scope!r}; expected 'all', 'sampled', 'on_demand' or 'auto'")


def load_or_build(config, space: Space, workdir: str, progress: bool = True,
                  default_scope: str = 'auto') -> LatencyTable:
  """The table of `config` for `space`, built (or its interrupted build resumed) if needed."""
  target, w, r = _resolve(config, space)
  os.makedirs(workdir, exist_ok=True)
  path = table_path(config, space, workdir)
  kw = _build_kwargs(config)
  expect = dict(target=target, space=space.name, width_multiplier=w, resolution=r,
                num_classes=kw['num_classes'], batch_size=kw['batch_size'], threads=kw['threads'])
  if os.path.exists(path):
    table = LatencyTable.load(path, expect=expect)
    if table.meta.get('model_code') not in (None, model_code_hash()):
      from absl import logging
      logging.warning('latency table %s was measured with other model code (models.py/ops.py '
                      'changed since); rebuild it if the change affects speed', path)
    if table.meta.get('complete') or target not in targets.MEASURABLE:
      return table
  elif target not in targets.MEASURABLE:
    raise FileNotFoundError(f'no latency table at {path}: target {target!r} is timed on the '
                            'device (`latency export`, then `latency import RESULTS.csv`)')
  scope, archs = _scope(config, space, w, r, default_scope)
  table = build_table(space, target, path=path, archs=archs, width_multiplier=w, resolution=r,
                      progress=progress, **kw)
  table.meta['scope'] = scope
  table.save()
  return table


def filler(table: LatencyTable, progress: bool = True) -> Callable[[list[str]], None] | None:
  """A `Predictor.fill` that measures missing entries on the table's target and saves them."""
  if table.target not in targets.MEASURABLE:
    return None
  log = os.path.splitext(table.path)[0] + '.worker.log' if table.path else None
  state = {}

  def fill(keys):
    if 'builder' not in state:  # One worker for the predictor's lifetime.
      state['builder'] = Builder(table, log_path=log, progress=progress)
    state['builder'].measure(keys, desc='latency (missing entries)')
  return fill


def predictor_for_search(config, space: Space, workdir: str, progress: bool = True) -> Predictor:
  """The search's predictor: `config.table` or the table in `workdir` (built on first use;
  by default only the calibration entries, `config.scope` to change it), filling the entries
  of new candidates on demand on the table's target."""
  table = load_or_build(config, space, workdir, progress=progress, default_scope='on_demand')
  return Predictor(table, fill=filler(table, progress))


def main(verb: str, config, workdir: str | None, arch: str | None = None,
         argv: Sequence[str] = ()) -> dict:
  """`launch.py latency VERB`: build | validate | predict | export | import."""
  import search_spaces
  if config is None:
    raise SpaceError('latency needs --config=experiments/latency.py')
  if not workdir:
    raise SpaceError('latency needs --workdir=DIR (where the table lives)')
  space = search_spaces.get_space(_cfg(config, 'space', 'tiny'))
  target, w, r = _resolve(config, space)
  progress = bool(_cfg(config, 'progress', True))
  os.makedirs(workdir, exist_ok=True)
  if verb == 'build':
    t0 = time.time()
    table = load_or_build(config, space, workdir, progress=progress)
    out = dict(table=table.path, target=target, space=space.name, resolution=r,
               width_multiplier=w, entries=len(table), complete=table.meta.get('complete'),
               scope=table.meta.get('scope'), overhead_ms=table.overhead_ms,
               build_seconds=table.meta.get('build_seconds'), seconds=round(time.time() - t0, 1))
  elif verb == 'validate':
    table = load_or_build(config, space, workdir, progress=progress)
    report = validate(table, space, int(_cfg(config, 'validate_archs', 100)),
                      seed=int(_cfg(config, 'validate_seed', 1)), workdir=workdir,
                      progress=progress, recalibrate=bool(_cfg(config, 'recalibrate', True)),
                      calibration_archs=int(_cfg(config, 'calibration_archs', 8)),
                      calibration_model=_cfg(config, 'calibration_model', 'constant'))
    out = {k: v for k, v in report.items() if k != 'architectures'}
  elif verb == 'predict':
    if not arch:
      raise SpaceError('latency predict needs --arch (a reference name, string or JSON file)')
    a = search_spaces.load_arch(arch, w if _cfg(config, 'width_multiplier', 0) else None,
                                r if _cfg(config, 'resolution', 0) else None)
    table = load_or_build(config, space, workdir, progress=progress)
    pred = Predictor(table, fill=filler(table, progress))
    out = dict(arch=str(a), target=target, predicted_ms=round(pred.predict(a), 4),
               overhead_ms=pred.overhead_ms,
               entries=[dict(key=k, ms=round(v, 4)) for k, v in pred.breakdown(a)[:-1]])
  elif verb == 'export':
    _, archs = _scope(config, space, w, r)
    num_classes = int(_cfg(config, 'num_classes', 1000))
    keys = space_keys(space, w, r, num_classes) if archs is None else keys_for(archs, num_classes)
    meta = dict(space=space.name, width_multiplier=w, resolution=r, num_classes=num_classes,
                batch_size=1, dtype='float32', depthwise_impl=_cfg(config, 'depthwise_impl', 'auto'))
    out_dir = os.path.join(workdir, _cfg(config, 'export_dir', 'export'))
    manifest = export_entries(keys, out_dir, meta, meta['depthwise_impl'], progress)
    out = dict(manifest=manifest, entries=len(keys), dir=out_dir)
  elif verb == 'import':
    src = argv[0] if argv else _cfg(config, 'import_path', '')
    if not src:
      raise SpaceError('latency import needs a results file: launch.py latency import RESULTS.csv')
    results = read_results(src)
    num_classes = int(_cfg(config, 'num_classes', 1000))
    meta = dict(target=target, space=space.name, width_multiplier=w, resolution=r,
                num_classes=num_classes, batch_size=int(_cfg(config, 'batch_size', 1)),
                threads=int(_cfg(config, 'threads', 1)), device=_cfg(config, 'device_name', ''),
                source=os.path.abspath(src), dtype='float32', complete=True, scope='imported')
    path = table_path(config, space, workdir)
    table = (LatencyTable.load(path, expect=dict(target=target, space=space.name))
             if os.path.exists(path) else None)
    table = import_results(results, meta, path, table)
    out = dict(table=path, imported=len(results), entries=len(table), target=target)
  else:
    raise SpaceError(f'unknown latency verb {verb!r}')
  print(json.dumps(out, indent=1))
  return out
