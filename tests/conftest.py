"""Shared test set-up: tests run on CPU; multi-device tests spawn their own processes.

Fixtures and helpers for every test file:
  data_dir                    the tiny embedded dataset (`mnas_shapes/tiny`, 600 train / 200
                              test images), prepared once per session ($MNAS_TEST_DATA_DIR
                              when set, else a temporary directory)
  train_config(**overrides)   experiments/train.py's config (every trainer field)
  tiny_train_config(data_dir, **overrides)   the same on the tiny dataset, sized for tests
  macs_ms, MacsPredictor      a latency stand-in: milliseconds = millions of MACs (no table)
  fake_proxy                  a proxy task stand-in: accuracy from the widths and kernels,
                              one family of architectures fails (no training)
Slow tests (minutes) carry `@pytest.mark.slow`: deselected by default (setup.cfg), run with
`python -m pytest -m slow tests`.
"""
import atexit
import os
import shutil
import sys
import tempfile

import pytest

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# JAX's persistent compilation cache, shared by this session's tests and the processes they
# start (launch.py runs, multi-process tests): a program compiled once (the quickstart's
# candidates, a reference model's steps) is read back, not compiled again.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='mnas-tests-jax-cache-')
  atexit.register(shutil.rmtree, os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TINY = 'mnas_shapes/tiny'


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory) -> str:
  """The tiny embedded dataset, generated once (about 2 s) for the whole session."""
  d = os.environ.get('MNAS_TEST_DATA_DIR') or str(tmp_path_factory.mktemp('tfds'))
  from mnas import data
  data.dataset_info(TINY, d)
  return d


def train_config(**overrides):
  """experiments/train.py's config with `overrides`, each of which must be one of its fields."""
  from experiments import train
  config = train.get_config()
  unknown = sorted(set(overrides) - set(config.keys()))
  assert not unknown, f'not fields of experiments/train.py: {unknown}'
  config.update(overrides)
  return config


def tiny_train_config(data_dir, **overrides):
  """train_config on the tiny dataset in `data_dir`: 32x32, batch 16, 100 images held out for
  validation, a log line every step, one reader thread; then `overrides`."""
  return train_config(**{**dict(dataset=TINY, data_dir=str(data_dir), holdout=100, batch_size=16,
                                resolution=32, log_every_steps=1, data_threads=1),
                         **overrides})


def macs_ms(arch, num_classes: int = 1000) -> float:
  """A latency stand-in: milliseconds proportional to multiply-adds (monotone in widths)."""
  from mnas import counting
  return counting.count(arch, num_classes)['macs'] / 1e6


class MacsPredictor:
  """A latency predictor stand-in over `macs_ms` (the interface of mnas.latency.Predictor)."""

  def __init__(self, num_classes: int = 1000):
    self.num_classes = num_classes

  def predict(self, arch) -> float:
    return macs_ms(arch, self.num_classes)

  def predict_batch(self, archs) -> list[float]:
    return [self.predict(a) for a in archs]


def fake_proxy(arch):
  """Accuracy grows with width and kernel; one architecture family fails (as if diverged)."""
  from mnas.search.evaluation import Outcome
  rows = arch.describe_layers()
  if rows[0]['kernel'] == 7 and rows[0]['cout'] == 24:
    return Outcome('failed', reason='loss is NaN at step 3')
  acc = 0.3 + 0.001 * sum(r['cout'] for r in rows) + 0.01 * sum(r['kernel'] for r in rows) / 10
  return Outcome('done', min(acc, 0.99))
