"""Data-parallel training over a group of devices: the one place that knows it is a pmap.

`parallelize` wraps a per-replica step in `jax.pmap` over a group of devices with the axis
name `AXIS` (the name the steps' `lax.pmean` / `lax.psum` and the models' batch norm use);
moving to `shard_map` means changing that one function (and `replicate`, which lays the
state out as pmap's outputs). The group is all devices of all processes (multi-process
data-parallel training: each process feeds its local devices with its own shard of the
data, see mnas/distributed.py), or one process's devices (a candidate of a
candidate-parallel search; the one-shot supernet). Used by `mnas.train` and `mnas.oneshot`.

Public API:
  AXIS
  parallelize(per_replica, devices, *, in_axes, donate_argnums=()) -> pmapped function
  spans_processes(devices) -> bool;  local_devices(devices) -> this process's share
  shard_options(devices) -> grain sharding of the input pipeline
  replicate(tree, devices) -> one copy per device;  unreplicate(tree) -> the first copy
  close_iterator(it)
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import numpy as np

AXIS = 'batch'  # The data-parallel axis name (pmap's axis_name and the model's bn_axis_name).


def parallelize(per_replica: Callable, devices: Sequence[jax.Device], *, in_axes,
                donate_argnums=()) -> Callable:
  """The one data-parallel wrapper: pmap over `devices` with axis name AXIS.

  `in_axes` has one entry per argument: 0 for per-device (leading device axis), None for
  broadcast. Outputs carry a leading device axis. When `devices` are the devices of several
  processes (multi-process training: all of `jax.devices()`), the axis spans them all and
  each process feeds its local ones (pmap with devices=None); when they are this process's
  own (single-process runs, a candidate of a candidate-parallel search), it spans just those.
  """
  return jax.pmap(per_replica, axis_name=AXIS, in_axes=in_axes,
                  devices=None if spans_processes(devices) else list(devices),
                  donate_argnums=donate_argnums)


def spans_processes(devices: Sequence[jax.Device]) -> bool:
  """Whether `devices` belong to several processes (then they must be all of jax.devices())."""
  if len({d.process_index for d in devices}) == 1:
    return False
  if sorted(d.id for d in devices) != sorted(d.id for d in jax.devices()):
    raise ValueError('a data-parallel group spanning processes must hold all of jax.devices()')
  return True


def local_devices(devices: Sequence[jax.Device]) -> list[jax.Device]:
  """This process's share of `devices` (what it feeds with its shard of the batch)."""
  return [d for d in devices if d.process_index == jax.process_index()]


def shard_options(devices: Sequence[jax.Device]):
  """Each process reads its own shard of the data iff the group spans processes."""
  import grain
  if spans_processes(devices):
    return grain.sharding.ShardByJaxProcess(drop_remainder=True)
  return grain.sharding.NoSharding()


def replicate(tree, devices: Sequence[jax.Device]):
  """Host pytree -> one copy per device (a leading device axis), laid out as pmap's outputs."""
  mesh = jax.sharding.Mesh(np.asarray(devices), (AXIS,))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(AXIS))
  n = len(devices)
  return jax.tree.map(
      lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (n,) + np.shape(x)), sharding),
      tree)


def _first_replica(x):
  """The first device's copy of a pmapped array as numpy, without running a slicing op."""
  if isinstance(x, jax.Array) and not x.is_fully_replicated:
    return np.asarray(x.addressable_shards[0].data)[0]
  return np.asarray(x)[0]


def unreplicate(tree):
  """The first device's copy of a replicated pytree, on the host (numpy)."""
  return jax.tree.map(_first_replica, tree)


def close_iterator(it) -> None:
  """Stops an input iterator's worker threads (grain's), when it has any to stop."""
  close = getattr(it, 'close', None)
  if close:
    close()
