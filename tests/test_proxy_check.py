"""launch.py proxy-check: the rank statistics, a real run on the tiny dataset, kill -9 and
resume (mnas/search/proxy_check.py)."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments import proxy_check as proxy_check_config
from mnas.errors import ConfigError
from mnas.search import proxy_check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_statistics_by_hand():
  # One discordant pair of 6: tau = (5 - 1) / 6; ranks differ by (0, 0, 1, 1):
  # rho = 1 - 6 * 2 / (4 * 15) = 0.8; top 2 {3, 2} and {2, 3}: the same.
  out = proxy_check.statistics(np.array([.1, .2, .3, .4]), np.array([.5, .6, .8, .7]), 2)
  assert out['kendall_tau'] == pytest.approx(4 / 6)
  assert out['spearman_rho'] == pytest.approx(0.8)
  assert out['top_k_overlap'] == 1.0
  # 2 concordant, 4 discordant pairs: tau = -2 / 6; rank differences (-3, 0, 2, 1):
  # rho = 1 - 6 * 14 / 60 = -0.4; top 2 {3, 2} against {0, 3}: half.
  out = proxy_check.statistics(np.array([.1, .2, .3, .4]), np.array([.8, .6, .5, .7]), 2)
  assert out['kendall_tau'] == pytest.approx(-1 / 3)
  assert out['spearman_rho'] == pytest.approx(-0.4)
  assert out['top_k_overlap'] == 0.5


def test_bad_configs_are_refused_before_work(data_dir):
  c = proxy_check_config.get_config('tiny')
  c.train.data_dir = data_dir
  c.top_k = 9
  with pytest.raises(ConfigError, match='top_k=9'):
    proxy_check.check_config(c)
  c.top_k, c.reference_factor = 2, 1.0
  with pytest.raises(ConfigError, match='reference_factor'):
    proxy_check.check_config(c)


@pytest.mark.slow  # About 60 s: three XLA compiles (issue 14: compile overhead).
def test_a_tiny_run_writes_its_report(data_dir, tmp_path):
  c = proxy_check_config.get_config('tiny')
  c.train.data_dir = data_dir
  c.num_archs = 3
  out = proxy_check.main(c, str(tmp_path))
  assert out['num_archs'] == out['compared'] == 3
  assert out['proxy_steps'] == 4 and out['reference_steps'] == 8
  assert -1 <= out['kendall_tau'] <= 1 and 0 <= out['top_k_overlap'] <= 1
  assert all(0 <= a['proxy'] <= 1 and 0 <= a['reference'] <= 1 for a in out['archs'])
  assert json.loads((tmp_path / 'proxy_check.json').read_text())['archs'] == out['archs']
  assert (tmp_path / 'proxy_check.png').stat().st_size > 0
  assert os.listdir(tmp_path / 'tensorboard')


# A proxy-check process whose trainings are fakes taking SLEEP seconds each: accuracy from
# the architecture's width, the reference's a monotone function of it.
_RUN = '''
import os, sys, time
sys.path.insert(0, 'tests')
from experiments import proxy_check as pc
from mnas.search import proxy_check
from mnas.search.evaluation import Outcome
c = pc.get_config('tiny')
c.num_archs = 6
def train(arch, cfg, steps):
  time.sleep(float(os.environ['SLEEP']))
  width = sum(l.out * l.expansion * l.kernel for l in arch.layers)
  return Outcome('done', width / 1e5 + (0.1 if steps > cfg.num_train_steps else 0.0))
proxy_check.check_config = lambda config: None  # No dataset needed: the trainings are fakes.
with proxy_check.workdir_lib.hold(sys.argv[1], 'proxy_check', c):
  proxy_check.run(c, sys.argv[1], train_fn=train)
'''


def _rows(workdir):
  path = os.path.join(workdir, 'results.sqlite')
  if not os.path.exists(path):
    return []
  with sqlite3.connect(path, timeout=30) as db:
    try:
      return db.execute('SELECT stage, slot, status, arch_id FROM evaluations ORDER BY row'
                        ).fetchall()
    except sqlite3.OperationalError:  # The file exists, its schema is not written yet.
      return []


def test_kill_9_and_resume(tmp_path):
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu', SLEEP='0.4')
  cmd = [sys.executable, '-c', _RUN, str(tmp_path)]
  proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
  deadline = time.time() + 120
  while time.time() < deadline and sum(r[2] == 'done' for r in _rows(tmp_path)) < 3:
    time.sleep(0.05)
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()
  before = _rows(tmp_path)
  assert 3 <= sum(r[2] == 'done' for r in before) < 12, before
  out = subprocess.run(cmd, cwd=ROOT, env=dict(env, SLEEP='0'), capture_output=True,
                       text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  after = _rows(tmp_path)
  # One finished row per (stage, slot); those finished before the kill were kept.
  assert sorted((s, k) for s, k, *_ in after) == sorted(
      (s, k) for s in proxy_check.STAGES for k in range(6))
  assert all(r in after for r in before if r[2] == 'done')
  report = json.loads((tmp_path / 'proxy_check.json').read_text())
  # The reference is a monotone function of the proxy: the rankings agree.
  assert report['kendall_tau'] == pytest.approx(1.0) and report['top_k_overlap'] == 1.0
