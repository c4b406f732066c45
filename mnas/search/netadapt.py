r"""NetAdapt's layer-wise refinement, as MobileNetV3 runs it after the block search.

Yang et al. 2018 ("NetAdapt: Platform-Aware Neural Network Adaptation for Mobile
Applications") and Howard et al. 2019 ("Searching for MobileNetV3", section 4.2):

  * each iteration generates proposals, each of which shrinks one width: the expanded width
    of one block (its expansion layer), or one bottleneck width shared by all blocks of a
    residual chain, so the residual additions stay valid;
  * each proposal is the smallest reduction that cuts the predicted latency by at least
    delta (MobileNetV3: delta = 0.01 x the seed's latency); widths stay multiples of 8;
  * each proposal inherits the parent's trained weights, keeping the filters with the
    largest L1 norm (NetAdapt's "choose which filters"), is fine-tuned briefly (10,000 steps
    in MobileNetV3) and evaluated;
  * the proposal with the largest delta-accuracy / |delta-latency| becomes the next parent;
    iterate until the latency target is met.

Widths are handled after the width multiplier: `materialize` rewrites an architecture at
width multiplier 1 with every expanded width explicit (the same network), so shrinking a
bottleneck changes that width only, never the expanded widths derived from it.

Everything is resumable, as the search is (workdir layout):

  workdir/results.sqlite       one row per trained network (store stage 'netadapt'): the seed
                               (step 0) and every proposal (step = iteration, slot = index)
  workdir/state.json           the seed, delta, target and the winner of every iteration
  workdir/iter_NNN/proposals.json  the iteration's proposals (written before any trains)
  workdir/seed/, iter_NNN/pJJ/ training workdirs (orbax checkpoints); a losing proposal's
                               checkpoints are deleted once its iteration is decided
  workdir/tensorboard/         latency, accuracy and architecture per iteration
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from typing import Callable, Sequence

from absl import logging
import numpy as np

from mnas import config as config_lib, jsonfile, metrics
from mnas.errors import ConfigError
from mnas.search.evaluation import Candidate, Evaluator
from mnas.search.store import Store
from mnas.space import Architecture, Head, parse

STAGE = 'netadapt'
KINDS = ('expanded', 'bottleneck')
STEM = -1  # The stem's index in a residual chain.


# -------------------------------------------------------------------------------------------
# Architectures at explicit widths; residual chains.


def materialize(arch: Architecture) -> Architecture:
  """The same network at width multiplier 1 with every width explicit.

  Outputs, the stem and the head get their widths after the multiplier; an inverted
  residual with an expansion conv gets its expanded width (`x...`), one without (expanded
  = input) keeps expansion 1, so its depthwise conv keeps following its input.
  """
  rows = arch.describe_layers()
  layers = []
  for layer, r in zip(arch.layers, rows):
    kw = dict(out=r['cout'])
    if layer.type == 'ir':
      kw.update(expansion=1.0, expanded=None if r['expanded'] == r['cin'] else r['expanded'])
    layers.append(dataclasses.replace(layer, **kw))
  widths = arch.head_widths()
  n_pre = len(arch.head.pre)
  head = Head(pre=widths[:n_pre], post=widths[n_pre:], fixed=arch.head.fixed)
  stem = dataclasses.replace(arch.stem, out=arch.scaled(arch.stem.out))
  return arch.replace(layers=tuple(layers), stem=stem, head=head, width_multiplier=1.0)


def residual_chains(arch: Architecture) -> list[tuple[int, ...]]:
  """Runs of layers that share one width through identity residuals.

  Each chain starts with its producer (`STEM` = -1 for the stem, else a layer without an
  identity residual) followed by the layers whose residual adds onto that width.
  """
  chains = [[STEM]]
  for r in arch.describe_layers():
    if r['residual']:
      chains[-1].append(r['index'])
    else:
      chains.append([r['index']])
  return [tuple(c) for c in chains]


def structure(arch: Architecture) -> tuple:
  """What a proposal must not change: per layer its type, kernel, stride, identity residual,
  whether it has an expansion conv and a squeeze-excite (so the parameter tree and the
  residual chains stay the same and weights can be inherited)."""
  return tuple((r['type'], r['kernel'], r['stride'], r['residual'],
                r['type'] == 'ir' and r['expanded'] != r['cin'], bool(r['se']))
               for r in arch.describe_layers())


def _chain_width(arch: Architecture, chain: Sequence[int]) -> int:
  return arch.stem.out if chain[0] == STEM else arch.layers[chain[0]].out


def _with_width(arch: Architecture, kind: str, where: Sequence[int], width: int) -> Architecture:
  """`arch` (materialized) with one expanded width or one chain width set to `width`."""
  layers = list(arch.layers)
  stem = arch.stem
  if kind == 'expanded':
    (i,) = where
    layers[i] = dataclasses.replace(layers[i], expanded=width)
  else:
    for i in where:
      if i == STEM:
        stem = dataclasses.replace(stem, out=width)
      else:
        layers[i] = dataclasses.replace(layers[i], out=width)
  return arch.replace(layers=tuple(layers), stem=stem)


# -------------------------------------------------------------------------------------------
# Proposals.


@dataclasses.dataclass(frozen=True)
class Proposal:
  """One shrunk width: `kind` 'expanded' (layers = (i,)) or 'bottleneck' (the chain)."""
  kind: str
  layers: tuple[int, ...]
  before: int
  after: int
  arch: Architecture
  latency_ms: float
  cut_ms: float  # Predicted latency of the parent minus this proposal's (>= delta).

  def describe(self) -> str:
    where = (f'block {self.layers[0]}' if self.kind == 'expanded' else
             'chain ' + '+'.join('stem' if i == STEM else f'block {i}' for i in self.layers))
    return f'{self.kind} {where}: {self.before} -> {self.after}'

  def to_json(self) -> dict:
    return dict(kind=self.kind, layers=list(self.layers), before=self.before, after=self.after,
                arch=str(self.arch), latency_ms=self.latency_ms, cut_ms=self.cut_ms)

  @classmethod
  def from_json(cls, d: dict) -> Proposal:
    return cls(kind=d['kind'], layers=tuple(d['layers']), before=int(d['before']),
               after=int(d['after']), arch=parse(d['arch']), latency_ms=float(d['latency_ms']),
               cut_ms=float(d['cut_ms']))


def sites(arch: Architecture) -> list[tuple[str, tuple[int, ...], int]]:
  """What one iteration may shrink: (kind, layers, current width) of every expansion layer
  and every residual chain of `arch` (materialized)."""
  out = [('expanded', (r['index'],), r['expanded']) for r in arch.describe_layers()
         if r['type'] == 'ir' and r['expanded'] != r['cin']]
  return out + [('bottleneck', c, _chain_width(arch, c)) for c in residual_chains(arch)]


def proposals(arch: Architecture, predict: Callable[[Architecture], float], delta_ms: float, *,
              divisor: int = 8, min_width: int = 8, limit: int = 0,
              rng: np.random.Generator | None = None) -> list[Proposal]:
  """The proposals of one NetAdapt iteration (MobileNetV3 section 4.2).

  For each expansion layer and each residual chain (`sites`), the proposal is the largest
  width below the current one (a multiple of `divisor`, >= `min_width`) whose predicted
  latency is at least `delta_ms` below the parent's: the smallest reduction that cuts
  delta. It is found by bisection over the widths (latency grows with width), so a site
  costs O(log widths) predictions; the next larger width does not cut delta. Widths that
  would change the network's structure (remove an expansion conv, add or remove a residual)
  are passed over. `predict` maps an architecture to milliseconds (e.g.
  `mnas.latency.Predictor.predict`). With `limit` > 0 the sites are visited in `rng`'s
  random order until `limit` proposals are found: a uniformly random subset of the
  proposals, at a fraction of the predictions (a CPU budget; the paper tries them all).
  """
  if delta_ms <= 0:
    raise ValueError(f'delta_ms={delta_ms} must be > 0')
  arch = materialize(arch)
  base, shape = float(predict(arch)), structure(arch)
  todo = sites(arch)
  if limit > 0:
    todo = [todo[j] for j in (rng or np.random.default_rng(0)).permutation(len(todo))]
  out = []
  for kind, where, width in todo:
    children = [c for c in (_with_width(arch, kind, where, w)
                            for w in range(width - divisor, min_width - 1, -divisor))
                if structure(c) == shape]  # Decreasing widths.
    cut = lambda j: base - float(predict(children[j]))
    if not children or cut(len(children) - 1) < delta_ms:
      continue  # Not even the narrowest width cuts delta.
    lo, hi = 0, len(children) - 1  # Invariant: children[hi] cuts delta.
    while lo < hi:
      mid = (lo + hi) // 2
      if cut(mid) >= delta_ms:
        hi = mid
      else:
        lo = mid + 1
    child = children[hi]
    after = child.stem.out if kind == 'bottleneck' and where[0] == STEM else (
        child.layers[where[0]].expanded if kind == 'expanded' else child.layers[where[0]].out)
    out.append(Proposal(kind, tuple(where), width, after, child, float(predict(child)),
                        cut(hi)))
    if 0 < limit <= len(out):
      break
  return out


# -------------------------------------------------------------------------------------------
# Weight inheritance.


def channel_groups(arch: Architecture) -> tuple[dict[str, int], list[dict], str, str]:
  """The channel groups of a network: (sizes, per-layer slots, stem group, head-input group).

  A group is one set of channels that several tensors share: a layer's output width is its
  chain's group (the residual additions tie them), an expansion layer's width is its own, a
  depthwise conv without expansion works on its input's. Per layer the slots 'cin', 'mid'
  (the width the depthwise conv and squeeze-excite work at), 'se' and 'cout' name groups.
  """
  stem = 'out-1'
  sizes = {stem: arch.scaled(arch.stem.out)}
  slots, cur = [], stem
  for r in arch.describe_layers():
    i = r['index']
    cout = cur if r['residual'] else f'out{i}'
    if r['type'] == 'ir':
      mid = f'mid{i}' if r['expanded'] != r['cin'] else cur
    else:
      mid = cur if r['type'] == 'ds' else cout
    se = f'se{i}' if r['se'] else None
    slots.append(dict(cin=cur, mid=mid, se=se, cout=cout))
    sizes.update({cout: r['cout'], mid: r['expanded']})
    if se:
      sizes[se] = r['se']
    cur = cout
  return sizes, slots, stem, cur


# Module (within a block) -> (slot of the kernel's input axis, slot of its output axis).
_BLOCK_AXES = {
    'expand': ('cin', 'mid'), 'expand_bn': (None, 'mid'),
    'depthwise': (None, 'mid'), 'depthwise_bn': (None, 'mid'),
    'se/reduce': ('mid', 'se'), 'se/expand': ('se', 'mid'),
    'project': ('mid', 'cout'), 'project_bn': (None, 'cout'),
    'conv': ('cin', 'cout'), 'bn': (None, 'cout'),
}
# The convs whose output channels are filters in NetAdapt's sense (ranked by L1 norm).
_FILTERS = ('expand', 'se/reduce', 'project', 'conv')


def _axes(path: tuple[str, ...], arch: Architecture, slots, stem: str, head_in: str):
  """(input group, output group) of the variable at `path` (collection, module..., leaf)."""
  module = path[1]
  if module.startswith('block'):
    s = slots[int(module[len('block'):])]
    i, o = _BLOCK_AXES['/'.join(path[2:-1])]
    return s.get(i), s.get(o)
  if module in ('stem', 'stem_bn'):
    return None, stem
  first_head = 'head0' if arch.head.pre else ('head_post0' if arch.head.post else 'classifier')
  return (head_in, None) if module == first_head else (None, None)


def _flatten(tree, prefix=()):
  for k, v in tree.items():
    if isinstance(v, dict):
      yield from _flatten(v, prefix + (k,))
    else:
      yield prefix + (k,), v


def _unflatten(items) -> dict:
  out: dict = {}
  for path, v in items:
    d = out
    for k in path[:-1]:
      d = d.setdefault(k, {})
    d[path[-1]] = v
  return out


def filter_l1(variables: dict, arch: Architecture) -> dict[str, np.ndarray]:
  """Per channel group, the L1 norm of every output filter that writes into it, summed over
  the convs that do (one for an expansion layer; the producer and every residual block's
  projection for a chain's width; the stem conv for the stem's)."""
  sizes, slots, stem, head_in = channel_groups(arch)
  norms = {g: np.zeros(n) for g, n in sizes.items()}
  for path, x in _flatten(variables['params']):
    path = ('params',) + path
    if path[-1] != 'kernel':
      continue
    in_block = path[1].startswith('block') and '/'.join(path[2:-1]) in _FILTERS
    is_filter = path[1] == 'stem' or in_block
    _, out_group = _axes(path, arch, slots, stem, head_in)
    if is_filter and out_group is not None:
      x = np.asarray(x, np.float64)
      norms[out_group] += np.abs(x).reshape(-1, x.shape[-1]).sum(0)
  return norms


def largest_l1(norms: np.ndarray, n: int) -> np.ndarray:
  """Indices (ascending) of the `n` largest entries of `norms`; ties keep the lower index."""
  return np.sort(np.argsort(-np.asarray(norms), kind='stable')[:n])


def inherit(variables: dict, parent: Architecture, child: Architecture) -> dict:
  """The child's variables cut out of the parent's (NetAdapt's weight inheritance).

  For every channel group that the child has fewer of, the channels whose filters have the
  largest L1 norm (`filter_l1`) are kept, in their order; every tensor that reads or writes
  that group (kernels on both axes, biases, batch-norm scale, bias, mean and variance) is
  sliced alike. Both architectures must have the same `structure`.
  """
  if structure(parent) != structure(child):
    raise ValueError('inherit: the child has another structure than the parent (layer types, '
                     'residuals, expansion convs or squeeze-excites differ)')
  sizes_p, slots, stem, head_in = channel_groups(parent)
  sizes_c, slots_c, _, _ = channel_groups(child)
  if slots_c != slots:
    raise ValueError('inherit: the child groups its channels differently from the parent')
  norms = filter_l1(variables, parent)
  keep = {}
  for g, n in sizes_c.items():
    if n > sizes_p[g]:
      raise ValueError(f'inherit: channel group {g} grows from {sizes_p[g]} to {n}; NetAdapt '
                       'only removes filters')
    if n < sizes_p[g]:
      keep[g] = largest_l1(norms[g], n)

  def cut(path, x):
    i, o = _axes(path, parent, slots, stem, head_in)
    x = np.asarray(x)
    if o in keep:
      x = np.take(x, keep[o], axis=-1)
    if i in keep and x.ndim >= 2:  # Vectors (biases, batch norm) follow the output axis.
      x = np.take(x, keep[i], axis=-2)
    return x

  return {col: _unflatten((p, cut((col,) + p, x)) for p, x in _flatten(tree))
          for col, tree in variables.items()}


# -------------------------------------------------------------------------------------------
# The loop.


class ProxyTrainer:
  """Trains with `mnas.train.train_candidate` on the proxy task (validation accuracy) and
  reads a run's trained (EMA) weights back from its orbax checkpoints."""

  def __init__(self, config, seed: int = 0):
    self.config, self.seed = config, seed

  def train(self, arch: Architecture, workdir: str, steps: int, init_variables=None):
    from mnas import train as train_lib
    return train_lib.train_candidate(arch, self.config, workdir, budget_steps=steps,
                                     seed=self.seed, init_variables=init_variables)

  def variables(self, workdir: str) -> dict:
    from mnas import checkpoints
    v = checkpoints.read_variables(os.path.join(workdir, 'checkpoints'))
    if v is None:
      raise FileNotFoundError(f'no checkpoint of a trained network in {workdir}/checkpoints')
    return v


FIELDS = ('delta_ratio', 'target_ratio', 'target_ms', 'max_iterations', 'seed_steps',
          'finetune_steps', 'proposals_per_iteration', 'divisor', 'min_width', 'keep_checkpoints')


def check_config(config) -> None:
  """Raises ConfigError naming the first netadapt field missing or outside its values."""
  config_lib.require(config, FIELDS, 'config.netadapt')
  rules = [('delta_ratio', lambda v: 0 < v < 1, '0 < delta_ratio < 1 (the paper: 0.01)'),
           ('target_ratio', lambda v: 0 <= v < 1, '0 (use target_ms) or 0 < target_ratio < 1'),
           ('target_ms', lambda v: v is None or v >= 0, 'None or milliseconds >= 0'),
           ('max_iterations', lambda v: v >= 0, 'an integer >= 0'),
           ('seed_steps', lambda v: v >= 1, 'an integer >= 1'),
           ('finetune_steps', lambda v: v >= 1, 'an integer >= 1 (the paper: 10,000)'),
           ('proposals_per_iteration', lambda v: v >= 0, '0 (all) or an integer >= 1'),
           ('divisor', lambda v: v >= 1, 'an integer >= 1 (the paper: 8)'),
           ('min_width', lambda v: v >= 1, 'an integer >= 1')]
  for field, ok, allowed in rules:
    value = config[field]
    if (value is not None or field != 'target_ms') and not (value is not None and ok(value)):
      raise ConfigError(f'netadapt.{field}={value!r} is not allowed; allowed: {allowed}')


def run(seed_arch: Architecture, config, workdir: str, predictor, *, trainer=None,
        num_classes: int = 1000, seed: int = 0) -> dict:
  """Runs (or resumes) NetAdapt from `seed_arch`; returns the final network's summary.

  `config` (see `experiments/search_common.py`, `netadapt` block): delta_ratio, target_ms /
  target_ratio, max_iterations, seed_steps, finetune_steps, proposals_per_iteration,
  divisor, min_width, keep_checkpoints. `predictor.predict(arch)` gives milliseconds;
  `trainer` has `train(arch, workdir, steps, init_variables) -> TrainResult` and
  `variables(workdir)` (default: a `ProxyTrainer`, which needs `config.train`).
  """
  check_config(config)
  os.makedirs(workdir, exist_ok=True)
  trainer = trainer or ProxyTrainer(config.train, seed)
  store = Store(os.path.join(workdir, 'results.sqlite'))
  evaluator = Evaluator(store, stage=STAGE, failure_reward=None, reuse=False,
                        num_classes=num_classes)
  state_path = os.path.join(workdir, 'state.json')
  state = jsonfile.read(state_path, None)
  if state is None:
    arch = materialize(seed_arch)
    lat = float(predictor.predict(arch))
    ratio = float(config.target_ratio)
    target = ratio * lat if ratio > 0 else float(config.target_ms or 0.0)
    if not target > 0:
      raise ValueError('netadapt: set target_ms (> 0) or target_ratio (0 < ratio < 1)')
    # The seed trains as given (the same network and parameter tree as its materialized
    # form, whose compiled steps a search in this process may already have cached).
    state = dict(seed=dict(arch=str(arch), trained_as=str(seed_arch), latency_ms=lat),
                 delta_ms=float(config.delta_ratio) * lat, target_ms=target, iterations=[])
    jsonfile.write(state_path, state)
  delta, target = state['delta_ms'], state['target_ms']
  writer = metrics.MetricWriter(os.path.join(workdir, 'tensorboard'))
  seed_dir = os.path.join(workdir, 'seed')
  seed_net = parse(state['seed']['arch'])
  trained_as = parse(state['seed'].get('trained_as', state['seed']['arch']))
  row = evaluator.evaluate(
      0, Candidate(0, seed_net, latency_ms=state['seed']['latency_ms']),
      proxy=lambda _: trainer.train(trained_as, seed_dir, int(config.seed_steps)),
      extra=dict(kind='seed', latency_ms=state['seed']['latency_ms']))
  if row.status != 'done':
    raise RuntimeError(f'netadapt: training the seed failed: {row.reason}')
  parent = dict(arch=str(seed_net), latency_ms=state['seed']['latency_ms'],
                accuracy=row.accuracy, workdir=seed_dir)
  logging.info('netadapt: seed %.4f ms (target %.4f ms, delta %.4f ms), accuracy %.4f',
               parent['latency_ms'], target, delta, parent['accuracy'])
  _write_iteration(writer, 0, parent, None, 0)
  for done in state['iterations']:
    parent = done['winner']
  stop = ''
  while not stop:
    it = len(state['iterations']) + 1
    if parent['latency_ms'] <= target:
      stop = f'latency target met ({parent["latency_ms"]:.4f} <= {target:.4f} ms)'
      break
    if it > int(config.max_iterations):
      stop = f'max_iterations={config.max_iterations} reached'
      break
    winner, n = _iteration(it, parent, state, config, workdir, predictor, trainer, evaluator,
                           seed)
    if winner is None:
      stop = (f'iteration {it}: no proposal ' + ('cuts delta' if not n else 'trained successfully'))
      break
    state['iterations'].append(dict(iteration=it, winner=winner, proposals=n))
    jsonfile.write(state_path, state)
    _write_iteration(writer, it, winner, parent, n)
    parent = winner
  writer.close()
  store.close()
  logging.info('netadapt: stopped: %s', stop)
  summary = dict(parent, iterations=len(state['iterations']), target_ms=target, delta_ms=delta,
                 seed=state['seed'], stopped=stop)
  jsonfile.write(os.path.join(workdir, 'result.json'), summary)
  return summary


def _write_iteration(writer: metrics.MetricWriter, it: int, net: dict, parent: dict | None,
                     proposals: int) -> None:
  """Per-iteration summaries: latency, accuracy, proposals, score, the architecture."""
  scalars = {'netadapt/latency_ms': net['latency_ms'], 'netadapt/accuracy': net['accuracy'],
             'netadapt/proposals': proposals}
  if parent is not None:
    scalars['netadapt/score'] = net.get('score', 0.0)
  writer.write_scalars(it, scalars)
  writer.write_texts(it, {'netadapt/architecture': (
      f'`{net["arch"]}`  \n{net.get("proposal", "seed")}: {net["latency_ms"]:.4f} ms, '
      f'accuracy {net["accuracy"]:.4f}')})
  writer.flush()


def _iteration(it: int, parent: dict, state: dict, config, workdir: str, predictor, trainer,
               evaluator: Evaluator, seed: int) -> tuple[dict | None, int]:
  """One NetAdapt iteration: proposals, inherit + fine-tune + evaluate each, the winner."""
  it_dir = os.path.join(workdir, f'iter_{it:03d}')
  os.makedirs(it_dir, exist_ok=True)
  parent_arch = parse(parent['arch'])
  path = os.path.join(it_dir, 'proposals.json')
  saved = jsonfile.read(path, None)
  if saved is None:  # Fixed before anything trains: a resumed iteration sees the same ones.
    props = proposals(parent_arch, predictor.predict, state['delta_ms'],
                      divisor=int(config.divisor), min_width=int(config.min_width),
                      limit=int(config.proposals_per_iteration),
                      rng=np.random.default_rng([seed, it]))
    jsonfile.write(path, [p.to_json() for p in props])
  else:
    props = [Proposal.from_json(p) for p in saved]
  if not props:
    return None, 0
  parent_vars = None
  scored = []
  for j, p in enumerate(props):
    p_dir = os.path.join(it_dir, f'p{j:02d}')

    def train(_, p=p, p_dir=p_dir):
      nonlocal parent_vars
      if parent_vars is None:
        parent_vars = trainer.variables(parent['workdir'])
      init = inherit(parent_vars, parent_arch, p.arch)
      return trainer.train(p.arch, p_dir, int(config.finetune_steps), init)

    row = evaluator.evaluate(it, Candidate(j, p.arch, latency_ms=p.latency_ms), proxy=train,
                             extra=dict({k: v for k, v in p.to_json().items() if k != 'arch'},
                                        parent_accuracy=parent['accuracy']))
    score = None
    if row.status == 'done':
      score = (row.accuracy - parent['accuracy']) / abs(p.cut_ms)
      scored.append((score, j, row.accuracy))
    logging.info('netadapt iteration %d proposal %d/%d (%s): %s, latency %.4f ms (-%.4f), '
                 'accuracy %s (parent %.4f), score %s %s', it, j + 1, len(props), p.describe(),
                 row.status, p.latency_ms, p.cut_ms,
                 'n/a' if row.accuracy is None else f'{row.accuracy:.4f}',
                 parent['accuracy'], 'n/a' if score is None else f'{score:.4g}',
                 row.reason or '')
  if not scored:
    return None, len(props)
  score, j, acc = max(scored)
  p = props[j]
  winner = dict(arch=str(p.arch), latency_ms=p.latency_ms, accuracy=acc,
                workdir=os.path.join(it_dir, f'p{j:02d}'), proposal=p.describe(), score=score)
  logging.info('netadapt iteration %d: %s wins (score %.4g): %.4f ms, accuracy %.4f', it,
               p.describe(), score, p.latency_ms, acc)
  if not config.keep_checkpoints:
    for k in range(len(props)):
      if k != j:
        shutil.rmtree(os.path.join(it_dir, f'p{k:02d}'), ignore_errors=True)
  return winner, len(props)
