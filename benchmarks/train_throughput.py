r"""Training and inference throughput of mnas models next to established implementations.

  python benchmarks/train_throughput.py [--models mobilenet_v2,mobilenet_v3_large]
      [--batch 32] [--rounds 5] [--steps 3] [--peers torch,keras] [--tuned_malloc]

For each model, in one process: images/second of

* train: one jitted train step = forward + backward + SGD with momentum 0.9, batch norm in
  train mode (batch statistics, moving averages updated), dropout on, softmax cross-entropy;
  mnas's step donates its state (params, batch stats, optimizer state) to the next one;
* forward: eval mode (moving statistics, no dropout), no gradients;

for mnas (`mnas.models.build_model(search_spaces.get_reference(name), 1000)`, variables from
`mnas.models.init_variables`) and the peers:

* torch: PyTorch (`pip install -e '.[bench]'`). torchvision's `mobilenet_v2` /
  `mobilenet_v3_large` when torchvision imports; otherwise (PyPI's torchvision wheels are
  built against a different torch and fail with "operator torchvision::nms does not exist")
  `TorchMobileNetV2` / `TorchMobileNetV3Large` below: line-for-line ports of torchvision's
  definitions (torchvision/models/mobilenetv2.py, mobilenetv3.py, ops/misc.py, 0.28), same
  modules, same parameter count (asserted: 3,504,872 and 5,483,032). NCHW (PyTorch's
  default), `torch.set_num_threads(cores)`, SGD momentum 0.9, `inference_mode` for forward.
* keras: Keras 3 `keras.applications.MobileNetV2` / `MobileNetV3Large(weights=None)` on its
  installed backend (TensorFlow: `pip install tensorflow-cpu keras`), `train_on_batch` /
  `predict_on_batch` after a warm-up, i.e. compiled `tf.function`s.

Peers are optional: a missing one is skipped with a note. Each round times `--steps` calls of
every implementation in turn (interleaved, so that load from other jobs on the machine hits
all of them alike), after warm-up calls; the table shows the median over rounds of each
implementation's images/second, the ratio mnas/peer, and each model's parameter count
(trainable; all of them equal shows that the architectures are the same).

Threads: XLA:CPU runs its thunks and Eigen/YNNPACK kernels on a pool with one thread per
core; PyTorch and TensorFlow are set to the same number of intra-op threads.

`--tuned_malloc` re-runs the script with `MALLOC_MMAP_THRESHOLD_=4294967296
MALLOC_TRIM_THRESHOLD_=8589934592`: glibc otherwise mmaps (and page-faults afresh) every
buffer above its dynamic mmap threshold (<= 32 MiB) on every step; the setting applies to
every implementation in the process alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

MALLOC_ENV = {'MALLOC_MMAP_THRESHOLD_': '4294967296', 'MALLOC_TRIM_THRESHOLD_': '8589934592'}

# ---------------------------------------------------------------------------
# PyTorch: faithful ports of torchvision's MobileNetV2 and MobileNetV3-Large.
# ---------------------------------------------------------------------------

TORCH_PARAMS = {'mobilenet_v2': 3_504_872, 'mobilenet_v3_large': 5_483_032}


def _make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
  """torchvision.models._utils._make_divisible (from the TF reference code)."""
  min_value = divisor if min_value is None else min_value
  new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
  if new_v < 0.9 * v:
    new_v += divisor
  return new_v


def torch_models():
  """name -> constructor of the torchvision model (or the port) and a note on which."""
  import torch
  from torch import nn

  try:
    import torchvision
    return ({'mobilenet_v2': torchvision.models.mobilenet_v2,
             'mobilenet_v3_large': torchvision.models.mobilenet_v3_large},
            f'torchvision {torchvision.__version__}')
  except Exception as e:  # pylint: disable=broad-except
    why = f'{type(e).__name__}: {e}'.splitlines()[0][:80]

  class Conv2dNormActivation(nn.Sequential):
    """torchvision.ops.misc.Conv2dNormActivation (2-D, bias only without norm)."""

    def __init__(self, cin, cout, kernel_size=3, stride=1, groups=1, norm_layer=nn.BatchNorm2d,
                 activation_layer=nn.ReLU):
      padding = (kernel_size - 1) // 2
      layers = [nn.Conv2d(cin, cout, kernel_size, stride, padding, groups=groups,
                          bias=norm_layer is None)]
      if norm_layer is not None:
        layers.append(norm_layer(cout))
      if activation_layer is not None:
        layers.append(activation_layer(inplace=True))
      super().__init__(*layers)

  class SqueezeExcitation(nn.Module):
    """torchvision.ops.misc.SqueezeExcitation."""

    def __init__(self, cin, squeeze, activation=nn.ReLU, scale_activation=nn.Sigmoid):
      super().__init__()
      self.avgpool = nn.AdaptiveAvgPool2d(1)
      self.fc1 = nn.Conv2d(cin, squeeze, 1)
      self.fc2 = nn.Conv2d(squeeze, cin, 1)
      self.activation = activation()
      self.scale_activation = scale_activation()

    def forward(self, x):
      s = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
      return s * x

  def init_weights(model):
    for m in model.modules():
      if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode='fan_out')
        if m.bias is not None:
          nn.init.zeros_(m.bias)
      elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
      elif isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, 0, 0.01)
        nn.init.zeros_(m.bias)

  class InvertedResidualV2(nn.Module):
    """torchvision.models.mobilenetv2.InvertedResidual."""

    def __init__(self, inp, oup, stride, expand_ratio, norm_layer=nn.BatchNorm2d):
      super().__init__()
      hidden = int(round(inp * expand_ratio))
      self.use_res_connect = stride == 1 and inp == oup
      layers = []
      if expand_ratio != 1:
        layers.append(Conv2dNormActivation(inp, hidden, 1, norm_layer=norm_layer,
                                           activation_layer=nn.ReLU6))
      layers += [Conv2dNormActivation(hidden, hidden, stride=stride, groups=hidden,
                                      norm_layer=norm_layer, activation_layer=nn.ReLU6),
                 nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), norm_layer(oup)]
      self.conv = nn.Sequential(*layers)

    def forward(self, x):
      return x + self.conv(x) if self.use_res_connect else self.conv(x)

  class TorchMobileNetV2(nn.Module):
    """torchvision.models.MobileNetV2 (width 1.0)."""

    def __init__(self, num_classes=1000, dropout=0.2):
      super().__init__()
      setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1],
                 [6, 160, 3, 2], [6, 320, 1, 1]]
      cin, self.last_channel = _make_divisible(32), _make_divisible(1280)
      features = [Conv2dNormActivation(3, cin, stride=2, activation_layer=nn.ReLU6)]
      for t, c, n, s in setting:
        cout = _make_divisible(c)
        for i in range(n):
          features.append(InvertedResidualV2(cin, cout, s if i == 0 else 1, t))
          cin = cout
      features.append(Conv2dNormActivation(cin, self.last_channel, 1, activation_layer=nn.ReLU6))
      self.features = nn.Sequential(*features)
      self.classifier = nn.Sequential(nn.Dropout(p=dropout),
                                      nn.Linear(self.last_channel, num_classes))
      init_weights(self)

    def forward(self, x):
      x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
      return self.classifier(torch.flatten(x, 1))

  class InvertedResidualV3(nn.Module):
    """torchvision.models.mobilenetv3.InvertedResidual (dilation 1)."""

    def __init__(self, cin, kernel, expanded, cout, use_se, act, stride, norm_layer):
      super().__init__()
      self.use_res_connect = stride == 1 and cin == cout
      activation = nn.Hardswish if act == 'HS' else nn.ReLU
      layers = []
      if expanded != cin:
        layers.append(Conv2dNormActivation(cin, expanded, 1, norm_layer=norm_layer,
                                           activation_layer=activation))
      layers.append(Conv2dNormActivation(expanded, expanded, kernel, stride, groups=expanded,
                                         norm_layer=norm_layer, activation_layer=activation))
      if use_se:
        layers.append(SqueezeExcitation(expanded, _make_divisible(expanded // 4, 8),
                                        scale_activation=nn.Hardsigmoid))
      layers.append(Conv2dNormActivation(expanded, cout, 1, norm_layer=norm_layer,
                                         activation_layer=None))
      self.block = nn.Sequential(*layers)

    def forward(self, x):
      y = self.block(x)
      if self.use_res_connect:
        y += x
      return y

  class TorchMobileNetV3Large(nn.Module):
    """torchvision.models.MobileNetV3 with _mobilenet_v3_conf('mobilenet_v3_large')."""

    def __init__(self, num_classes=1000, dropout=0.2):
      super().__init__()
      import functools
      norm_layer = functools.partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
      setting = [  # cin, kernel, expanded, cout, SE, activation, stride
          (16, 3, 16, 16, False, 'RE', 1), (16, 3, 64, 24, False, 'RE', 2),
          (24, 3, 72, 24, False, 'RE', 1), (24, 5, 72, 40, True, 'RE', 2),
          (40, 5, 120, 40, True, 'RE', 1), (40, 5, 120, 40, True, 'RE', 1),
          (40, 3, 240, 80, False, 'HS', 2), (80, 3, 200, 80, False, 'HS', 1),
          (80, 3, 184, 80, False, 'HS', 1), (80, 3, 184, 80, False, 'HS', 1),
          (80, 3, 480, 112, True, 'HS', 1), (112, 3, 672, 112, True, 'HS', 1),
          (112, 5, 672, 160, True, 'HS', 2), (160, 5, 960, 160, True, 'HS', 1),
          (160, 5, 960, 160, True, 'HS', 1)]
      setting = [(_make_divisible(a), k, _make_divisible(e), _make_divisible(c), se, act, s)
                 for a, k, e, c, se, act, s in setting]
      layers = [Conv2dNormActivation(3, setting[0][0], 3, 2, norm_layer=norm_layer,
                                     activation_layer=nn.Hardswish)]
      layers += [InvertedResidualV3(*cnf, norm_layer=norm_layer) for cnf in setting]
      last_in = setting[-1][3]
      layers.append(Conv2dNormActivation(last_in, 6 * last_in, 1, norm_layer=norm_layer,
                                         activation_layer=nn.Hardswish))
      self.features = nn.Sequential(*layers)
      self.avgpool = nn.AdaptiveAvgPool2d(1)
      self.classifier = nn.Sequential(nn.Linear(6 * last_in, _make_divisible(1280)),
                                      nn.Hardswish(inplace=True),
                                      nn.Dropout(p=dropout, inplace=True),
                                      nn.Linear(_make_divisible(1280), num_classes))
      init_weights(self)

    def forward(self, x):
      return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

  return ({'mobilenet_v2': TorchMobileNetV2, 'mobilenet_v3_large': TorchMobileNetV3Large},
          f'plain-PyTorch port of torchvision 0.28 (torchvision unavailable: {why})')


# ---------------------------------------------------------------------------
# The implementations: each returns (train_fn, forward_fn, param count, description).
# ---------------------------------------------------------------------------


def make_mnas_step(name: str, batch: int):
  """The mnas train step (jitted, donating its state), eval forward, initial state, inputs."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax

  import search_spaces
  from mnas import models

  arch = search_spaces.get_reference(name)
  model = models.build_model(arch, 1000)
  variables = models.init_variables(model, jax.random.key(0))
  tx = optax.sgd(0.01, momentum=0.9)
  res = arch.resolution
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(batch, res, res, 3)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 1000, batch), jnp.int32)
  dropout_key = jax.random.key(1)

  def train_step(state, x, y):
    params, batch_stats, opt_state, step = state

    def loss_fn(params):
      logits, updates = model.apply(
          {'params': params, 'batch_stats': batch_stats}, x, train=True,
          rngs={'dropout': jax.random.fold_in(dropout_key, step)}, mutable=['batch_stats'])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      return loss, updates['batch_stats']

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return (params, batch_stats, opt_state, step + 1), loss

  step_fn = jax.jit(train_step, donate_argnums=(0,))
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
  params = variables['params']
  state = (params, variables['batch_stats'], tx.init(params), jnp.zeros((), jnp.int32))
  return step_fn, forward, state, x, y


