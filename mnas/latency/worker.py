"""The measuring worker process (`mnas.latency.runner.Worker` starts it).

  python -m mnas.latency.worker TARGET THREADS BATCH_SIZE DEPTHWISE_IMPL [CPUS]

It binds itself to CPUS (comma-separated) before JAX starts, then reads one JSON request a
line on stdin ({'op': 'info' | 'entry' | 'arch' | 'exit', ...}) and answers each with one
line prefixed with `runner.REPLY` on stdout; anything else printed goes to stderr (the log).
"""

from __future__ import annotations

import json
import os
import sys

from mnas.latency import runner
from mnas.latency.targets import TargetUnavailableError


def serve(target: str, threads: int, batch_size: int, depthwise_impl: str, cpus: str) -> None:
  if cpus and hasattr(os, 'sched_setaffinity'):  # Before JAX starts its thread pools.
    os.sched_setaffinity(0, {int(c) for c in cpus.split(',')})
  out = sys.stdout
  sys.stdout = sys.stderr  # Anything else printed goes to the log, not the protocol.
  measurer, err = None, None
  try:
    measurer = runner.make_measurer(target, threads, batch_size, depthwise_impl)
  except TargetUnavailableError as e:
    err = e
  for line in sys.stdin:
    req = json.loads(line)
    try:
      if req['op'] == 'exit':
        break
      if err is not None:
        raise err
      if req['op'] == 'info':
        reply = runner.worker_info(target, threads, batch_size)
      elif req['op'] == 'entry':
        reply = measurer.measure_entry(req['spec'], req['settings'])
      elif req['op'] == 'arch':
        reply = measurer.measure_arch(req['arch'], req['num_classes'], req['settings'])
      else:
        raise ValueError(f'unknown request {req["op"]!r}')
    except TargetUnavailableError as e:
      reply = {'error': str(e), 'unavailable': True}
    except Exception as e:  # Reported to the parent, which raises.
      import traceback
      traceback.print_exc()
      reply = {'error': f'{type(e).__name__}: {e}'}
    out.write(runner.REPLY + json.dumps(reply) + '\n')
    out.flush()


if __name__ == '__main__':
  serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4],
        sys.argv[5] if len(sys.argv) > 5 else '')
