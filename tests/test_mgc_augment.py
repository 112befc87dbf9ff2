"""Warm-up augmentation (mgc_face/augment.py): flip permutation, similarity warp, pipeline."""

import numpy as np
import tensorflow as tf

from mgc_face import augment
from mgc_face import data as data_lib
from mgc_face import train as train_lib
from mgc_face.config import MGCConfig
from shared.model.coeffs import CoeffLayout
from shared.render.face_image import FaceSynthesizer

SIZE = 224
GEOMETRY_ONLY = MGCConfig(augment_scale=0.15, augment_rotation=20.0, augment_shift=0.08)
FLIP_EVERY_VIEW = MGCConfig(augment_flip=1.0)
SEED = tf.constant([0, 0], tf.int64)


def blobs(points, sigma, size=SIZE):
  """[N, size, size, 1] Gaussian blobs at the continuous points [N, K, 2] (numpy)."""
  centres = np.arange(size) + 0.5
  out = np.zeros((len(points), size, size, 1), np.float32)
  for n, view in enumerate(points):
    for x, y in view:
      out[n, :, :, 0] += np.exp(-((centres[None, :] - x) ** 2 + (centres[:, None] - y) ** 2) /
                                (2 * sigma[n] ** 2))
  return out


def test_flip_permutation_is_an_involution_and_mirrors_the_mean_face(ict_model):
  perm = augment.flip_permutation()
  assert sorted(perm) == list(range(68))
  np.testing.assert_array_equal(perm[perm], np.arange(68))
  # Right eye outer corner 36 <-> left eye outer corner 45; mouth corners 48 <-> 54; nose tip stays.
  assert perm[36] == 45 and perm[45] == 36 and perm[48] == 54 and perm[30] == 30
  assert perm[0] == 16 and perm[17] == 26 and perm[31] == 35 and perm[60] == 64
  # The frontal mean face is mirror symmetric: its flipped, permuted landmarks are its own.
  layout = CoeffLayout.for_model(ict_model)
  lm = FaceSynthesizer(ict_model).geometry(layout.split(tf.zeros([1, layout.size])))[3].numpy()
  image = np.zeros((1, SIZE, SIZE, 1), np.float32)
  _, _, flipped = augment.augment_views(FLIP_EVERY_VIEW, tf.constant(image), None,
                                       tf.constant(lm), SEED)
  np.testing.assert_allclose(flipped.numpy(), lm, atol=0.5)
  unpermuted = np.stack([SIZE - lm[..., 0], lm[..., 1]], -1)
  assert np.abs(unpermuted - lm).max() > 20.0   # without the permutation the eyes swap sides


def test_flip_moves_a_blob_with_its_landmark():
  points = np.array([[[40.3, 100.7]]], np.float32)
  image = blobs(points, [3.0])
  flipped_image, _, flipped = augment.augment_views(
      FLIP_EVERY_VIEW, tf.constant(image), None, tf.constant(np.repeat(points, 68, 1)), SEED)
  expected = blobs(flipped.numpy()[:, :1], [3.0])
  np.testing.assert_allclose(flipped_image.numpy(), expected, atol=1e-5)
  np.testing.assert_allclose(flipped.numpy()[0, 0], [SIZE - 40.3, 100.7], atol=1e-4)


def test_mirror_points_is_the_flip_of_the_points_and_its_own_inverse():
  rng = np.random.default_rng(3)
  points = rng.uniform(0, SIZE, (4, 68, 2)).astype(np.float32)
  image = np.zeros((4, SIZE, SIZE, 1), np.float32)
  _, _, flipped = augment.augment_views(FLIP_EVERY_VIEW, tf.constant(image), None,
                                       tf.constant(points), SEED)
  np.testing.assert_allclose(augment.mirror_points(points, SIZE), flipped.numpy(), atol=1e-4)
  np.testing.assert_allclose(augment.mirror_points(augment.mirror_points(points, SIZE), SIZE),
                             points, atol=1e-4)


