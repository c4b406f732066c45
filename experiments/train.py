r"""Training a model: the proxy task's recipe and final models.

  python launch.py train --config experiments/train.py --workdir /tmp/mnas_train
  python launch.py train --config experiments/train.py:imagenet --workdir DIR \
      --config.data_dir=/path/to/tensorflow_datasets --config.arch=mnasnet_a1

The default is CPU-sized: MobileNetV3-Small at 64x64 on the embedded `mnas_shapes` set
(20,000 generated 64x64 images, 10 classes; generated into `data_dir` on first use).
The `imagenet` variant is the papers' recipe (needs `imagenet2012` prepared in array_record
format in `data_dir`, see mnas/data.py); `mobilenet_v3` is [V3]'s (RMSProp, lr 0.1 at 4096
decayed every 3 epochs, EMA 0.9999), the final training of the search pipelines.

Sources for the paper-scale values:
  [MnasNet]  Tan et al., "MnasNet: Platform-Aware Neural Architecture Search for Mobile",
             CVPR 2019, section 5 ("Implementation details") and the TPU reference code
             tensorflow/tpu models/official/mnasnet (mnasnet_main.py, utils.py).
  [V3]       Howard et al., "Searching for MobileNetV3", ICCV 2019, section 6.1.
  [Goyal]    Goyal et al., "Accurate, Large Minibatch SGD", 2017 (linear lr scaling, warmup).
  [Szegedy]  Szegedy et al., "Rethinking the Inception Architecture", 2016 (label smoothing).
  [Adam]     Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.

Every field is read by mnas/train.py (`train.FIELDS`, `train.RUN_FIELDS`; the optimiser and
schedule ones by mnas/optim.py), which has no defaults of its own: this config is the one
place they live. A search config embeds it as `config.train` (and the pipeline's final
training as `config.final`), see experiments/search_common.py; a config that lacks a field
fails at once with a ConfigError naming it.
"""

