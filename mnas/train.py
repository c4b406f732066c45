"""Training: the proxy task of the search and the final models.

The training loop over the compiled steps of `mnas.steps` (pure functions over an explicit
`TrainState`, data-parallel over a group of devices by `mnas.parallel`). The group is all
devices of all processes by default (multi-process data-parallel training: each process
feeds its local devices with its own shard of the data, gradients and batch-norm statistics
are averaged over every device; see mnas/distributed.py), or one process's devices (a
candidate of a candidate-parallel search). Only process 0 writes summaries and result.json;
all processes take part in orbax's multi-process checkpoints (the data iterator's position
is the same on every process).

The recipe follows MnasNet (Tan et al. 2019, section 5 and the TPU reference code
`tensorflow/tpu/models/official/mnasnet`) and MobileNetV3 (Howard et al. 2019, section 6.1):
RMSProp (decay 0.9, momentum 0.9, epsilon 1e-3 inside the square root, mean-square
accumulator initialised to 1 as TF1's RMSPropOptimizer), batch norm momentum 0.99 (in the
model), L2 weight decay 1e-5 on kernels, dropout 0.2, label smoothing 0.1, linear warmup,
exponential or cosine decay, an exponential moving average of the weights and batch-norm
statistics (decay 0.9999, with TF's `num_updates` ramp) used for evaluation. The learning
rate is `lr * batch_size / base_batch_size`. The optimiser and the schedules are in
`mnas.optim` (shared with the one-shot supernet). Every default lives in the config:
`experiments/train.py` documents every field and its source; a config that lacks a field
the trainer reads, or has a value outside what `RULES` / `RUN_RULES` allow, fails at once
with a `ConfigError` naming the field and the allowed values (`check_config`).

Public API:
  train_candidate(arch, config, workdir=None, *, budget_steps=None, budget_epochs=None,
                  seed=0, callbacks=(), devices=None, init_variables=None)
      -> TrainResult                                   # the proxy task (validation)
  compile_ahead(arch, config, devices=None)            # its programs, before it trains
  train_and_evaluate(config, workdir) -> TrainResult   # `launch.py train`
  training_data(config) -> TrainingData                # the training split and its batches
  check_config(config, where, run=False)               # the fields, then the dataset
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import threading
import time
from typing import Callable, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mnas import checkpoints, config as cfg, jsonfile, metrics, optim, parallel
from mnas import steps as steps_lib
from mnas.errors import ConfigError
from mnas.space import Architecture
from mnas.steps import Steps, make_steps, state_from_variables

# The fields of a train config read here and their allowed values; experiments/train.py
# holds each with its default and source. `train_candidate` reads RULES; `train_and_evaluate`
# RUN_RULES too.
_HOLDOUT = (lambda v: v is None or (cfg.INT[0](v) and v >= 0)
            or (isinstance(v, str) and v.endswith('%')),
            "None (the dataset's default), a count >= 0 or a percentage such as '10%'")
DATA_RULES = {
    'dataset': cfg.TEXT, 'data_dir': cfg.optional(cfg.TEXT), 'holdout': _HOLDOUT,
    'num_classes': cfg.optional(cfg.POSITIVE), 'batch_size': cfg.POSITIVE,
    'data_threads': cfg.POSITIVE}
RULES = {
    **DATA_RULES, **steps_lib.RULES, **optim.SCHEDULE_RULES,
    'min_area': cfg.optional((lambda v: cfg.NUMBER[0](v) and 0 < v <= 1, 'a number in (0, 1]')),
    'eval_batch_size': cfg.optional(cfg.POSITIVE), 'num_epochs': cfg.above(0),
    # -1: num_epochs of the training split; a step count replaces it (never 0 or -3).
    'num_train_steps': cfg.either(-1, cfg.POSITIVE), 'log_every_steps': cfg.POSITIVE,
    'eval_every_steps': cfg.either(-1, cfg.POSITIVE), 'checkpoint_every_steps': cfg.INT,
    'keep_checkpoints': cfg.POSITIVE, 'divergence_loss': cfg.optional(cfg.above(0))}
RUN_RULES = {'arch': cfg.TEXT, 'width_multiplier': cfg.optional(cfg.above(0)),
             'resolution': cfg.optional(cfg.POSITIVE),
             'eval_split': cfg.one_of('test', 'validation'), 'seed': cfg.INT}
FIELDS, RUN_FIELDS = tuple(RULES), tuple(RUN_RULES)
WHERE = 'config.train'  # How errors name the train config of a search.


# ---------------------------------------------------------------------------------------------
# State and results.


@dataclasses.dataclass
class TrainResult:
  """The outcome of one training run."""
  status: str                  # 'done' or 'failed'.
  reason: str = ''             # Why it failed ('' when done).
  val_accuracy: float = 0.0    # Top-1 on the evaluation split (validation for the proxy).
  val_loss: float = float('nan')
  train_seconds: float = 0.0   # Wall time of the run (compilation, data, evaluation included).
  steps: int = 0               # Updates applied in total (including restored ones).
  images_per_second: float = 0.0  # Training throughput after compilation.
  params: int = 0              # Parameter count of the model.
  eval_split: str = ''
  arch: str = ''
  start_step: int = 0          # First step run by this call (> 0 after a resume).
  train_losses: list = dataclasses.field(default_factory=list)  # Per step from start_step.
  evals: list = dataclasses.field(default_factory=list)  # [(step, accuracy, loss)].
  # Where train_seconds went: 'setup' (model, initialisation and its compile, data, restore),
  # 'first_step' (the train step's compile), 'steps' (the other training steps), 'evaluate'
  # (the final evaluation, its compile included). All but 'steps' is per-candidate overhead.
  seconds: dict = dataclasses.field(default_factory=dict)

  def to_json(self) -> dict:
    d = dataclasses.asdict(self)
    d.pop('train_losses')
    return d


class Diverged(FloatingPointError):
  """The training loss became NaN or infinite, or exceeded config.divergence_loss."""


def fmt_seconds(s: float) -> str:
  """H:MM:SS."""
  s = int(max(0, s))
  return f'{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}'


# ---------------------------------------------------------------------------------------------
# The training loop.


@dataclasses.dataclass(frozen=True)
class TrainingData:
  """The training split a train config names (`training_data`): the trainer's and the
  one-shot supernet's."""
  dataset: str
  data_dir: str | None
  holdout: int | str          # Examples of 'train' held out as the validation split.
  num_classes: int
  batch_size: int             # Global.
  num_examples: int           # Of the training split (the holdout taken out).
  data_threads: int

  @property
  def steps_per_epoch(self) -> int:
    return self.num_examples // self.batch_size

  def iterator(self, kind: str, devices: Sequence[jax.Device], *, image_size: int, seed: int,
               batch_size: int | None = None, min_area: float | None = None):
    """Batches of split `kind` for the data-parallel group `devices` (this process's share)."""
    from mnas import data
    return data.create_input_iterator(
        self.dataset, kind, batch_size=batch_size or self.batch_size, image_size=image_size,
        data_dir=self.data_dir, seed=seed, holdout=self.holdout, min_area=min_area,
        num_devices=len(parallel.local_devices(devices)),
        shard_options=parallel.shard_options(devices), num_threads=self.data_threads)