def setup_mnas(name: str, batch: int, threads: int):
  import jax
  import numpy as np
  step_fn, forward, state, x, y = make_mnas_step(name, batch)
  box = {'state': state}

  def train():
    box['state'], loss = step_fn(box['state'], x, y)
    loss.block_until_ready()

  def fwd():
    p, bs = box['state'][:2]
    forward({'params': p, 'batch_stats': bs}, x).block_until_ready()

  n = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state[0]))
  return train, fwd, n, (f'jax {jax.__version__}, flax, '
                         f'{jax.device_count()} {jax.default_backend()} device')


def setup_torch(name: str, batch: int, threads: int):
  import torch
  torch.set_num_threads(threads)
  constructors, note = torch_models()
  torch.manual_seed(0)
  model = constructors[name](num_classes=1000)
  n = sum(p.numel() for p in model.parameters())
  assert n == TORCH_PARAMS[name], (name, n)
  opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
  loss_fn = torch.nn.CrossEntropyLoss()
  gen = torch.Generator().manual_seed(0)
  x = torch.randn(batch, 3, 224, 224, generator=gen)
  y = torch.randint(0, 1000, (batch,), generator=gen)

  def train():
    model.train()
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()

  def fwd():
    model.eval()
    with torch.inference_mode():
      model(x)

  return train, fwd, n, f'torch {torch.__version__}, {torch.get_num_threads()} threads, {note}'


