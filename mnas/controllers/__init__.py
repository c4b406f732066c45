"""Architecture-search controllers over D categorical decisions.

Every controller implements `base.Controller`: init(rng) -> state,
sample(state, rng, n) -> int32 [n, D], update(state, indices, active,
rewards) -> (state, metrics), probabilities(state) -> list of [num_options[d]].
States are dicts of arrays (pytrees), checkpointable with orbax.
"""

from typing import Sequence

from mnas.controllers.base import Controller
from mnas.controllers.base import State
from mnas.controllers.evolution import Evolution
from mnas.controllers.lstm import LSTMController
from mnas.controllers.random import RandomSearch
from mnas.controllers.reinforce import Reinforce

_CONTROLLERS = {
    'random': RandomSearch,
    'evolution': Evolution,
    'reinforce': Reinforce,  # TuNAS.
    'mnasnet': LSTMController,  # MnasNet: LSTM + PPO.
}
NAMES = tuple(_CONTROLLERS)


def make_controller(name: str, num_options: Sequence[int],
                    **kwargs) -> Controller:
  """Builds controller `name` (one of NAMES) for decisions with num_options.

  kwargs are the controller's hyperparameters, e.g.
  make_controller('mnasnet', (3, 4), algorithm='reinforce', learning_rate=0.01).
  """
  if name not in _CONTROLLERS:
    raise ValueError(f'controller name must be one of {NAMES}, got {name!r}.')
  return _CONTROLLERS[name](tuple(num_options), **kwargs)