def test_similarity_warp_moves_image_and_landmarks_alike():
  rng = np.random.default_rng(0)
  points = rng.uniform(70, 154, (3, 68, 2)).astype(np.float32)
  corners = np.array([[75, 75], [155, 75], [75, 155], [155, 155], [115, 115]], np.float32)
  points[:, :5] = corners + rng.uniform(-0.5, 0.5, (3, 5, 2))   # blobs at least 50 px apart
  sparse = points[:, :5]
  sigma = 4.0   # a 0.5 px misplacement would differ by about 0.08 at the blobs' flanks
  images = np.repeat(blobs(sparse, [sigma] * 3), 3, -1)
  skins = blobs(sparse, [sigma] * 3)
  out_images, out_skins, out_points = augment.augment_views(
      GEOMETRY_ONLY, tf.constant(images), tf.constant(skins), tf.constant(points),
      tf.constant([7, 1], tf.int64))
  out_points = out_points.numpy()
  # Numpy reference: the forward similarity fitted to the transformed points moves every point.
  a = np.concatenate([points, np.ones((3, 68, 1), np.float32)], -1)
  for n in range(3):
    matrix, *_ = np.linalg.lstsq(a[n], out_points[n], rcond=None)
    np.testing.assert_allclose(a[n] @ matrix, out_points[n], atol=1e-3)
    linear = matrix[:2].T
    scale = np.sqrt(abs(np.linalg.det(linear)))
    assert 1 / 1.17 < scale < 1.17
    np.testing.assert_allclose(linear / scale @ (linear / scale).T, np.eye(2), atol=1e-4)
    # The warped image is the blobs drawn at the transformed points, with sigma scaled alike.
    expected = blobs(out_points[n:n + 1, :5], [sigma * scale])
    np.testing.assert_allclose(out_images.numpy()[n:n + 1, ..., :1], expected, atol=0.02)
    np.testing.assert_allclose(out_skins.numpy()[n:n + 1], expected, atol=0.02)
    # Each blob's intensity centroid in a window is the transformed landmark.
    centres = np.arange(SIZE) + 0.5
    checked = 0
    for x, y in out_points[n, :5]:
      window = (np.abs(centres[None, :] - x) < 14) & (np.abs(centres[:, None] - y) < 14)
      weight = out_images.numpy()[n, ..., 0] * window
      isolated = np.all([np.hypot(*(p - (x, y))) > 40 or np.hypot(*(p - (x, y))) < 1e-3
                         for p in out_points[n, :5]])
      if isolated:
        cx = (weight * centres[None, :]).sum() / weight.sum()
        cy = (weight * centres[:, None]).sum() / weight.sum()
        np.testing.assert_allclose([cx, cy], [x, y], atol=0.1)
        checked += 1
    assert checked >= 1
  assert np.abs(out_points - points).max() > 2.0   # it did move them


def test_flip_and_similarity_in_one_resample_equal_the_two_in_turn():
  # augment_views folds the flip into the similarity's map; the reference mirrors the
  # columns with numpy first, then warps with the same similarity.
  config = MGCConfig(augment_flip=0.5, augment_scale=0.1, augment_rotation=10.0,
                     augment_shift=0.05)
  rng = np.random.default_rng(3)
  images = rng.uniform(0, 1, (8, SIZE, SIZE, 3)).astype(np.float32)
  skins = rng.uniform(0, 1, (8, SIZE, SIZE, 1)).astype(np.float32)
  points = rng.uniform(40, 180, (8, 68, 2)).astype(np.float32)
  seed = tf.constant([4, 2], tf.int64)
  out_images, out_skins, out_points = augment.augment_views(
      config, tf.constant(images), tf.constant(skins), tf.constant(points), seed)
  # The same draws as augment_views makes.
  seeds = tf.random.experimental.stateless_split(seed, 6)
  flags = (tf.random.stateless_uniform([8], seeds[0]) < config.augment_flip).numpy()
  uniform = [tf.random.stateless_uniform(shape, seeds[k], -1.0, 1.0)
             for k, shape in ((1, [8]), (2, [8]), (3, [8, 2]))]
  similarity = augment.similarity_matrices(
      tf.exp(config.augment_scale * uniform[0]),
      np.radians(config.augment_rotation) * uniform[1], config.augment_shift * SIZE * uniform[2],
      SIZE)
  both = np.concatenate([images, skins], -1)
  both = np.where(flags[:, None, None, None], both[:, :, ::-1], both)
  expected = augment.warp_images(tf.constant(both), similarity).numpy()
  assert 0 < flags.sum() < 8
  np.testing.assert_allclose(out_images.numpy(), expected[..., :3], atol=1e-4)
  np.testing.assert_allclose(out_skins.numpy(), expected[..., 3:], atol=1e-4)
  mirrored = np.where(flags[:, None, None], augment.mirror_points(points, SIZE), points)
  np.testing.assert_allclose(out_points.numpy(),
                             augment.transform_points(mirrored, similarity).numpy(), atol=1e-3)