def training_data(config) -> TrainingData:
  """The dataset, holdout (None: the dataset's default), classes (None: the dataset's) and
  batch of a train config. Raises ConfigError when batch_size exceeds the training split."""
  from mnas import data
  cfg.require(config, DATA_RULES, WHERE)
  holdout = data.default_holdout(config.dataset) if config.holdout is None else config.holdout
  num_classes = (config.num_classes
                 or data.dataset_info(config.dataset, config.data_dir).num_classes)
  n = data.num_examples(config.dataset, 'train', config.data_dir, holdout)
  if int(config.batch_size) > n:
    raise ConfigError(f'train config field batch_size={config.batch_size} exceeds the {n} '
                      f'training examples of {config.dataset} (holdout {holdout}): allowed '
                      f'1 to {n}')
  return TrainingData(dataset=config.dataset, data_dir=config.data_dir, holdout=holdout,
                      num_classes=int(num_classes), batch_size=int(config.batch_size),
                      num_examples=n, data_threads=config.data_threads)


def _evaluate(steps: Steps, state, config, td: TrainingData, kind: str,
              seed: int) -> tuple[float, float]:
  """(accuracy, mean loss) of the EMA weights on split kind ('validation' or 'test')."""
  it = td.iterator(kind, steps.devices, image_size=steps.model.arch.resolution, seed=seed,
                   batch_size=config.eval_batch_size)
  totals = None
  try:
    for batch in it:
      sums = steps.evaluate(state.ema_params, state.ema_batch_stats, batch)
      totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  finally:
    parallel.close_iterator(it)
  if totals is None:
    return 0.0, float('nan')
  totals = parallel.unreplicate(totals)
  count = max(float(totals['count']), 1.0)
  return float(totals['correct']) / count, float(totals['loss']) / count


