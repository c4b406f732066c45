r"""The MobileNetV3 recipe end to end (Howard et al. 2019, sections 4 and 6.1).

  search    platform-aware block-wise search (MnasNet controller and reward;
            `mnas.search.multi_trial`)
  netadapt  layer-wise refinement of the search's best (or a named seed; `mnas.netadapt`)
  train     final training of the result with the MobileNetV3 recipe (`config.final`)
  export    architecture, orbax checkpoint, LiteRT flatbuffer, measured latency (`mnas.export`)
  compare   MobileNetV3-Small/Large and MnasNet-A1 scaled to the same latency target, trained
            with the same recipe on the same data: accuracy, measured latency, params, MACs

`run(config, workdir)` runs the stages of `config.pipeline` in that order, each in
workdir/<stage>/; a stage that finished wrote workdir/<stage>/done.json and is skipped, and
an interrupted one resumes (the search and NetAdapt from their results stores, training from
its checkpoints), so running the same command again continues where it stopped. All stages
share one latency table (workdir/latency/). `tensorboard --logdir workdir` shows every stage;
the comparison table is in workdir/compare/table.md, in TensorBoard and in the compare
stage's summary (`launch.py search` prints it).
"""

from __future__ import annotations

import json
import os
import time

from absl import logging

import search_spaces
from mnas import config as config_lib, counting, jsonfile, metrics
from mnas.errors import ConfigError
from mnas.search import multi_trial, netadapt, results
from mnas.space import Architecture, parse

STAGES = ('search', 'netadapt', 'train', 'export', 'compare')


def check_stages(stages) -> tuple[str, ...]:
  stages = tuple(stages)
  bad = [s for s in stages if s not in STAGES]
  if bad or not stages:
    raise ConfigError(f'config.pipeline={stages!r}: unknown stage(s) {bad}; allowed: {STAGES}')
  if list(stages) != sorted(stages, key=STAGES.index):
    raise ConfigError(f'config.pipeline={stages!r}: stages must keep the order {STAGES}')
  return stages


RULES = {'compare.references': (lambda v: set(v) <= set(search_spaces.REFERENCES),
                                f'reference names, of {sorted(search_spaces.REFERENCES)}'),
         'compare.target_ms': config_lib.optional(config_lib.above(0)),
         'compare.multipliers': (lambda v: len(v) > 0 and all(config_lib.above(0)[0](m) for m in v),
                                 'width multipliers > 0'),
         'export.tflite': config_lib.BOOL}


def check_config(config, *, latency: bool = True, train: bool = True) -> None:
  """Raises ConfigError (or DataError) for a config this pipeline cannot run, before any
  work: the block search's fields, the stages, NetAdapt's, the final training's."""
  multi_trial.check_config(config, latency=latency, train=train)
  check_stages(config.pipeline)
  config_lib.check(config, RULES)
  netadapt.check_config(config.netadapt)
  if config.netadapt.seed:
    search_spaces.load_arch(config.netadapt.seed)
  if train:
    from mnas import train as train_lib
    train_lib.check_config(config.final, 'config.final')


def run(config, workdir: str, *, predictor=None) -> dict[str, dict]:
  """Runs (or resumes) the stages of `config.pipeline`; returns each stage's summary."""
  from mnas import latency
  stages = check_stages(config.pipeline)
  os.makedirs(workdir, exist_ok=True)
  if predictor is None:
    space = search_spaces.get_space(config.space)
    os.makedirs(os.path.join(workdir, 'latency'), exist_ok=True)
    predictor = latency.predictor_for_search(config.latency, space,
                                             os.path.join(workdir, 'latency'))
  outputs: dict[str, dict] = {}
  for name in stages:
    stage_dir = os.path.join(workdir, name)
    done = os.path.join(stage_dir, 'done.json')
    if os.path.exists(done):
      outputs[name] = jsonfile.read(done)
      logging.info('pipeline: stage %s already complete (%s), skipped', name, done)
      continue
    os.makedirs(stage_dir, exist_ok=True)
    logging.info('pipeline: stage %s -> %s', name, stage_dir)
    t0 = time.time()
    out = STAGE_FNS[name](config, stage_dir, outputs, predictor)
    out['seconds'] = round(time.time() - t0, 1)
    jsonfile.write(done, out)
    outputs[name] = out
    logging.info('pipeline: stage %s done in %.0f s', name, out['seconds'])
  return outputs


