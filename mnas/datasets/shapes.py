"""`mnas_shapes`: a procedurally generated, cluttered shapes-and-textures set.

The default dataset of mnas. It needs no download and no TensorFlow: it is a
TFDS `GeneratorBasedBuilder` whose examples are rendered with numpy from a
fixed seed and written as array_record files the first time it is used.

Every image is 64x64 RGB (uint8) and shows one object of one of ten classes:

  0 circle        filled disk
  1 square        filled square
  2 triangle      filled equilateral triangle
  3 cross         plus sign with arms of random thickness
  4 ring          annulus of random thickness
  5 star          five-pointed star
  6 frame         square outline of random thickness
  7 stripes       parallel stripes (period 3.5-7 px) inside a disk or square
  8 checkerboard  checkerboard (cell 2.5-5 px) inside a disk or square
  9 dots          lattice of dots (period 5-8 px) inside a disk or square

Objects vary in scale (radius 12%-32% of the image side), position (always
inside the central 88%, the evaluation crop), rotation and colour (uniform
RGB, at least 75 away from the background under the object). The textures'
"off" parts are either a second colour or transparent. Backgrounds are a
random two-colour linear gradient with 3-9 random line strokes (1-3 px wide,
random colours), some of them drawn over the object, and Gaussian colour
noise (std 4-28). Colours are drawn independently of the class, so colour
statistics are at chance (a logistic regression on per-image mean and std of
RGB gets ~11%); the class is in the shape, which needs a receptive field that
spans the object, and in fine textures, which need resolution and channels
to tell apart. It is far from saturated by a small model: a plain 8-layer
3x3 CNN (widths 16-128, BatchNorm, Adam) reaches ~64% validation accuracy
after 6 epochs at 64x64, still rising, which leaves room for kernel size,
width, depth, resolution and squeeze-excite to show in accuracy.

Configs:
  default: 64x64, train 20,000 and test 2,000 examples; ~17 s of CPU to
           prepare on one core, 250 MB on disk.
  tiny:    64x64, train 600 and test 200 examples (for tests).
  proxy32: 32x32 as rendered, larger objects, less clutter and noise (`PROXY32`), train
           20,000 and test 2,000: the CPU proxy tasks' set (~5 s to prepare).
  proxy32_tiny: the same, train 600 and test 200 (for tests).

Labels are balanced exactly (example i of a split has class i % 10; TFDS
shuffles the order on write). Each example is a pure function of
(config seed, split, index), see `generate`. Images are stored as raw bytes
(`tfds.features.Tensor(..., encoding='bytes')`), 12 KiB per example.
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

CLASS_NAMES = (
    'circle', 'square', 'triangle', 'cross', 'ring',
    'star', 'frame', 'stripes', 'checkerboard', 'dots',
)
NUM_CLASSES = len(CLASS_NAMES)
_SPLIT_IDS = {'train': 0, 'test': 1}


def _clip01(a):
  return np.minimum(np.maximum(a, 0, out=a), 1, out=a)


def _box(x0, x1, y0, y1, size):
  """Integer pixel box [y0:y1, x0:x1] clipped to the image."""
  return (slice(max(int(y0), 0), min(int(np.ceil(y1)) + 1, size)),
          slice(max(int(x0), 0), min(int(np.ceil(x1)) + 1, size)))


def _draw_strokes(img, rng, n, size):
  """Paints n random anti-aliased line strokes onto img in place."""
  for _ in range(n):
    p0 = rng.uniform(0, size, 2)
    ang = rng.uniform(0, 2 * np.pi)
    p1 = p0 + rng.uniform(0.15, 0.8) * size * np.array(
        [np.cos(ang), np.sin(ang)])
    width = rng.uniform(0.6, 1.6)
    colour = rng.uniform(0, 255, 3).astype(np.float32)
    pad = width + 1
    box = _box(min(p0[0], p1[0]) - pad, max(p0[0], p1[0]) + pad,
               min(p0[1], p1[1]) - pad, max(p0[1], p1[1]) + pad, size)
    x = np.arange(box[1].start, box[1].stop, dtype=np.float32) + 0.5 - p0[0]
    y = np.arange(box[0].start, box[0].stop, dtype=np.float32) + 0.5 - p0[1]
    d = (p1 - p0).astype(np.float32)
    x, y = x[None, :], y[:, None]
    t = _clip01((x * d[0] + y * d[1]) * (1 / max(d @ d, 1e-6)))
    dist = np.hypot(x - t * d[0], y - t * d[1])
    a = _clip01(width + 0.5 - dist)[..., None]
    region = img[box]
    region += a * (colour - region)


def _shape_sdf(label, u, v, r, rng):
  """Signed distance (pixels, <0 inside) of the class shape; u, v in radii."""
  rho = np.sqrt(u * u + v * v)
  if label == 0:  # circle
    return (rho - 0.85) * r
  if label == 1:  # square
    return (np.maximum(np.abs(u), np.abs(v)) - 0.72) * r
  if label == 2:  # triangle
    phis = np.pi / 2 + 2 * np.pi / 3 * np.arange(3)
    proj = [u * np.cos(p) + v * np.sin(p) for p in phis]
    return (np.maximum(np.maximum(proj[0], proj[1]), proj[2]) - 0.52) * r
  if label == 3:  # cross
    w = rng.uniform(0.18, 0.3)
    au, av = np.abs(u), np.abs(v)
    arm1 = np.maximum(au - 0.92, av - w)
    arm2 = np.maximum(au - w, av - 0.92)
    return np.minimum(arm1, arm2) * r
  if label == 4:  # ring
    w = rng.uniform(0.12, 0.24)
    return (np.abs(rho - 0.78) - w) * r
  if label == 5:  # star
    theta = np.arctan2(v, u)
    frac = (theta * 5 / (2 * np.pi)) % 1.0
    tri = np.abs(2 * frac - 1)  # 1 at the points, 0 between them.
    inner = rng.uniform(0.38, 0.5)
    return (rho - (inner + (1 - inner) * tri)) * r * 0.6
  if label == 6:  # frame
    w = rng.uniform(0.1, 0.2)
    return (np.abs(np.maximum(np.abs(u), np.abs(v)) - 0.66) - w) * r
  raise ValueError(label)


def _texture_alpha(label, u, v, r, rng):
  """Coverage in [0, 1] of the texture pattern (classes 7-9)."""
  px_u, px_v = u * r, v * r  # Local coordinates in pixels.
  if label == 7:  # stripes
    period = rng.uniform(3.5, 7)
    s = np.sin(2 * np.pi * px_u / period)
    return np.clip(0.5 + s * period / 4, 0, 1)
  if label == 8:  # checkerboard
    cell = rng.uniform(2.5, 5)
    s = np.sin(np.pi * px_u / cell) * np.sin(np.pi * px_v / cell)
    return np.clip(0.5 + s * cell, 0, 1)
  if label == 9:  # dots
    period = rng.uniform(5, 8)
    du = (px_u / period) % 1.0 - 0.5
    dv = (px_v / period) % 1.0 - 0.5
    dist = np.sqrt(du * du + dv * dv) * period
    return np.clip(rng.uniform(0.22, 0.32) * period + 0.5 - dist, 0, 1)
  raise ValueError(label)


def _pick_colour(rng, avoid, min_dist=75.0):
  """A random RGB colour at least min_dist from `avoid` (best of 20 draws)."""
  best, best_d = None, -1.0
  for _ in range(20):
    c = rng.uniform(0, 255, 3).astype(np.float32)
    d = float(np.linalg.norm(c - avoid))
    if d >= min_dist:
      return c
    if d > best_d:
      best, best_d = c, d
  return best


@dataclasses.dataclass(frozen=True)
class Style:
  """How hard the images are: the object's radius (fractions of the side), the number of
  clutter strokes [low, high) and the colour noise's std (uniform in the ranges)."""
  radius: tuple[float, float] = (0.12, 0.32)
  strokes: tuple[int, int] = (3, 10)
  noise: tuple[float, float] = (4.0, 28.0)


