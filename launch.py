r"""mnas command line.

  python launch.py describe --arch mobilenet_v3_large [--width_multiplier 0.75] [--resolution 192]
  python launch.py search   --config experiments/quickstart.py --workdir /tmp/mnas
  python launch.py search   --config experiments/v3_small_search.py:cpu --workdir DIR  # pipeline
  python launch.py train    --config experiments/train.py --workdir DIR [--config.arch=...]
  python launch.py latency build|validate|predict|export|import --config experiments/latency.py ...
  python launch.py report   --workdir DIR

Configs are ml_collections files; any field can be overridden (`--config.lr=0.1`).

Several processes (a SLURM job, a Cloud TPU pod, or by hand): the same command in every
process, with --coordinator_address/--num_processes/--process_id or the cluster's environment
(see mnas/distributed.py and the README's "Scaling out").
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

flags.DEFINE_string('arch', None, 'Reference name, architecture string, or JSON file.')
flags.DEFINE_float('width_multiplier', None, 'Override the width multiplier (alpha).')
flags.DEFINE_integer('resolution', None, 'Override the input resolution.')
flags.DEFINE_integer('num_classes', 1000, 'Classifier width for `describe`.')
flags.DEFINE_string('workdir', None, 'Where checkpoints, summaries and results go.')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (jax.distributed); '
                    'default: JAX_COORDINATOR_ADDRESS, or detected (SLURM, Cloud TPU).')
flags.DEFINE_integer('num_processes', None, 'Processes of a multi-process run (default: detected).')
flags.DEFINE_integer('process_id', None, 'This process\'s index in [0, num_processes).')
flags.DEFINE_bool('distributed', False, 'Initialise jax.distributed even if nothing in the '
                  'environment asks for it (arguments detected by JAX, e.g. on a TPU pod).')
config_flags.DEFINE_config_file('config', None, 'An ml_collections config file.', lock_config=True)
FLAGS = flags.FLAGS


def describe(argv) -> None:
  """Prints one JSON object: params, MACs, resolution, string form, per-layer table."""
  import search_spaces
  from mnas import counting
  if not FLAGS.arch:
    raise app.UsageError('describe needs --arch (a reference name, an architecture string, '
                         f'or a JSON file); references: {sorted(search_spaces.REFERENCES)}')
  arch = search_spaces.load_arch(FLAGS.arch, FLAGS.width_multiplier, FLAGS.resolution)
  counts = counting.count(arch, FLAGS.num_classes)
  layers = arch.describe_layers()
  for row, (p, m) in zip(layers, counts['layers']):
    row.update(params=p, macs=m)
  print(json.dumps(dict(arch=str(arch), id=arch.id, params=counts['params'], macs=counts['macs'],
                        resolution=arch.resolution, width_multiplier=arch.width_multiplier,
                        num_classes=FLAGS.num_classes, layers=layers), indent=1))


def _needs(what: str):
  if what == 'config' and FLAGS.config is None:
    raise app.UsageError('this command needs --config=experiments/<name>.py')
  if what == 'workdir' and not FLAGS.workdir:
    raise app.UsageError('this command needs --workdir=DIR')


def train(argv) -> None:
  from mnas import train as train_lib
  _needs('config'), _needs('workdir')
  train_lib.train_and_evaluate(FLAGS.config, FLAGS.workdir)


def _search_module(method: str):
  """`config.method`: 'mnas' (a candidate trained per sample) or 'oneshot' (TuNAS)."""
  if method == 'oneshot':
    from mnas import oneshot
    return oneshot
  if method == 'mnas':
    from mnas import search as search_lib
    return search_lib
  raise app.UsageError(f"config.method must be one of ('mnas', 'oneshot'), got {method!r}")


def search(argv) -> None:
  _needs('config'), _needs('workdir')
  if 'pipeline' in FLAGS.config:  # Search -> NetAdapt -> train -> export -> compare.
    from mnas import pipeline
    print(f'TensorBoard: tensorboard --logdir {FLAGS.workdir} --host 127.0.0.1', flush=True)
    out = pipeline.run(FLAGS.config, FLAGS.workdir)
    table = os.path.join(FLAGS.workdir, 'compare', 'table.md')
    if 'compare' in out and os.path.exists(table):
      with open(table) as f:
        print('\n' + f.read())
    print(f'\nPipeline stages done: {", ".join(out)} (in {FLAGS.workdir}/<stage>/). Inspect with:\n'
          f'  tensorboard --logdir {FLAGS.workdir} --host 127.0.0.1')
    return
  lib = _search_module(FLAGS.config.get('method', 'mnas'))
  print(f'TensorBoard: tensorboard --logdir {FLAGS.workdir}/tensorboard --host 127.0.0.1',
        flush=True)
  summary = lib.run(FLAGS.config, FLAGS.workdir)
  if 'trained' in summary:  # A process > 0 of a candidate-parallel search: process 0 reports.
    print(f'process {summary["process"]}: trained {summary["trained"]} candidates')
    return
  lib.report(FLAGS.workdir)
  print(f'\n{summary["evaluations"]} candidates evaluated. Inspect the search with:\n'
        f'  tensorboard --logdir {FLAGS.workdir}/tensorboard --host 127.0.0.1\n'
        f'Best architecture: {FLAGS.workdir}/best_arch.json')


def report(argv) -> None:
  from mnas import oneshot
  _needs('workdir')
  _search_module('oneshot' if oneshot.is_oneshot_workdir(FLAGS.workdir) else 'mnas').report(
      FLAGS.workdir)


def latency(argv) -> None:
  from mnas import latency as latency_lib
  verbs = ('build', 'validate', 'predict', 'export', 'import')
  if len(argv) < 3 or argv[2] not in verbs:
    raise app.UsageError(f'latency needs a verb, one of {verbs}')
  latency_lib.main(argv[2], FLAGS.config, FLAGS.workdir, FLAGS.arch, argv[3:])


COMMANDS = {'describe': describe, 'train': train, 'search': search, 'report': report,
            'latency': latency}


def main(argv) -> None:
  if len(argv) < 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f'usage: launch.py COMMAND [flags]; COMMAND one of {sorted(COMMANDS)}')
  from mnas import distributed
  from mnas.space import SpaceError
  logging.set_verbosity(logging.INFO)
  distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                         force=FLAGS.distributed)
  try:
    COMMANDS[argv[1]](argv)
  except SpaceError as e:  # Bad input: a clear message, not a traceback.
    sys.exit(f'error: {e}')


if __name__ == '__main__':
  app.run(main)
