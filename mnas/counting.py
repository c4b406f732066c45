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
  """{'params', 'macs', 'layers': [(params, macs) per layer]} for `arch`."""
  res = arch.stem_resolution
  stem = arch.scaled(arch.stem.out)
  params = arch.stem.kernel ** 2 * 3 * stem + 2 * stem
  macs = res * res * arch.stem.kernel ** 2 * 3 * stem
  per_layer = [layer_counts(s) for s in arch.describe_layers()]
  params += sum(p for p, _ in per_layer)
  macs += sum(m for _, m in per_layer)
  c = arch.scaled(arch.layers[-1].out)
  for j, (width, _) in enumerate(arch.head_widths()):
    res = res_final(arch)
    if j < len(arch.head.pre):  # 1x1 conv + BN at the final resolution.
      params += c * width + 2 * width
      macs += res * res * c * width
    else:  # After the pool: a dense layer with bias.
      params += c * width + width
      macs += c * width
    c = width
  params += c * num_classes + num_classes
  macs += c * num_classes
  return {'params': params, 'macs': macs, 'layers': per_layer}


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
  """`launch.py describe`: params, MACs, the string form and a per-layer table."""
  counts = count(arch, num_classes)
  layers = arch.describe_layers()
  for row, (p, m) in zip(layers, counts['layers']):
    row.update(params=p, macs=m)
  return dict(arch=str(arch), id=arch.id, params=counts['params'], macs=counts['macs'],
              resolution=arch.resolution, width_multiplier=arch.width_multiplier,
              num_classes=num_classes, layers=layers)
