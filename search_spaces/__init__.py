"""The search spaces mnas ships, and the published architectures as points of them.

Spaces (`get_space(name)`):
  mobilenet_v1       MobileNetV1's own grid: alpha x rho (Howard et al. 2017, Tables 6-7).
  mnasnet            MnasNet's factorized hierarchical space (Tan et al. 2019, section 4).
  proxylessnas       ProxylessNAS's per-layer space: kernel 3/5/7 x expansion 3/6, plus depth
                     (Cai et al. 2019; the TuNAS variant with MobileNetV2's skeleton).
  mobilenet_v3_large MobileNetV3-like per-layer space on the V3-Large skeleton (kernel 3/5/7,
  mobilenet_v3_small expansion 1-6, SE on/off, ReLU/h-swish, depth and width per stage).
  tiny               A small MobileNetV3-like space for CPU-sized searches (the quickstart).
  nas_bench_macro    NAS-Bench-Macro's 8 layers on CIFAR-10 (Su et al. 2021): every
                     architecture's accuracy is known (mnas.nasbench), a search costs seconds.
  accel_nasbench     MnasNet-style per-block choices on EfficientNet-B0's skeleton, ReLU
                     (Accel-NASBench, Ahmad et al. 2024): 4,638 ImageNet accuracies and device
                     throughputs, a surrogate of them (mnas.accel_nasbench).

References (`get_reference(name, width_multiplier, resolution)`): mobilenet_v1, mobilenet_v2,
mobilenet_v3_large, mobilenet_v3_small, mnasnet_a1, mnasnet_b1, anb_efficientnet_b0
(EfficientNet-B0's point of accel_nasbench: ReLU, hard-sigmoid SE, as the benchmark trained it).
"""

from __future__ import annotations

import os

from mnas import jsonfile
from mnas.space import Architecture, SpaceError, parse
from search_spaces import accel_nasbench, mnasnet, mobilenet, nas_bench_macro, proxylessnas, v3_like

SPACES = {
    'mobilenet_v1': mobilenet.V1_SPACE,
    'mnasnet': mnasnet.SPACE,
    'proxylessnas': proxylessnas.SPACE,
    'mobilenet_v3_large': v3_like.LARGE_SPACE,
    'mobilenet_v3_small': v3_like.SMALL_SPACE,
    'tiny': v3_like.TINY_SPACE,
    'nas_bench_macro': nas_bench_macro.SPACE,
    'accel_nasbench': accel_nasbench.SPACE,
}

# name -> (architecture string at alpha 1.0 and 224, the space it belongs to)
REFERENCES = {
    'mobilenet_v1': (mobilenet.V1, 'mobilenet_v1'),
    'mobilenet_v2': (mobilenet.V2, 'proxylessnas'),
    'mobilenet_v3_large': (v3_like.V3_LARGE, 'mobilenet_v3_large'),
    'mobilenet_v3_small': (v3_like.V3_SMALL, 'mobilenet_v3_small'),
    'mnasnet_a1': (mnasnet.A1, 'mnasnet'),
    'mnasnet_b1': (mnasnet.B1, 'mnasnet'),
    'anb_efficientnet_b0': (accel_nasbench.EFFICIENTNET_B0, 'accel_nasbench'),
}


def get_space(name: str):
  if name not in SPACES:
    raise SpaceError(f'unknown search space {name!r}; known: {sorted(SPACES)}')
  return SPACES[name]


def get_reference(name: str, width_multiplier: float = 1.0, resolution: int = 224) -> Architecture:
  if name not in REFERENCES:
    raise SpaceError(f'unknown reference architecture {name!r}; known: {sorted(REFERENCES)}')
  return parse(REFERENCES[name][0]).replace(width_multiplier=float(width_multiplier),
                                            resolution=int(resolution))


def load_arch(spec: str, width_multiplier: float | None = None,
              resolution: int | None = None) -> Architecture:
  """An architecture from a reference name, a string form, or a JSON file path.

  `width_multiplier` / `resolution`, when given, override the architecture's own.
  """
  spec = spec.strip()
  if spec in REFERENCES:
    arch = get_reference(spec)
  elif spec.endswith('.json') or os.path.isfile(spec):
    if not os.path.isfile(spec):
      raise SpaceError(f'architecture file {spec!r} does not exist')
    try:
      arch = Architecture.from_json(jsonfile.read(spec))
    except (KeyError, TypeError, AttributeError) as e:
      raise SpaceError(f'{spec} is not an architecture file (no valid "arch" string: {e!r}); '
                       'give a best_arch.json, a reference name or a string form') from None
  elif ' ' in spec:
    arch = parse(spec)
  else:
    raise SpaceError(f'unknown architecture {spec!r}: give a reference name {sorted(REFERENCES)}, '
                     'a string form ("r224_w1.0_sev3 stem_... head_..."), or a JSON file')
  kw = {}
  if width_multiplier is not None:
    kw['width_multiplier'] = float(width_multiplier)
  if resolution is not None:
    kw['resolution'] = int(resolution)
  return arch.replace(**kw) if kw else arch


def arch_context(spec: str) -> dict:
  """The context an architecture file records (`best_arch.json`'s "context": the search's
  space, classes, dataset and latency table and settings); {} for a name or string form."""
  spec = spec.strip()
  if spec in REFERENCES or not (spec.endswith('.json') or os.path.isfile(spec)):
    return {}
  obj = jsonfile.read(spec)
  return obj.get('context') or {} if isinstance(obj, dict) else {}