def _run(arch: Architecture, config, workdir: str | None, *, seed: int,
         budget_steps: int | None, budget_epochs: float | None, eval_kind: str,
         callbacks: Sequence[Callable[[int, dict], None]] = (),
         devices: Sequence[jax.Device] | None = None,
         init_variables: dict | None = None, log: Callable[..., None] = logging.info
         ) -> TrainResult:
  t_start = time.time()
  devices = list(devices or jax.devices())  # The data-parallel group (mnas.parallel).
  td = training_data(config)
  batch_size, steps_per_epoch = td.batch_size, td.steps_per_epoch
  if budget_steps:
    total_steps = int(budget_steps)
  elif budget_epochs:
    total_steps = int(math.ceil(budget_epochs * steps_per_epoch))
  elif config.num_train_steps and config.num_train_steps > 0:
    total_steps = int(config.num_train_steps)
  else:
    total_steps = int(math.ceil(config.num_epochs * steps_per_epoch))
  schedule = optim.make_schedule(config, steps_per_epoch, total_steps)
  steps = make_steps(arch, td.num_classes, config, devices)
  result = TrainResult(status='done', arch=str(arch), params=steps.num_params,
                       eval_split=eval_kind)
  log('Training %s (%d params) for %d steps (%.2f epochs of %d examples), global batch %d on '
      '%d devices, peak lr %.4g.', arch.id, steps.num_params, total_steps,
      total_steps / steps_per_epoch, td.num_examples, batch_size, len(devices),
      optim.peak_learning_rate(config))

  # The train and evaluation programs compile on a thread while the initialisation compiles
  # and runs here (nothing to do when they were compiled ahead: `compile_ahead`).
  threading.Thread(target=_compile_quietly, args=(steps, config, td), daemon=True).start()
  host_state = (steps.init(seed) if init_variables is None
                else state_from_variables(steps, init_variables, seed))
  ckpt = None
  data_state = None
  if workdir:
    os.makedirs(workdir, exist_ok=True)
    ckpt = checkpoints.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                    max_to_keep=config.keep_checkpoints)
    restored = ckpt.restore(host_state)
    if restored is not None:
      _, host_state, data_state = restored
  step = int(host_state.step)
  result.start_step = step
  summaries = metrics.MetricWriter(workdir)
  summaries.write_texts(step, {'config': '```\n' + str(config) + f'\narch: {arch}\n```'})
  it = None
  try:
    state = parallel.replicate(host_state, devices)
    del host_state
    it = td.iterator('train', devices, image_size=arch.resolution, seed=seed,
                     min_area=config.min_area)
    if data_state:
      it.set_state(data_state)
    log_every = max(1, int(config.log_every_steps))
    eval_every = int(config.eval_every_steps)
    ckpt_every = int(config.checkpoint_every_steps)
    max_loss = float(config.divergence_loss or math.inf)
    pending = None  # (step, lr, metrics on device): fetched one step late to keep dispatch async.
    timer_start, timed_images, paused = None, 0, 0.0
    result.seconds['setup'] = time.time() - t_start
    window = [time.time(), 0]  # For the per-log-line throughput.

    def finish(pending_step, lr, on_device):
      nonlocal timer_start, timed_images
      m = parallel.unreplicate(on_device)
      loss = float(m['loss'])
      result.train_losses.append(loss)
      if not (math.isfinite(loss) and math.isfinite(float(m['l2']))):
        what = 'loss' if not math.isfinite(loss) else 'weight norm'
        raise Diverged(f'training {what} is NaN/inf at step {pending_step} (loss {loss}): the '
                       f'run diverged (lr {lr:.4g})')
      if loss > max_loss:
        raise Diverged(f'training loss {loss:.4g} > divergence_loss {max_loss:g} at step '
                       f'{pending_step}: the run diverged (lr {lr:.4g}); not NaN yet, but '
                       'batch norm keeps a blown-up network finite')
      if timer_start is None:  # First step done: compilation is over.
        timer_start = time.time()
        window[:] = [timer_start, 0]
        result.seconds['first_step'] = timer_start - t_start - result.seconds['setup']
      else:
        timed_images += batch_size
        window[1] += batch_size
      done = pending_step + 1
      for cb in callbacks:
        cb(done, dict(m, lr=lr))
      if done % log_every == 0 or done == total_steps:
        now = time.time()
        ips = window[1] / max(now - window[0], 1e-9)
        eta = (total_steps - done) * batch_size / ips if ips > 0 else float('nan')
        log('step %d/%d: loss %.4f, accuracy %.3f, lr %.4g, %.1f images/s, ETA %s', done,
            total_steps, loss, float(m['accuracy']), lr, ips,
            fmt_seconds(eta) if math.isfinite(eta) else '?')
        summaries.write_scalars(done, {'train/loss': loss, 'train/accuracy': m['accuracy'],
                                       'train/learning_rate': lr,
                                       'train/images_per_second': ips, 'train/l2': m['l2'],
                                       'train/grad_norm': m['grad_norm']})
        window[:] = [now, 0]

    def evaluate() -> tuple[float, float]:
      acc, loss = _evaluate(steps, state, config, td, eval_kind, seed)
      result.evals.append((step, acc, loss))
      summaries.write_scalars(step, {'eval/accuracy': acc, 'eval/loss': loss})
      return acc, loss

    try:
      while step < total_steps:
        batch = next(it)
        lr = schedule(step)
        state, on_device = steps.train(state, batch, np.float32(lr))
        if pending is not None:
          finish(*pending)
        pending = (step, lr, on_device)
        step += 1
        save = ckpt and ckpt_every > 0 and step % ckpt_every == 0
        evaluating = eval_every > 0 and step % eval_every == 0 and step < total_steps
        if save or evaluating:
          finish(*pending)
          pending = None
          t0 = time.time()
          if evaluating:
            log('step %d: %s accuracy %.4f, loss %.4f', step, eval_kind, *evaluate())
          if save:
            summaries.flush()  # What led to this checkpoint is on disk before it.
            ckpt.save(step, parallel.unreplicate(state), it.get_state())
          paused += time.time() - t0
          window[0] += time.time() - t0
      if pending is not None:
        finish(*pending)
        pending = None
    except Diverged as e:
      logging.error('%s: %s', arch.id, e)
      result.status, result.reason = 'failed', str(e)
    result.steps = step if result.status == 'done' else int(parallel.unreplicate(state.step))
    if timer_start is not None:
      result.seconds['steps'] = time.time() - timer_start - paused
      if timed_images:
        result.images_per_second = timed_images / max(result.seconds['steps'], 1e-9)
    if result.status == 'done':
      t_eval = time.time()
      if ckpt and (ckpt.latest_step() or 0) < step:
        ckpt.save(step, parallel.unreplicate(state), it.get_state())
      acc, loss = result.val_accuracy, result.val_loss = evaluate()
      result.seconds['evaluate'] = time.time() - t_eval
      log('%s after %d steps: %s accuracy %.4f, loss %.4f, %.1f images/s.', arch.id, step,
          eval_kind, acc, loss, result.images_per_second)
  finally:
    if it is not None:
      parallel.close_iterator(it)
    summaries.close()
    if ckpt:
      ckpt.close()
  result.train_seconds = time.time() - t_start
  if workdir and jax.process_index() == 0:
    jsonfile.write(os.path.join(workdir, 'result.json'), result.to_json())
  return result


