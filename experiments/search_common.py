"""Fields shared by the search configs (each documents its paper settings)."""

import ml_collections

from experiments import latency as latency_config
from experiments import train as train_config


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # 'mnas': every sample trained on the proxy task (mnas.search, MnasNet); 'oneshot': a
  # weight-sharing supernet trained with the controller (mnas.oneshot, TuNAS).
  c.method = 'mnas'
  c.space = 'tiny'  # search_spaces.SPACES
  c.resolution = 0  # Input resolution of the candidates; 0: the space's.
  # 'mnasnet' (LSTM + PPO, Tan et al. 2019), 'reinforce' (TuNAS, Bender et al. 2020),
  # 'evolution' (Real et al. 2019), 'random'.
  c.controller = 'mnasnet'
  c.controller_kwargs = {}
  c.num_steps = 100  # Controller updates.
  c.candidates_per_step = 8  # MnasNet: a batch of candidates per update.
  c.seed = 0
  c.max_seconds = 0.0  # Stop after the step that passes this wall time (resumable); 0: off.
  c.reward = ml_collections.ConfigDict()
  # mnas.rewards.KINDS: 'mnasnet_soft' (alpha = beta = -0.07), 'mnasnet_hard' (0, -1),
  # 'v3_small' (w = -0.15), 'tunas_abs' (beta = -0.1), 'tunas_mnas', 'tunas_mnas_hard'.
  c.reward.kind = 'mnasnet_soft'
  c.reward.target_ms = 1.0  # T: milliseconds of the chosen latency table.
  c.reward.params = {}  # Overrides: {'alpha': ..., 'beta': ...}.
  c.failure_reward = 0.0  # Reward of a candidate that failed (diverged, crashed, skipped).
  # Candidates predicted slower than this are not trained (failed, 'skipped'); None: train all.
  c.max_latency_ms = ml_collections.config_dict.placeholder(float)
  c.num_classes = 10  # For params/MACs in the store; the trainer reads the dataset's.
  # The latency table and how it is measured (see experiments/latency.py). The search builds
  # it on first use into workdir/latency and measures new candidates' entries on demand.
  c.latency = latency_config.get_config()
  c.latency.scope = 'on_demand'
  c.latency.progress = False
  c.train = train_config.get_config()  # The proxy task (see experiments/train.py).
  c.train.num_epochs = 5.0  # MnasNet's proxy task: 5 epochs.
  c.pareto_every_steps = 5
  c.hparams_per_candidate = True
  return c


def imagenet_proxy(c: ml_collections.ConfigDict) -> None:
  """MnasNet's proxy task: 5 epochs of ImageNet, 50,000 training images held out."""
  c.train = train_config.get_config('imagenet_proxy')
  c.num_classes = 1000
  c.latency.num_classes = 1000
  c.latency.resolution = 224


def cpu_proxy(c: ml_collections.ConfigDict, resolution: int = 64) -> None:
  """A CPU-sized proxy task on the embedded dataset, at `resolution`."""
  c.train = train_config.get_config()
  c.train.num_train_steps = 300
  c.num_classes = 10
  c.latency.num_classes = 10
  c.latency.resolution = resolution
  c.resolution = resolution
  c.num_steps = 10
  c.candidates_per_step = 4
