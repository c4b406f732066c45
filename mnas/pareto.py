"""Pareto fronts of point sets: non-dominated sorting, crowding distance, 2-D hypervolume.

Every objective (column of `points` [n, M]) is MAXIMISED: pass -latency for a latency.
Point a dominates b when a >= b in every objective and a > b in at least one; equal points
do not dominate each other. Non-dominated sorting and crowding distance are those of
NSGA-II (Deb, Pratap, Agarwal & Meyarivan 2002, "A Fast and Elitist Multiobjective Genetic
Algorithm: NSGA-II", IEEE TEVC 6(2), Sec. III-A and III-B). The controllers' jitted
version is in mnas/controllers/evolution.py; this module is numpy, for reports and tests.
"""

from __future__ import annotations

import numpy as np


def _points(points) -> np.ndarray:
  points = np.asarray(points, np.float64)
  if points.ndim != 2:
    raise ValueError(f'expected points of shape [n, M], got {points.shape}')
  return points


def dominates(points) -> np.ndarray:
  """[n, n] bool: entry (i, j) is True when point i dominates point j."""
  p = _points(points)
  ge = np.all(p[:, None] >= p[None], axis=-1)
  gt = np.any(p[:, None] > p[None], axis=-1)
  return ge & gt


def ranks(points) -> np.ndarray:
  """Front index of every point, int [n]: 0 for the non-dominated points, 1 for those
  non-dominated once front 0 is removed, etc. (Deb et al. 2002, Sec. III-A)."""
  dom = dominates(points)
  rank = np.full(len(dom), -1)
  left = np.ones(len(dom), bool)
  r = 0
  while left.any():
    front = left & ~np.any(dom[left], axis=0)  # Not dominated by any point left.
    rank[front] = r
    left &= ~front
    r += 1
  return rank


def fronts(points) -> list[np.ndarray]:
  """The indices of every front, best first (front k = indices with ranks == k)."""
  rank = ranks(points)
  return [np.flatnonzero(rank == r) for r in range(rank.max(initial=-1) + 1)]


def crowding_distance(points) -> np.ndarray:
  """Crowding distance of each point of ONE front [n] (Deb et al. 2002, Sec. III-B).

  Per objective, the points are sorted; the two extremes get infinity and every other point
  adds the gap between its two neighbours divided by the objective's range over the front
  (an objective with a range of 0 adds nothing). Larger means less crowded.
  """
  p = _points(points)
  n = len(p)
  dist = np.zeros(n)
  if n <= 2:
    return np.full(n, np.inf)
  for f in p.T:
    order = np.argsort(f, kind='stable')
    span = f[order[-1]] - f[order[0]]
    dist[order[[0, -1]]] = np.inf
    if span > 0:
      dist[order[1:-1]] += (f[order[2:]] - f[order[:-2]]) / span
  return dist


def front(points) -> np.ndarray:
  """Indices of the non-dominated points, one per distinct point (the first), sorted by
  the first objective ascending (hence the second descending, on a 2-D front)."""
  p = _points(points)
  idx = np.flatnonzero(~np.any(dominates(p), axis=0))
  _, first = np.unique(p[idx], axis=0, return_index=True)
  idx = idx[np.sort(first)]
  return idx[np.argsort(p[idx, 0], kind='stable')]


def hypervolume_2d(points, reference) -> float:
  """Area dominated by a set of 2-D points and dominating `reference` (both maximised).

  The union over the points p of the boxes [reference, p]; points not better than the
  reference in both objectives add nothing. O(n log n): sorted by the first objective
  (descending), the strip between consecutive values of it is covered up to the highest
  second objective seen so far. Zitzler & Thiele 1998's S metric; Deb et al. 2002 do not
  use it, it is how fronts are compared.
  """
  p = _points(points).reshape(-1, 2)
  ref = np.asarray(reference, np.float64)
  if ref.shape != (2,):
    raise ValueError(f'expected a reference point of 2 values, got {ref.shape}')
  if not len(p):
    return 0.0
  p = p[np.argsort(-p[:, 0], kind='stable')]
  x = np.maximum(p[:, 0], ref[0])
  width = x - np.append(x[1:], ref[0])
  height = np.maximum(np.maximum.accumulate(p[:, 1]) - ref[1], 0.0)
  return float(np.sum(width * height))
