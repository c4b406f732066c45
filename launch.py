r"""mnas command line: parses flags and calls one library function per verb.

  python launch.py describe --arch mobilenet_v3_large [--width_multiplier 0.75] [--resolution 192]
  python launch.py search   --config experiments/quickstart.py --workdir /tmp/mnas
  python launch.py train    --config experiments/train.py --workdir DIR [--config.arch=...]
  python launch.py latency  build|validate|predict|export|import --config experiments/latency.py ...
  python launch.py report   --workdir DIR
  python launch.py proxy-check --config experiments/proxy_check.py --workdir DIR
  python launch.py surrogate --config experiments/accel_nasbench.py:surrogate --workdir DIR
  python launch.py config   --config experiments/quickstart.py  (every field, value, comment)

Configs are ml_collections files; any field can be overridden (`--config.num_steps=50`).
Several processes (a SLURM job, a Cloud TPU pod, or by hand) run the same `search` or `train`
command, with --coordinator_address/--num_processes/--process_id or the cluster's environment.

Mistakes a user can fix (a bad flag or config field, a damaged file) print one line and exit
with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from absl import app, flags, logging
from ml_collections import config_flags

flags.DEFINE_string('arch', None, 'Reference name, architecture string, or JSON file.')
flags.DEFINE_float('width_multiplier', None, 'Override the width multiplier (alpha).')
flags.DEFINE_integer('resolution', None, 'Override the input resolution.')
flags.DEFINE_integer('num_classes', None, 'Classifier width for `describe` (default: the '
                     'architecture file\'s, else 1000).')
flags.DEFINE_bool('json', False, '`describe`: print JSON instead of the per-layer table.')
flags.DEFINE_string('workdir', None, 'Where checkpoints, summaries and results go.')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (jax.distributed); '
                    'default: JAX_COORDINATOR_ADDRESS, or detected (SLURM, Cloud TPU).')
flags.DEFINE_integer('num_processes', None, 'Processes of a multi-process run (default: detected).')
flags.DEFINE_integer('process_id', None, 'This process\'s index in [0, num_processes).')
flags.DEFINE_bool('distributed', False, 'Initialise jax.distributed even if nothing in the '
                  'environment asks for it (arguments detected by JAX, e.g. on a TPU pod).')
flags.DEFINE_string('jax_cache_dir', '~/.cache/mnas/jax',
                    'JAX\'s persistent compilation cache: a resumed search, a re-run and the '
                    'next candidate of an architecture seen before skip XLA compiles; \'\' '
                    'turns it off ($JAX_COMPILATION_CACHE_DIR, when set, wins).')
config_flags.DEFINE_config_file('config', None, 'An ml_collections config file.', lock_config=True)
FLAGS = flags.FLAGS

DISTRIBUTED = ('coordinator_address', 'num_processes', 'process_id', 'distributed')


def describe(argv) -> None:
  from mnas import counting
  counting.main(FLAGS.arch, FLAGS.width_multiplier, FLAGS.resolution, FLAGS.num_classes,
                FLAGS.json)


def config(argv) -> None:
  from mnas import config_help
  print(config_help.describe(FLAGS.config, config_flags.get_config_filename(FLAGS['config'])))


def train(argv) -> None:
  from mnas import train as train_lib
  train_lib.main(FLAGS.config, FLAGS.workdir)


def search(argv) -> None:
  from mnas import search as search_lib
  search_lib.main(FLAGS.config, FLAGS.workdir)


def report(argv) -> None:
  from mnas import search as search_lib
  search_lib.report(FLAGS.workdir)


def proxy_check(argv) -> None:
  from mnas.search import proxy_check as proxy_check_lib
  proxy_check_lib.main(FLAGS.config, FLAGS.workdir)


def surrogate(argv) -> None:
  from mnas import accel_nasbench
  accel_nasbench.main(FLAGS.config, FLAGS.workdir)


def latency(argv) -> None:
  from mnas import latency as latency_lib
  latency_lib.main(argv[2] if len(argv) > 2 else '', FLAGS.config, FLAGS.workdir, FLAGS.arch,
                   argv[3:])


# verb -> (function, required flags, optional flags).
VERBS = {
    'describe': (describe, ('arch',), ('width_multiplier', 'resolution', 'num_classes', 'json')),
    'config': (config, ('config',), ()),
    'train': (train, ('config', 'workdir'), DISTRIBUTED),
    'search': (search, ('config', 'workdir'), DISTRIBUTED),
    'report': (report, ('workdir',), ()),
    'latency': (latency, ('config',), ('workdir', 'arch')),
    'proxy-check': (proxy_check, ('config', 'workdir'), ()),
    'surrogate': (surrogate, ('config', 'workdir'), ()),
}


def main(argv) -> None:
  from mnas import cli, distributed
  from mnas.errors import ConfigError
  if not FLAGS['verbosity'].present:  # INFO of mnas only; --verbosity=1 shows everything.
    logging.set_verbosity(logging.INFO)
  cli.quiet_third_party_logs()
  cli.compilation_cache(FLAGS.jax_cache_dir)

  def verb():
    if len(argv) < 2 or argv[1] not in VERBS:
      raise ConfigError(f'usage: launch.py VERB [flags]; VERB one of {sorted(VERBS)}')
    fn, required, optional = VERBS[argv[1]]
    cli.check_flags(FLAGS, argv[1], required, optional,
                    {f for _, req, opt in VERBS.values() for f in req + opt})
    if argv[1] in ('train', 'search'):
      distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                             force=FLAGS.distributed)
    fn(argv)
  cli.run(verb)


if __name__ == '__main__':
  from mnas import cli
  app.run(main, flags_parser=lambda argv: cli.parse_flags(FLAGS, argv))
