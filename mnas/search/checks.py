"""A search config is checked before any work: each method's `check_config` (`mnas.search`
runs it first) checks every field against what it allows, then the blocks the search hands
on: the reward, the latency table's settings and the proxy task's training (its dataset
present and prepared), so a bad config fails in the first seconds with one line naming the
field and the allowed values, not after a table build or N failed candidates.
"""

from __future__ import annotations

import search_spaces
from mnas import config as cfg, rewards

# The fields every search method reads.
COMMON_RULES = {
    'method': cfg.one_of('multi_trial', 'oneshot', 'pipeline'),
    'space': cfg.one_of(*search_spaces.SPACES),
    'resolution': cfg.at_least(0, integer=True),  # 0: the space's.
    'seed': cfg.INT, 'num_classes': cfg.POSITIVE, 'failure_reward': cfg.NUMBER,
    'reward.kind': cfg.one_of(*rewards.KINDS), 'reward.target_ms': cfg.above(0),
    'reward.target_quantile': cfg.optional(
        (lambda v: cfg.above(0)[0](v) and v < 1, 'a number in (0, 1)')),
    'reward.target_samples': cfg.POSITIVE,
    'reward.params': (lambda v: hasattr(v, 'keys'), 'a dict of reward parameters'),
    'pareto_every_steps': cfg.at_least(0, integer=True), 'hparams_per_candidate': cfg.BOOL}


def check(config, rules: dict, *, latency: bool = True, train: bool = True) -> None:
  """COMMON_RULES and `rules` on `config`, the reward; `config.latency` (unless a predictor
  is given) and `config.train` with its dataset (unless a proxy is given)."""
  cfg.check(config, {**COMMON_RULES, **rules})
  rewards.from_config(config.reward)
  if latency:
    from mnas import latency as latency_lib
    latency_lib.check_config(config.latency)
  if train:
    from mnas import train as train_lib
    train_lib.check_config(config.train, 'config.train')
