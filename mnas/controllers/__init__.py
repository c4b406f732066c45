"""Architecture-search controllers over D categorical decisions.

Every controller implements `base.Controller`: init(rng) -> state,
sample(state, rng, n) -> int32 [n, D], update(state, indices, active,
rewards) -> (state, metrics), probabilities(state) -> list of [num_options[d]].
States are dicts of arrays (pytrees), checkpointable with orbax.
"""

import dataclasses
from typing import Sequence

from mnas.controllers.base import Controller
from mnas.controllers.base import State
from mnas.controllers.evolution import Evolution
from mnas.controllers.lstm import LSTMController
from mnas.controllers.random import RandomSearch
from mnas.controllers.reinforce import Reinforce
from mnas.errors import ConfigError

_CONTROLLERS = {
    'random': RandomSearch,
    'evolution': Evolution,
    'reinforce': Reinforce,  # TuNAS.
    'mnasnet': LSTMController,  # MnasNet: LSTM + PPO.
}
NAMES = tuple(_CONTROLLERS)


def hyperparameters(name: str) -> tuple[str, ...]:
  """The hyperparameters controller `name` accepts as keyword arguments."""
  if name not in _CONTROLLERS:
    raise ConfigError(f'controller={name!r} is not allowed; allowed: one of {NAMES}')
  return tuple(f.name for f in dataclasses.fields(_CONTROLLERS[name]) if f.name != 'num_options')


def make_controller(name: str, num_options: Sequence[int],
                    **kwargs) -> Controller:
  """Builds controller `name` (one of NAMES) for decisions with num_options.

  kwargs are the controller's hyperparameters, e.g.
  make_controller('mnasnet', (3, 4), algorithm='reinforce', learning_rate=0.01).
  Raises ConfigError for an unknown name or hyperparameter.
  """
  unknown = sorted(set(kwargs) - set(hyperparameters(name)))
  if unknown:
    raise ConfigError(f'controller_kwargs.{name} has {unknown}, not hyperparameters of the '
                      f'{name} controller; allowed: {hyperparameters(name)}')
  return _CONTROLLERS[name](tuple(num_options), **kwargs)
