"""Input pipeline: TFDS array_record sources read with grain, no TensorFlow.

Datasets are read with `tfds.data_source` (random access to array_record
files), so any TFDS dataset prepared in that format works, wherever it was
prepared. The embedded `mnas_shapes` set (see `mnas.datasets.shapes`) is
generated into `data_dir` on first use. Preparing a standard image dataset
such as `imagenet2012` or `imagenette` needs TensorFlow once
(`pip install -e .[tf]`, then `tfds build NAME --file_format=array_record`);
reading it back does not.

As in MnasNet, the architecture search never looks at the test split: a
validation split is held out of the training split (50,000 images on
ImageNet), see `split_for`.

Batches are dicts of numpy arrays with a leading device axis:
  image: float32 [num_devices, per_device_batch, H, W, 3], normalised with
    ImageNet's mean and standard deviation (`MEAN_RGB`, `STDDEV_RGB`).
  label: int32 [num_devices, per_device_batch].
  mask:  (evaluation only) float32 [num_devices, per_device_batch]; 1 for
    real examples, 0 for the padding of the last batch.
"""

from __future__ import annotations

import dataclasses
import io
import math
from typing import Any

from absl import logging
import grain
import jax
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from mnas import datasets as mnas_datasets
from mnas.errors import DataError

# ImageNet channel statistics on the 0-255 scale, as used by the reference
# MnasNet / EfficientNet / flax ImageNet input pipelines.
MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)

EMBEDDED = 'mnas_shapes'
# Examples held out of 'train' for validation when `holdout` is not given
# (MnasNet holds out 50,000 ImageNet images; 10% elsewhere).
DEFAULT_HOLDOUT = {'imagenet2012': 50_000}
DEFAULT_HOLDOUT_FRACTION = '10%'
# Smallest crop area of the training random-resized-crop. 0.08 is Inception's
# value for ImageNet; on the embedded set objects cover a small part of a
# 64x64 image and a smaller crop often cuts the object out of view.
DEFAULT_MIN_AREA = {EMBEDDED: 0.35}
IMAGENET_MIN_AREA = 0.08
CROP_FRACTION = 0.875  # Evaluation centre crop: 224 / (224 + 32).


class DatasetError(DataError, ValueError):
  """A dataset is unknown, not prepared or not readable."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a model and a trainer need to know about a dataset."""
  name: str
  num_classes: int
  splits: dict[str, int]  # TFDS split name -> number of examples.
  image_shape: tuple[int | None, ...]
  class_names: tuple[str, ...]
  test_split: str  # 'test', or 'validation' when there is no test split.


def _data_dir_str(data_dir) -> str:
  return str(data_dir) if data_dir else tfds.core.constants.DATA_DIR


def _is_embedded(builder) -> bool:
  return isinstance(builder, mnas_datasets.MnasShapes)


def _has_encoded_images(builder) -> bool:
  features = builder.info.features
  return any(isinstance(f, (tfds.features.Image, tfds.features.Video))
             for f in features.values())


def _prepare_hint(name: str, data_dir: str, needs_tf: bool) -> str:
  base = name.split(':')[0].split('/')[0]
  hint = (f'Prepare it once with `tfds build {base} --data_dir={data_dir} '
          '--file_format=array_record` (or point --data_dir at a directory '
          'where it is prepared in array_record format).')
  if needs_tf:
    hint += (f' Preparing {base!r} encodes images, which needs TensorFlow: '
             'install the optional extra with `pip install -e .[tf]`; '
             'reading it afterwards does not need TensorFlow.')
  return hint


