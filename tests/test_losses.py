"""shared.train.losses: single-view terms against numpy references and finite differences."""

import numpy as np
import tensorflow as tf

from shared.train import losses


def test_landmark_weights_mark_nose_and_inner_mouth():
  w = losses.landmark_weights(5.0)
  assert w.shape == (68,)
  detail = set(range(27, 36)) | set(range(60, 68))   # 1-based 28-36 and 61-68.
  for i in range(68):
    assert w[i] == (5.0 if i in detail else 1.0)


def test_landmark_loss_matches_numpy():
  rng = np.random.default_rng(0)
  pred = rng.uniform(0, 224, (3, 68, 2)).astype(np.float32)
  gt = rng.uniform(0, 224, (3, 68, 2)).astype(np.float32)
  w = losses.landmark_weights(5.0)
  ref = (((pred - gt) ** 2).sum(-1) * w).mean(-1)
  np.testing.assert_allclose(losses.landmark_loss(pred, gt, w).numpy(), ref, rtol=1e-5)


def photometric_numpy(render, mask, image, skin, eps):
  comp = render * mask + image * (1 - mask)
  norm = np.sqrt(((comp - image) ** 2).sum(-1, keepdims=True) + eps)
  return (norm * skin * mask).sum((1, 2, 3)) / ((skin * mask).sum((1, 2, 3)) + 1e-6)


def random_images(seed, batch=2, size=6):
  rng = np.random.default_rng(seed)
  render = rng.uniform(size=(batch, size, size, 3))
  image = rng.uniform(size=(batch, size, size, 3))
  mask = (rng.uniform(size=(batch, size, size, 1)) > 0.3).astype(np.float64)
  skin = rng.uniform(size=(batch, size, size, 1))
  return render, mask, image, skin


def test_photometric_loss_matches_numpy():
  render, mask, image, skin = random_images(1)
  got = losses.photometric_loss(*(tf.constant(a, tf.float32) for a in (render, mask, image, skin)))
  np.testing.assert_allclose(got.numpy(), photometric_numpy(render, mask, image, skin, 1e-6),
                             rtol=1e-4)
  # A perfect render gives only the sqrt(eps) floor.
  perfect = losses.photometric_loss(tf.constant(image, tf.float32), tf.constant(mask, tf.float32),
                                    tf.constant(image, tf.float32), tf.constant(skin, tf.float32))
  np.testing.assert_allclose(perfect.numpy(), 1e-3, rtol=1e-2)


def test_photometric_gradient_matches_finite_differences():
  render, mask, image, skin = random_images(2, batch=1, size=4)
  theoretical, numerical = tf.test.compute_gradient(
      lambda r: losses.photometric_loss(r, tf.constant(mask), tf.constant(image), tf.constant(skin)),
      [tf.constant(render)])
  np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-5)


def test_regularisation_matches_numpy():
  rng = np.random.default_rng(3)
  identity, expression, albedo = (rng.normal(size=(2, k)).astype(np.float32) for k in (7, 5, 4))
  np.testing.assert_allclose(
      losses.shape_regularisation(identity, expression, 0.8).numpy(),
      (identity ** 2).sum(1) + 0.8 * (expression ** 2).sum(1), rtol=1e-5)
  np.testing.assert_allclose(losses.albedo_regularisation(albedo, 0.0017).numpy(),
                             0.0017 * (albedo ** 2).sum(1), rtol=1e-5)


def test_identity_loss_is_one_minus_cosine():
  a = tf.constant([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
  b = tf.constant([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
  np.testing.assert_allclose(losses.identity_loss(a, b).numpy(), [0.0, 1.0], atol=1e-6)
