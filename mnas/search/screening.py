"""Screening samples with an accuracy predictor before they are trained (`config.screen`).

With `screen.factor = k > 1`, each controller step samples k x `candidates_per_step`
architectures, predicts each one's reward from a predicted accuracy and its predicted
latency, and evaluates only the `candidates_per_step` best (distinct ones first); the
controller learns from those. The predictor (`screen.predictor`) is a surrogate file that
`launch.py surrogate` wrote (a .npz of `mnas.surrogate`, target 'accuracy'), or an earlier
search's results.sqlite, fitted on its finished candidates when the search starts. Sampling
and screening are deterministic, so a resumed search screens the same way.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np

from mnas import config as config_lib
from mnas.errors import ConfigError

RULES = {'screen.factor': config_lib.POSITIVE,
         'screen.predictor': (lambda v: isinstance(v, str), 'a path, or \'\'')}


def check_config(config) -> None:
  """Raises ConfigError for a `screen` block that cannot run (before any work)."""
  config_lib.check(config, RULES)
  path = config.screen.predictor
  if path and not (path.endswith(('.npz', '.sqlite')) and os.path.isfile(path)):
    raise ConfigError(f'config.screen.predictor={path!r}: not an existing .npz surrogate or '
                      'results.sqlite')


def predictor_for(config) -> Callable[[Sequence], np.ndarray] | None:
  """`archs -> predicted accuracies` of `config.screen.predictor`; None when not screening."""
  import search_spaces
  from mnas import surrogate
  path = config.screen.predictor
  if config.screen.factor <= 1:
    return None
  if not path:
    raise ConfigError(f'config.screen.factor={config.screen.factor} needs '
                      'config.screen.predictor: a surrogate .npz (launch.py surrogate) or a '
                      "search's results.sqlite")
  space = search_spaces.get_space(config.space)
  if path.endswith('.sqlite'):
    from mnas.search import results
    from mnas.search.store import Store
    store = Store.open_existing(path)
    try:
      rows = results.distinct(store.finished())
    finally:
      store.close()
    archs = [search_spaces.load_arch(r['arch']) for r in rows]
    model = surrogate.fit(space, archs, [r['accuracy'] for r in rows], target='accuracy')
  else:
    model = surrogate.Surrogate.load(path)
  if model.space != space.name or model.target != 'accuracy':
    raise ConfigError(f'config.screen.predictor={path!r} predicts {model.target} of space '
                      f'{model.space}, not accuracy of {space.name}')
  return model.predict


def select(archs: Sequence, latency_ms: np.ndarray, accuracy: np.ndarray, reward_fn,
           num: int) -> np.ndarray:
  """Positions of the `num` samples of highest predicted reward, distinct architectures
  first, in sampling order."""
  reward = np.asarray(reward_fn(np.asarray(accuracy, np.float64),
                                np.asarray(latency_ms, np.float64)), np.float64)
  order = np.argsort(-reward, kind='stable')
  seen, first, again = set(), [], []
  for i in order:
    (again if archs[i].id in seen else first).append(int(i))
    seen.add(archs[i].id)
  return np.sort((first + again)[:num])
