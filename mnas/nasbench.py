"""Tabular NAS benchmarks: every architecture of a space with its accuracy, read from a file.

NAS-Bench-Macro (Su et al., "Prioritized Architecture Sampling with Monto-Carlo Tree Search",
CVPR 2021; https://github.com/xiusu/NAS-Bench-Macro, file data/nas-bench-macro_cifar10.json):
6,561 architectures of the `nas_bench_macro` space (search_spaces/nas_bench_macro.py), each
trained from scratch on CIFAR-10 with 3 seeds. The file maps a key of 8 digits, one per
searchable layer, '0' identity, '1' MBConv3 3x3, '2' MBConv6 5x5, to
{test_acc: [3 seeds, %], mean_acc, std, params, flops}. The key's digits are the space's
decision indices, in order.

mnas does not ship the file (its licence is the benchmark's): give its path.

As the search's proxy task (`config.proxy.kind = 'nas_bench_macro'`, `MacroProxy`), a
candidate's accuracy is looked up instead of trained: the mean of the 3 seeds, or one seed
drawn per architecture (`config.proxy.accuracy = 'seed'`: the noise a real proxy has). The
rest is the real search: store, resume, latency table, TensorBoard, report.
"""

from __future__ import annotations

import dataclasses
import json
import os

import zlib

import numpy as np

from mnas import config as config_lib
from mnas.errors import ConfigError, DataError
from mnas.space import parse as parse_arch

MACRO_URL = 'https://github.com/xiusu/NAS-Bench-Macro (data/nas-bench-macro_cifar10.json)'
MACRO_LAYERS = 8
MACRO_OPTIONS = 3
# config.proxy.kind: train on config.train, look up, or Accel-NASBench's surrogates.
PROXIES = ('train', 'nas_bench_macro', 'accel_nasbench')
ACCURACIES = ('mean', 'seed')
RULES = {'proxy.kind': config_lib.one_of(*PROXIES),
         'proxy.accuracy': config_lib.one_of(*ACCURACIES)}


@dataclasses.dataclass(frozen=True)
class Table:
  """A tabular benchmark as arrays, one row per key of the file (sorted by key).

  `indices` [N, D] are decision indices of the space; `accuracy` [N, S] the per-seed test
  accuracies as fractions (0-1); `params` and `flops` [N] the file's counts.
  """
  path: str
  keys: tuple[str, ...]
  indices: np.ndarray
  accuracy: np.ndarray
  params: np.ndarray
  flops: np.ndarray

  @property
  def mean_accuracy(self) -> np.ndarray:
    return self.accuracy.mean(axis=1)

  def row(self, indices) -> int:
    """The row of decision `indices` (base-3 number of the key's digits)."""
    return self._row_of[''.join(str(int(i)) for i in np.asarray(indices).reshape(-1))]

  @property
  def _row_of(self) -> dict[str, int]:
    cache = self.__dict__.get('_rows')
    if cache is None:
      cache = {k: i for i, k in enumerate(self.keys)}
      object.__setattr__(self, '_rows', cache)
    return cache


def load_macro(path: str) -> Table:
  """Reads NAS-Bench-Macro's JSON file; a DataError names the file and what is wrong."""
  if not os.path.isfile(path):
    raise DataError(f'NAS-Bench-Macro file {path!r} does not exist; get '
                    f'nas-bench-macro_cifar10.json from {MACRO_URL}')
  try:
    with open(path) as f:
      raw = json.load(f)
  except (OSError, ValueError) as e:
    raise DataError(f'{path}: not a readable JSON file ({e})') from None
  if not isinstance(raw, dict) or not raw:
    raise DataError(f'{path}: expected a JSON object of NAS-Bench-Macro results')
  keys = tuple(sorted(raw))
  for k in keys:
    if len(k) != MACRO_LAYERS or set(k) - set('012'):
      raise DataError(f'{path}: key {k!r} is not {MACRO_LAYERS} digits of 0/1/2: '
                      'not a NAS-Bench-Macro file')
    if not all(f in raw[k] for f in ('test_acc', 'params', 'flops')):
      raise DataError(f'{path}: entry {k!r} lacks test_acc/params/flops')
  expected = MACRO_OPTIONS ** MACRO_LAYERS
  if len(keys) != expected:
    raise DataError(f'{path}: {len(keys)} architectures, expected {expected}')
  return Table(
      path=path, keys=keys,
      indices=np.array([[int(c) for c in k] for k in keys], np.int32),
      accuracy=np.array([raw[k]['test_acc'] for k in keys], np.float64) / 100.0,
      params=np.array([raw[k]['params'] for k in keys], np.int64),
      flops=np.array([raw[k]['flops'] for k in keys], np.int64))