def get_builder(name: str, data_dir=None, *, prepare: bool = True):
  """The TFDS builder of a prepared dataset; prepares the embedded one.

  Args:
    name: TFDS name, optionally with config and version ('mnas_shapes/tiny').
    data_dir: TFDS data directory (None: $TFDS_DATA_DIR or
      ~/tensorflow_datasets).
    prepare: generate the embedded dataset if it is not prepared yet.

  Raises:
    DatasetError: unknown or unprepared dataset.
  """
  dd = _data_dir_str(data_dir)
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise DatasetError(
        f'Unknown dataset {name!r}: it is neither a registered TFDS dataset '
        f'nor prepared in data_dir {dd!r}. The embedded dataset is '
        f'{EMBEDDED!r} (generated on first use). '
        + _prepare_hint(name, dd, needs_tf=False)
        + ' Preparing image datasets needs TensorFlow: `pip install -e .[tf]`.'
    ) from e
  if builder.is_prepared():
    return builder
  if _is_embedded(builder) and prepare:
    logging.info('Generating %s into %s (first use).', name, dd)
    builder = tfds.builder(name, data_dir=data_dir, file_format='array_record')
    builder.download_and_prepare()
    return builder
  raise DatasetError(
      f'Dataset {name!r} is not prepared in data_dir {dd!r} '
      f'(looked for {builder.data_dir}). '
      + _prepare_hint(name, dd, needs_tf=_has_encoded_images(builder)))


def get_source(name: str, split: str, data_dir=None):
  """`tfds.data_source` for `split`; prepares the embedded dataset if needed.

  Returns a random-access sequence of example dicts (numpy arrays).
  """
  builder = get_builder(name, data_dir)
  try:
    return builder.as_data_source(split=split)
  except (ValueError, NotImplementedError) as e:
    dd = _data_dir_str(data_dir)
    raise DatasetError(
        f'Cannot read split {split!r} of {name!r} in data_dir {dd!r} with '
        f'random access: {e}. The dataset must be prepared with '
        '--file_format=array_record. '
        + _prepare_hint(name, dd, needs_tf=_has_encoded_images(builder))
    ) from e


def dataset_info(name: str, data_dir=None) -> DatasetInfo:
  """Number of classes, split sizes etc.; prepares the embedded dataset."""
  builder = get_builder(name, data_dir)
  info = builder.info
  image_key, label_key = _keys(builder)
  label = info.features[label_key]
  splits = {k: v.num_examples for k, v in info.splits.items()}
  return DatasetInfo(
      name=name,
      num_classes=label.num_classes,
      splits=splits,
      image_shape=tuple(info.features[image_key].shape),
      class_names=tuple(label.names),
      test_split='test' if 'test' in splits else 'validation',
  )


def _keys(builder) -> tuple[str, str]:
  keys = builder.info.supervised_keys
  if keys and len(keys) == 2 and all(isinstance(k, str) for k in keys):
    return keys
  return 'image', 'label'


def default_holdout(name: str) -> int | str:
  """Examples of 'train' held out for validation by default for `name`."""
  return DEFAULT_HOLDOUT.get(name.split(':')[0].split('/')[0],
                             DEFAULT_HOLDOUT_FRACTION)


def default_min_area(name: str) -> float:
  """Default smallest random-resized-crop area for `name`."""
  return DEFAULT_MIN_AREA.get(name.split(':')[0].split('/')[0],
                              IMAGENET_MIN_AREA)


def split_for(kind: str, holdout: int | str | None,
              test_split: str = 'test') -> str:
  """TFDS split string for kind in {'train', 'validation', 'test'}.

  The validation split is the last `holdout` examples of 'train' (a count or
  a percentage string like '10%'); the training split is the rest. TFDS
  shuffles examples when it writes them, so the tail is a random subset, and
  the same one every time.

  >>> split_for('train', 5000), split_for('validation', '10%')
  ('train[:-5000]', 'train[-10%:]')
  """
  if isinstance(holdout, str):
    holdout = holdout.strip()
    if not (holdout.endswith('%') and holdout[:-1].isdigit()):
      raise ValueError(f'holdout must be a count or a percentage, got '
                       f'{holdout!r}.')
    if int(holdout[:-1]) == 0:
      holdout = 0
  if kind == 'test':
    return test_split
  if kind == 'train':
    return f'train[:-{holdout}]' if holdout else 'train'
  if kind == 'validation':
    if not holdout:
      raise ValueError('The validation split needs holdout > 0.')
    return f'train[-{holdout}:]'
  raise ValueError(f'kind must be train, validation or test, got {kind!r}.')


# ----------------------------------------------------------------------------
# Preprocessing (numpy + PIL, runs in grain's reader threads).


