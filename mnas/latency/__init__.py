r"""Measured latency lookup tables and the latency predictor.

The unit of a table is one *entry*: a block configuration at its input shape (in the spirit
of ProxylessNAS / Once-for-All latency tables), plus the stem and the head, named by a
readable key (`mnas.latency.keys`: e.g. ir_r32_i16_o24_k3_x64_s2_se0_relu_res0 is an inverted
residual block at 32x32, 16 -> 24 channels, kernel 3, expanded to 64, stride 2, no SE, ReLU,
no residual).

A table (`LatencyTable`) is a JSON file with metadata (target, CPU model, library versions,
threads, batch, date, schema version, space, width multiplier, resolution, ...), the entries
(milliseconds with their robust statistics) and a calibration (the fitted correction).
Loading a table made for another target, schema or space, or timed by an older timing loop,
raises `TableMismatchError`.
`build_table` measures every entry a space can produce (small spaces) or the entries a set of
architectures needs (large ones; `Predictor` can fill missing entries on demand); it saves
every few entries and resumes where it stopped.

`Predictor` sums an architecture's entries plus the fitted overhead, vectorised (an
architecture -> entry-index cache and one `np.add.reduceat`), thousands of architectures a
second. `validate` measures random architectures end to end on the same target and reports
RMSE, MAPE, the share within +-5% / +-10% and Spearman's rank correlation (as nn-Meter does).

Where a plain sum of isolated timings goes wrong (xla-cpu, found while validating):
  * per-call overhead: each jitted call pays Python/PJRT dispatch and argument handling
    (~15-50 us of CPU); an end-to-end model pays it once, a sum of single-call timings once
    per entry; at 32x32 (0.2-0.3 ms for a model's ~50-300 arrays) it costs more than the
    model and is as noisy. Entries and architectures are therefore timed inside one
    compiled loop that calls them several times (`method='loop'`, `XlaMeasurer._loop`).
    The *marginal* cost of one more block in a chain of copies (`method='marginal'`, see
    `mnas.latency.timing`) came out 28% short of the end-to-end time on the tiny space at
    32x32 (a sum of the loop's timings 14% short: the next points and the calibration).
  * what the timing loop adds to the program: a loop that fed `x + c` in and reduced the
    output to a scalar had XLA fuse both into the block's first and last ops, so it timed
    another program (early high-resolution blocks without SE 2-8x slow at 128x128, e.g.
    ir_r64_i16_o16_k3_x16_relu 0.53 ms against 0.095 ms in the block's own program; the plain
    sum of a MobileNetV3-like architecture ranked 100 architectures with Spearman 0.72).
    The loop now reads input and weights through an optimization barrier and carries the
    block's output (`targets.timing_loop`): the block's own program. A table timed by the
    first loop is refused (`table.TIMING_LOOP`).
  * shared weights are cache-hot: a chain of copies of one block that share weights reads
    them from cache for every copy but the first; the copies get their own weights.
  * load from other processes inflates wall time; one thread pinned to one core measured
    in process CPU time (`clock='cpu'`) is steady on a busy machine, and end-to-end timings
    are the median over several shuffled rounds (each a fresh instance of every model).
  * a shared machine has slow spells that CPU time does not remove (another tenant's memory
    traffic, the clock frequency): on a quiet 2-core VM an architecture's timing varied by
    17% between rounds, as much as the architectures of the tiny space differ at 32x32.
    Every entry and architecture is therefore timed in alternation with a reference
    architecture of the space and reported relative to it (`reference`; 3% between rounds).
  * what remains is a per-model cost the entries do not see: an entry timed alone keeps its
    weights in cache, a whole network streams its weights from memory on every call. The
    calibration (`calibration_model`: a constant overhead, 'weights': + ms per million
    weights, 'groups': + a scale per kind of entry) is fitted on end-to-end measurements of
    other architectures (50 by default; a search's config: 'constant' on 8).

Command line (`launch.py latency VERB --config experiments/latency.py --workdir DIR`):
build | validate | predict --arch A | export | import RESULTS.csv. The config
(experiments/latency.py, or a search config's `config.latency`) holds every setting and its
default; `Settings.from_config` reads the measurement settings.

The modules (each imports its siblings directly; this one only re-exports):
  keys        entry keys of blocks, stem and head; which entries a network or space needs
  table       LatencyTable (the JSON file), TableMismatchError, MissingEntriesError
  settings    Settings: how a table is measured, read from the config
  build       Builder, new_table / build_table, sample_archs, calibrate
  load        the table of a config (load_or_build) and the search's predictor
  predictor   Predictor (sum of entries + calibration), fit
  validation  validate: end-to-end measurements against the predictor
  device      export_entries / read_results / import_results: another device's timings
  cli         main: the `launch.py latency` verbs
  targets     the targets, the XLA measurer     litert   the LiteRT target and flatbuffers
  timing      the timing protocol               entries  the Flax modules of entries
  runner      in-process or worker runners      worker   the worker process (python -m)
"""

from __future__ import annotations

from mnas.latency.build import Builder, build_table, calibrate, new_table, sample_archs
from mnas.latency.cli import main
from mnas.latency.device import (BENCHMARK_SCRIPT, export_entries, import_results,
                                 read_results)
from mnas.latency.entries import random_input
from mnas.latency.keys import (GATES, arch_keys, block_key, entry_params, head_key, keys_for,
                               parse_key, space_keys, stem_key)
from mnas.latency.litert import LITERT_LAYER_IMPL, entry_tflite, litert_impl, to_tflite
from mnas.latency.load import (check_config, filler, load_or_build, predictor_for_search,
                               table_path)
from mnas.latency.predictor import OVERHEAD_MODELS, Predictor, fit
from mnas.latency.runner import open_runner
from mnas.latency.settings import STATISTICS, Settings
from mnas.latency.table import (SCHEMA_VERSION, LatencyTable, MissingEntriesError,
                                TableMismatchError, model_code_hash, table_filename)
from mnas.latency.targets import MEASURABLE, TARGETS, TargetUnavailableError
from mnas.latency.timing import measure_robust
from mnas.latency.validation import metrics, scatter_figure, validate
