r"""Latency tables: build, validate, predict, export / import.

  python launch.py latency build    --config experiments/latency.py --workdir /tmp/lat
  python launch.py latency validate --config experiments/latency.py --workdir /tmp/lat
  python launch.py latency predict  --config experiments/latency.py --workdir /tmp/lat \
      --arch "r64_w1_sev3 stem_c16_hs ir_r1_k3_s2_e3_c24_relu ... head_c192_hs_pool_c256_hs"
  python launch.py latency export   --config experiments/latency.py --workdir /tmp/lat
  python launch.py latency import   --config experiments/latency.py --workdir /tmp/lat \
      --config.target=device RESULTS.csv

The default is the `tiny` space at 64x64 on `xla-cpu`, one thread (every entry of the space,
about 650). The MobileNetV3-like space, as validated in the report:
  --config.space=mobilenet_v3_large --config.resolution=128
(too big to enumerate: `scope='auto'` then measures the entries of `build_archs` random
architectures, and `validate` measures whatever its own random architectures still lack).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.space = 'tiny'  # search_spaces.SPACES
  # 'xla-cpu' (jitted Flax forward pass on this CPU), 'gpu' (the accelerator JAX sees),
  # 'litert-cpu' (LiteRT + XNNPACK; `pip install -e .[tf]`), 'device' (imported timings).
  c.target = 'xla-cpu'
  c.resolution = 0  # 0: the space's (first) resolution.
  c.width_multiplier = 0.0  # 0: the space's (first) width multiplier.
  c.num_classes = 1000  # Width of the classifier in the head entry.
  c.threads = 1  # XLA:CPU / LiteRT threads (1: like one mobile big core).
  c.batch_size = 1  # Only the gpu target should want more.
  c.table = ''  # A table file to use instead of workdir/latency_TARGET_SPACE_rRES_wALPHA.json.

  # What a build measures: 'all' entries of the space, 'sampled' (the entries of
  # `build_archs` random architectures), 'on_demand' (only calibration; the predictor measures
  # the rest), 'auto' (all when the space has <= max_full_entries entries, else sampled).
  c.scope = 'auto'
  c.max_full_entries = 2000
  c.build_archs = 100

  # Measurement: warm-up, repeats (extended until min_seconds), the statistic of the samples,
  # the spread (IQR / median) above which an entry is re-measured (up to `remeasure` times).
  c.warmup = 5
  c.repeats = 15
  # An entry is the median over this many instances (its own variables, buffers and compiled
  # program): where code and buffers land moves a small program's time (tiny space at 32x32:
  # 4-25% between instances of an entry, 1-2% between timings of one instance).
  c.instances = 3
  c.min_seconds = 0.05
  c.statistic = 'median'
  c.max_spread = 0.2  # Marginal costs are differences of two timings: noisier than either.
  c.remeasure = 2
  # 'loop': entry = t(the block called k times inside one compiled loop) / k, as end-to-end
  # architectures are timed (nothing of the loop fuses into the block's program; LiteRT:
  # one invoke); 'marginal': (t(chain of `chain` copies) - t(one copy)) / (chain - 1) (28% short
  # of the end-to-end time on the tiny space at 32x32); 'single': one call.
  c.method = 'loop'
  c.chain = 2
  # 'auto': process CPU time for one CPU thread (steady on a shared machine), else wall time.
  c.clock = 'auto'
  c.pin = True  # Bind the measuring process to `threads` CPUs.
  c.depthwise_impl = 'auto'  # mnas.ops depthwise implementation, as in the model.
  # Time every entry and architecture in alternation with one reference architecture of the
  # space and report it relative to that (in the reference's ms, recorded by the table's
  # first measurement): a slow spell of a shared machine scales both and cancels
  # (mnas.latency.timing.time_pair; measured: 17% -> 3% spread of an architecture's timing).
  c.reference = True

  c.calibration_archs = 50  # Measured end to end to fit the correction (`calibration_model`).
  # The calibration's correction: 'constant' overhead, 'linear' (scale + overhead),
  # 'weights' (overhead + ms per million weights: weights stream from memory end to end) or
  # 'groups' (a scale per kind of entry + weights; needs ~5x as many archs as kinds).
  # Measured (issue 19; MobileNetV3-like at 128x128 on xla-cpu, two runs, fitted on 50
  # architectures, tested on 50 others): Spearman 'groups' 0.972 / 0.987, 'weights' 0.975 /
  # 0.985, 'constant' 0.971 / 0.986, all 100% within 10%; MAPE 'groups' 2.1 / 1.1%,
  # 'weights' 2.5 / 1.5%, 'constant' 2.6 / 1.7%; on the 100 held out: 100%, Spearman 0.982 /
  # 0.992. (Tiny space at 32x32, where one entry is nearly the same in every architecture:
  # 'constant' 76% within 10% half/half, 'groups' 66%.)
  c.calibration_model = 'groups'
  c.recalibrate = True  # `validate` refits the calibration (the machine's state moves).
  c.validate_archs = 100  # `latency validate`: random architectures measured end to end.
  c.validate_seed = 1
  c.seed = 0
  c.save_every = 10  # Save the partial table every this many entries.
  c.progress = True

  c.export_dir = 'export'  # `latency export`: workdir/export/KEY.tflite + manifest.json.
  c.device_name = ''  # `latency import`: recorded in the table's metadata.
  return c
