"""Tests for shared.photo.alignment: similarity estimate, 5 points, warp conventions."""

import numpy as np
import pytest

from shared.photo import alignment

RNG_SEED = 0


def _similarity(scale, angle, shift):
  c, s = np.cos(angle), np.sin(angle)
  return np.array([[scale * c, -scale * s, shift[0]], [scale * s, scale * c, shift[1]]])


def _reference_similarity(src, dst):
  """Independent numpy reference: linear least squares for (a, b, tx, ty),
  x' = a x - b y + tx, y' = b x + a y + ty."""
  n = len(src)
  design = np.zeros((2 * n, 4))
  design[0::2] = np.stack([src[:, 0], -src[:, 1], np.ones(n), np.zeros(n)], 1)
  design[1::2] = np.stack([src[:, 1], src[:, 0], np.zeros(n), np.ones(n)], 1)
  a, b, tx, ty = np.linalg.lstsq(design, dst.reshape(-1), rcond=None)[0]
  return np.array([[a, -b, tx], [b, a, ty]])


def _face_landmarks(matrix):
  """A 68-point face placed by `matrix` from a template-consistent layout."""
  rng = np.random.default_rng(RNG_SEED)
  base = rng.uniform(40, 180, size=(68, 2))
  base[36:42] = alignment.TEMPLATE_5[0] + rng.normal(0, 3, (6, 2))
  base[36:42] += alignment.TEMPLATE_5[0] - base[36:42].mean(0)
  base[42:48] = alignment.TEMPLATE_5[1] + rng.normal(0, 3, (6, 2))
  base[42:48] += alignment.TEMPLATE_5[1] - base[42:48].mean(0)
  base[33], base[48], base[54] = alignment.TEMPLATE_5[2:]
  return alignment.transform_points(base, matrix), base


def test_similarity_recovers_known_transform():
  rng = np.random.default_rng(RNG_SEED)
  src = rng.uniform(0, 500, size=(5, 2))
  truth = _similarity(0.37, 0.4, (12.5, -7.0))
  got = alignment.estimate_similarity(src, alignment.transform_points(src, truth))
  np.testing.assert_allclose(got, truth, atol=1e-9)


def test_similarity_matches_least_squares_reference_with_noise():
  rng = np.random.default_rng(RNG_SEED + 1)
  src = rng.uniform(0, 500, size=(5, 2))
  dst = alignment.transform_points(src, _similarity(1.8, -2.0, (3, 4))) + rng.normal(0, 2, (5, 2))
  np.testing.assert_allclose(alignment.estimate_similarity(src, dst),
                             _reference_similarity(src, dst), atol=1e-9)


def test_similarity_never_reflects():
  src = np.array([[0, 0], [10, 0], [0, 20], [7, 9]], np.float64)
  mirrored = src * [-1, 1]
  matrix = alignment.estimate_similarity(src, mirrored)
  assert np.linalg.det(matrix[:, :2]) > 0


def test_similarity_rejects_degenerate_input():
  with pytest.raises(ValueError):
    alignment.estimate_similarity(np.ones((5, 2)), np.zeros((5, 2)))
  with pytest.raises(ValueError):
    alignment.estimate_similarity(np.zeros((5, 2)), np.zeros((4, 2)))


def test_five_points_indices():
  lm = np.zeros((2, 68, 2))
  lm[:, 36:42] = [1, 2]
  lm[:, 42:48] = [3, 4]
  lm[:, 33] = [5, 6]
  lm[:, 30] = [99, 99]     # the nose tip is not used (template uses 33)
  lm[:, 48] = [7, 8]
  lm[:, 54] = [9, 10]
  np.testing.assert_array_equal(alignment.five_points(lm)[1],
                                [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]])


def test_align_224_maps_to_template_and_back():
  to_image = _similarity(2.5, 0.3, (400.0, 150.0))
  landmarks, _ = _face_landmarks(to_image)
  image = np.random.default_rng(RNG_SEED).integers(0, 255, (900, 1000, 3), dtype=np.uint8)
  out = alignment.align_224(image, landmarks)
  assert out.image.shape == (224, 224, 3) and out.image.dtype == np.uint8
  np.testing.assert_allclose(alignment.five_points(out.landmarks68), alignment.TEMPLATE_5,
                             atol=1e-3)
  back = alignment.transform_points(out.landmarks68.astype(np.float64), out.inverse)
  np.testing.assert_allclose(back, landmarks, atol=1e-4)   # from the float32 landmarks
  back_exact = alignment.transform_points(alignment.transform_points(landmarks, out.matrix),
                                          out.inverse)
  np.testing.assert_allclose(back_exact, landmarks, atol=1e-4)
  np.testing.assert_allclose(alignment.compose_affine(out.inverse, out.matrix),
                             [[1, 0, 0], [0, 1, 0]], atol=1e-12)


def test_warp_uses_pixel_centre_convention():
  # Halving with continuous coordinates: output pixel (0,0) centre 0.5 maps to
  # source 1.0, the corner shared by source pixels 0 and 1 -> their mean.
  image = np.arange(16, dtype=np.float32).reshape(4, 4)
  half = _similarity(0.5, 0.0, (0.0, 0.0))
  out = alignment.warp_affine(image, half, (2, 2))
  expected = image.reshape(2, 2, 2, 2).mean(axis=(1, 3))
  np.testing.assert_allclose(out, expected, atol=1e-5)


def test_warp_integer_shift_and_replicate_border():
  image = np.arange(20, dtype=np.float32).reshape(4, 5)
  shift = _similarity(1.0, 0.0, (-2.0, -1.0))   # output(x, y) = source(x + 2, y + 1)
  out = alignment.warp_affine(image, shift, (5, 4))
  np.testing.assert_allclose(out[:3, :3], image[1:, 2:], atol=1e-5)
  np.testing.assert_allclose(out[3, :3], image[3, 2:], atol=1e-5)   # replicated bottom row


def test_large_downscale_is_antialiased_and_geometrically_right():
  size = 3000
  ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
  ramp = (xs * 0.05 + ys * 0.02).astype(np.float32)
  checker = ((np.indices((size, size)).sum(0) % 2) * 255).astype(np.float32)
  matrix = _similarity(0.07, 0.2, (-20.0, 10.0))
  out_ramp = alignment.warp_affine(ramp, matrix, (64, 64))
  centres = np.stack(np.meshgrid(np.arange(64) + 0.5, np.arange(64) + 0.5), -1)
  src = alignment.transform_points(centres, alignment.invert_affine(matrix))
  inside = np.all((src > 30) & (src < size - 30), axis=-1)
  expected = src[..., 0] * 0.05 + src[..., 1] * 0.02
  np.testing.assert_allclose(out_ramp[inside], expected[inside], atol=0.05)
  out_checker = alignment.warp_affine(checker, matrix, (64, 64))
  assert abs(out_checker[inside].mean() - 127.5) < 3 and out_checker[inside].std() < 10
