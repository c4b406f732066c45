"""`launch.py config`: every field of a config with its value and the comment of the file
that set it (followed through `get_config` calls into experiments/'s other files)."""
import os
import subprocess
import sys

from experiments import quickstart
from mnas import config_help

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_field_is_listed_with_the_comment_of_the_assignment_that_set_it():
  text = config_help.describe(quickstart.get_config(), 'experiments/quickstart.py')
  lines = {line.split(' = ')[0]: line for line in text.splitlines()[1:]}
  assert set(lines) == {name for name, _ in config_help._flat(quickstart.get_config())}
  # Set in latency.py (built by latency.get_config() under `latency`), not train.py's field
  # of the same name; changed by quickstart.py without a comment: the value is its, the
  # comment latency.py's.
  assert lines['latency.num_classes'] == ('latency.num_classes = 10  # Width of the classifier '
                                          'in the head entry.')
  assert lines['controller_kwargs.mnasnet.target_kl'].startswith(
      'controller_kwargs.mnasnet.target_kl = None  # Greedy on purpose at this budget')
  assert '# Bind the measuring process' in lines['latency.pin']  # A comment above it.
  assert lines['screen.factor'] == 'screen.factor = 1'  # Set in a literal: no comment.


def test_launch_config_prints_them():
  out = subprocess.run([sys.executable, 'launch.py', 'config',
                        '--config=experiments/quickstart.py', '--config.num_steps=7'],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert out.returncode == 0, out.stderr
  assert 'num_steps = 7  # Controller updates.' in out.stdout.splitlines()
