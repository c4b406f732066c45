"""Tests for mnas.data and the embedded mnas_shapes dataset (no TensorFlow)."""

import io
import json
import sys

import grain
import numpy as np
from PIL import Image
import pytest

from mnas import data
from mnas.datasets import shapes

TINY = 'mnas_shapes/tiny'  # 600 train / 200 test examples, 64x64 (the `data_dir` fixture).


def _all(source):
  return source.__getitems__(list(range(len(source))))


def _iterator(data_dir, kind='train', **kw):
  kw = {'batch_size': 32, 'image_size': 48, 'num_devices': 1,
        'num_threads': 2, 'seed': 0, **kw}
  return data.create_input_iterator(TINY, kind, data_dir=data_dir, **kw)


def _assert_batches_equal(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])


# ----------------------------------------------------------------------------
# The embedded dataset.


def test_prepares_and_reads_without_tensorflow(data_dir):
  assert 'tensorflow' not in sys.modules
  info = data.dataset_info(TINY, data_dir)
  assert info.num_classes == 10
  assert info.splits == {'train': 600, 'test': 200}
  assert info.image_shape == (64, 64, 3)
  assert info.class_names == shapes.CLASS_NAMES
  assert info.test_split == 'test'
  ex = data.get_source(TINY, 'test', data_dir)[0]
  assert ex['image'].shape == (64, 64, 3) and ex['image'].dtype == np.uint8
  assert 0 <= int(ex['label']) < 10


def test_preparation_is_deterministic(data_dir, tmp_path):
  again = _all(data.get_source(TINY, 'test', tmp_path))
  first = _all(data.get_source(TINY, 'test', data_dir))
  assert len(again) == len(first) == 200
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a['image'], b['image'])
    assert a['label'] == b['label']


def test_classes_balanced(data_dir):
  for split, n in (('train', 600), ('test', 200)):
    labels = [int(e['label']) for e in _all(
        data.get_source(TINY, split, data_dir))]
    np.testing.assert_array_equal(np.bincount(labels, minlength=10),
                                  [n // 10] * 10)


def test_render_varies_and_is_seeded():
  a, la = shapes.generate(0, 'train', 7)
  b, lb = shapes.generate(0, 'train', 7)
  c, _ = shapes.generate(1, 'train', 7)
  np.testing.assert_array_equal(a, b)
  assert la == lb == 7
  assert not np.array_equal(a, c)
  assert a.std() > 10  # Not a flat image.


def test_not_solvable_by_mean_colour(data_dir):
  """Nearest class centroid on per-image mean RGB is close to chance."""
  def features(split):
    exs = _all(data.get_source(TINY, split, data_dir))
    x = np.stack([e['image'].reshape(-1, 3).mean(0) for e in exs])
    return x, np.array([int(e['label']) for e in exs])

  x, y = features('train')
  xt, yt = features('test')
  mu, sd = x.mean(0), x.std(0)
  x, xt = (x - mu) / sd, (xt - mu) / sd
  centroids = np.stack([x[y == k].mean(0) for k in range(10)])
  pred = ((xt[:, None] - centroids[None]) ** 2).sum(-1).argmin(-1)
  assert (pred == yt).mean() < 0.4


# ----------------------------------------------------------------------------
# Splits and errors.


def test_split_for():
  assert data.split_for('train', 5000) == 'train[:-5000]'
  assert data.split_for('validation', 5000) == 'train[-5000:]'
  assert data.split_for('train', '10%') == 'train[:-10%]'
  assert data.split_for('validation', '10%') == 'train[-10%:]'
  assert data.split_for('train', 0) == 'train'
  assert data.split_for('test', 5000) == 'test'
  assert data.split_for('test', 5000, 'validation') == 'validation'
  assert data.default_holdout('imagenet2012') == 50_000
  assert data.default_holdout(TINY) == '10%'
  with pytest.raises(ValueError):
    data.split_for('validation', 0)
  with pytest.raises(ValueError):
    data.split_for('dev', 10)


@pytest.mark.parametrize('holdout,n_val', [(100, 100), ('10%', 60)])
def test_validation_disjoint_from_train(data_dir, holdout, n_val):
  def keys(kind):
    src = data.get_source(TINY, data.split_for(kind, holdout), data_dir)
    return [e['image'].tobytes() for e in _all(src)]

  train, val, full = keys('train'), keys('validation'), [
      e['image'].tobytes() for e in _all(data.get_source(TINY, 'train',
                                                         data_dir))]
  assert len(val) == n_val and len(train) == 600 - n_val
  assert not set(train) & set(val)
  assert sorted(train + val) == sorted(full)
  assert keys('validation') == val  # Deterministic.
  assert data.num_examples(TINY, 'validation', data_dir, holdout) == n_val


def test_unknown_dataset_error(tmp_path):
  with pytest.raises(data.DatasetError) as e:
    data.get_source('no_such_dataset_xyz', 'train', tmp_path)
  assert 'no_such_dataset_xyz' in str(e.value)
  assert str(tmp_path) in str(e.value)
  assert 'tfds build' in str(e.value)
  assert isinstance(e.value, ValueError)


def test_unprepared_image_dataset_names_tf_extra(tmp_path):
  with pytest.raises(data.DatasetError) as e:
    data.get_source('cifar10', 'train', tmp_path)
  msg = str(e.value)
  assert 'not prepared' in msg and str(tmp_path) in msg
  assert 'pip install -e .[tf]' in msg


# ----------------------------------------------------------------------------
# Preprocessing.


def test_preprocess_shapes_and_normalisation():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
  train = data.preprocess_train(image, rng, 32, min_area=0.08)
  ev = data.preprocess_eval(image, 40)
  assert train.shape == (32, 32, 3) and train.dtype == np.float32
  assert ev.shape == (40, 40, 3) and ev.dtype == np.float32
  grey = np.full((20, 20, 3), data.MEAN_RGB, np.float32).round()
  assert np.abs(data.preprocess_eval(grey.astype(np.uint8), 8)).max() < 0.01


def test_decodes_png_bytes_and_grayscale():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format='PNG')
  np.testing.assert_array_equal(data.decode_image(buf.getvalue()), image)
  assert data.decode_image(image[..., :1]).shape == (30, 30, 3)
  np.testing.assert_array_equal(
      data.preprocess_eval(buf.getvalue(), 16),
      data.preprocess_eval(image, 16))


def test_eval_crop_of_same_size_is_identity_on_centre():
  image = np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3)
  out = data.preprocess_eval(image, 56, crop_fraction=0.875)
  np.testing.assert_allclose(out, data.normalize(image[4:60, 4:60]))