def setup_keras(name: str, batch: int, threads: int):
  import numpy as np
  import keras
  if keras.backend.backend() == 'tensorflow':
    import tensorflow as tf
    try:
      tf.config.threading.set_intra_op_parallelism_threads(threads)
      tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
      pass
  build = {'mobilenet_v2': keras.applications.MobileNetV2,
           'mobilenet_v3_large': keras.applications.MobileNetV3Large}[name]
  kwargs = {'include_preprocessing': False} if name == 'mobilenet_v3_large' else {}
  model = build(weights=None, input_shape=(224, 224, 3), classes=1000, **kwargs)
  model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  rng = np.random.default_rng(0)
  x = rng.normal(size=(batch, 224, 224, 3)).astype(np.float32)
  y = rng.integers(0, 1000, batch).astype(np.int32)
  n = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
  return (lambda: model.train_on_batch(x, y), lambda: model.predict_on_batch(x), n,
          f'keras {keras.__version__} ({keras.backend.backend()})')


SETUPS = {'mnas': setup_mnas, 'torch': setup_torch, 'keras': setup_keras}


def time_rounds(impls: dict, batch: int, rounds: int, steps: int, warmup: int):
  """{(impl, mode): [img/s per round]}, implementations interleaved within each round."""
  for fns in impls.values():
    for fn in fns:
      for _ in range(warmup):
        fn()
  result = {(impl, mode): [] for impl in impls for mode in ('train', 'forward')}
  for r in range(rounds):
    for impl, (train, fwd) in impls.items():
      for mode, fn in (('train', train), ('forward', fwd)):
        t = time.perf_counter()
        for _ in range(steps):
          fn()
        result[impl, mode].append(batch * steps / (time.perf_counter() - t))
    print(f'  round {r + 1}/{rounds}: ' + ', '.join(
        f'{impl} {mode} {v[-1]:.1f}' for (impl, mode), v in result.items()), flush=True)
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--models', default='mobilenet_v2,mobilenet_v3_large')
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--rounds', type=int, default=5)
  parser.add_argument('--steps', type=int, default=3, help='calls per round and mode')
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--peers', default='torch,keras')
  parser.add_argument('--threads', type=int, default=os.cpu_count())
  parser.add_argument('--tuned_malloc', action='store_true',
                      help='re-run with ' + ' '.join(f'{k}={v}' for k, v in MALLOC_ENV.items()))
  args = parser.parse_args()
  if args.tuned_malloc and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
    os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, **MALLOC_ENV})

  os.environ.setdefault('JAX_PLATFORMS', 'cpu')
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  malloc = ' '.join(f'{k}={os.environ[k]}' for k in MALLOC_ENV if k in os.environ) or 'default'
  print(f'{os.cpu_count()} cpus, batch {args.batch}, float32, {args.rounds} rounds x '
        f'{args.steps} steps, malloc: {malloc}', flush=True)

  rows, notes = [], []
  for name in args.models.split(','):
    impls, info = {}, {}
    for impl in ['mnas'] + [p for p in args.peers.split(',') if p]:
      try:
        train, fwd, n, desc = SETUPS[impl](name, args.batch, args.threads)
      except ImportError as e:
        notes.append(f'{impl}: skipped ({e})')
        continue
      impls[impl], info[impl] = (train, fwd), (n, desc)
      print(f'{name} {impl}: {n:,} params; {desc}', flush=True)
    result = time_rounds(impls, args.batch, args.rounds, args.steps, args.warmup)
    med = {k: statistics.median(v) for k, v in result.items()}
    best = {k: max(v) for k, v in result.items()}
    for impl in impls:
      rows.append((name, impl, info[impl][0],
                   *[(med[impl, m], best[impl, m], med['mnas', m] / med[impl, m],
                      best['mnas', m] / best[impl, m]) for m in ('train', 'forward')]))
  print()
  for note in sorted(set(notes)):
    print(note)
  print('img/s: median over rounds (best round); mnas/peer: ratio of medians (of bests)')
  header = (f'{"model":<19} {"impl":<5} {"params":>9} | {"train img/s":>17} {"mnas/peer":>13} | '
            f'{"forward img/s":>17} {"mnas/peer":>13}')
  print(header)
  print('-' * len(header))
  for name, impl, n, *modes in rows:
    cells = []
    for med_, best_, ratio, best_ratio in modes:
      cells.append(f'{med_:8.2f} ({best_:6.2f}) ' +
                   (f'{"":>13}' if impl == 'mnas' else f'{ratio:5.2f}x ({best_ratio:4.2f}x)'))
    print(f'{name:<19} {impl:<5} {n:>9,} | ' + ' | '.join(cells))


if __name__ == '__main__':
  main()
