"""Accel-NASBench: ImageNet accuracies and device throughputs of the `accel_nasbench` space.

Ahmad et al., "Accel-NASBench: Sustainable Benchmarking for Accelerator-Aware NAS" (2024);
data: github.com/afzalxo/Accel-NASBench, anb_dataset/anb_dataset_jsons.tar.gz (Apache 2.0).
mnas does not ship it: give the archive, its extracted folder, or a list of result files.
Each `result_N.json` holds one architecture of the space (search_spaces/accel_nasbench.py),
its top-1 after the benchmark's proxy ImageNet training (`val_top1`, %), its `macs` and
`params` (millions, counted by PyTorch-OpCounter) and its throughput (images/s) measured on
an A100, an RTX 3090, a TPUv2 and a TPUv3, throughput and latency (ms) on two FPGAs (ZCU102,
VCK190).

The space's 10^11 architectures are not all measured, so a search reads surrogates of the
files (`mnas.surrogate`): with `config.proxy.kind = 'accel_nasbench'` a candidate's accuracy
is the accuracy surrogate's prediction, and its hardware cost comes from the surrogate of
`config.proxy.metric` (e.g. 'a100_throughput') instead of a latency table: a throughput of
R images/s is the cost 1000 / R ms per image, a latency is itself, so the reward, the Pareto
front and the store keep their milliseconds. `config.proxy.target` is the reward's target in
the metric's own unit (images/s, or ms). The rest is the real search: store, resume,
TensorBoard, report (which sets the best found against EfficientNet-B0's point).

  workdir/surrogates/{accuracy,METRIC}.npz   the surrogates the search used, fitted once

`launch.py surrogate` fits and reports them (`main`).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import tarfile

import numpy as np

from mnas import config as config_lib
from mnas.errors import DataError

URL = ('https://github.com/afzalxo/Accel-NASBench (anb_dataset/anb_dataset_jsons.tar.gz; '
       'extract it or give the .tar.gz)')
DEVICES = {'a100': ('throughput',), '3090': ('throughput',), 'tpuv2': ('throughput',),
           'tpuv3': ('throughput',), 'zcu102': ('throughput', 'latency'),
           'vck190': ('throughput', 'latency')}
METRICS = tuple(f'{d}_{m}' for d, ms in DEVICES.items() for m in ms)
TARGETS = ('accuracy',) + METRICS
# The benchmark's XGBoost accuracy surrogate on its test split (its README, seed 3).
PUBLISHED = dict(kendall_tau=0.917, spearman=0.990, rmse=0.41)


@dataclasses.dataclass(frozen=True)
class Results:
  """Result files as arrays, one row per file (sorted by name): `values[t]` every target of
  TARGETS in its unit (accuracy: top-1 as a fraction, as everywhere in mnas; throughput in
  images/s, latency in ms), NaN where a file has none."""
  names: tuple[str, ...]
  archs: tuple
  values: dict
  macs: np.ndarray    # Millions, as the files count them.
  params: np.ndarray  # Millions.

  def having(self, target: str) -> tuple[list, np.ndarray]:
    """The architectures that have a value of `target`, and those values."""
    ok = np.isfinite(self.values[target])
    return [a for a, k in zip(self.archs, ok) if k], self.values[target][ok]

  def subset(self, rows) -> Results:
    rows = np.asarray(rows)
    return Results(names=tuple(self.names[i] for i in rows),
                   archs=tuple(self.archs[i] for i in rows),
                   values={k: v[rows] for k, v in self.values.items()},
                   macs=self.macs[rows], params=self.params[rows])


def _read_all(spec) -> list[tuple[str, bytes]]:
  """(name, bytes) of every result file that `spec` names: a folder, a .tar.gz, a file, or a
  list (or comma-separated string) of those."""
  items = [s.strip() for s in spec.split(',')] if isinstance(spec, str) else list(spec)
  out = []
  for item in filter(None, items):
    if os.path.isdir(item):
      files = sorted(glob.glob(os.path.join(item, '**', '*.json'), recursive=True))
      if not files:
        raise DataError(f'{item}: no .json result files in this folder')
      for f in files:
        with open(f, 'rb') as fh:
          out.append((f, fh.read()))
    elif item.endswith(('.tar.gz', '.tgz', '.tar')) and os.path.isfile(item):
      try:
        with tarfile.open(item) as tar:
          out += [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()
                  if m.isfile() and m.name.endswith('.json')]
      except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f'{item}: not a readable tar archive ({e})') from None
    elif os.path.isfile(item):
      with open(item, 'rb') as fh:
        out.append((item, fh.read()))
    else:
      raise DataError(f'Accel-NASBench data {item!r} does not exist; give the result files\' '
                      f'folder, the .tar.gz or a list of files, from {URL}')
  if not out:
    raise DataError(f'Accel-NASBench data {spec!r}: no result files; from {URL}')
  return sorted(out)


def load(spec) -> Results:
  """Reads Accel-NASBench result files (see `_read_all`); a DataError names a bad file."""
  from search_spaces import accel_nasbench as anb_space
  names, archs, macs, params = [], [], [], []
  values = {t: [] for t in TARGETS}
  for name, raw in _read_all(spec):
    try:
      d = json.loads(raw)
      archs.append(anb_space.from_benchmark(d['architecture']))
      values['accuracy'].append(float(d['metrics']['val_top1']) / 100.0)
      macs.append(float(d['model_info']['macs']))
      params.append(float(d['model_info']['params']))
      perf = d['platform_perf']
      for t in METRICS:
        device, metric = t.split('_')
        v = perf.get(f'{metric}_{device}', {}).get(f'{metric}_mean')
        values[t].append(np.nan if v is None else float(v))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
      raise DataError(f'{name}: not an Accel-NASBench result file ({type(e).__name__}: {e})'
                      ) from None
    names.append(name)
  return Results(names=tuple(names), archs=tuple(archs),
                 values={k: np.array(v, np.float64) for k, v in values.items()},
                 macs=np.array(macs), params=np.array(params))


def split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Rows of a random 80/10/10 train/validation/test split (the benchmark's fit_model.py)."""
  perm = np.random.default_rng(seed).permutation(n)
  a, b = int(0.8 * n), int(0.9 * n)
  return perm[:a], perm[a:b], perm[b:]


