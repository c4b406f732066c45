"""Accel-NASBench: mnas's space builds the benchmark's networks exactly, its surrogates match
the benchmark's own, and a search runs on them.

The counts are the benchmark's (its files' `params` and `macs`, from its PyTorch code through
PyTorch-OpCounter); tests that need the files skip when they are absent (mnas does not ship
them).
"""
import json
import os
import tarfile

import numpy as np
import pytest

import search_spaces
from mnas import accel_nasbench, counting, surrogate
from mnas.errors import DataError, UserError

DATA = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'benchmarks',
                    'accel-nasbench', 'anb_dataset_jsons.tar.gz')
needs_files = pytest.mark.skipif(not os.path.isfile(DATA),
                                 reason=f'Accel-NASBench files absent ({DATA}); get them from '
                                        f'{accel_nasbench.URL}')
SPACE = search_spaces.get_space('accel_nasbench')


@pytest.fixture(scope='module')
def results():
  return accel_nasbench.load(DATA)


def _result(arch: dict, top1=60.0, a100=9000.0) -> dict:
  """A result file's content, in the benchmark's layout (its result_N.json)."""
  perf = {f'{m}_{d}': {f'{m}_mean': None, f'{m}_std': None}
          for d, ms in accel_nasbench.DEVICES.items() for m in ms}
  perf['throughput_a100']['throughput_mean'] = a100
  return {'architecture': arch, 'metrics': {'val_top1': top1, 'val_top5': 80.0},
          'model_info': {'macs': 1.0, 'params': 1.0}, 'platform_perf': perf}


B0 = {**{f'block{i}_e': e for i, e in enumerate([1, 6, 6, 6, 6, 6, 6])},
      **{f'block{i}_k': k for i, k in enumerate([3, 3, 5, 3, 5, 5, 3])},
      **{f'block{i}_l': n for i, n in enumerate([1, 2, 2, 3, 3, 4, 1])},
      **{f'block{i}_se': True for i in range(7)}}


def test_efficientnet_b0_is_torchvisions_count():
  """torchvision's efficientnet_b0: 5,288,548 params, 0.39 GFLOPS (its model table); the
  benchmark's B0 differs in activations only, which have no weights."""
  arch = search_spaces.get_reference('anb_efficientnet_b0')
  assert search_spaces.accel_nasbench.from_benchmark(B0) == arch
  c = counting.count(arch, 1000)
  assert c['params'] == 5_288_548
  assert round(c['macs'] / 1e9, 2) == 0.39
  assert SPACE.decode(SPACE.encode(arch)) == arch and SPACE.size == 36 ** 6 * 48


@needs_files
def test_params_and_macs_equal_the_files_for_every_architecture(results):
  assert len(results.names) == 4638
  for arch, params, macs in zip(results.archs, results.params, results.macs):
    assert counting.count(arch, 1000)['params'] == round(params * 1e6)
    assert abs(counting.thop_macs(arch, 1000) - macs * 1e6) <= 1  # The files keep 6 decimals.
    assert SPACE.contains(arch)


def test_loader_reads_a_folder_an_archive_and_a_list(tmp_path):
  folder = tmp_path / 'files'
  folder.mkdir()
  for i, top1 in enumerate([61.5, 63.0]):
    (folder / f'result_{i}.json').write_text(json.dumps(_result(B0, top1)))
  archive = tmp_path / 'results.tar.gz'
  with tarfile.open(archive, 'w:gz') as tar:
    tar.add(folder, arcname='anb_dataset_jsons')
  listed = ','.join(str(folder / f'result_{i}.json') for i in range(2))
  for spec in (str(folder), str(archive), listed):
    r = accel_nasbench.load(spec)
    np.testing.assert_allclose(r.values['accuracy'], [0.615, 0.63])
    assert np.isnan(r.values['tpuv3_throughput']).all()
    assert r.values['a100_throughput'][0] == 9000.0
    assert r.archs[0] == search_spaces.get_reference('anb_efficientnet_b0')
  bad = folder / 'result_2.json'
  bad.write_text(json.dumps({'architecture': {'block0_e': 4}}))
  with pytest.raises(DataError, match='result_2.json: not an Accel-NASBench result file'):
    accel_nasbench.load(str(folder))
  with pytest.raises(DataError, match='does not exist'):
    accel_nasbench.load(str(tmp_path / 'missing'))


def test_surrogate_recovers_a_known_function(tmp_path):
  """A smooth function of the decisions and the size: the GP ranks held-out architectures
  almost exactly, fits logs when asked, and a saved surrogate predicts the same."""
  rng = np.random.default_rng(0)
  archs = [SPACE.sample(rng) for _ in range(300)]
  weights = rng.normal(0, 1, len(SPACE.num_options))
  truth = lambda a: (np.log(counting.count(a)['params']) + 0.2 * weights @ SPACE.encode(a))
  values = np.array([truth(a) for a in archs])
  model = surrogate.fit(SPACE, archs[:250], values[:250], target='t', lengthscale=8, noise=1e-3)
  m = surrogate.metrics(values[250:], model.predict(archs[250:]))
  assert m['kendall_tau'] > 0.8 and m['spearman'] > 0.95, m
  positive = np.exp(values)
  logged = surrogate.fit(SPACE, archs[:250], positive[:250], target='t', log=True,
                         lengthscale=8, noise=1e-3)
  assert surrogate.metrics(positive[250:], logged.predict(archs[250:]))['mape_pct'] < 20
  path = str(tmp_path / 's.npz')
  logged.save(path)
  np.testing.assert_array_equal(surrogate.Surrogate.load(path).predict(archs[250:]),
                                logged.predict(archs[250:]))
  with pytest.raises(DataError, match='> 0'):
    surrogate.fit(SPACE, archs[:3], [1.0, -1.0, 2.0], target='t', log=True)


