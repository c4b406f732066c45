"""Multi-process runs on JAX's own multi-controller runtime (`jax.distributed`).

Every process runs the same program (SPMD over processes, as in big_vision and the flax
examples); `jax.distributed.initialize` connects them through a coordinator (process 0's
host), after which `jax.devices()` lists the devices of all processes and a pmapped
collective (`lax.pmean`, `lax.psum`) spans all of them. Two ways mnas uses it:

  * Data-parallel training (`launch.py train`): one model, the global batch split over all
    devices of all processes; each process reads its own shard of the data
    (grain.sharding.ShardByJaxProcess) and feeds its local devices. Only process 0 writes
    summaries and result.json; checkpoints go through orbax's multi-process manager.
  * Candidate-parallel search (`launch.py search`, see `mnas.search`): each process trains
    whole candidates on its local devices; process 0 runs the controller and the results
    store, and the candidates and their results travel through the coordinator's key-value
    store (`kv_set` / `kv_get`).

When to initialise: `requested` says whether the flags or the environment ask for several
processes (explicit flags; JAX's JAX_COORDINATOR_ADDRESS; an srun step of several tasks;
TPU_WORKER_HOSTNAMES / TPU_PROCESS_ADDRESSES listing several hosts of a TPU pod slice). A
plain single-process run never initialises anything. Missing arguments are autodetected by
`jax.distributed.initialize` itself (SLURM, Cloud TPU, Open MPI, Kubernetes).
"""

from __future__ import annotations

import os
import sys
from typing import Mapping

from absl import logging

_KV_PREFIX = 'mnas/'


def _several(value: str | None) -> bool:
  return bool(value) and len([h for h in value.split(',') if h.strip()]) > 1


def requested(coordinator_address: str | None = None, num_processes: int | None = None,
              process_id: int | None = None,
              environ: Mapping[str, str] = os.environ) -> bool:
  """Whether these arguments or the environment ask for a multi-process run."""
  del process_id  # A process id alone does not say how many processes there are.
  if coordinator_address or (num_processes or 0) > 1:
    return True
  if environ.get('JAX_COORDINATOR_ADDRESS'):
    return True
  # A SLURM job step (srun) of several tasks; not a plain `python` inside an allocation.
  tasks = environ.get('SLURM_STEP_NUM_TASKS') or environ.get('SLURM_NTASKS') or '1'
  if 'SLURM_STEP_NODELIST' in environ and 'SLURM_PROCID' in environ and int(tasks) > 1:
    return True
  return (_several(environ.get('TPU_WORKER_HOSTNAMES'))
          or _several(environ.get('TPU_PROCESS_ADDRESSES')))


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, force: bool = False,
               environ: Mapping[str, str] = os.environ) -> bool:
  """Connects this process to the others when asked to; returns whether it is distributed.

  Must run before the first JAX computation. Arguments left None are autodetected by
  `jax.distributed.initialize` (SLURM, Cloud TPU pods, Open MPI, or JAX_* variables).
  `force` initialises even when nothing asks for it (e.g. on a Cloud TPU VM pod, whose
  workers JAX finds through the metadata server). On CPU the cross-process collectives are
  gloo's (`jax_cpu_collectives_implementation`). A run that nothing asks to distribute does
  not even import JAX here (so that `launch.py` can take the workdir's lock first).
  """
  if not (force or requested(coordinator_address, num_processes, process_id, environ)):
    return False
  import jax
  if jax.distributed.is_initialized():
    return True
  platforms = str(jax.config.jax_platforms or environ.get('JAX_PLATFORMS', ''))
  if platforms.split(',')[0].strip() == 'cpu':
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address, num_processes, process_id)
  logging.info('Process %d of %d: %d local devices of %d.', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
  return True


def is_main() -> bool:
  """Whether this is process 0, the one that writes summaries, stores and checkpoints.

  Without `jax.distributed` (nothing initialised it) there is one process: no need to
  import JAX to know.
  """
  jax = sys.modules.get('jax')
  if jax is None or not jax.distributed.is_initialized():
    return True
  return jax.process_index() == 0


def _client():
  # The coordinator's key-value store has no public accessor in jax 0.10; orbax reaches it
  # the same way (orbax.checkpoint._src.multihost.multihost.get_jax_distributed_client).
  from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top
  client = jax_distributed.global_state.client
  if client is None:
    raise RuntimeError('jax.distributed is not initialised: call mnas.distributed.initialize')
  return client


def kv_set(key: str, value: str) -> None:
  """Publishes `value` under `key` (once: keys are never overwritten) to all processes."""
  _client().key_value_set(_KV_PREFIX + key, value)


def kv_get(key: str, timeout_s: float = 24 * 3600.0) -> str:
  """Waits for `key` to be published (by any process) and returns its value."""
  return _client().blocking_key_value_get(_KV_PREFIX + key, int(timeout_s * 1000))
