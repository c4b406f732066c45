"""The latency target T of a search's reward, relative to its latency table.

A target in milliseconds (`config.reward.target_ms`) means something on one machine only: on
another, or on the same one under load, every candidate can be above it. With
`config.reward.target_quantile = q`, T is instead the q-quantile of the predicted latencies
of `config.reward.target_samples` architectures drawn uniformly from the space (numpy seed
0, at the search's resolution) on the search's own table, so "the space's median" is the
same target on every machine. It is resolved once, when the search starts, and kept:

  workdir/latency_target.json   {quantile, samples, target_ms, table}: read back on resume
                                and by the report, so T never moves within a search

`resolve` returns the config with `reward.target_ms` set to T (a copy); every method reads
its target from there.
"""

from __future__ import annotations

import os

import numpy as np
from absl import logging

from mnas import jsonfile

FILE = 'latency_target.json'


def sample_latencies(space, resolution: int, predictor, num: int) -> np.ndarray:
  """Predicted ms of `num` uniform samples of `space` (numpy seed 0) at `resolution` (0: the
  space's)."""
  rng = np.random.default_rng(0)
  archs = [space.sample(rng) for _ in range(num)]
  if resolution:
    archs = [a.replace(resolution=resolution) for a in archs]
  return np.asarray(predictor.predict_batch(archs), np.float64)


def resolve(config, space, predictor, workdir: str):
  """`config` itself when `reward.target_quantile` is None; else a copy whose
  `reward.target_ms` is T (computed now, or read from workdir/latency_target.json)."""
  q = config.reward.target_quantile
  if q is None:
    return config
  path = os.path.join(workdir, FILE)
  record = jsonfile.read(path, None)
  if record is None:
    lat = sample_latencies(space, config.resolution, predictor, config.reward.target_samples)
    record = dict(quantile=float(q), samples=int(config.reward.target_samples),
                  target_ms=float(np.quantile(lat, q)),
                  table=getattr(getattr(predictor, 'table', None), 'target', ''))
    jsonfile.write(path, record)
  logging.info('latency target T = %.4f ms: the %g quantile of %d uniform architectures of the '
               'space, predicted on the %s table', record['target_ms'], record['quantile'],
               record['samples'], record['table'] or 'given')
  return with_target(config, record['target_ms'])


def with_target(config, target_ms: float):
  """A copy of `config` with reward.target_ms = target_ms."""
  out = config.copy_and_resolve_references()
  out.reward.target_ms = float(target_ms)
  return out


def resolved(config, workdir: str):
  """The config a finished (or running) search in `workdir` used: its recorded T, if any."""
  record = jsonfile.read(os.path.join(workdir, FILE), None)
  return config if record is None else with_target(config, record['target_ms'])