def _is_log(target: str) -> bool:
  return target != 'accuracy'


def fit_surrogate(results: Results, target: str, hyper: dict | None = None,
                  validation: Results | None = None):
  """A surrogate of `target` on the rows of `results` that have it: with `hyper`
  ({lengthscale, noise}) as given, else chosen on `validation` (`mnas.surrogate.select`)."""
  import search_spaces
  from mnas import surrogate
  space = search_spaces.get_space('accel_nasbench')
  archs, values = results.having(target)
  kw = dict(space=space.name, target=target, log=_is_log(target))
  if hyper is not None:
    return surrogate.fit_features(surrogate.features(space, archs), values, **kw, **hyper), None
  val_archs, val_values = validation.having(target)
  return surrogate.select(surrogate.features(space, archs), values,
                          surrogate.features(space, val_archs), val_values, **kw)


def to_ms(target: str, value):
  """The search's cost in ms per image of a metric value: 1000 / throughput, or latency."""
  value = np.asarray(value, np.float64)
  return 1000.0 / value if target.endswith('_throughput') else value


# --- the search's proxy and hardware metric ------------------------------------------------
RULES = {'proxy.metric': config_lib.one_of(*METRICS), 'proxy.target': config_lib.above(0),
         'proxy.hyper': (lambda v: all(t in v and {'lengthscale', 'noise'} <= set(v[t])
                                       for t in TARGETS),
                         f'{{target: {{lengthscale, noise}}}} for every target of {TARGETS}')}


def check_proxy(config) -> None:
  """Raises ConfigError / DataError for a search config whose Accel-NASBench proxy cannot run."""
  from mnas import nasbench
  config_lib.check(config, RULES)
  nasbench.check_benchmark(config, space='accel_nasbench', resolution=224,
                           name='Accel-NASBench', example='anb_dataset_jsons.tar.gz', url=URL)
  _read_all(config.proxy.path)