def report(workdir: str) -> dict:
  """Prints the stages done and the comparison table; returns the stages' summaries."""
  outputs = {name: jsonfile.read(os.path.join(workdir, name, 'done.json'))
             for name in STAGES if os.path.exists(os.path.join(workdir, name, 'done.json'))}
  if 'compare' in outputs:
    print('\n' + outputs['compare']['table'])
  print(f'\nPipeline stages done: {", ".join(outputs) or "none"} (in {workdir}/<stage>/)')
  return outputs


# -------------------------------------------------------------------------------------------
# Stages: (config, stage_dir, outputs of the earlier stages, predictor) -> summary (JSON).


def _search(config, d: str, outputs: dict, predictor) -> dict:
  summary = multi_trial.run(config, d, predictor=predictor)
  best = results.report(d)
  if not best:
    raise RuntimeError(f'search: no candidate finished successfully (see {d}/results.sqlite)')
  return dict(best, evaluations=summary['evaluations'])


def _seed(config, outputs: dict) -> Architecture:
  spec = config.netadapt.seed
  if spec:
    return search_spaces.load_arch(spec, resolution=config.resolution or None)
  if 'search' not in outputs:
    raise ConfigError("netadapt.seed='' means the block search's best, but config.pipeline has "
                     "no 'search' stage: name a seed (a reference, string or JSON file)")
  return parse(outputs['search']['arch'])


def _netadapt(config, d: str, outputs: dict, predictor) -> dict:
  cfg = config.netadapt.copy_and_resolve_references()
  if not cfg.target_ratio and not cfg.target_ms:
    cfg.target_ms = float(config.reward.target_ms)
  return netadapt.run(_seed(config, outputs), cfg, d, predictor,
                      trainer=netadapt.ProxyTrainer(config.train, config.seed),
                      num_classes=config.num_classes, seed=config.seed)


def found_arch(config, outputs: dict) -> Architecture:
  """The pipeline's result so far: NetAdapt's, else the search's, else the named seed."""
  for stage in ('netadapt', 'search'):
    if stage in outputs:
      return parse(outputs[stage]['arch'])
  return _seed(config, outputs)


def final_train(arch: Architecture, config, d: str) -> dict:
  """Trains `arch` from scratch with `config.final` in `d` (resumable); its test summary."""
  from mnas import train
  cfg = config.final.copy_and_resolve_references()
  cfg.arch, cfg.resolution, cfg.width_multiplier = str(arch), arch.resolution, None
  if cfg.data_dir is None:
    cfg.data_dir = config.train.data_dir
  result_path = os.path.join(d, 'result.json')
  result = jsonfile.read(result_path, {})
  if result.get('status') != 'done':  # Not trained yet, or interrupted: (resume and) train.
    result = train.train_and_evaluate(cfg, d).to_json()
  if result['status'] != 'done':
    raise RuntimeError(f'final training of {arch.id} failed: {result["reason"]}')
  return dict(arch=str(arch), accuracy=result['val_accuracy'], split=result['eval_split'],
              steps=result['steps'], workdir=d)


def _train(config, d: str, outputs: dict, predictor) -> dict:
  return final_train(found_arch(config, outputs), config, d)


