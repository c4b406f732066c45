r"""TuNAS one-shot search of the ProxylessNAS space (Bender et al. 2020, section 4.1).

  python launch.py search --config experiments/tunas_proxylessnas.py --workdir DIR \
      --config.train.data_dir=/path/to/tensorflow_datasets      # ImageNet, paper scale
  python launch.py search --config experiments/tunas_proxylessnas.py:cpu --workdir /tmp/tunas

`config.method = 'oneshot'`: a weight-sharing supernet trained jointly with the REINFORCE
controller (`mnas.oneshot`), not a candidate trained per sample (`mnas.search`). The result
is WORKDIR/best_arch.json, the most likely architecture, which is then trained from scratch:
  python launch.py train --config experiments/train.py --config.arch=DIR/best_arch.json ...

Paper-scale values and where they come from ([code] = google-research/tunas,
mobile_architecture_search.py flags and main(); [paper] = Bender et al. 2020, CVPR):
  * search space: ProxylessNAS's (`proxylessnas`: MobileNetV2 skeleton, per layer kernel
    {3,5,7} x expansion {3,6}, depth per stage) [paper 4.1; code `proxylessnas_search`].
  * 90 epochs of ImageNet with 50,000 training images held out for the controller's
    validation batches [code --epochs=90; the 'l2l_train' / 'l2l_valid' splits].
  * shared weights: batch 4096, RMSProp (decay 0.9, momentum 0.9, epsilon 1.0), learning
    rate 0.165 per 256 images (2.64 at 4096), cosine decay with a linear warm-up over 2.5% of
    the steps, label smoothing 0.1, L2 4e-5 (TF's l2(4e-5 / 2) = 4e-5 * l2_loss here) [code
    --model_learning_rate, --model_warmup_steps_fraction, --model_momentum, main()]; no
    dropout in the one-shot model [code get_model dropout_rate=0].
  * controller: REINFORCE with Adam (beta1 = 0, beta2 = 0.999, eps 1e-8), learning rate 3e-4
    per 256 images (0.0048 at 4096), 0 for the first 25% of the steps, then increased
    exponentially 10x by the end; baseline momentum 0.95; no entropy bonus; validation batch
    4x the training batch [code --rl_learning_rate, --rl_delay_steps_fraction,
    --use_exponential_rl_learning_rate_schedule, --rl_baseline_momentum,
    --rl_batch_size_multiplier].
  * warm-up: op and filter warm-up over the first 25% of the steps [paper 3.3 "Op and filter
    warmup"; code --increase_ops_warmup_steps_fraction, --increase_filters_warmup_steps_fraction].
  * reward: absolute, Q + beta |T / T0 - 1| with beta = -0.10 and T0 = 84 ms, the simulated
    latency of ProxylessNAS-Mobile / MnasNet on a Pixel 1 [paper 3.2, Table 2; code
    --rl_reward_function=abs, --rl_cost_model_exponent, main()]. T0 is in milliseconds of the
    latency table in use (`latency.target`): 84 ms is a Pixel-1 number; on another target
    re-target it (e.g. the predicted latency of ProxylessNAS-Mobile / MobileNetV2 there).
Differences: TuNAS keeps separate depthwise weights per kernel size and models depth as a
per-layer "zero" op; this supernet shares the kernel centres and decides depth per stage
(`mnas.supernet`). TuNAS's controller sees one sample per TPU core (each core trains its own
architecture); here one per local device.

`:cpu` — CPU-sized, on the embedded `mnas_shapes` dataset at 64x64 (the space's resolution
overridden): batch 64, 3 epochs (~840 steps of the 18,000 training images, 2,000 held out),
RL delay and warm-up 25% as in the paper, the controller's learning rate raised to 0.02 at
batch 64 (a few hundred RL steps instead of ~20,000), the validation batch 2x the training
batch, T0 = 4 ms of the xla-cpu table at 64x64 (as experiments/proxylessnas_search.py:cpu).
"""