def decode_image(image: Any) -> np.ndarray:
  """A uint8 [H, W, 3] array from an array or encoded PNG/JPEG bytes."""
  if isinstance(image, (bytes, np.bytes_)):
    image = np.asarray(Image.open(io.BytesIO(image)).convert('RGB'))
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[..., None]
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  elif image.shape[-1] == 4:
    image = image[..., :3]
  return image.astype(np.uint8, copy=False)


def _sample_crop(rng: np.random.Generator, h: int, w: int, min_area: float,
                 ratio=(3 / 4, 4 / 3), attempts: int = 10):
  """Inception crop box (y, x, height, width); centre crop as fallback."""
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(attempts):
    area = h * w * rng.uniform(min_area, 1.0)
    aspect = math.exp(rng.uniform(*log_ratio))
    cw = int(round(math.sqrt(area * aspect)))
    ch = int(round(math.sqrt(area / aspect)))
    if 0 < cw <= w and 0 < ch <= h:
      return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
  return _center_crop(h, w, CROP_FRACTION)


def _center_crop(h: int, w: int, fraction: float):
  size = max(1, int(fraction * min(h, w)))
  return (h - size + 1) // 2, (w - size + 1) // 2, size, size


def _resize(image: np.ndarray, box, image_size: int) -> np.ndarray:
  """Bilinear resize of image[box] to image_size^2 (PIL, antialiased)."""
  y, x, h, w = box
  if (h, w) == (image_size, image_size):
    return image[y:y + h, x:x + w]
  pil = Image.fromarray(image)
  pil = pil.resize((image_size, image_size), Image.BILINEAR,
                   box=(x, y, x + w, y + h))
  return np.asarray(pil)


def normalize(image: np.ndarray, dtype=np.float32) -> np.ndarray:
  """(image - MEAN_RGB) / STDDEV_RGB as `dtype`."""
  out = np.subtract(image, np.asarray(MEAN_RGB, np.float32), dtype=np.float32)
  out *= 1 / np.asarray(STDDEV_RGB, np.float32)
  return out.astype(dtype, copy=False)


def preprocess_train(image, rng: np.random.Generator, image_size: int,
                     min_area: float = IMAGENET_MIN_AREA,
                     dtype=np.float32) -> np.ndarray:
  """Random-resized crop (area in [min_area, 1]) + random flip + normalise."""
  image = decode_image(image)
  box = _sample_crop(rng, image.shape[0], image.shape[1], min_area)
  image = _resize(image, box, image_size)
  if rng.uniform() < 0.5:
    image = image[:, ::-1]
  return normalize(image, dtype)


def preprocess_eval(image, image_size: int,
                    crop_fraction: float = CROP_FRACTION,
                    dtype=np.float32) -> np.ndarray:
  """Centre crop (crop_fraction of the short side), resize, normalise."""
  image = decode_image(image)
  box = _center_crop(image.shape[0], image.shape[1], crop_fraction)
  return normalize(_resize(image, box, image_size), dtype)


# ----------------------------------------------------------------------------
# Iterators.


def _seed(*parts: int) -> int:
  """A 32-bit seed derived from integers."""
  return int(np.random.SeedSequence(parts).generate_state(1)[0])


