"""A workdir that cannot lie: resumed only with its own config, one writer at a time, bad input
refused before any work, damage and a full disk reported as such (real processes where a
process is the point; the proxy task and the latency table are the fakes of conftest)."""
import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import MacsPredictor, fake_proxy
from mnas import cli, search, workdir
from mnas.errors import ConfigError, DataError
from test_search import config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')

# A search process: config('reinforce', steps=3, per_step=3) with overrides, each candidate
# taking SLEEP seconds; errors as `launch.py` reports them (cli.run).
_SEARCH = '''
import json, os, sys, time
sys.path.insert(0, 'tests')
from conftest import MacsPredictor, fake_proxy
from test_search import config
from mnas import cli, search
cfg = config('reinforce', steps=3, per_step=3)
cfg.update_from_flattened_dict(json.loads(sys.argv[2]))
def proxy(arch):
  time.sleep(float(os.environ.get('SLEEP', '0')))
  return fake_proxy(arch)
cli.run(lambda: search.run(cfg, sys.argv[1], proxy=proxy, predictor=MacsPredictor()))
'''


def start(workdir_, overrides=None, sleep=0.0) -> subprocess.Popen:
  return subprocess.Popen(
      [sys.executable, '-c', _SEARCH, str(workdir_), json.dumps(overrides or {})], cwd=ROOT,
      env=dict(ENV, SLEEP=str(sleep)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True, start_new_session=True)


def rows(workdir_):
  """The store's rows; none while a starting search has not yet created its table."""
  path = os.path.join(workdir_, 'results.sqlite')
  if not os.path.exists(path):
    return []
  with contextlib.closing(sqlite3.connect(path)) as db:  # Closed: a tmpfs must unmount.
    try:
      return db.execute('SELECT step, slot, arch_id, status, accuracy, reward FROM evaluations '
                        'ORDER BY step, slot').fetchall()
    except sqlite3.OperationalError as e:
      if 'no such table' in str(e):
        return []
      raise


def run_here(workdir_, cfg=None):
  return search.run(cfg or config('reinforce', steps=3, per_step=3), str(workdir_),
                    proxy=fake_proxy, predictor=MacsPredictor())


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """The store of an uninterrupted run, which every interrupted one must reproduce."""
  d = tmp_path_factory.mktemp('reference')
  run_here(d)
  return rows(d)


def wait_for(predicate, timeout=60.0):
  deadline = time.time() + timeout
  while time.time() < deadline and not predicate():
    time.sleep(0.05)
  assert predicate(), 'timed out'


def test_differences_name_the_fields_and_skip_the_resumable_ones():
  old = {'seed': 0, 'num_steps': 3, 'reward': {'kind': 'mnasnet_soft'},
         'train': {'lr': 0.1, 'log_every_steps': 10}}
  new = {'seed': 1, 'num_steps': 9, 'reward': {'kind': 'mnasnet_hard'},
         'train': {'lr': 0.1, 'log_every_steps': 1}, 'extra': 2}
  assert workdir.differences(old, new, 'multi_trial') == [
      "extra ('<absent>' -> 2)", "reward.kind ('mnasnet_soft' -> 'mnasnet_hard')",
      'seed (0 -> 1)']
  # A training run may be continued for longer; a search's proxy may not change.
  assert not workdir.differences({'num_train_steps': 4}, {'num_train_steps': 8}, 'train')
  assert workdir.differences({'train': {'num_train_steps': 4}},
                             {'train': {'num_train_steps': 8}}, 'multi_trial')


@pytest.mark.parametrize('field,value,named', [
    ('seed', 1, 'seed (0 -> 1)'), ('controller', 'random', "controller ('reinforce' -> 'random')"),
    ('reward.kind', 'mnasnet_hard', "reward.kind ('mnasnet_soft' -> 'mnasnet_hard')")])
def test_a_rerun_with_another_definition_refuses_and_leaves_the_store(tmp_path, field, value,
                                                                      named):
  run_here(tmp_path, config('reinforce', steps=2, per_step=3))
  before = rows(tmp_path)
  other = config('reinforce', steps=3, per_step=3)
  other.update_from_flattened_dict({field: value})
  with pytest.raises(ConfigError, match=re.escape(f'made with another config: {named}')):
    run_here(tmp_path, other)
  assert rows(tmp_path) == before
  run_here(tmp_path)  # More steps (num_steps may change): resumes.
  assert len(rows(tmp_path)) == 9


def test_a_second_process_exits_2_within_a_second_and_the_first_finishes(tmp_path, reference):
  first = start(tmp_path, sleep=0.3)
  wait_for(lambda: os.path.exists(tmp_path / 'results.sqlite'))
  t0 = time.time()
  second = subprocess.run([sys.executable, 'launch.py', 'search', f'--workdir={tmp_path}',
                           '--config=experiments/quickstart.py'], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=60)
  seconds = time.time() - t0
  assert second.returncode == 2, second.stderr
  assert second.stderr.strip().splitlines() == [
      f'error: {tmp_path} is in use by process {first.pid} (it holds '
      f'{os.path.realpath(tmp_path / "lock")}): wait for it to end, or stop it, or use another '
      '--workdir']
  assert seconds < 1.5, seconds  # Refused before JAX is even imported.
  assert first.wait(timeout=120) == 0, first.stderr.read()
  assert rows(tmp_path) == reference


def test_kill_9_releases_the_lock_and_the_rerun_finishes_the_store(tmp_path, reference):
  first = start(tmp_path, sleep=1.0)
  wait_for(lambda: any(r[3] == 'done' for r in rows(tmp_path)))
  os.killpg(first.pid, signal.SIGKILL)
  first.wait()
  assert any(r[3] == 'running' for r in rows(tmp_path))  # Killed mid-candidate.
  again = start(tmp_path)
  assert again.wait(timeout=120) == 0, again.stderr.read()
  assert rows(tmp_path) == reference


# Bad input through launch.py: exit 2, one line naming the field, nothing measured or trained.
@pytest.mark.parametrize('override,named', [
    ('--config.foo=1', "--config.foo: the config has no field 'foo'"),
    ('--config.num_steps=-3', 'config.num_steps=-3 is not allowed; allowed: an integer >= 1'),
    ('--config.train.dataset=foo', "config.train.dataset='foo': Unknown dataset 'foo'")])
def test_bad_input_through_launch_exits_2_with_one_line(tmp_path, override, named):
  out = subprocess.run([sys.executable, 'launch.py', 'search', f'--workdir={tmp_path / "w"}',
                        '--config=experiments/quickstart.py', override,
                        f'--config.train.data_dir={tmp_path / "data"}'],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
  assert out.returncode == 2, out.stderr
  errors = [line for line in out.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1 and named in errors[0], out.stderr
  assert not os.path.exists(tmp_path / 'w' / 'latency')
  assert not os.path.exists(tmp_path / 'w' / 'results.sqlite')


@pytest.mark.parametrize('override,named', [
    (dict(**{'train.dataset': 'cifar10'}), "config.train.dataset='cifar10': Dataset 'cifar10' "
     'is not prepared'),
    (dict(**{'train.batch_size': 0}), 'config.train.batch_size=0 is not allowed'),
    (dict(**{'train.num_train_steps': 0}), "config.train.num_train_steps=0 is not allowed; "
     "allowed: -1 or an integer >= 1"),
    (dict(candidates_per_step=0), 'config.candidates_per_step=0 is not allowed'),
    (dict(candidates_per_step=-2), 'config.candidates_per_step=-2 is not allowed'),
    (dict(**{'reward.kind': 'bogus'}), "config.reward.kind='bogus' is not allowed; allowed: "
     "one of ('mnasnet'"),
    (dict(**{'latency.target': 'tpu'}), "config.latency.target='tpu' is not allowed"),
    (dict(method='nas'), "config.method='nas' is not allowed")])
def test_bad_input_exits_2_with_one_line_before_any_work(tmp_path, data_dir, capsys, override,
                                                          named):
  from experiments import quickstart
  cfg = quickstart.get_config()
  cfg.train.update(dataset='mnas_shapes/tiny', data_dir=data_dir)
  cfg.update_from_flattened_dict(override)
  with pytest.raises(SystemExit) as exit_:
    cli.run(lambda: search.run(cfg, str(tmp_path / 'w')))
  err = capsys.readouterr().err.strip().splitlines()
  assert exit_.value.code == 2 and len(err) == 1 and named in err[0], err
  assert os.listdir(tmp_path / 'w') == ['lock']  # Nothing measured, trained or recorded.


def test_the_quickstart_runs_with_any_controller(data_dir):
  from experiments import quickstart
  from mnas.search import multi_trial
  for name in ('random', 'evolution', 'reinforce', 'mnasnet'):
    cfg = quickstart.get_config()
    cfg.controller = name
    cfg.train.update(dataset='mnas_shapes/tiny', data_dir=data_dir)
    multi_trial.check_config(cfg, latency=False)
  cfg.controller = 'reinforce'
  cfg.controller_kwargs.reinforce.beta1 = 0.5  # Not a hyperparameter of the controller.
  with pytest.raises(ConfigError, match=re.escape("controller_kwargs.reinforce has ['beta1']")):
    multi_trial.check_config(cfg, latency=False)


def test_when_every_candidate_of_a_step_fails_alike_the_search_stops(tmp_path, capsys):
  def broken(arch):
    raise FileNotFoundError('/data/imagenet: no such directory')
  with pytest.raises(SystemExit) as exit_:
    cli.run(lambda: search.run(config('reinforce', steps=3, per_step=3), str(tmp_path),
                               proxy=broken, predictor=MacsPredictor()))
  assert exit_.value.code == 2
  assert capsys.readouterr().err.strip() == (
      'error: every candidate of step 1 failed: FileNotFoundError: /data/imagenet: no such '
      'directory. Fix the cause and start a new --workdir')
  assert [r[3] for r in rows(tmp_path)] == ['failed'] * 3  # Recorded all the same.


def test_a_truncated_store_with_checkpoints_is_reported(tmp_path):
  run_here(tmp_path, config('reinforce', steps=2, per_step=3))
  open(tmp_path / 'results.sqlite', 'w').close()
  with pytest.raises(DataError, match='holds no evaluation, but the controller was '
                     'checkpointed after step 2'):
    run_here(tmp_path)
  for f in tmp_path.glob('results.sqlite*'):
    f.write_text('garbage ' * 1000)
  with pytest.raises(DataError, match='results.sqlite is damaged'):
    run_here(tmp_path)


def test_a_workdir_that_is_a_file_or_not_writable(tmp_path):
  (tmp_path / 'file').write_text('')
  with pytest.raises(DataError, match='is a file, not a directory'):
    run_here(tmp_path / 'file')
  if os.geteuid() != 0:  # root writes anywhere.
    (tmp_path / 'ro').mkdir(mode=0o500)
    with pytest.raises(DataError, match='not writable'):
      run_here(tmp_path / 'ro')


def test_a_full_disk_says_so_and_the_rerun_after_freeing_space_finishes(tmp_path, reference):
  disk = tmp_path / 'disk'
  disk.mkdir()
  if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', str(disk)],
                    capture_output=True).returncode:
    pytest.skip('mounting a small tmpfs is not allowed here')
  try:
    full = start(disk / 'w')
    full.wait(timeout=120)
    assert full.returncode == 2
    assert full.stderr.read().strip().splitlines()[-1].startswith(
        f'error: no space left on the device of {disk / "w"}')
    subprocess.run(['mount', '-o', 'remount,size=16m', str(disk)], check=True)
    again = start(disk / 'w')
    assert again.wait(timeout=120) == 0, again.stderr.read()
    assert rows(disk / 'w') == reference
  finally:
    if subprocess.run(['umount', str(disk)], capture_output=True).returncode:
      subprocess.run(['umount', '-l', str(disk)])  # Busy: detached now, freed when idle.