def render(rng: np.random.Generator, label: int, size: int = 64,
           style: Style = Style()) -> np.ndarray:
  """Renders one example of class `label` as a uint8 [size, size, 3] image."""
  # Background: two-colour linear gradient.
  c0, c1 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
  g = rng.uniform(0, 2 * np.pi)
  ramp = (np.arange(size, dtype=np.float32) + 0.5 - size / 2) / size
  t = np.clip(ramp[None, :] * np.cos(g) + ramp[:, None] * np.sin(g) + 0.5,
              0, 1)
  img = c0 + (c1 - c0) * t[..., None]
  n_strokes = int(rng.integers(*style.strokes))
  n_below = int(rng.integers(0, n_strokes + 1))
  _draw_strokes(img, rng, n_below, size)

  # The object, kept inside the central 88% of the image (the eval crop).
  r = rng.uniform(*style.radius) * size
  margin = 0.06 * size + r
  cx, cy = rng.uniform(margin, size - margin, 2)
  rot = rng.uniform(0, 2 * np.pi)
  box = _box(cx - r - 2, cx + r + 2, cy - r - 2, cy + r + 2, size)
  dx = (np.arange(box[1].start, box[1].stop, dtype=np.float32) + 0.5 - cx) / r
  dy = (np.arange(box[0].start, box[0].stop, dtype=np.float32) + 0.5 - cy) / r
  dx, dy = dx[None, :], dy[:, None]
  u = dx * np.cos(rot) + dy * np.sin(rot)
  v = dy * np.cos(rot) - dx * np.sin(rot)
  local_bg = img[int(cy), int(cx)].copy()
  fg = _pick_colour(rng, local_bg)
  region = img[box]
  if label < 7:
    alpha = np.clip(0.5 - _shape_sdf(label, u, v, r, rng), 0, 1)
    region += alpha[..., None] * (fg - region)
  else:
    if rng.uniform() < 0.5:
      patch = np.sqrt(u * u + v * v) - 0.92
    else:
      patch = np.maximum(np.abs(u), np.abs(v)) - 0.8
    patch = np.clip(0.5 - patch * r, 0, 1)
    on = _texture_alpha(label, u, v, r, rng)
    if rng.uniform() < 0.5:  # Opaque: the "off" parts get a second colour.
      off = _pick_colour(rng, fg, min_dist=60.0)
      region += (patch * (1 - on))[..., None] * (off - region)
    region += (patch * on)[..., None] * (fg - region)

  _draw_strokes(img, rng, n_strokes - n_below, size)
  img += rng.uniform(*style.noise) * rng.standard_normal(img.shape, np.float32)
  return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def generate(seed: int, split: str, index: int, size: int = 64, style: Style = Style()):
  """Example `index` of `split` as (image uint8 [size, size, 3], label)."""
  label = index % NUM_CLASSES
  rng = np.random.default_rng((seed, _SPLIT_IDS[split], index))
  return render(rng, label, size, style), label