class MacroProxy:
  """NAS-Bench-Macro as a proxy task: `arch -> Outcome` with the file's test accuracy.

  `accuracy`: 'mean' of the 3 seeds, or 'seed': one of them, drawn per (seed, architecture),
  so a resumed search sees the same value.
  """

  def __init__(self, table: Table, accuracy: str = 'mean', seed: int = 0):
    import search_spaces  # The space is the benchmark's; imported here, not by the loader.
    self.table, self.accuracy, self.seed = table, accuracy, seed
    self.space = search_spaces.get_space('nas_bench_macro')

  def __call__(self, arch):
    from mnas.search.evaluation import Outcome
    row = self.table.row(self.space.encode(arch))
    if self.accuracy == 'mean':
      return Outcome('done', val_accuracy=float(self.table.mean_accuracy[row]))
    gen = np.random.default_rng([self.seed, zlib.crc32(arch.id.encode())])
    return Outcome('done', val_accuracy=float(gen.choice(self.table.accuracy[row])))


def check_proxy(config) -> None:
  """Raises ConfigError / DataError for a search config whose benchmark proxy cannot run."""
  config_lib.check(config, RULES)
  if config.proxy.kind in ('train', 'accel_nasbench'):  # The latter: mnas.accel_nasbench.
    return
  check_benchmark(config, space='nas_bench_macro', resolution=32, name='NAS-Bench-Macro',
                  example='nas-bench-macro_cifar10.json', url=MACRO_URL)
  load_macro(config.proxy.path)


def check_benchmark(config, *, space: str, resolution: int, name: str, example: str,
                    url: str) -> None:
  """What every benchmark proxy asks of a search config: the benchmark's space, its
  resolution (or 0) and a path to its data."""
  if config.space != space:
    raise ConfigError(f'config.proxy.kind={config.proxy.kind!r} needs config.space={space!r}, '
                      f'not {config.space!r}')
  if config.resolution not in (0, resolution):
    raise ConfigError(f'config.resolution={config.resolution} is not allowed with the {name} '
                      f'proxy; allowed: 0 or {resolution} (the benchmark\'s)')
  if not config.proxy.path:
    raise ConfigError(f'config.proxy.path is empty: give the {name} data '
                      f'(--config.proxy.path=.../{example}; from {url})')


def proxy_for(config) -> MacroProxy:
  """The benchmark proxy of a search config (`check_proxy` first)."""
  return MacroProxy(load_macro(config.proxy.path), config.proxy.accuracy, config.seed)


def predicted_latency(table: Table, predictor) -> np.ndarray:
  """Every row's latency in ms from a latency predictor of the nas_bench_macro space (e.g.
  `mnas.latency.Predictor` of a table measured for it): the hardware metric of a reward
  whose exact optimum over the whole benchmark can then be computed."""
  import search_spaces
  space = search_spaces.get_space('nas_bench_macro')
  return np.asarray(predictor.predict_batch([space.decode(i) for i in table.indices]),
                    np.float64)


def ground_truth(config, workdir: str, rows: list[dict]) -> dict:
  """What a search on the benchmark found, against the exact optimum of its own reward over
  every architecture (the seeds' mean accuracy; latency from the search's table), and, for a
  multi-objective search, its front's hypervolume against the exact front's. Printed."""
  import search_spaces
  from mnas import latency, pareto, rewards
  table, space = load_macro(config.proxy.path), search_spaces.get_space('nas_bench_macro')
  lat_table = latency.load_or_build(config.latency, space, os.path.join(workdir, 'latency'),
                                    progress=False)
  ms = predicted_latency(table, latency.Predictor(lat_table))
  acc = table.mean_accuracy
  reward = np.asarray(rewards.from_config(config.reward)(acc, ms), np.float64)
  found = np.array(sorted({table.row(space.encode(parse_arch(r['arch']))) for r in rows}))
  best, mine = int(np.argmax(reward)), int(found[np.argmax(reward[found])])
  out = dict(optimum=float(reward[best]), optimum_key=table.keys[best], found=float(reward[mine]),
             found_key=table.keys[mine], regret=float(reward[best] - reward[mine]),
             rank=len(np.unique(reward[reward > reward[mine]])) + 1)
  print(f'\nNAS-Bench-Macro ground truth ({config.reward.kind} reward, mean of the seeds): '
        f'optimum {out["optimum"]:.4f} (key {out["optimum_key"]}); the best found '
        f'{out["found"]:.4f} (key {out["found_key"]}), regret {out["regret"]:.4f}, '
        f'rank {out["rank"]} of the {len(np.unique(reward))} distinct rewards')
  if config.reward.kind == 'pareto':
    points = np.stack([acc, -ms], 1)
    ref = points.min(0)
    out['hypervolume_ratio'] = (pareto.hypervolume_2d(points[found], ref)
                                / pareto.hypervolume_2d(points, ref))
    print(f'front hypervolume: {out["hypervolume_ratio"]:.4f} of the exact front\'s (reference: '
          'the lowest accuracy and the highest latency of the benchmark)')
  return out


def latency_from_table(table: Table, path: str) -> np.ndarray:
  """Every row's latency in ms, predicted from the latency table file at `path` (a table of
  the nas_bench_macro space at 32x32 with a 10-class head, e.g. benchmarks/tables/)."""
  from mnas import latency
  lat_table = latency.LatencyTable.load(path, expect=dict(space='nas_bench_macro', resolution=32,
                                                          num_classes=10))
  return predicted_latency(table, latency.Predictor(lat_table))
