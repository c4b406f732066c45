"""The one evaluation service: evaluate a candidate once, record it, reuse it on resume.

Every search driver (the multi-trial loop, its candidate-parallel dealing, the one-shot
search's records, NetAdapt's proposals) evaluates candidates through `Evaluator.evaluate`,
so the rules below, which are what make resuming exact and duplicates free, live here only.
For a candidate at (stage, step, slot) of the results store, in this order:

  1. finished earlier   a finished row at (stage, step, slot) is returned as it is (a search
                        that was killed and resumed): never evaluated twice. Its architecture
                        must be the one sampled now, else the workdir belongs to another
                        search and `WorkdirMismatchError` is raised.
  2. reused             with `reuse`, an architecture finished before at another slot (done or
                        failed) is not evaluated again: its accuracy (or failure) is credited.
  3. skipped            predicted latency above `max_latency_ms`: failed, not worth a proxy.
  4. evaluated          `proxy(arch)` runs; an exception or a 'failed' result is recorded as
                        a failed candidate with its reason (the search goes on).

The row is written 'running' before the proxy runs and finished after it, so a killed search
knows which candidates were in flight. A failed candidate's reward is `failure_reward`.

A proxy is anything that maps an architecture to a result with `status` ('done' or
'failed'), `reason` and `val_accuracy`: training on the proxy task
(`mnas.train.train_candidate`), a lookup in a benchmark's table, a supernet's accuracy.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import numpy as np
from absl import logging

from mnas import counting
from mnas.errors import UserError
from mnas.search.store import Store
from mnas.space import Architecture


class WorkdirMismatchError(UserError):
  """The store holds another architecture at a (step, slot) than the one sampled now."""


class CandidatesFailedError(UserError):
  """Every candidate of a step failed for the same reason."""


@dataclasses.dataclass
class Outcome:
  """A proxy's result: what `Evaluator` reads of it (a TrainResult has these fields too)."""
  status: str                      # 'done' or 'failed'.
  val_accuracy: float | None = None
  reason: str | None = None


@dataclasses.dataclass
class Candidate:
  """One evaluation: the sample and, once evaluated, what the store recorded."""
  slot: int
  arch: Architecture
  indices: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int32))
  latency_ms: float | None = None
  status: str = 'pending'          # pending | done | failed | reused
  accuracy: float | None = None
  reward: float | None = None
  reason: str | None = None
  train_seconds: float = 0.0

  @property
  def ok(self) -> bool:
    return self.status in ('done', 'reused') and self.accuracy is not None


Proxy = Callable[[Architecture], Any]


