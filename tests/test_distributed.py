"""Multi-process runs on localhost: 2 real processes, JAX's CPU (gloo) collectives.

Each child process has 2 fake CPU devices (XLA_FLAGS in its own environment), so the
2-process runs span 4 devices.
"""
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCH = ('r32_w1_sev3 stem_c8_hs ir_r1_k3_s2_e3_c16_se0.25_hs ir_r1_k3_s1_e3_c16_relu '
        'head_c32_hs_pool_c64_hs')
BATCH = 8


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def spawn(code: str, n: int = 2, devices: int = 2, args=(), env=None) -> list[subprocess.Popen]:
  """Starts `code` in n processes that join one jax.distributed run on a free local port.

  The code sees COORDINATOR, NUM_PROCESSES and PROCESS_ID in its environment. Each process
  leads its own session (killing it kills its children too); its output goes to `p.log`.
  """
  port = _free_port()
  procs = []
  for i in range(n):
    penv = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT, PROCESS_ID=str(i),
                NUM_PROCESSES=str(n), COORDINATOR=f'127.0.0.1:{port}',
                XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}', **(env or {}))
    log = tempfile.TemporaryFile('w+')
    p = subprocess.Popen([sys.executable, '-c', code, *args], env=penv, cwd=ROOT, stdout=log,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    p.log = log
    procs.append(p)
  return procs


def output(p) -> str:
  p.log.seek(0)
  return p.log.read()


def kill(procs) -> None:
  for p in procs:
    if p.poll() is None:
      os.killpg(p.pid, signal.SIGKILL)
    p.wait()


def run_processes(code: str, n: int = 2, devices: int = 2, timeout: float = 240,
                  args=(), env=None) -> list[str]:
  """Runs `code` in n processes joined by jax.distributed (see `spawn`); their outputs.

  Each must exit with status 0; all are killed as soon as one fails or the timeout passes
  (a failed process leaves the others waiting on it).
  """
  procs = spawn(code, n, devices, args, env)
  deadline = time.time() + timeout
  try:
    while time.time() < deadline and any(p.poll() is None for p in procs):
      if any(p.poll() not in (None, 0) for p in procs):
        break
      time.sleep(0.2)
  finally:
    kill(procs)
  outs = [output(p) for p in procs]
  for i, p in enumerate(procs):
    assert p.returncode == 0, f'process {i} failed ({p.returncode}):\n' + '\n'.join(
        o[-3000:] for o in outs)
  return outs


_INIT = textwrap.dedent('''
  import os, sys, traceback
  # Exit at once on an error: at exit jax.distributed would wait for the other processes.
  sys.excepthook = lambda *e: (traceback.print_exception(*e), sys.stdout.flush(), os._exit(1))
  import jax, numpy as np
  from mnas import distributed
  assert distributed.initialize(os.environ['COORDINATOR'], int(os.environ['NUM_PROCESSES']),
                                int(os.environ['PROCESS_ID']))
  pid = jax.process_index()
''')

_TRAIN_STEPS = _INIT + textwrap.dedent(f'''
  import search_spaces
  sys.path.insert(0, 'tests')
  from conftest import train_config
  from mnas import parallel, steps as steps_lib
  assert jax.device_count() == 4 and jax.local_device_count() == 2
  cfg = train_config(dropout_rate=0.0, lr=0.5, base_batch_size=8, batch_size=8, optimizer='sgd',
                     ema_decay=0.9)
  arch = search_spaces.load_arch({ARCH!r})
  rng = np.random.default_rng(0)
  image = rng.normal(size=({BATCH}, 32, 32, 3)).astype(np.float32)
  label = rng.integers(0, 10, {BATCH}).astype(np.int32)
  steps = steps_lib.make_steps(arch, 10, cfg)  # All 4 devices of both processes.
  state = parallel.replicate(steps.init(0), steps.devices)
  local = slice(pid * {BATCH // 2}, (pid + 1) * {BATCH // 2})  # This process's half of the batch.
  batch = dict(image=image[local].reshape(2, 2, 32, 32, 3), label=label[local].reshape(2, 2))
  for _ in range(2):
    state, metrics = steps.train(state, batch, np.float32(0.1))
  host = parallel.unreplicate(state)
  np.savez(sys.argv[1] + f'/{{pid}}.npz', loss=np.float64(parallel.unreplicate(metrics)['loss']),
           *[np.asarray(x) for x in jax.tree.leaves(host)])
  print('TRAIN_OK')
''')


def test_two_processes_train_like_one_on_the_same_global_batch(tmp_path):
  """pmean of gradients + cross-replica batch norm over 2 processes x 2 devices == 1 device."""
  import jax
  import search_spaces
  from conftest import train_config
  from mnas import parallel, steps as steps_lib
  outs = run_processes(_TRAIN_STEPS, args=[str(tmp_path)])
  assert all('TRAIN_OK' in o for o in outs), outs
  cfg = train_config(dropout_rate=0.0, lr=0.5, base_batch_size=8, batch_size=8, optimizer='sgd',
                     ema_decay=0.9)
  arch = search_spaces.load_arch(ARCH)
  rng = np.random.default_rng(0)
  batch = dict(image=rng.normal(size=(1, BATCH, 32, 32, 3)).astype(np.float32),
               label=rng.integers(0, 10, (1, BATCH)).astype(np.int32))
  devs = jax.local_devices()[:1]
  steps = steps_lib.make_steps(arch, 10, cfg, devs)
  init = steps.init(0)
  state = parallel.replicate(init, devs)
  for _ in range(2):
    state, metrics = steps.train(state, batch, np.float32(0.1))
  ref = [np.asarray(x) for x in jax.tree.leaves(parallel.unreplicate(state))]
  moved = max(float(np.max(np.abs(a - b))) for a, b in
              zip(jax.tree.leaves(parallel.unreplicate(state).params),
                  jax.tree.leaves(init.params)))
  assert moved > 1e-3, moved
  for pid in (0, 1):
    got = np.load(tmp_path / f'{pid}.npz')
    assert abs(float(got['loss']) - float(metrics['loss'][0])) < 1e-5
    leaves = [got[f'arr_{i}'] for i in range(len(ref))]
    for x, y in zip(ref, leaves):
      np.testing.assert_allclose(y.astype(np.float64), x.astype(np.float64), rtol=2e-4, atol=2e-5,
                                 err_msg=f'process {pid}')


_TRAIN_LOOP = _INIT + textwrap.dedent('''
  import json
  sys.path.insert(0, 'tests')
  import test_train as tt
  from mnas import train
  workdir, data_dir, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
  cfg = tt._config(data_dir, arch=tt.SMALL, num_train_steps=steps, checkpoint_every_steps=2,
                   eval_split='validation')
  result = train.train_and_evaluate(cfg, workdir)
  print('RESULT', json.dumps(dict(steps=result.steps, start=result.start_step,
                                  acc=result.val_accuracy, loss=result.train_losses)))
''')


def _result(out):
  return json.loads(out.split('RESULT ')[1].splitlines()[0])


@pytest.mark.slow  # About 50 s; the 2-process training test above stays in the default suite.
def test_two_process_training_loop_writes_once_and_resumes(tmp_path):
  """train_and_evaluate over 2 processes: process 0 writes summaries and result.json, orbax
  writes one checkpoint per step for both, and a second run resumes from it."""
  from mnas import data
  workdir, data_dir = tmp_path / 'work', str(tmp_path / 'data')
  data.dataset_info('mnas_shapes/tiny', data_dir)
  outs = run_processes(_TRAIN_LOOP, args=[str(workdir), data_dir, '2'], devices=1)
  first = [_result(o) for o in outs]
  assert first[0] == first[1] and first[0]['steps'] == 2  # Same global model on both.
  assert len([f for f in os.listdir(workdir) if f.startswith('events.out')]) == 1
  assert json.load(open(workdir / 'result.json'))['steps'] == 2
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2']
  outs = run_processes(_TRAIN_LOOP, args=[str(workdir), data_dir, '4'], devices=1)
  second = [_result(o) for o in outs]
  assert second[0] == second[1] and second[0]['start'] == 2 and second[0]['steps'] == 4
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2', '4']


def test_requested_reads_flags_and_cluster_environment():
  from mnas import distributed
  assert not distributed.requested(environ={})
  step = {'SLURM_JOB_ID': '7', 'SLURM_STEP_NODELIST': 'node[1-2]', 'SLURM_PROCID': '3'}
  assert distributed.requested(environ=dict(step, SLURM_NTASKS='16', SLURM_STEP_NUM_TASKS='16'))
  assert not distributed.requested(environ=dict(step, SLURM_NTASKS='16', SLURM_STEP_NUM_TASKS='1'))
  # `python launch.py ...` inside a 16-task allocation, not under srun: one process.
  assert not distributed.requested(environ={'SLURM_JOB_ID': '7', 'SLURM_NTASKS': '16'})
  assert distributed.requested(environ={'JAX_COORDINATOR_ADDRESS': '10.0.0.1:1234'})
  assert distributed.requested(environ={'TPU_WORKER_HOSTNAMES': 'w0,w1,w2,w3'})
  assert not distributed.requested(environ={'TPU_WORKER_HOSTNAMES': 'localhost'})
  assert distributed.requested('10.0.0.1:1234', 2, 0, environ={})
  assert not distributed.requested(num_processes=1, environ={})


# ---------------------------------------------------------------------------------------------
# Candidate-parallel search.

_SEARCH = _INIT + textwrap.dedent('''
  import json, time
  sys.path.insert(0, 'tests')
  import test_search as ts
  from conftest import MacsPredictor, fake_proxy
  from mnas import search
  out_dir, workdir = sys.argv[1], sys.argv[2]

  def train(arch):  # Records which process trained what; deterministic results.
    with open(f'{out_dir}/calls{pid}.txt', 'a') as f:
      f.write(arch.id + '\\n')
    time.sleep(float(os.environ.get('SLEEP', '0')))
    return fake_proxy(arch)

  out = search.run(ts.config('reinforce', steps=3, per_step=4), workdir, proxy=train,
                   predictor=MacsPredictor())
  print('SEARCH_OK', json.dumps(out, default=str))
''')


def _store_rows(workdir):
  with sqlite3.connect(os.path.join(workdir, 'results.sqlite')) as db:
    return db.execute('SELECT step, slot, arch_id, status, accuracy, reward FROM evaluations '
                      'ORDER BY step, slot').fetchall()


def _calls(out_dir):
  calls = {}
  for pid in (0, 1):
    path = os.path.join(out_dir, f'calls{pid}.txt')
    calls[pid] = open(path).read().split() if os.path.exists(path) else []
  return calls


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """The same search in one process: the store the 2-process one must reproduce."""
  sys.path.insert(0, os.path.join(ROOT, 'tests'))
  import test_search as ts
  from conftest import MacsPredictor, fake_proxy
  from mnas import search
  workdir = str(tmp_path_factory.mktemp('reference'))
  search.run(ts.config('reinforce', steps=3, per_step=4), workdir, proxy=fake_proxy,
             predictor=MacsPredictor())
  return _store_rows(workdir)


def _check_store(rows, reference):
  assert [(r[0], r[1]) for r in rows] == [(s, k) for s in range(3) for k in range(4)]  # Once each.
  assert all(r[3] in ('done', 'failed', 'reused') for r in rows)
  assert rows == reference  # Same samples, results, rewards: one consistent store.


def test_two_process_search_evaluates_each_candidate_once(tmp_path, reference):
  outs = run_processes(_SEARCH, args=[str(tmp_path), str(tmp_path / 'work')])
  assert all('SEARCH_OK' in o for o in outs)
  _check_store(_store_rows(tmp_path / 'work'), reference)
  calls = _calls(tmp_path)
  trained = calls[0] + calls[1]
  assert calls[0] and calls[1], calls  # Both processes trained candidates ...
  assert len(trained) == len(set(trained))  # ... and no architecture twice.
  assert len(trained) == sum(r[3] != 'reused' for r in reference)
  assert os.listdir(tmp_path / 'work') and not os.path.exists(tmp_path / 'work' / 'latency')


def test_killed_search_loses_only_in_flight_candidates(tmp_path, reference):
  """Kill the job (both processes) once process 1's results are in the store and some
  candidates are in flight; the resumed 2-process run re-runs exactly those."""
  workdir, args = tmp_path / 'work', [str(tmp_path), str(tmp_path / 'work')]
  procs = spawn(_SEARCH, args=args, env={'SLEEP': '1.5'})
  try:
    deadline, before = time.time() + 200, []
    while time.time() < deadline and all(p.poll() is None for p in procs):
      if os.path.exists(workdir / 'results.sqlite'):
        try:
          before = _store_rows(workdir)
        except sqlite3.OperationalError:  # The file exists; its schema is not written yet.
          time.sleep(0.2)
          continue
        remote = set(_calls(tmp_path)[1])
        if any(r[2] in remote and r[3] == 'done' for r in before) and any(
            r[3] == 'running' for r in before):
          break
      time.sleep(0.2)
    assert all(p.poll() is None for p in procs), 'the search ended before it could be killed'
  finally:
    kill(procs)
  before = _store_rows(workdir)
  finished = {r[2] for r in before if r[3] in ('done', 'failed')}
  in_flight = {r[2] for r in before if r[3] == 'running'}
  assert finished and in_flight
  for pid in (0, 1):
    os.rename(tmp_path / f'calls{pid}.txt', tmp_path / f'before{pid}.txt')
  run_processes(_SEARCH, args=args)
  after = _store_rows(workdir)
  _check_store(after, reference)
  for r in before:  # Finished rows are kept as they were.
    if r[3] != 'running':
      assert r in after
  retrained = set(_calls(tmp_path)[0] + _calls(tmp_path)[1])
  assert in_flight <= retrained and not finished & retrained


_LAUNCH = textwrap.dedent('''
  import os, runpy, sys
  sys.argv = ['launch.py'] + sys.argv[1:] + [
      '--coordinator_address=' + os.environ['COORDINATOR'],
      '--num_processes=' + os.environ['NUM_PROCESSES'], '--process_id=' + os.environ['PROCESS_ID']]
  runpy.run_path('launch.py', run_name='__main__')
''')


@pytest.mark.slow  # About 90 s: `python -m pytest -m slow tests` runs it.
def test_two_process_quickstart_search_through_launch(tmp_path):
  """launch.py search on the quickstart setting (real proxy training, tiny budget)."""
  workdir, data_dir = tmp_path / 'work', tmp_path / 'data'
  from mnas import data
  data.dataset_info('mnas_shapes/tiny', str(data_dir))  # Generated once, before both start.
  overrides = [
      'search', '--config=experiments/quickstart.py', f'--workdir={workdir}',
      f'--config.train.data_dir={data_dir}', '--config.num_steps=1',
      '--config.candidates_per_step=4', '--config.train.dataset=mnas_shapes/tiny',
      '--config.train.num_train_steps=3', '--config.train.batch_size=16',
      '--config.train.data_threads=1', '--config.latency.calibration_archs=0',
      '--config.latency.repeats=3', '--config.latency.warmup=1',
      '--config.latency.min_seconds=0.0', '--config.hparams_per_candidate=False',
      '--config.reward.target_samples=1']
  outs = run_processes(_LAUNCH, args=overrides, devices=1, timeout=400)
  assert 'process 1: trained' in outs[1] and 'candidates evaluated' in outs[0], outs[0][-2000:]
  with sqlite3.connect(workdir / 'results.sqlite') as db:
    rows = db.execute('SELECT step, slot, status, accuracy FROM evaluations').fetchall()
  assert sorted((s, k) for s, k, *_ in rows) == [(0, k) for k in range(4)]
  assert all(st in ('done', 'reused') and acc is not None for _, _, st, acc in rows), rows
  assert int(outs[1].split('process 1: trained ')[1].split()[0]) >= 1
  assert os.path.exists(workdir / 'best_arch.json') and os.path.isdir(workdir / 'controller' / '1')