def test_colour_jitter_keeps_range_and_geometry():
  config = MGCConfig(augment_brightness=0.3, augment_colour=0.1)
  images = np.full((4, SIZE, SIZE, 3), 0.6, np.float32)
  points = np.full((4, 68, 2), 50.0, np.float32)
  out, skins, out_points = augment.augment_views(config, tf.constant(images),
                                                 tf.zeros([4, SIZE, SIZE, 1]),
                                                 tf.constant(points), tf.constant([0, 0], tf.int64))
  out = out.numpy()
  assert out.min() >= 0.0 and out.max() <= 1.0
  gains = out[:, 0, 0] / 0.6
  assert np.all((gains > 0.7 * 0.9 - 1e-6) & (gains < 1.3 * 1.1 + 1e-6))
  assert np.std(gains) > 0.01
  np.testing.assert_array_equal(out_points.numpy(), points)


def test_same_seed_same_augmentation_other_seed_other():
  config = MGCConfig(augment_flip=0.5, augment_scale=0.1, augment_rotation=10, augment_shift=0.05)
  images = tf.random.stateless_uniform([3, SIZE, SIZE, 3], [1, 2])
  points = tf.random.stateless_uniform([3, 68, 2], [3, 4], 60, 160)
  skins = tf.zeros([3, SIZE, SIZE, 1])
  a = augment.augment_views(config, images, skins, points, tf.constant([5, 9], tf.int64))
  b = augment.augment_views(config, images, skins, points, tf.constant([5, 9], tf.int64))
  c = augment.augment_views(config, images, skins, points, tf.constant([5, 10], tf.int64))
  np.testing.assert_array_equal(a[2].numpy(), b[2].numpy())
  assert np.abs(a[2].numpy() - c[2].numpy()).max() > 1.0
  # Without skins (the warm-up's batches) the images and points are the same.
  d = augment.augment_views(config, images, None, points, tf.constant([5, 9], tf.int64))
  assert d[1] is None
  np.testing.assert_array_equal(d[0].numpy(), a[0].numpy())
  np.testing.assert_array_equal(d[2].numpy(), a[2].numpy())


def test_warmup_batches_are_augmented_then_plain(mgc_dataset):
  config = MGCConfig(backbone="small", landmark_head=True, batch_size=1, landmark_warmup_steps=2,
                     augment_flip=1.0, augment_shift=0.05)
  iterator, count = train_lib.warmup_then_plain(mgc_dataset, config, 0, 2)
  batches = [next(iterator) for _ in range(4)]
  records, landmarks, _ = data_lib.scan(mgc_dataset, "train", report=False)
  originals = [np.asarray(lm) for lm in landmarks]

  def is_original(batch):
    return any(np.allclose(batch.landmarks.numpy()[0], lm, atol=1e-4) for lm in originals)

  assert count == len(records)
  assert [is_original(b) for b in batches] == [False, False, True, True]
  for batch in batches[:2]:   # flipped: the labels' nose tip is mirrored about the centre
    assert batch.images.shape == (1, 3, SIZE, SIZE, 3)
    assert batch.skins.shape == (1, 3, 0, 0, 1)  # The warm-up reads no skin masks.
    assert float(tf.reduce_min(batch.images)) >= 0.0
  assert batches[2].skins.shape == (1, 3, SIZE, SIZE, 1)


def test_warmup_batches_are_augmented_then_plain_under_a_strategy(mgc_dataset):
  import types
  config = MGCConfig(backbone="small", landmark_head=True, batch_size=1, landmark_warmup_steps=2,
                     augment_flip=1.0, augment_shift=0.05)
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
  trainer = types.SimpleNamespace(config=config, distributed=True, strategy=strategy)
  iterator, count = train_lib.make_input(trainer, mgc_dataset, 0, start_step=0)
  batches = [next(iterator) for _ in range(4)]
  records, landmarks, _ = data_lib.scan(mgc_dataset, "train", report=False)
  originals = [np.asarray(lm) for lm in landmarks]

  def is_original(batch):
    local = strategy.experimental_local_results(batch.landmarks)[0].numpy()[0]
    return any(np.allclose(local, lm, atol=1e-4) for lm in originals)

  assert count == len(records)
  assert [is_original(b) for b in batches] == [False, False, True, True]