def _export(config, d: str, outputs: dict, predictor) -> dict:
  from mnas import checkpoints, export
  arch = found_arch(config, outputs)
  train_dir = outputs['train']['workdir'] if 'train' in outputs else None
  variables = (checkpoints.read_variables(os.path.join(train_dir, 'checkpoints'))
               if train_dir else None)
  if variables is None:
    raise ConfigError("export needs the trained network: config.pipeline must include 'train'")
  out = export.export(arch, variables, d, config.num_classes, predictor=predictor,
                      tflite=bool(config.export.tflite))
  _text(d, 'export', '```\n' + json.dumps(out, indent=1) + '\n```')
  return out


def _text(d: str, tag: str, text: str) -> None:
  with metrics.MetricWriter(os.path.join(d, 'tensorboard')) as w:
    w.write_texts(0, {tag: text})


# -------------------------------------------------------------------------------------------
# The comparison.


def scale_to_latency(name: str, target_ms: float, predict, resolution: int,
                     multipliers=tuple(m / 20 for m in range(2, 41))) -> Architecture:
  """Reference `name` at the largest of `multipliers` whose predicted latency is <= target
  (bisection: latency grows with the width multiplier), or the smallest one if none is."""
  arch = lambda m: search_spaces.get_reference(name, m, resolution)
  lo, hi = 0, len(multipliers) - 1
  if predict(arch(multipliers[lo])) > target_ms:
    return arch(multipliers[lo])
  while lo < hi:  # Invariant: multipliers[lo] meets the target.
    mid = (lo + hi + 1) // 2
    if predict(arch(multipliers[mid])) <= target_ms:
      lo = mid
    else:
      hi = mid - 1
  return arch(multipliers[lo])


def _compare(config, d: str, outputs: dict, predictor) -> dict:
  from mnas import export
  target = (config.compare.target_ms or outputs.get('netadapt', {}).get('target_ms')
            or float(config.reward.target_ms))
  found = found_arch(config, outputs)
  models = [('found', found, _train_summary(config, outputs, found, d))]
  for name in config.compare.references:
    arch = scale_to_latency(name, target, predictor.predict, found.resolution,
                            tuple(config.compare.multipliers))
    logging.info('compare: %s at width %.2f (predicted %.4f ms, target %.4f ms)', name,
                 arch.width_multiplier, predictor.predict(arch), target)
    models.append((name, arch, final_train(arch, config, os.path.join(d, name))))
  measured = export.measure_latency(predictor.table, [a for _, a, _ in models], config.num_classes)
  rows = []
  for (name, arch, res), ms in zip(models, measured):
    counts = counting.count(arch, config.num_classes)
    rows.append(dict(model=name, width_multiplier=arch.width_multiplier, accuracy=res['accuracy'],
                     measured_ms=ms, predicted_ms=float(predictor.predict(arch)),
                     params=counts['params'], macs=counts['macs'], arch=str(arch)))
  table = format_table(rows, target, predictor.table.target, models[0][2]['split'])
  with open(os.path.join(d, 'table.md'), 'w') as f:
    f.write(table + '\n')
  _text(d, 'comparison', table)
  return dict(target_ms=target, latency_target=predictor.table.target, rows=rows, table=table)


def _train_summary(config, outputs: dict, arch: Architecture, d: str) -> dict:
  if 'train' in outputs:
    return outputs['train']
  return final_train(arch, config, os.path.join(d, 'found'))


def format_table(rows: list[dict], target_ms: float, device: str, split: str) -> str:
  """The comparison as a Markdown table."""
  lines = [f'Latency target {target_ms:.4f} ms on {device}; top-1 on {split}.', '',
           '| model | width | top-1 | measured ms | predicted ms | params | MACs |',
           '|---|---|---|---|---|---|---|']
  for r in rows:
    lines.append(f'| {r["model"]} | {r["width_multiplier"]:g} | {r["accuracy"]:.4f} | '
                 f'{r["measured_ms"]:.4f} | {r["predicted_ms"]:.4f} | {r["params"]:,} | '
                 f'{r["macs"] / 1e6:.2f}M |')
  return '\n'.join(lines)


STAGE_FNS = {'search': _search, 'netadapt': _netadapt, 'train': _train, 'export': _export,
             'compare': _compare}
