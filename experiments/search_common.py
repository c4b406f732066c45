"""Fields shared by the search configs (each documents its paper settings)."""

import ml_collections

from experiments import latency as latency_config
from experiments import train as train_config


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # 'multi_trial': every sample trained on the proxy task (mnas.search.multi_trial, MnasNet);
  # 'oneshot': a weight-sharing supernet trained with the controller (mnas.search.oneshot,
  # TuNAS); 'pipeline': MobileNetV3's search -> NetAdapt -> ... (mnas.search.pipeline).
  c.method = 'multi_trial'
  c.space = 'tiny'  # search_spaces.SPACES
  c.resolution = 0  # Input resolution of the candidates; 0: the space's.
  # 'mnasnet' (LSTM + PPO, Tan et al. 2019), 'reinforce' (TuNAS, Bender et al. 2020),
  # 'evolution' (Real et al. 2019), 'random'.
  c.controller = 'mnasnet'
  # Hyperparameters of each controller that differ from the papers' (the controllers' own
  # defaults, mnas/controllers/): only those of `controller` are used.
  c.controller_kwargs = ml_collections.ConfigDict(
      {'mnasnet': {}, 'reinforce': {}, 'evolution': {}, 'random': {}})
  c.num_steps = 100  # Controller updates.
  c.candidates_per_step = 8  # MnasNet: a batch of candidates per update.
  c.seed = 0
  c.max_seconds = 0.0  # Stop after the step that passes this wall time (resumable); 0: off.
  c.reward = ml_collections.ConfigDict()
  # mnas.rewards.KINDS: 'mnasnet_soft' (alpha = beta = -0.07), 'mnasnet_hard' (0, -1),
  # 'v3_small' (w = -0.15), 'tunas_abs' (beta = -0.1), 'tunas_mnas', 'tunas_mnas_hard';
  # 'pareto': no target, a whole accuracy-latency front in one search (controller 'evolution'
  # with controller_kwargs.evolution.selection = 'nsga2'; the recorded reward is the accuracy).
  c.reward.kind = 'mnasnet_soft'
  c.reward.target_ms = 1.0  # T: milliseconds of the chosen latency table.
  # T relative to the table instead (mnas/search/target.py): the quantile of the predicted
  # latencies of `target_samples` uniform architectures of the space; None: target_ms.
  c.reward.target_quantile = ml_collections.config_dict.placeholder(float)
  c.reward.target_samples = 200
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
  # A search's table is calibrated with a constant overhead on 8 architectures (a short first
  # build): it keeps the plain sum's ranking (issue 19, xla-cpu, 128x128, 100 held out, two
  # runs: Spearman 0.968 / 0.984; 'groups' on 50: 0.982 / 0.992) and sets its level;
  # `latency validate` measures both for a space and target.
  c.latency.calibration_model = 'constant'
  c.latency.calibration_archs = 8
  # How a candidate is evaluated: 'train' on the proxy task `c.train`, or 'nas_bench_macro':
  # looked up in NAS-Bench-Macro's file `path` (space nas_bench_macro), the seeds' 'mean' or
  # one 'seed' drawn per architecture (mnas.nasbench).
  c.proxy = ml_collections.ConfigDict({'kind': 'train', 'path': '', 'accuracy': 'mean'})
  c.train = train_config.get_config()  # The proxy task (see experiments/train.py).
  c.train.num_epochs = 5.0  # MnasNet's proxy task: 5 epochs.
  # Screening (mnas/search/screening.py): with factor k > 1 each step samples k x
  # candidates_per_step and trains the candidates_per_step of best predicted reward;
  # predictor: a surrogate .npz (`launch.py surrogate`) or an earlier search's results.sqlite.
  c.screen = ml_collections.ConfigDict({'factor': 1, 'predictor': ''})
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


def add_pipeline(c: ml_collections.ConfigDict) -> None:
  """The MobileNetV3 pipeline after the block search (Howard et al. 2019, sections 4 and 6.1).

  `launch.py search` runs the stages of `c.pipeline` in order, each in workdir/<stage>/ and
  skipped once complete (mnas/search/pipeline.py).
  """
  c.method = 'pipeline'
  c.pipeline = ('search', 'netadapt', 'train', 'export', 'compare')
  c.netadapt = ml_collections.ConfigDict()
  # Where NetAdapt starts: '' = the block search's best; or a reference name, an architecture
  # string or a JSON file (at `c.resolution` when that is set).
  c.netadapt.seed = ''
  c.netadapt.delta_ratio = 0.01  # [V3] 4.2: each proposal cuts >= 0.01 x the seed's latency.
  # The latency to reach: target_ratio x the seed's when > 0, else target_ms, else the
  # reward's target_ms.
  c.netadapt.target_ms = ml_collections.config_dict.placeholder(float)
  c.netadapt.target_ratio = 0.0
  c.netadapt.max_iterations = 100
  # The seed is trained on the proxy task first (proposals inherit trained weights).
  c.netadapt.seed_steps = 10_000
  c.netadapt.finetune_steps = 10_000  # [V3] 4.2: each proposal fine-tuned for 10,000 steps.
  # 0: every proposal (the paper). k > 0: a seeded random k of them (a CPU budget).
  c.netadapt.proposals_per_iteration = 0
  c.netadapt.divisor = 8  # Widths stay multiples of 8 (make_divisible).
  c.netadapt.min_width = 8
  c.netadapt.keep_checkpoints = False  # Keep the losing proposals' checkpoints.
  c.final = train_config.get_config('mobilenet_v3')  # [V3] 6.1: the final training.
  c.export = ml_collections.ConfigDict()
  c.export.tflite = True  # A LiteRT flatbuffer (needs `pip install -e .[tf]`; else skipped).
  c.compare = ml_collections.ConfigDict()
  # Trained with the same recipe, each at the width multiplier that meets the latency target.
  c.compare.references = ('mobilenet_v3_small', 'mobilenet_v3_large', 'mnasnet_a1')
  c.compare.target_ms = ml_collections.config_dict.placeholder(float)  # None: NetAdapt's target.
  c.compare.multipliers = tuple(m / 20 for m in range(2, 41))  # 0.1, 0.15, ..., 2.0.


def cpu_pipeline(c: ml_collections.ConfigDict, resolution: int = 64) -> None:
  """A CPU-sized pipeline on the embedded dataset (~30 minutes on 2 cores): 2 search
  candidates of 600 steps, 2 NetAdapt iterations of 2 sampled proposals, 1,200 steps of final
  training per model (`experiments/train.py:short_proxy_64`: these networks downsample 32x and
  learn nothing at 32x32), references on a coarse width grid, T = the space's median."""
  cpu_proxy(c, resolution)
  c.train = train_config.get_config('short_proxy_64')
  c.train.num_train_steps = 600
  c.train.log_every_steps = 100
  c.reward.target_quantile = 0.5  # T relative to the table (mnas/search/target.py).
  c.reward.target_samples = 10
  c.num_steps = 1
  c.candidates_per_step = 2
  c.latency.calibration_archs = 2
  c.latency.repeats = 10
  c.latency.warmup = 2
  c.latency.min_seconds = 0.01
  c.latency.remeasure = 0
  c.netadapt.seed_steps = 600
  c.netadapt.finetune_steps = 100
  c.netadapt.target_ratio = 0.97
  c.netadapt.max_iterations = 2
  c.netadapt.proposals_per_iteration = 2
  c.final = train_config.get_config('short_proxy_64')
  c.final.update(dict(log_every_steps=200, checkpoint_every_steps=600))
  c.compare.multipliers = (0.25, 0.35, 0.5, 0.75, 1.0)
