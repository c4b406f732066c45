"""What `launch.py search` says at the default verbosity: one line a candidate, one a step
(with ETA), none for a controller checkpoint or another library's INFO; the report on
stdout. Real proxy training on the quickstart setting, a few steps of it."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS, PER_STEP = 3, 2


@pytest.mark.slow  # About 2 minutes: `python -m pytest -m slow tests` runs it.
def test_a_quickstart_candidate_costs_one_log_line(tmp_path, data_dir):
  out = subprocess.run(
      [sys.executable, 'launch.py', 'search', '--config=experiments/quickstart.py',
       f'--workdir={tmp_path / "w"}', f'--config.num_steps={STEPS}',
       f'--config.candidates_per_step={PER_STEP}', f'--config.train.data_dir={data_dir}',
       '--config.train.dataset=mnas_shapes/tiny', '--config.train.num_train_steps=3',
       '--config.train.batch_size=16'],
      cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu'),
      capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  logged = [line for line in out.stderr.splitlines() if re.match(r'[IWE]\d{4} ', line)]
  config_echo = [line for line in logged if 'config (kept in' in line]
  candidates = [line for line in logged if re.search(r'\] step \d+ \(\d+ of \d+\) slot', line)]
  steps = [line for line in logged if re.search(r'\] step \d+ \(\d+ of \d+\) done', line)]
  assert len(config_echo) == 1 and len(candidates) == STEPS * PER_STEP
  assert [re.search(r'step (\d+) \((\d+) of', line).groups() for line in steps] == [
      (str(s), str(s + 1)) for s in range(STEPS)]
  assert all('ETA' in line for line in steps)
  others = [line for line in logged if line not in config_echo + candidates + steps]
  assert len(others) <= 3, others  # The latency target; nothing per candidate or checkpoint.
  assert not [line for line in logged if 'orbax' in line or 'checkpoint' in line.lower()]
  assert 'Top ' in out.stdout and 'best_arch.json' in out.stdout
