"""Shared test set-up: tests run on CPU; multi-device tests spawn their own processes.

Fixtures and helpers for every test file:
  data_dir                    the tiny embedded dataset (`mnas_shapes/tiny`, 600 train / 200
                              test images), prepared once per session ($MNAS_TEST_DATA_DIR
                              when set, else a temporary directory)
  train_config(**overrides)   experiments/train.py's config (every trainer field)
  tiny_train_config(data_dir, **overrides)   the same on the tiny dataset, sized for tests
Slow tests (minutes) carry `@pytest.mark.slow`: deselected by default (setup.cfg), run with
`python -m pytest -m slow tests`.
"""
import os
import sys

import pytest

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
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
