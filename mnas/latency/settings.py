"""How a table is measured: the settings of a build, one frozen dataclass read from the config.

Every field is a field of experiments/latency.py's config (which documents it and holds its
default); `Settings.from_config` reads them all and fails at once, naming the fields a
config lacks. A table records the measurement fields in its metadata (`table_meta`), so a
table is always extended with the protocol it was started with.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mnas import config as config_lib
from mnas.errors import ConfigError
from mnas.latency import timing
from mnas.latency.predictor import OVERHEAD_MODELS
from mnas.latency.table import TIMED_BY_LOOP, TIMING_LOOP

STATISTICS = ('median', 'p25', 'p10', 'min', 'mean')
METHODS = ('loop', 'marginal', 'single')
_CAST = {'int': int, 'float': float, 'str': str, 'bool': bool}


@dataclasses.dataclass(frozen=True)
class Settings:
  """The measurement settings of a latency table (see experiments/latency.py)."""

  num_classes: int  # Width of the classifier in the head entry.
  threads: int  # XLA:CPU / LiteRT threads.
  batch_size: int
  warmup: int  # Untimed calls first.
  repeats: int  # Timed calls (more while under min_seconds).
  instances: int  # An entry is the median of this many instances (variables, buffers, compile).
  min_seconds: float
  statistic: str  # Of the samples: an entry's ms (STATISTICS).
  max_spread: float  # IQR / median above which an entry is re-measured ...
  remeasure: int  # ... up to this many times.
  method: str  # 'loop' (calls in a compiled loop), 'marginal' (a chain of `chain` copies
  # minus one) or 'single'.
  chain: int
  clock: str  # 'cpu', 'wall' or 'auto' (`timing.default_clock`).
  pin: bool  # Bind the measuring process to `threads` CPUs.
  depthwise_impl: str  # mnas.ops depthwise implementation, as in the model.
  reference: bool  # Time everything relative to a reference architecture (`timing.time_pair`).
  seed: int  # Of the random variables and of the sampled architectures.
  calibration_archs: int  # Measured end to end to fit the calibration ...
  calibration_model: str  # ... 'constant', 'linear', 'weights' or 'groups' (OVERHEAD_MODELS).
  save_every: int  # Save the partial table every this many entries (0: when done).

  def __post_init__(self):
    allowed = dict(statistic=STATISTICS, method=METHODS, clock=('auto',) + tuple(timing.CLOCKS),
                   calibration_model=OVERHEAD_MODELS)
    for name, values in allowed.items():
      if getattr(self, name) not in values:
        raise ConfigError(f'latency {name}={getattr(self, name)!r} is not one of {values}')

  @classmethod
  def names(cls) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))

  @classmethod
  def from_config(cls, config: Any, where: str = 'config.latency') -> Settings:
    """The settings of a latency config (experiments/latency.py, or a search's
    `config.latency`); ConfigError naming every field it lacks."""
    config_lib.require(config, cls.names(), where)
    return cls(**{f.name: _CAST[f.type](config[f.name]) for f in dataclasses.fields(cls)})

  def replace(self, **changes: Any) -> Settings:
    return dataclasses.replace(self, **changes)

  def resolved_clock(self, target: str) -> str:
    return timing.default_clock(target, self.threads) if self.clock == 'auto' else self.clock

  def table_meta(self, target: str) -> dict[str, Any]:
    """The metadata fields of a table measured with these settings on `target`."""
    return dict(num_classes=self.num_classes, threads=self.threads, batch_size=self.batch_size,
                dtype='float32', unit='ms', statistic=self.statistic, method=self.method,
                chain=self.chain if self.method == 'marginal' else 1, repeats=self.repeats,
                warmup=self.warmup, instances=self.instances, max_spread=self.max_spread,
                remeasure=self.remeasure,
                min_seconds=self.min_seconds, depthwise_impl=self.depthwise_impl,
                clock=self.resolved_clock(target), pin=self.pin, seed=self.seed,
                **(dict(timing_loop=TIMING_LOOP) if target in TIMED_BY_LOOP else {}))
