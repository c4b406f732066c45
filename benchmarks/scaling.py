r"""Candidate-parallel search: candidates evaluated per minute with 1, 2, ... processes.

  nice -n 10 python benchmarks/scaling.py [--processes 1,2] [--num_steps 2]
      [--candidates_per_step 4] [--train_steps 60] [--workdir /tmp/mnas_scaling]
  python benchmarks/scaling.py --sleep 4 --processes 1,2,3,4 --num_steps 3 --pin 0

Runs `launch.py search` on the quickstart setting (experiments/quickstart.py: tiny space at
32x32, embedded dataset, on-demand xla-cpu latency table) as P processes on localhost,
joined by jax.distributed (JAX's gloo CPU collectives), each process one group of one CPU
device pinned to its own core (`--pin`: a group's hardware stays fixed as P grows, as on a
cluster). Every run is the same search (same seed: same candidates). Prints, per P: the
candidates evaluated, those trained (the rest are reused duplicates), the wall seconds of
the command, the seconds from the first candidate's start to the last one's end in the
results store, candidates per minute (over the latter), the speed-up over P = 1, the mean
seconds of one training and the mean number of candidates in flight. With `--sleep S` the
proxy task is a stand-in that sleeps S seconds (and latency is predicted from MACs): the
shape of the curve for more groups than this machine has cores.

Expected shape: a step's candidates that need training are dealt round-robin to the P
groups, so a step takes about ceil(C_train / P) candidate trainings, plus process 0's
sequential part (sampling, latency lookups and measurements, controller update,
checkpoint). Throughput therefore grows about linearly in P while P << candidates_per_step,
steps down at the divisors of the step's batch, and flattens at P = candidates_per_step
(more groups than candidates idle); to use more groups raise candidates_per_step with P
(MnasNet: 8,000 candidates on 64 TPUv2 devices). Devices per candidate (the devices of one
process) set the time of one training, not the number run at once.
"""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


# `--sleep S`: launch.py search with a stand-in proxy task that sleeps S seconds per candidate
# (a group of fixed speed, whatever the load of this machine) and a MACs-based latency
# predictor: isolates the search's own scaling (dealing, gathering, the sequential part).
_SLEEPING = """
import hashlib, runpy, sys, time, types
from mnas import counting, latency
from mnas.search import multi_trial
seconds = float(sys.argv.pop(1))

def train_proxy(config):
  def proxy(arch):
    time.sleep(seconds)
    acc = 0.5 + int(hashlib.md5(arch.id.encode()).hexdigest(), 16) % 400 / 1000
    return types.SimpleNamespace(status='done', reason=None, val_accuracy=acc)
  return proxy

class MacsPredictor:
  def predict_batch(self, archs):
    return [counting.count(a, 10)['macs'] / 2e7 for a in archs]

multi_trial.train_proxy = train_proxy
latency.predictor_for_search = lambda *args, **kwargs: MacsPredictor()
sys.argv = ['launch.py'] + sys.argv[1:]
runpy.run_path('launch.py', run_name='__main__')
"""


def run_search(p: int, workdir: str, flags: list[str], pin: bool, timeout: float,
               sleep: float = 0.0) -> float:
  """Runs the search as p processes; returns the wall seconds of the slowest."""
  port = _free_port()
  cores = sorted(os.sched_getaffinity(0))
  procs = []
  t0 = time.time()
  for i in range(p):
    prog = ['-c', _SLEEPING, str(sleep)] if sleep else [os.path.join(ROOT, 'launch.py')]
    cmd = [sys.executable, *prog, 'search',
           f'--config={os.path.join(ROOT, "experiments", "quickstart.py")}',
           f'--workdir={workdir}'] + flags
    if p > 1:
      cmd += [f'--coordinator_address=127.0.0.1:{port}', f'--num_processes={p}',
              f'--process_id={i}']
    env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
    core = {cores[i % len(cores)]}
    procs.append(subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(f'{workdir}.{i}.log', 'w'),
        preexec_fn=(lambda c=core: os.sched_setaffinity(0, c)) if pin else None))
  try:
    for proc in procs:
      if proc.wait(timeout=max(1.0, timeout - (time.time() - t0))) != 0:
        raise RuntimeError(f'a process failed; see {workdir}.*.log')
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  return time.time() - t0


def store_stats(workdir: str) -> tuple[int, int, float, float]:
  """(candidates evaluated, trained, seconds from first start to last finish, training
  seconds summed over the trained candidates)."""
  with sqlite3.connect(os.path.join(workdir, 'results.sqlite')) as db:
    n, trained, t0, t1, busy = db.execute(
        "SELECT COUNT(*), SUM(status IN ('done', 'failed')), MIN(started), MAX(finished), "
        "SUM(CASE WHEN status IN ('done', 'failed') THEN train_seconds ELSE 0 END) "
        "FROM evaluations WHERE status != 'running'").fetchone()
  return n, trained, t1 - t0, busy


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--processes', default='1,2')
  ap.add_argument('--num_steps', type=int, default=2)
  ap.add_argument('--candidates_per_step', type=int, default=4)
  ap.add_argument('--train_steps', type=int, default=60)
  ap.add_argument('--sleep', type=float, default=0.0,
                  help='> 0: candidates "train" by sleeping this many seconds (see _SLEEPING).')
  ap.add_argument('--pin', type=int, default=1, help='Pin process i to core i (mod cores).')
  ap.add_argument('--timeout', type=float, default=1800)
  ap.add_argument('--workdir', default='/tmp/mnas_scaling')
  args = ap.parse_args()
  flags = [f'--config.num_steps={args.num_steps}',
           f'--config.candidates_per_step={args.candidates_per_step}',
           f'--config.train.num_train_steps={args.train_steps}',
           '--config.train.data_threads=1',
           '--config.latency.calibration_archs=0', '--config.latency.repeats=5',
           '--config.latency.warmup=1', '--config.hparams_per_candidate=False']
  sys.path.insert(0, ROOT)
  from mnas import data
  data.dataset_info('mnas_shapes')  # Generated once (default TFDS data_dir), not timed.
  os.makedirs(args.workdir, exist_ok=True)
  rows = []
  for p in [int(x) for x in args.processes.split(',')]:
    workdir = os.path.join(args.workdir, f'p{p}')
    if os.path.exists(workdir):
      raise SystemExit(f'{workdir} exists: use a fresh --workdir (a search there would resume)')
    wall = run_search(p, workdir, flags, bool(args.pin), args.timeout, args.sleep)
    n, trained, span, busy = store_stats(workdir)
    rows.append((p, n, trained, wall, span, 60.0 * n / span, busy / trained, busy / span))
    print(f'P={p}: {n} candidates ({trained} trained) in {span:.1f} s of search, '
          f'{wall:.1f} s wall', flush=True)
  base = rows[0][5]
  # s/train: mean seconds of one candidate's training (grows when the groups share CPUs);
  # in flight: training seconds / search seconds, the mean number of candidates training.
  print(f'\n{"processes":>9} {"candidates":>10} {"trained":>7} {"wall_s":>7} {"search_s":>8} '
        f'{"cand/min":>8} {"speed-up":>8} {"s/train":>7} {"in flight":>9}')
  for p, n, trained, wall, span, rate, per, flight in rows:
    print(f'{p:9d} {n:10d} {trained:7d} {wall:7.1f} {span:8.1f} {rate:8.2f} {rate / base:8.2f} '
          f'{per:7.1f} {flight:9.2f}')


if __name__ == '__main__':
  main()