class Evaluator:
  """Evaluates candidates of one stage of a results store by the rules of this module.

  Args:
    store: the results store.
    stage: the store's stage of these rows ('search', 'oneshot', 'netadapt', ...).
    proxy: the default proxy, `arch -> result` (see the module docstring).
    reward_fn: `(accuracy, latency_ms) -> reward`; None records no reward.
    failure_reward: the reward of a failed candidate.
    max_latency_ms: candidates predicted slower are skipped; None or 0: none is.
    reuse: credit an architecture's earlier result instead of evaluating it again.
    num_classes: classifier width for the params and MACs the rows record.
  """

  def __init__(self, store: Store, *, stage: str = 'search', proxy: Proxy | None = None,
               reward_fn: Callable[[float, float], float] | None = None,
               failure_reward: float | None = 0.0, max_latency_ms: float | None = None,
               reuse: bool = True, num_classes: int = 1000):
    self.store, self.stage, self.proxy = store, stage, proxy
    self.reward_fn, self.failure_reward = reward_fn, failure_reward
    self.max_latency_ms, self.reuse, self.num_classes = max_latency_ms, reuse, num_classes
    self._counts: dict[str, dict] = {}

  def action(self, step: int, cand: Candidate) -> tuple[str, dict | None]:
    """What `evaluate` will do: ('earlier' | 'reused', row), ('skip' | 'evaluate', None)."""
    earlier = self.store.slot(step, cand.slot, stage=self.stage)
    if earlier and earlier['status'] != 'running':
      if earlier['arch_id'] != cand.arch.id:
        raise WorkdirMismatchError(
            f'{self.store.path}: {self.stage} step {step} slot {cand.slot} holds architecture '
            f'{earlier["arch_id"]}, but this run sampled {cand.arch.id}: the workdir belongs '
            'to a search with another definition; use a new --workdir')
      return 'earlier', earlier
    seen = self.store.lookup(cand.arch.id) if self.reuse else None
    if seen is not None:
      return 'reused', seen
    limit = self.max_latency_ms
    if limit and cand.latency_ms is not None and cand.latency_ms > limit:
      return 'skip', None
    return 'evaluate', None

  def prepare(self, step: int, cand: Candidate, proxy: Proxy | None = None) -> None:
    """Starts preparing `cand` now if it will run the proxy and the proxy can
    (`prepare(arch, now=True)`: the training proxy compiles its programs on a thread)."""
    proxy = proxy or self.proxy
    if hasattr(proxy, 'prepare') and self.action(step, cand)[0] == 'evaluate':
      proxy.prepare(cand.arch, now=True)

  def evaluate_all(self, step: int, cands: list[Candidate], proxy: Proxy | None = None):
    """`evaluate` each of `cands` in turn, yielding each when done. While one runs its proxy
    (or at once, when it does not run it), the next is prepared if it will run the proxy and
    the proxy has `prepare(arch)` (the training proxy compiles its programs on a thread:
    `mnas.search.multi_trial.TrainProxy`)."""
    for i, cand in enumerate(cands):
      yield self.evaluate(step, cand, proxy, prepare=cands[i + 1] if i + 1 < len(cands) else None)

  def evaluate(self, step: int, cand: Candidate, proxy: Proxy | None = None,
               extra: dict | None = None, prepare: Candidate | None = None) -> Candidate:
    """Evaluates `cand` (or takes its earlier result) and records it; returns it filled in.
    `prepare`: the candidate to prepare while this one runs its proxy, or at once when this
    one does not run it (`evaluate_all`)."""
    what, row = self.action(step, cand)
    if what != 'evaluate' and prepare is not None:
      self.prepare(step, prepare, proxy)
    if what == 'earlier':
      cand.status, cand.accuracy, cand.reward = row['status'], row['accuracy'], row['reward']
      cand.reason, cand.train_seconds = row['reason'], row['train_seconds'] or 0.0
      return cand
    counts = self._count(cand.arch)
    row_id = self.store.start(step=step, slot=cand.slot, arch=cand.arch, decisions=cand.indices,
                              stage=self.stage, latency_ms=cand.latency_ms,
                              params=counts['params'], macs=counts['macs'], extra=extra or {})
    if what == 'reused':
      cand.status, cand.accuracy, cand.reason = 'reused', row['accuracy'], row['reason']
      failed = row['status'] == 'failed'
    elif what == 'skip':
      cand.status, failed = 'failed', True
      cand.reason = (f'skipped: predicted latency {cand.latency_ms:.2f} ms > max_latency_ms '
                     f'{self.max_latency_ms}')
    else:
      proxy = proxy or self.proxy
      if (prepare is not None and hasattr(proxy, 'prepare') and prepare.arch.id != cand.arch.id
          and self.action(step, prepare)[0] == 'evaluate'):
        proxy.prepare(prepare.arch)
      self.run_proxy(cand, proxy)
      failed = cand.status == 'failed'
    if failed:
      cand.reward = self.failure_reward
    elif self.reward_fn is not None:
      cand.reward = float(self.reward_fn(cand.accuracy, cand.latency_ms))
    self.store.finish(row_id, status=cand.status, reason=cand.reason,
                      accuracy=None if cand.status == 'failed' else cand.accuracy,
                      reward=cand.reward, train_seconds=cand.train_seconds)
    return cand

  @staticmethod
  def run_proxy(cand: Candidate, proxy: Proxy) -> None:
    """Runs `proxy` on `cand`; a crash or a failed result makes a failed candidate."""
    t0 = time.time()
    try:
      result = proxy(cand.arch)
      cand.status, cand.reason = result.status, result.reason or None
      cand.accuracy = result.val_accuracy if result.status == 'done' else None
    except Exception as e:  # A crashed candidate is a failed candidate, not a crashed search.
      logging.exception('candidate %s crashed', cand.arch.id)
      cand.status, cand.reason = 'failed', f'{type(e).__name__}: {e}'
    cand.train_seconds = time.time() - t0

  def _count(self, arch: Architecture) -> dict:
    if arch.id not in self._counts:
      self._counts[arch.id] = counting.count(arch, self.num_classes)
    return self._counts[arch.id]