def surrogates(config, workdir: str) -> dict:
  """{'accuracy': Surrogate, metric: Surrogate}: read from workdir/surrogates/, else fitted on
  every file of `config.proxy.path` with the config's hyperparameters and kept there."""
  from mnas import surrogate
  folder = os.path.join(workdir, 'surrogates')
  out, results = {}, None
  for target in ('accuracy', config.proxy.metric):
    path = os.path.join(folder, f'{target}.npz')
    if not os.path.isfile(path):
      results = results or load(config.proxy.path)
      os.makedirs(folder, exist_ok=True)
      fit_surrogate(results, target, dict(config.proxy.hyper[target]))[0].save(path)
    out[target] = surrogate.Surrogate.load(path)
  return out


class SurrogateProxy:
  """The accuracy surrogate as a proxy task: `arch -> Outcome` (accuracy as a fraction)."""

  def __init__(self, model):
    self.model = model

  def __call__(self, arch):
    from mnas.search.evaluation import Outcome
    return Outcome('done', val_accuracy=float(self.model.predict([arch])[0]))


class MetricPredictor:
  """A device metric's surrogate as the search's latency predictor (ms per image)."""

  def __init__(self, model):
    self.model = model

  def predict_batch(self, archs) -> np.ndarray:
    return to_ms(self.model.target, self.model.predict(list(archs)))

  def predict(self, arch) -> float:
    return float(self.predict_batch([arch])[0])


def search_parts(config, workdir: str):
  """(proxy, latency predictor, config with reward.target_ms from proxy.target)."""
  models = surrogates(config, workdir)
  from mnas.search import target as target_lib
  config = target_lib.with_target(config, float(to_ms(config.proxy.metric, config.proxy.target)))
  return SurrogateProxy(models['accuracy']), MetricPredictor(models[config.proxy.metric]), config


def _describe(target: str) -> str:
  if target == 'accuracy':
    return 'top-1 (%)'
  device, metric = target.split('_')
  return f'{device} {metric} ({"images/s" if metric == "throughput" else "ms"})'


def ground_truth(config, workdir: str, rows: list[dict]) -> dict:
  """What a search on the surrogates found, set against EfficientNet-B0's point of the space
  and against the best of the files by the same reward on their measured values. Printed."""
  import search_spaces
  from mnas import rewards
  from mnas.space import parse
  metric = config.proxy.metric
  reward = rewards.make_reward(config.reward.kind, float(to_ms(metric, config.proxy.target)),
                               **dict(config.reward.params))
  models = surrogates(config, workdir)
  results = load(config.proxy.path)
  measured = dict(zip((a.id for a in results.archs), range(len(results.archs))))

  def point(arch, acc=None, value=None):
    pred_acc, pred_value = (float(models[t].predict([arch])[0]) for t in ('accuracy', metric))
    row = measured.get(arch.id)
    if row is not None:
      acc, value = results.values['accuracy'][row], results.values[metric][row]
    return dict(arch=str(arch), predicted_top1=pred_acc, predicted_metric=pred_value,
                measured_top1=acc, measured_metric=value,
                reward=float(reward(pred_acc, to_ms(metric, pred_value))))

  ok = [r for r in rows if r['reward'] is not None]
  out = {'metric': metric, 'target': float(config.proxy.target)}
  if ok:
    out['found'] = point(parse(max(ok, key=lambda r: r['reward'])['arch']))
  out['efficientnet_b0'] = point(search_spaces.get_reference('anb_efficientnet_b0'))
  have = np.isfinite(results.values[metric])
  cost = to_ms(metric, np.where(have, results.values[metric], 1.0))
  r = np.where(have, reward(results.values['accuracy'], cost), -np.inf)
  out['files_best'] = point(results.archs[int(np.argmax(r))])
  unit = _describe(metric)
  print(f'\nAccel-NASBench ({len(results.names)} result files; {config.reward.kind} reward, '
        f'target {config.proxy.target:g} {unit.split("(")[1][:-1]}): surrogate predictions, '
        'and the files\' measurements where the architecture is in them')
  print(f'{"":16s} {"top-1 pred":>10s} {"measured":>9s} {unit + " pred":>28s} {"measured":>9s} '
        f'{"reward":>7s}')
  fmt = lambda v, f: '-' if v is None or not np.isfinite(v) else format(v, f)
  for name, key in (('best found', 'found'), ('EfficientNet-B0', 'efficientnet_b0'),
                    ('files\' best', 'files_best')):
    if key in out:
      p = out[key]
      print(f'{name:16s} {p["predicted_top1"]:10.2%} {fmt(p["measured_top1"], "9.2%"):>9s} '
            f'{p["predicted_metric"]:28.1f} {fmt(p["measured_metric"], "9.1f"):>9s} '
            f'{p["reward"]:7.4f}')
  return out