def train_candidate(arch: Architecture, config, workdir: str | None = None, *,
                    budget_steps: int | None = None, budget_epochs: float | None = None,
                    seed: int = 0,
                    callbacks: Sequence[Callable[[int, dict], None]] = (),
                    devices: Sequence[jax.Device] | None = None,
                    init_variables: dict | None = None) -> TrainResult:
  """The proxy task: trains `arch` on 'train' minus the held-out validation split.

  Returns a `TrainResult` with the validation accuracy (top-1 of the EMA weights). The
  budget is `budget_steps`, else `budget_epochs`, else the config's num_train_steps /
  num_epochs. With a `workdir`, checkpoints (resumed from automatically) and TensorBoard
  summaries go there; without one nothing is written. A diverging run (NaN/inf loss) stops
  early and comes back with status 'failed' and the reason; it does not raise. (Batch norm
  keeps a blown-up network's loss finite, so a loss above config.divergence_loss counts
  too.) `callbacks` are called as cb(step, metrics) after every step (an exception stops the
  run). A config that lacks one of FIELDS raises ConfigError naming it, before anything runs.
  Its progress lines are logged at verbosity 1 (`--verbosity=1`): the search's own line per
  candidate says what came of it.
  Compiled steps are cached per (architecture, static config, devices). `devices` (default:
  all of `jax.devices()`) is the data-parallel group; a candidate-parallel search passes
  `jax.local_devices()` so that each process trains its own candidates. `init_variables`
  ({'params', 'batch_stats'} of this architecture's model) starts from those weights instead
  of a random initialisation (NetAdapt fine-tunes inherited weights; a checkpoint in
  `workdir` still wins, so a killed fine-tune resumes).
  """
  cfg.check(config, RULES, WHERE)
  return _run(arch, config, workdir, seed=seed, budget_steps=budget_steps,
              budget_epochs=budget_epochs, eval_kind='validation', callbacks=callbacks,
              devices=devices, init_variables=init_variables,
              log=functools.partial(logging.vlog, 1))  # A search logs a line per candidate.


