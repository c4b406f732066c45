r"""Where the time of the mnas train step goes: a jax.profiler trace, summed by kind of op.

  python benchmarks/profile_step.py [--model mobilenet_v3_large] [--batch 32] [--steps 3]
      [--mode train|forward] [--trace_dir /tmp/mnas_profile]

Runs the train step of benchmarks/train_throughput.py (forward + backward + SGD, batch 32,
224x224) under `jax.profiler.trace`, reads the Perfetto trace it writes (one event per XLA
thunk, named after its HLO instruction) and sums the thunks' durations by what the
instruction computes, from the optimised HLO of the compiled step:

  convolution   `convolution` ops (the stem's 3x3 conv, a grouped depthwise conv if any)
  matmul        `dot` ops (1x1 convolutions as matrix products, the classifier) and their
                library fusions (YNNPACK / oneDNN `*_fusion` custom fusions)
  reduction     fusions with a `reduce` (batch-norm statistics and their gradients, global
                pooling, squeeze-excite pooling, depthwise kernel gradients)
  elementwise   everything else (depthwise taps as shifted slices, activations,
                normalisation, the optimiser update, copies)

The trace is kept in --trace_dir for TensorBoard's profile plugin or Perfetto.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from train_throughput import make_mnas_step  # noqa: E402

KINDS = ('convolution', 'matmul', 'reduction', 'elementwise')
CONTROL_FLOW = ('while', 'conditional', 'call')


def hlo_kinds(hlo_text: str) -> dict[str, str]:
  """Instruction name -> kind, for the instructions of the entry computation (thunks)."""
  bodies, name = collections.defaultdict(list), None
  for line in hlo_text.splitlines():
    m = re.match(r'^\s*(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$', line)
    if m and '=' not in line.split('{')[0]:
      name = m.group(1)
    elif name:
      bodies[name].append(line)

  def kind_of(ops: str) -> str:
    if ' convolution(' in ops:
      return 'convolution'
    if ' dot(' in ops or 'ynn' in ops or 'onednn' in ops or 'xnn' in ops:
      return 'matmul'
    if ' reduce(' in ops or ' reduce-window(' in ops or '_reduce_' in ops:
      return 'reduction'
    return 'elementwise'

  kinds = {}
  for body in bodies.values():
    for line in body:
      m = re.match(r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*.*?\s([\w\-]+)\((.*)$', line)
      if not m:
        continue
      inst, op, rest = m.groups()
      if op in CONTROL_FLOW:  # Its body's thunks are traced (and counted) themselves.
        continue
      if op == 'fusion':
        called = re.search(r'calls=%?([\w.\-]+)', rest)
        body_ops = '\n'.join(bodies.get(called.group(1), [])) if called else ''
        kinds[inst] = kind_of(body_ops + ' ' + inst)  # XLA names fusions after their ops.
      else:
        kinds[inst] = kind_of(f' {op}(')
  return kinds


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--model', default='mobilenet_v3_large')
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--steps', type=int, default=3)
  p.add_argument('--mode', default='train', choices=('train', 'forward'))
  p.add_argument('--trace_dir', default='/tmp/mnas_profile')
  args = p.parse_args()
  import jax
  step_fn, forward, state, x, y = make_mnas_step(args.model, args.batch)
  if args.mode == 'train':
    compiled = step_fn.lower(state, x, y).compile()
    run = lambda s: compiled(s, x, y)
  else:
    v = {'params': state[0], 'batch_stats': state[1]}
    compiled = forward.lower(v, x).compile()
    run = lambda s: (s, compiled(v, x))
  kinds = hlo_kinds(compiled.as_text())
  state, out = run(state)  # Warm-up.
  jax.block_until_ready(out)
  t0 = time.perf_counter()
  with jax.profiler.trace(args.trace_dir, create_perfetto_trace=True):
    for _ in range(args.steps):
      state, out = run(state)
      jax.block_until_ready(out)
  wall = (time.perf_counter() - t0) / args.steps
  path = max(glob.glob(os.path.join(args.trace_dir, '**', '*.trace.json.gz'), recursive=True),
             key=os.path.getmtime)
  events = [e for e in json.load(gzip.open(path))['traceEvents']
            if e.get('ph') == 'X' and e.get('name') in kinds]
  by_kind, by_op = collections.Counter(), collections.Counter()
  for e in events:
    by_kind[kinds[e['name']]] += e['dur'] / 1e3 / args.steps
    by_op[e['name']] += e['dur'] / 1e3 / args.steps
  total = sum(by_kind.values())
  executor = sum(e['dur'] for e in json.load(gzip.open(path))['traceEvents']
                 if e.get('name') == 'ThunkExecutor::Execute') / 1e3 / args.steps
  print(f'{args.model} {args.mode} step, batch {args.batch}, {jax.device_count()} '
        f'{jax.default_backend()} device(s): {wall * 1e3:.0f} ms per step under the profiler; '
        f'thunks {total:.0f} ms (summed over threads) of the executor\'s {executor:.0f} ms')
  print(f'{"kind":<12} {"ms/step":>9} {"share":>6}')
  for k in KINDS:
    print(f'{k:<12} {by_kind[k]:9.1f} {by_kind[k] / max(total, 1e-9):6.1%}')
  print('\nslowest thunks (ms/step):')
  for name, ms in by_op.most_common(12):
    print(f'  {ms:8.2f}  {kinds[name]:<12} {name}')
  print(f'\ntrace: {path}')


if __name__ == '__main__':
  main()
