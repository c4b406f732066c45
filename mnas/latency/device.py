"""Another device (a phone): the entries exported as .tflite files, its timings imported back.

`latency export` writes KEY.tflite for every entry, a manifest and `run_benchmarks.sh` (LiteRT's
benchmark tool over adb); `latency import RESULTS.csv` makes a table of target 'device' from
the key,ms rows it produced.
"""

from __future__ import annotations

import csv
import os
from typing import Any, Mapping, Sequence

from mnas import jsonfile
from mnas.errors import DataError
from mnas.latency.build import progress_bar
from mnas.latency.keys import parse_key, parses
from mnas.latency.litert import entry_tflite
from mnas.latency.table import SCHEMA_VERSION, LatencyTable, timestamp


BENCHMARK_SCRIPT = r'''#!/bin/sh
# Times every .tflite of this folder with LiteRT's benchmark tool on an attached phone and
# writes results.csv (key,ms) for `launch.py latency import`.
#   BENCHMARK=/data/local/tmp/benchmark_model THREADS=1 sh run_benchmarks.sh
set -e
BENCHMARK=${BENCHMARK:-/data/local/tmp/benchmark_model}
THREADS=${THREADS:-1}
adb push ./*.tflite /data/local/tmp/mnas_latency/ >/dev/null
echo "key,ms" > results.csv
for f in *.tflite; do
  key=${f%.tflite}
  us=$(adb shell "$BENCHMARK --graph=/data/local/tmp/mnas_latency/$f --num_threads=$THREADS \
       --use_xnnpack=true --warmup_runs=10 --num_runs=100" |
       sed -n 's/.*Inference (avg): \([0-9.e+]*\).*/\1/p' | tail -1)
  echo "$key,$(echo "$us / 1000" | bc -l)" >> results.csv
done
'''


def export_entries(keys: Sequence[str], out_dir: str, meta: Mapping[str, Any] | None = None, *,
                   depthwise_impl: str, progress: bool = True) -> str:
  """Writes KEY.tflite for every key plus manifest.json and run_benchmarks.sh; returns the
  manifest's path. Resumes: keys the manifest already lists are skipped."""
  os.makedirs(out_dir, exist_ok=True)
  manifest_path = os.path.join(out_dir, 'manifest.json')
  manifest = dict(schema=SCHEMA_VERSION, meta=dict(meta or {}), created=timestamp(), entries=[],
                  instructions='Time every KEY.tflite (batch 1, float32) on the device, e.g. '
                               'with run_benchmarks.sh, and import a CSV of key,ms '
                               '(`launch.py latency import RESULTS.csv`).')
  manifest['entries'] = jsonfile.read(manifest_path, default={}).get('entries', [])
  done = {e['key'] for e in manifest['entries']}
  todo = [k for k in dict.fromkeys(keys) if k not in done]
  bar = progress_bar(len(todo), 'latency export', progress)
  try:
    for i, key in enumerate(todo):
      spec = parse_key(key)
      data = entry_tflite(spec, depthwise_impl)
      fname = key + '.tflite'
      with open(os.path.join(out_dir, fname), 'wb') as f:
        f.write(data)
      manifest['entries'].append(dict(key=key, file=fname, bytes=len(data),
                                      input_shape=[1, spec['input_resolution'],
                                                   spec['input_resolution'], spec['cin']]))
      bar.update(1)
      if (i + 1) % 20 == 0:
        jsonfile.write(manifest_path, manifest)
  finally:
    bar.close()
    jsonfile.write(manifest_path, manifest)
  with open(os.path.join(out_dir, 'run_benchmarks.sh'), 'w') as f:
    f.write(BENCHMARK_SCRIPT)
  return manifest_path


def read_results(path: str) -> dict[str, float]:
  """key -> ms from a CSV (key,ms with an optional header) or JSON ({key: ms} or entries)."""
  if path.endswith('.json'):
    obj = jsonfile.read(path)
    obj = obj.get('entries', obj) if isinstance(obj, dict) else obj
    try:
      if isinstance(obj, list):
        obj = {e['key']: e['ms'] for e in obj}
      return {k: float(v['ms'] if isinstance(v, dict) else v) for k, v in obj.items()}
    except (AttributeError, KeyError, TypeError, ValueError) as e:
      raise DataError(f'{path}: cannot read the timings ({e!r}); expected {{key: ms}} or a list '
                      'of {"key": ..., "ms": ...}') from None
  out = {}
  try:
    with open(path, newline='') as f:
      rows = list(csv.reader(f))
  except OSError as e:
    raise DataError(f'{path}: cannot read it ({e.strerror or e})') from None
  for row in rows:
    if not row or row[0].startswith('#'):
      continue
    try:
      out[row[0].strip()] = float(row[1])
    except (ValueError, IndexError):
      if row[0].strip().lower() != 'key':
        raise DataError(f'{path}: cannot read row {row!r}; expected key,ms') from None
  return out


def import_results(results: Mapping[str, float], meta: Mapping[str, Any], path: str | None = None,
                   table: LatencyTable | None = None) -> LatencyTable:
  """A table (new, or `table` extended) of device timings; every key must parse."""
  if table is None:
    table = LatencyTable(dict(meta, schema=SCHEMA_VERSION, created=timestamp(), method='single',
                              statistic='median', unit='ms'), path=path)
  bad = [k for k in results if not parses(k)]
  if bad:
    raise ValueError(f'{len(bad)} imported keys are not latency keys, e.g. {bad[:3]}')
  for k, v in results.items():
    if not v > 0:
      raise ValueError(f'imported entry {k!r}: {v} ms is not a positive time')
    table.add(k, dict(ms=float(v), median=float(v), imported=True))
  if path:
    table.save(path)
  return table
