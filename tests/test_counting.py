"""Params and MACs against the papers' published numbers (not against our own output)."""
import pytest

import search_spaces
from mnas import counting

# Exact param counts at 224 with 1000 classes: timm / torchvision implementations.
EXACT_PARAMS = {
    'mobilenet_v2': 3_504_872,        # timm mobilenetv2_100
    'mobilenet_v3_large': 5_483_032,  # timm / torchvision mobilenet_v3_large
    'mobilenet_v3_small': 2_542_856,  # timm / torchvision mobilenet_v3_small
    'mnasnet_a1': 3_887_038,          # timm semnasnet_100
    'mnasnet_b1': 4_383_312,          # torchvision mnasnet1_0
}

# (name, width multiplier, resolution) -> (MACs in millions, params in millions, decimals of
# the published params). Sources: MobileNetV1 Tables 6-7; MobileNetV2 Table/slim README;
# MobileNetV3 Table 3 and slim README; MnasNet-A1 table of the TPU code's README.
PUBLISHED = {
    ('mobilenet_v1', 1.0, 224): (569, 4.2, 1),
    ('mobilenet_v1', 0.75, 224): (325, 2.6, 1),
    ('mobilenet_v1', 0.5, 224): (149, 1.3, 1),
    ('mobilenet_v1', 0.25, 224): (41, 0.5, 1),
    ('mobilenet_v1', 1.0, 192): (418, 4.2, 1),
    ('mobilenet_v1', 1.0, 160): (290, 4.2, 1),
    ('mobilenet_v1', 1.0, 128): (186, 4.2, 1),
    ('mobilenet_v2', 1.0, 224): (300, 3.47, 2),
    ('mobilenet_v2', 1.4, 224): (582, 6.06, 2),
    ('mobilenet_v2', 0.75, 224): (209, 2.61, 2),
    ('mobilenet_v2', 0.5, 224): (97, 1.95, 2),
    ('mobilenet_v2', 0.35, 224): (59, 1.66, 2),
    ('mobilenet_v2', 1.0, 192): (221, 3.47, 2),
    ('mobilenet_v2', 1.0, 128): (99, 3.47, 2),
    ('mobilenet_v3_large', 1.0, 224): (217, 5.4, 1),
    ('mobilenet_v3_large', 0.75, 224): (155, 4.0, 1),
    ('mobilenet_v3_small', 1.0, 224): (56, 2.5, 1),
    ('mobilenet_v3_small', 0.75, 224): (44, 2.0, 1),
    ('mnasnet_a1', 1.0, 224): (312, 3.9, 1),
    ('mnasnet_a1', 1.4, 224): (591.5, 6.1, 1),
    ('mnasnet_a1', 0.75, 224): (226.7, 2.9, 1),
    ('mnasnet_a1', 0.5, 224): (105.2, 2.1, 1),
    ('mnasnet_a1', 1.0, 192): (232.0, 3.9, 1),
    ('mnasnet_a1', 0.75, 160): (116.4, 2.9, 1),
}


@pytest.mark.parametrize('name', sorted(EXACT_PARAMS))
def test_exact_params(name):
  assert counting.count(search_spaces.get_reference(name))['params'] == EXACT_PARAMS[name]


@pytest.mark.parametrize('key', sorted(PUBLISHED), ids=lambda k: f'{k[0]}-{k[1]}-{k[2]}')
def test_published_macs_and_params(key):
  name, alpha, res = key
  macs, params, decimals = PUBLISHED[key]
  c = counting.count(search_spaces.get_reference(name, alpha, res))
  assert c['macs'] == pytest.approx(macs * 1e6, rel=0.02)
  # Published params are rounded: allow half a unit of the last digit, plus slim's 1%
  # (slim's MobileNetV2 table omits batch-norm scales: 3.47M vs the exact 3,504,872).
  assert abs(c['params'] / 1e6 - params) <= 0.5 * 10 ** -decimals + 0.011 * params


def test_resolution_changes_macs_not_params():
  a, b = (counting.count(search_spaces.get_reference('mobilenet_v1', 1.0, r)) for r in (224, 128))
  assert a['params'] == b['params'] and b['macs'] < a['macs']


def test_num_classes():
  a = search_spaces.get_reference('mobilenet_v3_small')
  assert counting.count(a, 10)['params'] == counting.count(a, 1000)['params'] - 990 * 1025
