"""The latency predictor: the sum of an architecture's table entries plus a fitted overhead.

Vectorised (an architecture -> entry-index cache and one `np.add.reduceat`): thousands of
architectures a second. The correction for what a plain sum of isolated timings misses (the
per-model cost of streaming weights from memory, see `mnas.latency`) is fitted on a few
end-to-end measurements: a constant overhead, a linear one, or overhead + ms per million
weights.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mnas.latency.keys import arch_keys, entry_params, keys_for
from mnas.latency.table import LatencyTable, MissingEntriesError
from mnas.space import Architecture, parse


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
    self.num_classes = int(num_classes or table.meta['num_classes'])
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
  items = list(measured.items()) if isinstance(measured, Mapping) else list(measured)
  archs = [a if isinstance(a, Architecture) else parse(a) for a, _ in items]
  return Predictor(table).fit(archs, [float(m) for _, m in items], linear=linear)