def main(config, workdir: str) -> dict:
  """`launch.py surrogate`: fits a surrogate of each of `config.targets` on `config.data`
  and reports it on held-out files; writes workdir/surrogates/TARGET.npz and
  workdir/surrogate_report.json (see experiments/accel_nasbench.py:surrogate)."""
  import time
  from mnas import jsonfile, surrogate
  config_lib.check(config, {
      'data': (lambda v: bool(v), 'result files (a folder, a .tar.gz or a list)'),
      'targets': (lambda v: len(v) > 0 and set(v) <= set(TARGETS), f'names of {TARGETS}'),
      'seed': config_lib.INT, 'select': config_lib.BOOL})
  results = load(config.data)
  train, val, test = split(len(results.names), config.seed)
  if config.test_data:  # Tested on other files: fitted on all of `data` but the validation.
    train, tested = np.concatenate([train, test]), load(config.test_data)
  else:
    tested = results.subset(test)
  print(f'{len(train)} files to fit, {len(val)} to choose the hyperparameters, '
        f'{len(tested.names)} held out ({config.test_data or f"split seed {config.seed}"})')
  os.makedirs(os.path.join(workdir, 'surrogates'), exist_ok=True)
  report = dict(seed=config.seed, train=len(train), validation=len(val), data=str(config.data),
                test_data=str(config.test_data), targets={})
  print(f'{"target":24s} {"n":>5s} {"Kendall tau":>11s} {"Spearman":>9s} {"RMSE":>9s} '
        f'{"MAPE %":>7s}  length scale, noise   (RMSE: top-1 points, images/s or ms)')
  for target in config.targets:
    t0 = time.time()
    hyper = None if config.select else dict(config.hyper[target])
    model, tried = fit_surrogate(results.subset(train), target, hyper, results.subset(val))
    model.save(os.path.join(workdir, 'surrogates', f'{target}.npz'))
    archs, values = tested.having(target)
    m = surrogate.metrics(values, model.predict(archs))
    if target == 'accuracy':  # RMSE in top-1 points, as the benchmark reports it.
      m['rmse'] *= 100
    report['targets'][target] = dict(m, lengthscale=model.lengthscale, noise=model.noise,
                                     seconds=time.time() - t0, grid=tried)
    print(f'{target:24s} {m["n"]:5d} {m["kendall_tau"]:11.4f} {m["spearman"]:9.4f} '
          f'{m["rmse"]:9.3f} {m["mape_pct"]:7.2f}  {model.lengthscale:g}, {model.noise:g}',
          flush=True)
  if 'accuracy' in config.targets:
    p = PUBLISHED
    print(f'{"published XGBoost":24s} {"":5s} {p["kendall_tau"]:11.4f} {p["spearman"]:9.4f} '
          f'{p["rmse"]:9.3f}          (accuracy; its own split, seed 3)')
  jsonfile.write(os.path.join(workdir, 'surrogate_report.json'), report)
  print(f'wrote {workdir}/surrogates/ and {workdir}/surrogate_report.json')
  return report

