"""The latency predictor: the sum of an architecture's table entries plus a fitted overhead.

Vectorised (an architecture -> entry-index cache and one `np.add.reduceat`): thousands of
architectures a second. The correction for what a plain sum of isolated timings misses (the
per-model cost of streaming weights from memory, see `mnas.latency`) is fitted on a few
end-to-end measurements: a constant overhead, a linear one, overhead + ms per million
weights, or 'groups': one scale per kind of entry (`entry_group`: stem, head, and each block
type x squeeze-excite x activation) + overhead + ms per million weights, fitted by ridge
regression towards scale 1 (the entries are right unless the measurements say otherwise):
an error that depends on the architecture's make-up, e.g. an SE block or an activation that
the runtime fuses differently inside a network than alone, is what a single correction
cannot remove.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mnas.latency.keys import arch_keys, entry_params, keys_for, parse_key
from mnas.latency.table import LatencyTable, MissingEntriesError
from mnas.space import Architecture, parse


OVERHEAD_MODELS = ('constant', 'linear', 'weights', 'groups')
GROUPS_RIDGE = 0.05  # 'groups': the pull of each scale towards 1, relative to the data's.


def entry_group(key: str) -> str:
  """The kind of an entry that a 'groups' correction scales: 'stem', 'head', or
  TYPE[_se]_ACT of a block (e.g. 'ir_se_hs')."""
  spec = parse_key(key)
  if spec['kind'] != 'block':
    return spec['kind']
  return f'{spec["type"]}{"_se" if spec["se"] else ""}_{spec["act"]}'


class Predictor:
  """Predicted latency (ms) = scale * (sum of the entries of an architecture) + overhead
  [+ per_mparam_ms * (millions of weights of the architecture)]; with `group_scales`, each
  entry is scaled by its group's (`entry_group`; `scale` for a group without one).

  `overhead_ms` (and `scale`, `per_mparam_ms`, `group_scales`) default to the table's
  calibration; `fit` refits them on end-to-end measurements. `fill(keys)`, when given, is
  called with the entries an architecture needs that the table lacks (e.g.
  `Builder.measure`) before predicting; without it those raise MissingEntriesError.
  """

  def __init__(self, table: LatencyTable, overhead_ms: float | None = None,
               scale: float | None = None, num_classes: int | None = None,
               fill: Callable[[list[str]], Any] | None = None,
               per_mparam_ms: float | None = None,
               group_scales: Mapping[str, float] | None = None):
    self.table = table
    cal = table.calibration
    self.overhead_ms = table.overhead_ms if overhead_ms is None else float(overhead_ms)
    self.scale = float(cal.get('scale', 1.0) if scale is None else scale)
    self.per_mparam_ms = float(cal.get('per_mparam_ms', 0.0) if per_mparam_ms is None
                               else per_mparam_ms)
    self.group_scales = {str(g): float(v) for g, v in (
        cal.get('group_scales') or {} if group_scales is None else group_scales).items()}
    self.num_classes = int(num_classes or table.meta['num_classes'])
    self.fill = fill
    self._cache: dict[Architecture, np.ndarray] = {}
    self._params: dict[str, float] = {}
    self._reindex()

  def _reindex(self) -> None:
    keys = list(self.table.entries)
    self._index = {k: i for i, k in enumerate(keys)}
    self._ms = np.array([float(self.table.entries[k]['ms']) for k in keys], np.float64)
    g = self.group_scales
    self._scales = np.array([g.get(entry_group(k), self.scale) if g else self.scale
                             for k in keys], np.float64)
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

  def group_sums(self, archs: Sequence[Architecture]) -> tuple[list[str], np.ndarray]:
    """The groups of the table's entries and [n, groups] sums of each architecture's
    entries by group."""
    flat, starts = self._gather(archs)
    groups = sorted({entry_group(k) for k in self.table.entries})
    col = {g: j for j, g in enumerate(groups)}
    of_entry = np.array([col[entry_group(k)] for k in self._index])
    rows = np.repeat(np.arange(len(archs)), np.diff(np.append(starts, len(flat))))
    out = np.zeros((len(archs), len(groups)))
    np.add.at(out, (rows, of_entry[flat]), self._ms[flat])
    return groups, out

  def predict_batch(self, archs: Sequence[Architecture]) -> np.ndarray:
    """Predicted milliseconds of many architectures (float64 array)."""
    if not len(archs):
      return np.zeros(0)
    flat, starts = self._gather(archs)
    out = np.add.reduceat(self._ms[flat] * self._scales[flat], starts) + self.overhead_ms
    if self.per_mparam_ms:
      out = out + self.per_mparam_ms * self.mparams_batch(archs)
    return out

  def predict(self, arch: Architecture) -> float:
    return float(self.predict_batch([arch])[0])

  __call__ = predict

  def breakdown(self, arch: Architecture) -> list[tuple[str, float]]:
    """(key, scale * ms [+ per_mparam_ms * Mparams]) of every entry, then ('overhead', ms)."""
    self.indices(arch)
    scale = lambda k: self.group_scales.get(entry_group(k), self.scale)
    return [(k, scale(k) * self.table.ms(k) + self.per_mparam_ms * self._entry_mparams(k))
            for k in self.keys(arch)] + [('overhead', self.overhead_ms)]

  def fit(self, archs: Sequence[Architecture], measured_ms: Sequence[float],
          linear: bool = True, model: str | None = None) -> Predictor:
    """A predictor refitted on end-to-end measurements (least squares).

    `model`: 'constant' (sum + overhead), 'linear' (scale * sum + overhead; the default
    with `linear=True`), 'weights' (sum + overhead + per_mparam_ms * Mparams: the cost of
    streaming weights that stay cache-hot when an entry is timed alone), 'groups' (a scale
    per entry group + overhead + per_mparam_ms * Mparams, ridge towards scale 1).
    """
    model = model or ('linear' if linear else 'constant')
    if model not in OVERHEAD_MODELS:
      raise ValueError(f'unknown model {model!r}; known: {OVERHEAD_MODELS}')
    y = np.asarray(measured_ms, np.float64)
    s = self.sum_batch(archs)
    scale, per_mparam, groups = 1.0, 0.0, None
    if model == 'groups' and len(y) >= 3:
      groups, overhead, per_mparam = self._fit_groups(archs, y)
    elif model == 'linear' and len(y) >= 3 and np.ptp(s) > 0:
      scale, overhead = np.polyfit(s, y, 1)
    elif model == 'weights' and len(y) >= 3:
      w = self.mparams_batch(archs)
      a = np.stack([np.ones_like(w), w], 1)
      (overhead, per_mparam), *_ = np.linalg.lstsq(a, y - s, rcond=None)
    else:
      overhead = float(np.median(y - s))
    return Predictor(self.table, overhead_ms=float(overhead), scale=float(scale),
                     num_classes=self.num_classes, fill=self.fill,
                     per_mparam_ms=float(per_mparam), group_scales=groups or {})

  def _fit_groups(self, archs, y: np.ndarray) -> tuple[dict, float, float]:
    """Least squares of y on [group sums, 1, Mparams] with a ridge pulling each group's
    scale towards 1 (GROUPS_RIDGE x the mean squared group sum): groups the measurements
    say little about keep their entries' values. A group whose sum is the same in every
    architecture (a space's one stem or head) is part of the overhead: it keeps scale 1."""
    names, sums = self.group_sums(archs)
    varies = np.ptp(sums, axis=0) > 0
    y = y - sums[:, ~varies].sum(1)  # Those keep scale 1: their time is predicted as it is.
    names, sums = [n for n, v in zip(names, varies) if v], sums[:, varies]
    a = np.concatenate([sums, np.ones((len(y), 1)), self.mparams_batch(archs)[:, None]], 1)
    lam = np.sqrt(GROUPS_RIDGE * np.mean(sums ** 2, axis=0) + 1e-12)
    prior = np.zeros((len(names), a.shape[1]))
    prior[np.arange(len(names)), np.arange(len(names))] = lam
    coef, *_ = np.linalg.lstsq(np.concatenate([a, prior]), np.concatenate([y, lam]), rcond=None)
    return dict(zip(names, coef[:len(names)].tolist())), float(coef[-2]), float(coef[-1])


def fit(table: LatencyTable, measured: Mapping[Any, float] | Sequence[tuple[Any, float]],
        linear: bool = True) -> Predictor:
  """A predictor with a linear correction fitted on end-to-end measurements.

  `measured`: {architecture or its string: ms} or [(architecture, ms), ...].
  """
  items = list(measured.items()) if isinstance(measured, Mapping) else list(measured)
  archs = [a if isinstance(a, Architecture) else parse(a) for a, _ in items]
  return Predictor(table).fit(archs, [float(m) for _, m in items], linear=linear)
