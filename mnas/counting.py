"""Analytical parameter and multiply-add counts of any architecture.

MACs are the multiply-accumulates of convolutions and dense layers at the architecture's
resolution, batch 1 (the papers' "Mult-Adds"); batch norm, activations and pooling are not
counted; `thop_macs` counts as PyTorch-OpCounter does, the convention of PyTorch-made
benchmarks (Accel-NASBench's files). Params count batch-norm scale and bias but not its
moving statistics, like Flax's `params` collection and PyTorch's `parameters()`.
"""

from __future__ import annotations

from mnas.space import Architecture


def _ceil_div(a: int, b: int) -> int:
  return -(-a // b)


def layer_counts(spec: dict) -> tuple[int, int]:
  """(params, MACs) of one row of `Architecture.describe_layers()`."""
  k, cin, mid, cout, se = spec['kernel'], spec['cin'], spec['expanded'], spec['cout'], spec['se']
  h_in = spec['input_resolution']
  h_out = _ceil_div(h_in, spec['stride'])
  p = m = 0
  if spec['type'] == 'id':  # Nothing, or the 1x1 projection + BN.
    if spec['stride'] != 1 or cin != cout:
      p += cin * cout + 2 * cout
      m += h_out * h_out * cin * cout
  elif spec['type'] == 'conv':
    p += k * k * cin * cout + 2 * cout
    m += h_out * h_out * k * k * cin * cout
  else:
    if spec['type'] == 'ir' and mid != cin:  # 1x1 expansion + BN.
      p += cin * mid + 2 * mid
      m += h_in * h_in * cin * mid
    p += k * k * mid + 2 * mid  # Depthwise + BN.
    m += h_out * h_out * k * k * mid
    p += mid * cout + 2 * cout  # 1x1 projection + BN.
    m += h_out * h_out * mid * cout
  if se:  # Two 1x1 convs with bias on the pooled vector.
    p += mid * se + se + se * mid + mid
    m += 2 * mid * se
  return p, m


def count(arch: Architecture, num_classes: int = 1000) -> dict:
  """{'params', 'macs', 'layers': [(params, macs) per block], 'rows': the stem, each block
  and each head layer as {'name', 'params', 'macs'}} for `arch`."""
  res = arch.stem_resolution
  stem = arch.scaled(arch.stem.out)
  rows = [dict(name='stem', params=arch.stem.kernel ** 2 * 3 * stem + 2 * stem,
               macs=res * res * arch.stem.kernel ** 2 * 3 * stem)]
  per_layer = [layer_counts(s) for s in arch.describe_layers()]
  rows += [dict(name=f'block {i}', params=p, macs=m) for i, (p, m) in enumerate(per_layer)]
  c, res = arch.scaled(arch.layers[-1].out), res_final(arch)
  for j, (width, act) in enumerate(arch.head_widths()):
    if j < len(arch.head.pre):  # 1x1 conv + BN at the final resolution.
      rows.append(dict(name='head conv', params=c * width + 2 * width, macs=res * res * c * width,
                       input_resolution=res, cin=c, cout=width, kernel=1, act=act))
    else:  # After the pool: a dense layer with bias.
      rows.append(dict(name='head dense', params=c * width + width, macs=c * width, cin=c,
                       cout=width, act=act))
    c = width
  rows.append(dict(name='classifier', params=c * num_classes + num_classes, macs=c * num_classes,
                   cin=c, cout=num_classes))
  return {'params': sum(r['params'] for r in rows), 'macs': sum(r['macs'] for r in rows),
          'layers': per_layer, 'rows': rows}


def res_final(arch: Architecture) -> int:
  res = arch.stem_resolution
  for layer in arch.layers:
    res = _ceil_div(res, layer.stride)
  return res


def thop_macs(arch: Architecture, num_classes: int = 1000) -> int:
  """MACs as PyTorch-OpCounter (`thop.profile`, version 0.1.1 as Accel-NASBench pins it) counts
  them: `count`'s convolutions and dense layers (biases free), plus 4 per element of every
  batch norm's input (its count is 2 per element, doubled when affine) and, for every
  adaptive average pool (squeeze-excite's and the head's), (kernel area + 1) per output
  element; activations, residual adds and the SE product are free."""
  res = arch.stem_resolution
  bn = res * res * arch.scaled(arch.stem.out)
  pools = 0
  for s in arch.describe_layers():
    h_in, t = s['input_resolution'], s['type']
    h = _ceil_div(h_in, s['stride'])
    if t == 'ir':
      bn += (h_in * h_in * s['expanded'] if s['expanded'] != s['cin'] else 0)
      bn += h * h * (s['expanded'] + s['cout'])
    elif t == 'ds':
      bn += h * h * (s['cin'] + s['cout'])
    elif t == 'conv' or (s['stride'] != 1 or s['cin'] != s['cout']):  # conv, id's projection.
      bn += h * h * s['cout']
    if s['se']:
      pools += (h * h + 1) * s['expanded']
  res, c = res_final(arch), arch.scaled(arch.layers[-1].out)
  for width, _ in arch.head_widths()[:len(arch.head.pre)]:
    bn, c = bn + res * res * width, width
  return count(arch, num_classes)['macs'] + 4 * bn + pools + (res * res + 1) * c


def describe(arch: Architecture, num_classes: int = 1000) -> dict:
  """`launch.py describe --json`: params, MACs, the string form and a per-layer table (the
  stem, each block with its widths and resolution, the head; each with params and MACs)."""
  counts = count(arch, num_classes)
  blocks = arch.describe_layers()
  for row, (p, m) in zip(blocks, counts['layers']):
    row.update(params=p, macs=m)
  rows = counts['rows']
  layers = ([dict(rows[0], kind='stem', cin=3, cout=arch.scaled(arch.stem.out),
                  kernel=arch.stem.kernel, stride=arch.stem.stride, act=arch.stem.act,
                  input_resolution=arch.resolution)]
            + [dict(b, name=f'block {b["index"]}', kind=b['type']) for b in blocks]
            + [dict(r, kind=r['name'].split()[-1]) for r in rows[len(blocks) + 1:]])
  for row in layers:
    row.pop('type', None)
  return dict(arch=str(arch), id=arch.id, params=counts['params'], macs=counts['macs'],
              resolution=arch.resolution, width_multiplier=arch.width_multiplier,
              num_classes=num_classes, layers=layers)


def table(desc: dict) -> str:
  """`describe`'s per-layer table as text (what `launch.py describe` prints)."""
  cols = ('name', 'input_resolution', 'cin', 'expanded', 'cout', 'kernel', 'stride', 'se', 'act',
          'residual', 'params', 'macs')
  heads = ('layer', 'res', 'cin', 'exp', 'cout', 'k', 's', 'se', 'act', 'res+', 'params', 'MACs')

  def cell(row, k):
    v = row.get(k, '')
    if k == 'residual':
      return 'yes' if v else ('' if v == '' else 'no')
    return f'{v:,}' if k in ('params', 'macs') else str(v)
  cells = [heads] + [tuple(cell(r, k) for k in cols) for r in desc['layers']]
  widths = [max(len(c[i]) for c in cells) for i in range(len(cols))]
  lines = ['  '.join(c[i].ljust(widths[i]) if i in (0, 8) else c[i].rjust(widths[i])
                     for i in range(len(cols))) for c in cells]
  return '\n'.join([desc['arch'], f'id {desc["id"]}', lines[0], '-' * len(lines[0])] + lines[1:]
                   + [f'total: {desc["params"]:,} params, {desc["macs"] / 1e6:,.2f} M MACs at '
                      f'{desc["resolution"]}x{desc["resolution"]}, width multiplier '
                      f'{desc["width_multiplier"]:g}, {desc["num_classes"]} classes'])


def main(spec: str, width_multiplier: float | None = None, resolution: int | None = None,
         num_classes: int | None = None, as_json: bool = False) -> dict:
  """`launch.py describe --arch SPEC`: prints the per-layer table (`as_json`: `describe`'s
  JSON) of a reference name, string form or architecture file, for `num_classes` classes,
  default the file's context's (a search's best_arch.json), else 1000."""
  import json
  import search_spaces
  arch = search_spaces.load_arch(spec, width_multiplier, resolution)
  num_classes = num_classes or search_spaces.arch_context(spec).get('num_classes', 1000)
  desc = describe(arch, num_classes)
  print(json.dumps(desc, indent=1) if as_json else table(desc))
  return desc