# ----------------------------------------------------------------------------
# Iterators.


def test_train_batches(data_dir):
  it = _iterator(data_dir, batch_size=32, num_devices=2, image_size=40,
                 holdout=100)
  b = next(it)
  assert set(b) == {'image', 'label'}
  assert b['image'].shape == (2, 16, 40, 40, 3)
  assert b['image'].dtype == np.float32
  assert b['label'].shape == (2, 16) and b['label'].dtype == np.int32
  assert abs(float(b['image'].mean())) < 1.5


def test_train_epochs_and_fresh_shuffle(data_dir):
  it = _iterator(data_dir, num_epochs=2, holdout=100, batch_size=50,
                 image_size=16)
  batches = list(it)
  assert len(batches) == 2 * 500 // 50
  epoch = [np.concatenate([b['label'].ravel() for b in batches[i:i + 10]])
           for i in (0, 10)]
  # Same examples, different order: compare the label histograms and order.
  np.testing.assert_array_equal(np.bincount(epoch[0]), np.bincount(epoch[1]))
  assert not np.array_equal(epoch[0], epoch[1])


def test_augmentation_deterministic_per_seed(data_dir):
  a = next(_iterator(data_dir, seed=3))
  b = next(_iterator(data_dir, seed=3, num_threads=0))
  c = next(_iterator(data_dir, seed=4))
  _assert_batches_equal(a, b)
  assert not np.array_equal(a['image'], c['image'])


def test_state_resumes_exactly(data_dir):
  it = _iterator(data_dir)
  for _ in range(3):
    next(it)
  state = json.loads(json.dumps(it.get_state()))
  expected = [next(it) for _ in range(3)]
  resumed = _iterator(data_dir)
  resumed.set_state(state)
  for want in expected:
    _assert_batches_equal(next(resumed), want)


def test_eval_padding_and_mask(data_dir):
  it = _iterator(data_dir, 'test', batch_size=64, num_devices=2,
                 image_size=24)
  batches = list(it)
  assert len(batches) == 4  # ceil(200 / 64)
  masks = np.concatenate([b['mask'].ravel() for b in batches])
  labels = np.concatenate([b['label'].ravel() for b in batches])
  assert batches[0]['mask'].shape == (2, 32)
  assert masks.sum() == 200 and (masks[:200] == 1).all()
  assert (masks[200:] == 0).all()
  want = [int(e['label']) for e in _all(data.get_source(TINY, 'test',
                                                        data_dir))]
  np.testing.assert_array_equal(labels[:200], want)
  again = list(_iterator(data_dir, 'test', batch_size=64, num_devices=2,
                         image_size=24))
  for a, b in zip(batches, again):
    _assert_batches_equal(a, b)


def test_eval_shards_cover_split_once(data_dir):
  seen = []
  lengths = []
  for index in range(2):
    shard = grain.sharding.ShardOptions(shard_index=index, shard_count=2)
    batches = list(_iterator(data_dir, 'validation', holdout=100,
                             batch_size=64, image_size=16,
                             shard_options=shard))
    lengths.append(len(batches))
    for b in batches:
      assert b['image'].shape[:2] == (1, 32)
      m = b['mask'].ravel() > 0
      seen.extend(map(bytes, b['image'].reshape(32, -1)[m]))
  assert lengths == [2, 2]
  assert len(seen) == 100 and len(set(seen)) == 100


def test_train_shards(data_dir):
  def batches(index):
    shard = grain.sharding.ShardOptions(shard_index=index, shard_count=2)
    return list(_iterator(data_dir, batch_size=100, image_size=8,
                          num_epochs=1, holdout=0, shard_options=shard))

  a, b = batches(0), batches(1)
  assert len(a) == len(b) == 6  # 300 examples per host, 50 per step.
  assert a[0]['image'].shape == (1, 50, 8, 8, 3)
  assert not np.array_equal(a[0]['image'], b[0]['image'])