@needs_files
def test_accuracy_surrogate_beats_the_benchmarks_xgboost(results):
  """Fitted on 80% (seed 0) with the config's hyperparameters, on the held-out 10%: Kendall
  tau >= 0.917, Spearman >= 0.990, RMSE <= 0.41 (the benchmark's XGBoost, its README)."""
  from experiments.accel_nasbench import HYPER
  train, _, test = accel_nasbench.split(len(results.names), 0)
  model, _ = accel_nasbench.fit_surrogate(results.subset(train), 'accuracy', HYPER['accuracy'])
  archs, values = results.subset(test).having('accuracy')
  m = surrogate.metrics(100 * values, 100 * model.predict(archs))  # RMSE in top-1 points.
  assert m['kendall_tau'] >= 0.917 and m['spearman'] >= 0.990 and m['rmse'] <= 0.41, m
  model, _ = accel_nasbench.fit_surrogate(results.subset(train), 'a100_throughput',
                                          HYPER['a100_throughput'])
  archs, values = results.subset(test).having('a100_throughput')
  m = surrogate.metrics(values, model.predict(archs))
  assert m['kendall_tau'] >= 0.95 and m['mape_pct'] <= 2.0, m


def _search_config(**change):
  from experiments import accel_nasbench as exp
  config = exp.get_config()
  config.num_steps, config.candidates_per_step = 3, 4
  config.controller = 'random'
  config.proxy.path = DATA
  config.proxy.update(change)
  return config


@needs_files
def test_search_on_the_surrogates_runs_resumes_and_reports(tmp_path, capsys):
  """On 600 of the files (a folder), for speed: the surrogates are the search's proxy and
  hardware metric, the search resumes, and the report sets it against EfficientNet-B0."""
  from mnas.search import report, run
  (tmp_path / 'files').mkdir()
  with tarfile.open(DATA) as tar:
    for m in [m for m in tar.getmembers() if m.name.endswith('.json')][:600]:
      (tmp_path / 'files' / os.path.basename(m.name)).write_bytes(tar.extractfile(m).read())
  config = _search_config(path=str(tmp_path / 'files'))
  summary = run(config, str(tmp_path / 'w'))
  assert summary['evaluations'] == 12
  models = {t: surrogate.Surrogate.load(str(tmp_path / 'w' / 'surrogates' / f'{t}.npz'))
            for t in ('accuracy', 'a100_throughput')}
  best = summary['best']
  arch = search_spaces.load_arch(best['arch'])
  assert best['accuracy'] == pytest.approx(models['accuracy'].predict([arch])[0])
  assert best['latency_ms'] == pytest.approx(
      1000 / models['a100_throughput'].predict([arch])[0])
  assert run(config, str(tmp_path / 'w'))['best'] == best  # Finished: resumed, nothing to do.
  truth = report(str(tmp_path / 'w'))['ground_truth']
  assert set(truth) >= {'found', 'efficientnet_b0', 'files_best'}
  assert truth['files_best']['measured_top1'] is not None
  assert 'EfficientNet-B0' in capsys.readouterr().out


@pytest.mark.parametrize('change, message', [
    (dict(metric='h100_throughput'), 'proxy.metric'),
    (dict(target=0.0), 'proxy.target'),
    (dict(path=''), 'config.proxy.path is empty'),
    (dict(path='/nonexistent/anb.tar.gz'), 'does not exist'),
])
def test_bad_accel_nasbench_config_is_refused_before_work(tmp_path, change, message):
  from mnas.search import run
  config = _search_config(**change)
  with pytest.raises(UserError, match=message):
    run(config, str(tmp_path / 'w'))
  assert not os.path.exists(tmp_path / 'w' / 'results.sqlite')


def test_surrogate_command_fits_and_reports_on_other_files(tmp_path, capsys):
  """`launch.py surrogate`'s library function on made files: fitted on one folder, reported
  on another."""
  from experiments import accel_nasbench as exp
  rng = np.random.default_rng(1)
  for name, n in (('fit', 60), ('other', 12)):
    (tmp_path / name).mkdir()
    for i in range(n):
      arch = {f'block{b}_{f}': rng.choice(o).item() for b in range(7)
              for f, o in (('e', [1, 4, 6]), ('k', [3, 5]), ('l', [1, 2, 3]),
                           ('se', [True, False]))}
      top1 = 50 + 2 * sum(arch[f'block{b}_l'] for b in range(7)) / 7 + rng.normal(0, 0.1)
      (tmp_path / name / f'result_{i}.json').write_text(
          json.dumps(_result(arch, top1, a100=20000 / (1 + arch['block3_l']))))
  config = exp.get_config('surrogate')
  config.data, config.test_data = str(tmp_path / 'fit'), str(tmp_path / 'other')
  config.targets = ('accuracy', 'a100_throughput')
  out = accel_nasbench.main(config, str(tmp_path / 'w'))
  assert out['targets']['accuracy']['n'] == 12 and out['train'] == 54
  assert os.path.isfile(tmp_path / 'w' / 'surrogates' / 'accuracy.npz')
  assert 'published XGBoost' in capsys.readouterr().out