import ml_collections


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()

  # --- Model.
  # Reference name ('mobilenet_v3_small', 'mnasnet_a1', ...), an architecture string, or a JSON
  # file (search_spaces.load_arch).
  c.arch = 'mobilenet_v3_small'
  c.width_multiplier = ml_collections.config_dict.placeholder(float)  # None: the arch's own.
  c.resolution = 64  # Input side; None: the arch's own (224 for the references).
  c.num_classes = ml_collections.config_dict.placeholder(int)  # None: from the dataset info.
  c.dropout_rate = 0.2  # [MnasNet] "dropout rate 0.2"; [V3] "dropout of 0.8" (keep prob).
  # False: the TPU MnasNet code's U(+-1/sqrt(classes)) classifier (for 1000 classes); True:
  # zeros (big_vision's head_zeroinit), for few classes (see mnas.models.MobileNet).
  c.head_zeroinit = False
  c.dtype = 'float32'  # Compute dtype: 'float32' or 'bfloat16' (parameters stay float32).
  c.depthwise_impl = 'auto'  # mnas.ops depthwise convolution implementation.

  # --- Data.
  c.dataset = 'mnas_shapes'  # Embedded, generated locally; 'mnas_shapes/tiny' for tests.
  # None: $TFDS_DATA_DIR or ~/tensorflow_datasets.
  c.data_dir = ml_collections.config_dict.placeholder(str)
  # Examples of 'train' held out as the validation split the search's proxy task reports
  # (the test split is never looked at by the search). None: the dataset's default (50,000
  # on ImageNet as in [MnasNet]; 2,000 of mnas_shapes' 20,000). 0: train on everything.
  c.holdout = None  # A count or a percentage string ('10%').
  # Smallest random-crop area (a fraction of the image); None: the dataset's default.
  c.min_area = ml_collections.config_dict.placeholder(float)
  c.eval_split = 'test'  # What train_and_evaluate reports: 'test' or 'validation' (the holdout).
  c.data_threads = 2

  # --- Optimisation.
  c.batch_size = 64  # Global. [MnasNet] and [V3]: 4096 on TPU.
  c.eval_batch_size = ml_collections.config_dict.placeholder(int)  # None: batch_size.
  # [MnasNet], [V3]: RMSProp; or 'sgd' (momentum, optional Nesterov), or 'adam' (b1 = momentum).
  c.optimizer = 'rmsprop'
  # Learning rate per base_batch_size examples, scaled linearly with the global batch [Goyal].
  # [MnasNet] 0.016 per 256 (= 0.256 at 4096, the TPU code's base_learning_rate);
  # [V3] 0.1 at 4096 (= 0.00625 per 256).
  c.lr = 0.016
  c.base_batch_size = 256
  # 'exponential': [MnasNet] decay by 0.97 every 2.4 epochs (staircase, counted from step 0,
  # as in the TPU code); [V3] states "decay rate of 0.01 every 3 epochs". 'cosine': to
  # end_lr_ratio * peak at the last step; better for short proxy runs. 'constant'.
  c.schedule = 'cosine'
  c.warmup_epochs = 0.2  # [MnasNet]: linear warmup from 0 over 5 epochs [Goyal].
  c.lr_decay_rate = 0.97  # [MnasNet].
  c.lr_decay_epochs = 2.4  # [MnasNet].
  c.end_lr_ratio = 0.0
  c.momentum = 0.9  # [MnasNet], [V3].
  c.nesterov = False
  c.rmsprop_decay = 0.9  # [MnasNet].
  # TF's RMSProp: epsilon inside the square root, sqrt(ms + eps) (optax eps_in_sqrt=True);
  # the TPU MnasNet code uses epsilon 0.001.
  c.rmsprop_epsilon = 1e-3
  c.rmsprop_initial_scale = 1.0  # TF1 RMSPropOptimizer starts the mean square at 1.
  c.adam_b2 = 0.999  # [Adam] Kingma & Ba 2015's defaults.
  c.adam_epsilon = 1e-8
  c.weight_decay = 1e-5  # L2 (sum w^2 / 2) on conv/dense kernels: [MnasNet], [V3] 1e-5.
  c.label_smoothing = 0.1  # [Szegedy]; the TPU MnasNet code's label_smoothing 0.1.
  # EMA of weights and batch-norm statistics, used for evaluation; TF's num_updates ramp
  # min(decay, (1 + step) / (10 + step)) is always applied. [MnasNet] TPU code, [V3]: 0.9999
  # (for ~350 epochs); short CPU runs need a shorter average. 0: evaluate the raw weights.
  c.ema_decay = 0.99
  c.grad_clip_norm = 0.0  # Global-norm clipping; 0: off (the papers do not clip).
  # A run whose training loss is NaN/inf or above this is stopped and reported 'failed'
  # (batch norm keeps a blown-up network's loss finite; chance is ln(classes), 2.3 for 10).
  c.divergence_loss = 1e3

  # --- Length. num_train_steps > 0 wins over num_epochs. [MnasNet] proxy task: 5 epochs.
  c.num_epochs = 4.0
  c.num_train_steps = -1

  # --- Bookkeeping.
  c.log_every_steps = 50
  c.eval_every_steps = -1  # -1: only at the end.
  c.checkpoint_every_steps = 500
  c.keep_checkpoints = 3
  c.seed = 0

  if variant == 'imagenet':  # The papers' full recipe on ImageNet (TPU-pod scale).
    c.dataset = 'imagenet2012'
    c.resolution = 224
    c.holdout = 0  # Final models train on all of 'train' and report 'validation' as test.
    c.batch_size = 4096  # [MnasNet], [V3].
    c.lr = 0.016  # [MnasNet] 0.256 at 4096.
    c.schedule = 'exponential'  # [MnasNet] 0.97 every 2.4 epochs.
    c.warmup_epochs = 5.0  # [MnasNet].
    c.ema_decay = 0.9999  # [MnasNet] TPU code, [V3].
    # The papers do not state the length of the final training; 350 epochs is the usual
    # choice of the reference TPU implementations (EfficientNet). Not verified for MnasNet.
    c.num_epochs = 350.0
    c.log_every_steps = 100
    c.eval_every_steps = 5000
    c.checkpoint_every_steps = 2000
    c.data_threads = 16
  elif variant == 'mobilenet_v3':  # [V3] section 6.1, the final training of the pipeline.
    c.dataset = 'imagenet2012'
    c.resolution = 224
    c.holdout = 0
    c.batch_size = 4096  # [V3]: 4096 (128 images per chip of a 4x4 TPU pod).
    c.lr = 0.1 * 256 / 4096  # [V3]: initial learning rate 0.1 at 4096, scaled with the batch.
    c.schedule = 'exponential'
    # [V3]: "learning rate decay rate of 0.01 every 3 epochs", read as lr *= 0.99 every 3
    # epochs (a literal 0.01 would divide it by 100 every 3 epochs).
    c.lr_decay_rate = 0.99
    c.lr_decay_epochs = 3.0
    c.warmup_epochs = 5.0  # Not stated in [V3]; [MnasNet]'s.
    c.ema_decay = 0.9999  # [V3].
    c.num_epochs = 350.0  # Not stated in [V3]; as for `imagenet`.
    c.log_every_steps = 100
    c.eval_every_steps = 5000
    c.checkpoint_every_steps = 2000
    c.data_threads = 16
  elif variant == 'imagenet_proxy':  # [MnasNet]'s proxy task: 5 epochs, 50k held out.
    c.dataset = 'imagenet2012'
    c.resolution = 224
    c.holdout = 50_000
    c.batch_size = 4096
    c.warmup_epochs = 1.0
    c.num_epochs = 5.0
    c.ema_decay = 0.999
    c.eval_split = 'validation'
    c.data_threads = 16
  elif variant == 'short_proxy':  # A proxy task of a few hundred steps on a CPU (issue 14).
    # The papers' recipe is made for 350 epochs: at 400 steps RMSProp at 0.016 per 256, label
    # smoothing, dropout and an EMA leave every candidate near chance (loss ~ln 10). Measured
    # (3 tiny-space architectures, 400 steps of 64 at 32x32 on mnas_shapes/proxy32, validation
    # accuracy): the papers' recipe 21-24% (steps of 32); SGD + Nesterov at 0.4 per 256, no
    # smoothing, dropout or EMA 34-37%; at 0.8 per 256 35-42%; RMSProp at 0.064 per 256 32-42%;
    # 800 steps at 0.4: 50-60%. On the default 64x64 set downscaled to 32, every recipe
    # stays at 12-15% in 400 steps: hence mnas_shapes/proxy32.
    c.dataset = 'mnas_shapes/proxy32'
    c.resolution = 32
    c.min_area = 1.0  # No random-crop zoom at 32x32: the shapes must stay whole.
    c.batch_size = 64
    c.optimizer = 'sgd'
    c.nesterov = True
    c.lr = 0.8
    c.warmup_epochs = 0.05
    c.weight_decay = 5e-5
    c.label_smoothing = 0.0
    c.dropout_rate = 0.0
    c.ema_decay = 0.0  # Evaluate the raw weights: an average over 400 steps lags them.
    c.num_train_steps = 400
  elif variant == 'short_proxy_64':  # The same set for networks that downsample 32x (issue 14).
    # MobileNetV3-Small/Large and MnasNet-A1 end at 1x1 on a 32x32 input and learn nothing
    # there in a short run (proxy32, 400 steps of 64, validation accuracy): MnasNet-A1 0.5
    # with `short_proxy` at 0.1-0.8 per 256, RMSProp at 0.064, warmup 0.5 epochs, no weight
    # decay, or Adam: 9-15%, training loss >= 2.15 (1,500 steps of Adam: 15%); V3-Small 0.5
    # 12%. At 64x64 (the 32x32 images upsampled, 2x2 at the end) with SGD at 0.4: 15%. The
    # TPU code's classifier init starts these 1,280-wide heads at a loss of 7.2 with 10
    # classes: zeros start it at ln 10. Adam at 0.008 per 256 with a zero head, 600 steps:
    # MnasNet-A1 0.5 25.9%, V3-Large 0.25 25.7%; 1,200 steps: MnasNet-A1 0.5 40.7%.
    c.dataset = 'mnas_shapes/proxy32'
    c.resolution = 64
    c.min_area = 1.0
    c.batch_size = 64
    c.optimizer = 'adam'  # [Adam] with b1 = momentum 0.9.
    c.lr = 0.008
    c.head_zeroinit = True
    c.warmup_epochs = 0.05
    c.weight_decay = 5e-5
    c.label_smoothing = 0.0
    c.dropout_rate = 0.0
    c.ema_decay = 0.0
    c.num_train_steps = 1200
  elif variant:
    raise ValueError(f'unknown variant {variant!r}: "", "imagenet", "mobilenet_v3", '
                     '"imagenet_proxy", "short_proxy" or "short_proxy_64"')
  return c
