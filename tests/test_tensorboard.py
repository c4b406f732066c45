"""A real TensorBoard (its HTTP API on 127.0.0.1) over a short search's workdir: one run in
workdir/tensorboard (the HParams trials' runs in workdir/hparams), the search's scalars,
per-candidate points, the Pareto and probability images from the first step, every decision
of the space declared in HParams."""
import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

import search_spaces
from conftest import MacsPredictor, fake_proxy
from experiments import search_common
from mnas.search import multi_trial

STEPS, PER_STEP = 2, 2


@pytest.fixture(scope='module')
def board(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('search'))
  c = search_common.base_config()
  c.space, c.controller, c.num_classes = 'tiny', 'mnasnet', 10
  c.num_steps, c.candidates_per_step, c.reward.target_ms = STEPS, PER_STEP, 5.0
  multi_trial.run(c, workdir, proxy=fake_proxy, predictor=MacsPredictor())
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  tb = subprocess.Popen([sys.executable, '-m', 'tensorboard.main', '--logdir',
                         workdir, '--host', '127.0.0.1', '--port', str(port),
                         '--load_fast=false', '--reload_interval=0'],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

  def get(path, body=None):
    req = urllib.request.Request(
        f'http://127.0.0.1:{port}{path}', headers={'Content-Type': 'application/json'},
        data=None if body is None else json.dumps(body).encode())
    return json.loads(urllib.request.urlopen(req, timeout=30).read())
  try:
    deadline = time.time() + 120
    while True:  # Until it serves, and has read every run (it loads once: reload_interval 0).
      try:
        if len(get('/data/runs')) == 2 + STEPS * PER_STEP:
          break
      except OSError:
        pass
      assert time.time() < deadline, 'TensorBoard did not come up'
      time.sleep(0.5)
    yield get
  finally:
    tb.terminate()
    tb.wait(30)


def test_one_run_and_the_hparams_trials(board):
  runs = board('/data/runs')
  assert [r for r in runs if r.startswith('tensorboard')] == ['tensorboard']
  assert sorted(r for r in runs if not r.startswith('tensorboard')) == ['hparams'] + [
      f'hparams/{s:05d}_{k:03d}' for s in range(STEPS) for k in range(PER_STEP)]


def test_the_search_scalars_with_one_point_per_candidate(board):
  tags = board('/data/plugin/scalars/tags')['tensorboard']
  for tag in ('reward_mean', 'reward_max', 'accuracy_mean', 'latency_ms_mean', 'best_reward',
              'best_accuracy', 'best_latency_ms', 'candidates_done', 'controller/kl'):
    assert f'search/{tag}' in tags
  points = board('/data/plugin/scalars/scalars?' + urllib.parse.urlencode(
      dict(run='tensorboard', tag='search/candidate_reward')))
  assert [p[1] for p in points] == list(range(STEPS * PER_STEP))
  steps = board('/data/plugin/scalars/scalars?' + urllib.parse.urlencode(
      dict(run='tensorboard', tag='search/candidates_done')))
  assert [(p[1], p[2]) for p in steps] == [(s, (s + 1) * PER_STEP) for s in range(STEPS)]


def test_pareto_and_probability_images_from_the_first_step(board):
  images = board('/data/plugin/images/tags')['tensorboard']
  assert {'search/pareto', 'search/probabilities'} <= set(images)
  pareto = board('/data/plugin/images/images?' + urllib.parse.urlencode(
      dict(run='tensorboard', tag='search/pareto')))
  assert pareto[0]['step'] == 0


def test_every_decision_is_declared_in_hparams(board):
  experiment = board('/data/plugin/hparams/experiment', {'experimentName': ''})
  names = {h['name'] for h in experiment['hparamInfos']}
  space = search_spaces.get_space('tiny')
  assert names == {d.name for d in space.decisions} | {'arch', 'arch_id'}
  block = next(h for h in experiment['hparamInfos'] if h['name'] == 's0/l0/block')
  assert 'ir 3' in block['domainDiscrete']  # Readable, not "('ir', 3.0)".
  groups = board('/data/plugin/hparams/session_groups', {
      'experimentName': '', 'allowedStatuses': ['STATUS_SUCCESS'], 'colParams': [],
      'startIndex': 0, 'sliceSize': 100})
  assert groups['totalSize'] == STEPS * PER_STEP
  trial = groups['sessionGroups'][0]['hparams']
  assert set(trial) == names and ' ' in trial['arch']