def create_input_iterator(
    name: str,
    kind: str,
    *,
    batch_size: int,
    image_size: int,
    data_dir=None,
    seed: int = 0,
    training: bool | None = None,
    num_epochs: int | None = None,
    holdout: int | str | None = None,
    min_area: float | None = None,
    crop_fraction: float = CROP_FRACTION,
    num_devices: int | None = None,
    shard_options: grain.sharding.ShardOptions | None = None,
    num_threads: int | None = 2,
    prefetch: int | None = 4,
    dtype=np.float32,
) -> grain.DatasetIterator:
  """Batches of `kind` ('train', 'validation' or 'test') of dataset `name`.

  Training iterators shuffle (freshly every epoch), augment, repeat for
  `num_epochs` (None: forever) and drop the last partial batch. Evaluation
  iterators go through the split once in order; the last batch is padded with
  repeated examples and `mask` marks the real ones. Everything is a
  deterministic function of `seed`: augmentation draws from an RNG seeded by
  (seed, shard, position in the stream), so reader threads do not change it.

  The returned grain iterator is checkpointable: `it.get_state()` is a
  JSON-serialisable dict, `it.set_state(state)` resumes exactly.

  Args:
    name: TFDS dataset name, e.g. 'mnas_shapes', 'imagenet2012'.
    kind: 'train', 'validation' (held out of 'train') or 'test'.
    batch_size: global batch size, over all hosts and devices.
    image_size: side of the square model input.
    data_dir: TFDS data directory.
    seed: shuffle and augmentation seed.
    training: augment/shuffle/repeat; defaults to kind == 'train'.
    num_epochs: training epochs, None for an infinite iterator.
    holdout: validation examples held out of 'train'; see `split_for`.
      Defaults to `default_holdout(name)`.
    min_area: smallest random crop area; defaults to `default_min_area(name)`.
    crop_fraction: evaluation centre-crop fraction.
    num_devices: size of the leading device axis; jax.local_device_count().
    shard_options: per-host shard; defaults to grain.sharding.ShardByJaxProcess.
    num_threads: reader / preprocessing threads (None: 2; 0: none).
    prefetch: batches buffered ahead (None: 4; at least num_threads).
    dtype: image dtype.
  """
  training = kind == 'train' if training is None else training
  holdout = default_holdout(name) if holdout is None else holdout
  min_area = default_min_area(name) if min_area is None else min_area
  num_devices = num_devices or jax.local_device_count()
  shard = shard_options or grain.sharding.ShardByJaxProcess()
  if batch_size % (shard.shard_count * num_devices):
    raise ValueError(f'batch_size {batch_size} is not divisible by '
                     f'{shard.shard_count} hosts x {num_devices} devices.')
  local_batch = batch_size // shard.shard_count

  builder = get_builder(name, data_dir)
  image_key, label_key = _keys(builder)
  test_split = 'test' if 'test' in builder.info.splits else 'validation'
  split = split_for(kind, holdout, test_split)
  source = get_source(name, split, data_dir)
  n = len(source)
  ds = grain.MapDataset.source(source)
  logging.vlog(1, '%s %s: %d examples (split %r), %s.', name, kind, n, split,
               'training' if training else 'evaluation')

  def to_devices(batch):
    return {k: v.reshape((num_devices, -1) + v.shape[1:])
            for k, v in batch.items()}

  if training:
    if n < shard.shard_count * local_batch:
      raise ValueError(f'{split!r} has {n} examples, fewer than one batch.')
    # Equal shards, so all hosts run the same number of steps.
    ds = ds[:n - n % shard.shard_count][shard.shard_index::shard.shard_count]
    ds = ds.shuffle(seed=_seed(seed, 0)).repeat(num_epochs)

    def train_fn(ex, rng):
      return {'image': preprocess_train(ex[image_key], rng, image_size,
                                        min_area, dtype),
              'label': np.int32(ex[label_key])}

    ds = ds.random_map(train_fn, seed=_seed(seed, 1, shard.shard_index))
    ds = ds.batch(local_batch, drop_remainder=True)
  else:
    # Pad with repeats to whole global batches before sharding, so that all
    # hosts run the same number of steps; `mask` is 0 on the padding.
    padded = -(-n // batch_size) * batch_size
    ds = ds.repeat(-(-padded // n))[:padded]

    def eval_fn(index, ex):
      return {'image': preprocess_eval(ex[image_key], image_size,
                                       crop_fraction, dtype),
              'label': np.int32(ex[label_key]),
              'mask': np.float32(index < n)}

    ds = ds.map_with_index(eval_fn)
    ds = ds[shard.shard_index::shard.shard_count]
    ds = ds.batch(local_batch, drop_remainder=False)
  ds = ds.map(to_devices)
  num_threads = 2 if num_threads is None else num_threads
  prefetch = max(4 if prefetch is None else prefetch, num_threads)
  read = grain.ReadOptions(num_threads=num_threads,
                           prefetch_buffer_size=prefetch)
  return iter(ds.to_iter_dataset(read))


def num_examples(name: str, kind: str, data_dir=None,
                 holdout: int | str | None = None) -> int:
  """Number of examples of kind 'train', 'validation' or 'test'."""
  holdout = default_holdout(name) if holdout is None else holdout
  info = dataset_info(name, data_dir)
  return len(get_source(name, split_for(kind, holdout, info.test_split),
                        data_dir))