def compile_ahead(arch: Architecture, config,
                  devices: Sequence[jax.Device] | None = None) -> None:
  """Compiles what `train_candidate(arch, config, devices=devices)` runs (initialisation,
  train step, evaluation step), so that it starts training at once: a search calls it on a
  thread while the candidate before trains (`mnas.search.multi_trial.TrainProxy.prepare`)."""
  cfg.check(config, RULES, WHERE)
  td = training_data(config)
  steps = make_steps(arch, td.num_classes, config, list(devices or jax.devices()))
  steps.compile(td.batch_size, int(config.eval_batch_size or td.batch_size))


def _compile_quietly(steps: Steps, config, td: TrainingData) -> None:
  """`Steps.compile` of the train and eval programs; a failure is left to the call that
  needs the program (it compiles again and raises there)."""
  try:
    steps.compile(td.batch_size, int(config.eval_batch_size or td.batch_size), init=False)
  except Exception as e:  # pylint: disable=broad-except
    logging.debug('compiling the steps on a thread failed: %s', e)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainResult:
  """Trains `config.arch` (a reference name, string form or JSON file) and evaluates it.

  Evaluates on `config.eval_split` ('test' by default; 'validation' = the holdout). Set
  `holdout=0` to train a final model on the whole training split. Checkpoints, summaries and
  result.json go to `workdir`; an interrupted run resumes from its latest checkpoint, and
  only with the config it was started with (`mnas.workdir`: only how much is logged and
  checkpointed may change). A bad config (`check_config`) raises ConfigError naming the
  field, before anything runs.
  """
  import search_spaces
  from mnas import distributed, workdir as workdir_lib
  check_config(config, 'config', run=True)
  arch = search_spaces.load_arch(config.arch, config.width_multiplier, config.resolution)
  searched_on = search_spaces.arch_context(config.arch).get('dataset')
  if searched_on and searched_on != config.dataset:
    logging.info('%s was found by a search on %s; training it on %s (config.dataset)',
                 config.arch, searched_on, config.dataset)
  with (workdir_lib.hold(workdir, 'train', config) if distributed.is_main()
        else contextlib.nullcontext()):
    logging.info('config (kept in %s/workdir.json):\n%s', workdir, config)
    result = _run(arch, config, workdir, seed=int(config.seed), budget_steps=None,
                  budget_epochs=None, eval_kind=config.eval_split)
  if result.status != 'done':
    logging.error('Training failed: %s', result.reason)
  return result


def main(config: ml_collections.ConfigDict, workdir: str) -> TrainResult:
  """`launch.py train`: `train_and_evaluate`, then its outcome on stdout."""
  r = train_and_evaluate(config, workdir)
  if r.status == 'done':
    print(f'{r.arch}\n{r.eval_split} accuracy {r.val_accuracy:.4f} (loss {r.val_loss:.4f}) after '
          f'{r.steps} steps, {r.params:,} params, {r.images_per_second:.1f} images/s, '
          f'{fmt_seconds(r.train_seconds)} in all')
  else:
    print(f'{r.arch}\nfailed after {r.steps} steps: {r.reason}')
  print(f'wrote {os.path.join(workdir, "result.json")}; inspect it with:\n'
        f'  tensorboard --logdir {workdir} --host 127.0.0.1')
  return r


def check_config(config, where: str = WHERE, run: bool = False) -> TrainingData:
  """Checks a train config before any work: every field against RULES (and RUN_RULES for a
  `launch.py train` config), then the dataset (known, prepared; the embedded one is
  generated here on first use) and the batch against it. Returns the training data."""
  from mnas import data
  cfg.check(config, {**RULES, **RUN_RULES} if run else RULES, where)
  try:
    return training_data(config)
  except data.DatasetError as e:
    raise data.DatasetError(f'{where}.dataset={config.dataset!r}: {e}') from None
