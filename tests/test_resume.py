"""Kill -9 a real search process mid-run, run the same command again: nothing lost or duplicated."""
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

OVERRIDES = [
    '--config.num_steps=1', '--config.candidates_per_step=2', '--config.controller=reinforce',
    '--config.train.dataset=mnas_shapes/tiny', '--config.train.num_train_steps=4',
    '--config.train.batch_size=16', '--config.train.log_every_steps=2',
    '--config.latency.calibration_archs=0', '--config.latency.repeats=3',
    '--config.latency.warmup=1', '--config.latency.min_seconds=0.0',
    '--config.hparams_per_candidate=False',
    '--config.reward.target_samples=1',  # T: one architecture's entries, not ten's.
]


def _cmd(workdir, data_dir):
  return [sys.executable, os.path.join(ROOT, 'launch.py'), 'search',
          f'--config={os.path.join(ROOT, "experiments", "quickstart.py")}', f'--workdir={workdir}',
          f'--config.train.data_dir={data_dir}'] + OVERRIDES


def _rows(workdir):
  path = os.path.join(workdir, 'results.sqlite')
  if not os.path.exists(path):
    return []
  with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
    try:
      return db.execute('SELECT step, slot, status, arch_id FROM evaluations ORDER BY row'
                        ).fetchall()
    except sqlite3.OperationalError as e:  # The store's table is not created yet.
      if 'no such table' in str(e):
        return []
      raise


# About 45 s (two launch.py processes with the real trainer). The default suite kills -9 a
# search process in tests/test_workdir.py (fake proxy) and a training run in tests/test_train.py.
@pytest.mark.slow
def test_kill_9_and_resume(tmp_path):
  workdir, data_dir = str(tmp_path / 'work'), str(tmp_path / 'data')
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')
  proc = subprocess.Popen(_cmd(workdir, data_dir), env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
  deadline = time.time() + 400
  # Kill while the second candidate trains: one finished row, one in flight.
  while time.time() < deadline and proc.poll() is None:
    rows = _rows(workdir)
    if sum(r[2] == 'done' for r in rows) >= 1 and any(r[2] == 'running' for r in rows):
      break
    time.sleep(0.5)
  assert proc.poll() is None, 'the search finished or died before it could be killed'
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()
  before = _rows(workdir)
  done_before = {(s, k): a for s, k, st, a in before if st == 'done'}
  assert done_before and any(r[2] == 'running' for r in before)

  out = subprocess.run(_cmd(workdir, data_dir), env=env, capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  after = _rows(workdir)
  # Exactly one finished row per (step, slot); the in-flight one was re-run, none duplicated.
  assert sorted((s, k) for s, k, *_ in after) == [(0, 0), (0, 1)]
  assert all(r[2] in ('done', 'reused', 'failed') for r in after)
  for (s, k), arch_id in done_before.items():  # Finished rows are kept as they were.
    assert (s, k, 'done', arch_id) in after
  # The controller's checkpoint was written after the resumed step's update.
  assert os.path.isdir(os.path.join(workdir, 'controller', '1'))
