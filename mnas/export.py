"""Deploying a trained network: its architecture, weights, LiteRT flatbuffer and latency.

`export` writes into one directory:

  arch.txt, arch.json   the architecture's string form and JSON (`describe`, `train` and
                        `latency predict` accept the JSON as --arch)
  checkpoint/           the evaluated (EMA) variables {'params', 'batch_stats'}, orbax
  model.tflite          a LiteRT flatbuffer, batch 1, float32 (needs the `tf` extra:
                        ai-edge-litert and litert-converter); its outputs are checked against
                        the Flax model's on random inputs
  export.json           what was written, the numerical check, params, MACs and the latency
                        measured end to end on the latency table's target next to the
                        predicted one

The flatbuffer is converted from `jax.export` StableHLO by `litert-converter` (no
TensorFlow), with grouped depthwise convolutions (one DEPTHWISE_CONV_2D each, XNNPACK's
kernel; `mnas.latency.litert_impl`).
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

from absl import logging
import numpy as np

from mnas import counting, latency
from mnas.space import Architecture

# Largest |LiteRT - Flax| allowed, relative to the largest |Flax| output: float32 with the
# converter's op fusions (batch norm folded into the convolutions) differs by ~1e-6.
TOLERANCE = 1e-4


def save_checkpoint(variables: dict, directory: str) -> str:
  """Writes `{'params', 'batch_stats'}` as an orbax checkpoint (replacing an older one)."""
  import orbax.checkpoint as ocp
  directory = os.path.abspath(directory)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(directory, variables, force=True)
  return directory


def load_checkpoint(directory: str) -> dict:
  """The variables `save_checkpoint` wrote (numpy)."""
  import jax
  import orbax.checkpoint as ocp
  with ocp.StandardCheckpointer() as ckptr:
    return jax.tree.map(np.asarray, ckptr.restore(os.path.abspath(directory)))


def _apply_fn(arch: Architecture, variables: dict, num_classes: int, depthwise_impl: str):
  from mnas import models
  model = models.build_model(arch, num_classes, depthwise_impl=depthwise_impl,
                             layer_impl=latency.LITERT_LAYER_IMPL)
  return lambda x: model.apply(variables, x, train=False)


def to_tflite(arch: Architecture, variables: dict, num_classes: int) -> bytes:
  """The inference network (batch 1, NHWC float32) as a LiteRT flatbuffer."""
  fn = _apply_fn(arch, variables, num_classes, latency.litert_impl('auto'))
  return latency.to_tflite(fn, [(1, arch.resolution, arch.resolution, 3)])


def check_tflite(content: bytes, arch: Architecture, variables: dict, num_classes: int,
                 n: int = 4, seed: int = 0) -> dict[str, Any]:
  """Runs the flatbuffer and the Flax model on `n` random inputs; the largest differences."""
  from ai_edge_litert.interpreter import Interpreter
  flax_fn = _apply_fn(arch, variables, num_classes, 'auto')
  it = Interpreter(model_content=content, num_threads=1)
  it.allocate_tensors()
  inp, out = it.get_input_details()[0], it.get_output_details()[0]
  abs_diff, scale = 0.0, 0.0
  for j in range(n):
    x = latency.random_input((1, arch.resolution, arch.resolution, 3), seed + j)
    it.set_tensor(inp['index'], x)
    it.invoke()
    y_lite = it.get_tensor(out['index'])
    y_flax = np.asarray(flax_fn(x))
    abs_diff = max(abs_diff, float(np.max(np.abs(y_lite - y_flax))))
    scale = max(scale, float(np.max(np.abs(y_flax))))
  rel = abs_diff / max(scale, 1e-12)
  return dict(inputs=n, max_abs_diff=abs_diff, max_abs_output=scale, max_rel_diff=rel,
              tolerance=TOLERANCE, match=rel <= TOLERANCE)


def measure_latency(table, archs: Sequence[Architecture], num_classes: int) -> list[float]:
  """End-to-end milliseconds of `archs` on `table`'s target (as `latency validate`)."""
  log = os.path.splitext(table.path)[0] + '.worker.log' if table.path else None
  builder = latency.Builder(table, log_path=log, progress=False)
  try:
    return [float(s['ms']) for s in builder.measure_archs(list(archs), num_classes)]
  finally:
    builder.close()


def export(arch: Architecture, variables: dict, out_dir: str, num_classes: int, *,
           predictor=None, tflite: bool = True) -> dict[str, Any]:
  """Writes the deployment files (module docstring) and returns export.json's content.

  `predictor` (a `mnas.latency.Predictor`): its prediction and a measurement on its table's
  target go into the summary. Without the LiteRT packages the flatbuffer is skipped with the
  reason recorded (the rest is still written).
  """
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, 'arch.txt'), 'w') as f:
    f.write(str(arch) + '\n')
  with open(os.path.join(out_dir, 'arch.json'), 'w') as f:
    json.dump(arch.to_json(), f, indent=1)
  counts = counting.count(arch, num_classes)
  summary: dict[str, Any] = dict(arch=str(arch), id=arch.id, params=counts['params'],
                                 macs=counts['macs'], num_classes=num_classes,
                                 checkpoint=save_checkpoint(variables,
                                                            os.path.join(out_dir, 'checkpoint')))
  if tflite:
    try:
      content = to_tflite(arch, variables, num_classes)
    except latency.TargetUnavailableError as e:
      summary['tflite'] = None
      summary['tflite_skipped'] = str(e)
      logging.warning('export: no LiteRT flatbuffer: %s', e)
    else:
      path = os.path.join(out_dir, 'model.tflite')
      with open(path, 'wb') as f:
        f.write(content)
      summary['tflite'] = path
      summary['tflite_bytes'] = len(content)
      summary['tflite_check'] = check_tflite(content, arch, variables, num_classes)
      logging.info('export: %s (%d bytes), LiteRT vs Flax: %s', path, len(content),
                   summary['tflite_check'])
  if predictor is not None:
    summary['target'] = predictor.table.target
    summary['predicted_ms'] = float(predictor.predict(arch))
    summary['measured_ms'] = measure_latency(predictor.table, [arch], num_classes)[0]
  with open(os.path.join(out_dir, 'export.json'), 'w') as f:
    json.dump(summary, f, indent=1)
  return summary
