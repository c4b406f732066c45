"""Multi-process runs on localhost: 2 real processes, JAX's CPU (gloo) collectives.

Each child process has 2 fake CPU devices (XLA_FLAGS in its own environment), so the
2-process runs span 4 devices.
"""
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCH = 'r32_w1_sev3 stem_c8_hs ir_r1_k3_s2_e3_c16_se0.25_hs ir_r1_k3_s1_e3_c16_relu head_c32_hs_pool_c64_hs'
BATCH = 8


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def run_processes(code: str, n: int = 2, devices: int = 2, timeout: float = 300,
                  args=()) -> list[str]:
  """Runs `code` in n processes joined by jax.distributed; returns their outputs.

  The code sees PROCESS_ID, NUM_PROCESSES and COORDINATOR in its environment. All children
  are killed if one fails or the timeout passes.
  """
  port = _free_port()
  procs = []
  for i in range(n):
    env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT, PROCESS_ID=str(i),
               NUM_PROCESSES=str(n), COORDINATOR=f'127.0.0.1:{port}',
               XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
    procs.append(subprocess.Popen([sys.executable, '-c', code, *args], env=env, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
  outs = []
  try:
    for p in procs:
      outs.append(p.communicate(timeout=timeout)[0])
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  for i, p in enumerate(procs):
    assert p.returncode == 0, f'process {i} failed:\n' + '\n'.join(o[-3000:] for o in outs)
  return outs


_INIT = textwrap.dedent('''
  import os, sys
  import jax, numpy as np
  from mnas import distributed
  assert distributed.initialize(os.environ['COORDINATOR'], int(os.environ['NUM_PROCESSES']),
                                int(os.environ['PROCESS_ID']))
  pid = jax.process_index()
''')

_TRAIN_STEPS = _INIT + textwrap.dedent(f'''
  import ml_collections, search_spaces
  from mnas import train
  assert jax.device_count() == 4 and jax.local_device_count() == 2
  cfg = ml_collections.ConfigDict(dict(train.DEFAULTS, dropout_rate=0.0, lr=0.5, base_batch_size=8,
                                       batch_size=8, optimizer='sgd', ema_decay=0.9))
  arch = search_spaces.load_arch({ARCH!r})
  rng = np.random.default_rng(0)
  image = rng.normal(size=({BATCH}, 32, 32, 3)).astype(np.float32)
  label = rng.integers(0, 10, {BATCH}).astype(np.int32)
  steps = train.make_steps(arch, 10, cfg)  # All 4 devices of both processes.
  state = train.replicate(steps.init(0), steps.devices)
  local = slice(pid * {BATCH // 2}, (pid + 1) * {BATCH // 2})  # This process's half of the batch.
  batch = dict(image=image[local].reshape(2, 2, 32, 32, 3), label=label[local].reshape(2, 2))
  for _ in range(2):
    state, metrics = steps.train(state, batch, np.float32(0.1))
  host = train.unreplicate(state)
  np.savez(sys.argv[1] + f'/{{pid}}.npz', loss=np.float64(train.unreplicate(metrics)['loss']),
           *[np.asarray(x) for x in jax.tree.leaves(host)])
  print('TRAIN_OK')
''')


def test_two_processes_train_like_one_on_the_same_global_batch(tmp_path):
  """pmean of gradients + cross-replica batch norm over 2 processes x 2 devices == 1 device."""
  import jax
  import ml_collections
  import search_spaces
  from mnas import train
  outs = run_processes(_TRAIN_STEPS, args=[str(tmp_path)])
  assert all('TRAIN_OK' in o for o in outs), outs
  cfg = ml_collections.ConfigDict(dict(train.DEFAULTS, dropout_rate=0.0, lr=0.5, base_batch_size=8,
                                       batch_size=8, optimizer='sgd', ema_decay=0.9))
  arch = search_spaces.load_arch(ARCH)
  rng = np.random.default_rng(0)
  batch = dict(image=rng.normal(size=(1, BATCH, 32, 32, 3)).astype(np.float32),
               label=rng.integers(0, 10, (1, BATCH)).astype(np.int32))
  devs = jax.local_devices()[:1]
  steps = train.make_steps(arch, 10, cfg, devs)
  init = steps.init(0)
  state = train.replicate(init, devs)
  for _ in range(2):
    state, metrics = steps.train(state, batch, np.float32(0.1))
  ref = [np.asarray(x) for x in jax.tree.leaves(train.unreplicate(state))]
  moved = max(float(np.max(np.abs(a - b))) for a, b in
              zip(jax.tree.leaves(train.unreplicate(state).params), jax.tree.leaves(init.params)))
  assert moved > 1e-3, moved
  for pid in (0, 1):
    got = np.load(tmp_path / f'{pid}.npz')
    assert abs(float(got['loss']) - float(metrics['loss'][0])) < 1e-5
    leaves = [got[f'arr_{i}'] for i in range(len(ref))]
    for x, y in zip(ref, leaves):
      np.testing.assert_allclose(y.astype(np.float64), x.astype(np.float64), rtol=2e-4, atol=2e-5,
                                 err_msg=f'process {pid}')


def test_requested_reads_flags_and_cluster_environment():
  from mnas import distributed
  assert not distributed.requested(environ={})
  assert not distributed.requested(environ={'SLURM_JOB_ID': '7', 'SLURM_NTASKS': '1'})
  assert distributed.requested(environ={'SLURM_JOB_ID': '7', 'SLURM_NTASKS': '16'})
  assert distributed.requested(environ={'JAX_COORDINATOR_ADDRESS': '10.0.0.1:1234'})
  assert distributed.requested(environ={'TPU_WORKER_HOSTNAMES': 'w0,w1,w2,w3'})
  assert not distributed.requested(environ={'TPU_WORKER_HOSTNAMES': 'localhost'})
  assert distributed.requested('10.0.0.1:1234', 2, 0, environ={})
  assert not distributed.requested(num_processes=1, environ={})
