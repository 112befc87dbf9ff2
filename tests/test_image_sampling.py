"""shared.render.image_sampling: bilinear and nearest lookups against numpy."""

import numpy as np
import tensorflow as tf

from shared.render.image_sampling import erode, sample_bilinear, sample_nearest


def numpy_bilinear(image, u, v):
  """Border-clamped bilinear value of image [H, W, C] at pixel (u, v), centres at +0.5."""
  height, width = image.shape[:2]
  x, y = min(max(u - 0.5, 0), width - 1), min(max(v - 0.5, 0), height - 1)
  x0, y0 = int(np.floor(x)), int(np.floor(y))
  x1, y1 = min(x0 + 1, width - 1), min(y0 + 1, height - 1)
  fx, fy = x - x0, y - y0
  return ((1 - fx) * (1 - fy) * image[y0, x0] + fx * (1 - fy) * image[y0, x1]
          + (1 - fx) * fy * image[y1, x0] + fx * fy * image[y1, x1])


def test_bilinear_matches_numpy_inside_and_clamps_outside():
  rng = np.random.default_rng(3)
  image = rng.random((2, 5, 7, 3)).astype(np.float32)
  points = np.array([[[0.5, 0.5], [3.25, 2.75], [6.5, 4.5], [-3.0, 2.0]],
                     [[1.0, 1.0], [2.5, 0.5], [6.9, 4.9], [9.0, -1.0]]], np.float32)
  got, inside = sample_bilinear(tf.constant(image), tf.constant(points))
  for b in range(2):
    for n, (u, v) in enumerate(points[b]):
      np.testing.assert_allclose(got.numpy()[b, n], numpy_bilinear(image[b], u, v), atol=1e-6)
  # All four taps inside: x - 0.5 in [0, W - 1) and y - 0.5 in [0, H - 1).
  np.testing.assert_array_equal(inside.numpy()[..., 0], [[1, 1, 0, 0], [1, 1, 0, 0]])
  zeroed, _ = sample_bilinear(tf.constant(image), tf.constant(points), zero_outside=True)
  np.testing.assert_allclose(zeroed.numpy(), got.numpy() * inside.numpy(), atol=0)


def test_bilinear_on_a_grid_matches_scipy_and_gradient():
  from scipy.ndimage import map_coordinates
  rng = np.random.default_rng(5)
  image = rng.uniform(size=(1, 9, 11, 2)).astype(np.float32)
  coords = np.stack([rng.uniform(1.0, 10.0, (1, 4, 5)), rng.uniform(1.0, 8.0, (1, 4, 5))],
                    -1).astype(np.float32)
  values, inside = sample_bilinear(tf.constant(image), tf.constant(coords), zero_outside=True)
  assert inside.numpy().all()
  for c in range(2):
    ref = map_coordinates(image[0, ..., c], [coords[0, ..., 1] - 0.5, coords[0, ..., 0] - 0.5],
                          order=1)
    np.testing.assert_allclose(values.numpy()[0, ..., c], ref, atol=1e-5)
  theoretical, numerical = tf.test.compute_gradient(
      lambda xy: sample_bilinear(tf.constant(image, tf.float64), xy, zero_outside=True)[0],
      [tf.constant(coords, tf.float64)], delta=1e-4)
  np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-4)
  outside = sample_bilinear(tf.constant(image), tf.constant([[[[-3.0, 2.0]]]]), zero_outside=True)
  assert outside[1].numpy().sum() == 0 and outside[0].numpy().sum() == 0


def test_nearest_and_erode():
  rng = np.random.default_rng(4)
  image = rng.random((1, 5, 7, 2)).astype(np.float32)
  points = np.array([[[3.25, 2.75], [0.0, 0.0], [7.0, 1.0], [-0.1, 2.0]]], np.float32)
  near, inside = sample_nearest(tf.constant(image), tf.constant(points))
  np.testing.assert_array_equal(near.numpy()[0, 0], image[0, 2, 3])
  np.testing.assert_array_equal(near.numpy()[0, 1], image[0, 0, 0])
  np.testing.assert_array_equal(inside.numpy()[0], [True, True, False, False])
  alpha = np.ones((1, 7, 7, 1), np.float32)
  alpha[0, 3, 3] = 0.0
  eroded = erode(tf.constant(alpha), 1).numpy()[0, ..., 0]
  want = np.ones((7, 7), np.float32)
  want[2:5, 2:5] = 0.0
  np.testing.assert_array_equal(eroded, want)
  assert erode(tf.constant(alpha), 0) is not None