import ml_collections

from experiments import search_common

TUNAS_PAPER = dict(
    batch_size=4096, lr=0.165, base_batch_size=256, optimizer='rmsprop', rmsprop_decay=0.9,
    rmsprop_epsilon=1.0, momentum=0.9, schedule='cosine', end_lr_ratio=0.0,
    weight_decay=4e-5, label_smoothing=0.1, dropout_rate=0.0, ema_decay=0.0)


def oneshot_block() -> ml_collections.ConfigDict:
  """The `config.oneshot` fields (every one mnas.oneshot reads: `ONESHOT_FIELDS`), TuNAS's
  values; the code has no defaults of its own."""
  o = ml_collections.ConfigDict()
  o.num_epochs = 90.0  # Search length when config.num_steps <= 0.
  o.rl_learning_rate = 3e-4  # Per rl_base_batch_size training images.
  o.rl_base_batch_size = 256
  o.rl_exponential_schedule = True  # x10 from the first RL step to the last.
  o.rl_batch_multiplier = 4.0  # Validation (RL) batch / training batch.
  o.rl_delay_fraction = 0.25  # No controller updates before this share of the steps.
  o.warmup_ops_fraction = 0.25  # Op warm-up: all options of op decisions, p 1 -> 0.
  o.warmup_filters_fraction = 0.25  # Filter warm-up: largest option of filter decisions.
  o.baseline_momentum = 0.95
  o.entropy_weight = 0.0
  o.log_every_steps = 100
  o.checkpoint_every_steps = 1000
  o.keep_checkpoints = 3
  o.final_eval_batches = -1  # The final architecture's one-shot accuracy: whole validation.
  o.max_seconds = 0.0  # Stop (resumable) after this wall time; 0: run to the end.
  return o


def tunas_config(space: str, target_ms: float, variant: str) -> ml_collections.ConfigDict:
  c = search_common.base_config()
  c.method = 'oneshot'  # mnas.oneshot.run (weight sharing), not mnas.search's loop.
  c.space = space
  c.controller = 'reinforce'  # TuNAS: independent categoricals, REINFORCE, Adam(beta1=0).
  c.reward.kind = 'tunas_abs'  # Q + beta * |T / T0 - 1|.
  c.reward.target_ms = target_ms
  c.reward.params = {'beta': -0.10}
  c.num_steps = -1  # Search steps; <= 0: oneshot.num_epochs of the training split.
  c.hparams_per_candidate = False
  c.pareto_every_steps = 0
  c.oneshot = oneshot_block()
  search_common.imagenet_proxy(c)  # ImageNet, 50,000 training images held out.
  c.train.update(TUNAS_PAPER)
  c.train.num_epochs = 90.0
  c.train.warmup_epochs = 0.025 * 90  # 2.5% of the steps.
  if variant == 'cpu':
    search_common.cpu_proxy(c, resolution=64)
    c.train.update(TUNAS_PAPER)
    c.train.batch_size = 64
    c.train.num_epochs = 3.0
    c.train.warmup_epochs = 0.025 * 3
    c.train.log_every_steps = 50
    c.num_steps = -1
    c.oneshot.num_epochs = 3.0
    c.oneshot.rl_learning_rate = 0.08  # 0.02 at batch 64, x10 by the end.
    c.oneshot.rl_batch_multiplier = 2.0
    c.oneshot.log_every_steps = 20
    c.oneshot.checkpoint_every_steps = 100
    c.oneshot.final_eval_batches = -1
  elif variant:
    raise ValueError(f'unknown variant {variant!r}: "" (paper scale) or "cpu"')
  return c


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  c = tunas_config('proxylessnas', 84.0, variant)  # ProxylessNAS-Mobile, Pixel 1.
  if variant == 'cpu':
    c.reward.target_ms = 4.0  # xla-cpu table at 64x64 (experiments/proxylessnas_search.py).
  return c