# `proxy32`: rendered at 32x32 (a 64x64 image downscaled to 32 halves the textures' periods
# to 1.75-3.5 pixels), objects of 22-40% of the side (7-13 pixels of radius, as large as the
# default's in pixels, so the textures keep their periods), 0-3 strokes, noise std 2-12:
# a set a few hundred steps at 32x32 learn, on which architectures still differ.
PROXY32 = Style(radius=(0.22, 0.40), strokes=(0, 4), noise=(2.0, 12.0))


@dataclasses.dataclass
class MnasShapesConfig(tfds.core.BuilderConfig):
  """Size of the generated set."""
  image_size: int = 64
  num_train: int = 20_000
  num_test: int = 2_000
  seed: int = 0
  style: Style = Style()


class MnasShapes(tfds.core.GeneratorBasedBuilder):
  """Cluttered shapes and textures, 10 classes, 64x64; generated locally."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [
      MnasShapesConfig(
          name='default', description='64x64, 20,000 train / 2,000 test.'),
      MnasShapesConfig(
          name='tiny', num_train=600, num_test=200,
          description='64x64, 600 train / 200 test; for tests.'),
      MnasShapesConfig(
          name='proxy32', image_size=32, style=PROXY32,
          description='32x32 as rendered, larger objects, less clutter: short CPU proxies.'),
      MnasShapesConfig(
          name='proxy32_tiny', image_size=32, style=PROXY32, num_train=600, num_test=200,
          description='proxy32 with 600 train / 200 test; for tests.'),
  ]
  DEFAULT_CONFIG_NAME = 'default'

  def _info(self) -> tfds.core.DatasetInfo:
    s = self.builder_config.image_size
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(
                shape=(s, s, 3), dtype=np.uint8, encoding='bytes'),
            'label': tfds.features.ClassLabel(names=CLASS_NAMES),
        }),
        supervised_keys=('image', 'label'),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    cfg = self.builder_config
    return {
        'train': self._generate_examples('train', cfg.num_train),
        'test': self._generate_examples('test', cfg.num_test),
    }

  def _generate_examples(self, split, num_examples):
    cfg = self.builder_config
    for i in range(num_examples):
      image, label = generate(cfg.seed, split, i, cfg.image_size, cfg.style)
      yield i, {'image': image, 'label': label}
