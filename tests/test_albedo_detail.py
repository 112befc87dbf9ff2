"""The per-identity albedo detail (shared.model.albedo_detail) and its hook in the synthetic data."""

import numpy as np
import pytest

from shared.model import albedo_detail
from shared.model.face_model import load_face_model


@pytest.fixture(scope="module")
def model():
  return load_face_model()


@pytest.fixture(scope="module")
def detail(model):
  return albedo_detail.AlbedoDetail(model)


def test_deterministic_per_identity(detail):
  a = detail.sample(np.random.default_rng([0, 7]))
  b = detail.sample(np.random.default_rng([0, 7]))
  c = detail.sample(np.random.default_rng([0, 8]))
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert np.abs(a[1] - c[1]).max() > 0.1
  assert a[0].shape == a[1].shape == (detail.num_vertices, 3)
  assert a[0].dtype == np.float32


def test_disabled_is_identity(model):
  off = albedo_detail.AlbedoDetail(model, albedo_detail.AlbedoDetailConfig(enabled=False))
  scale, offset = off.sample(np.random.default_rng(0))
  np.testing.assert_array_equal(scale, 1.0)
  np.testing.assert_array_equal(offset, 0.0)


def test_outside_the_albedo_basis(model, detail):
  """Projected onto the model's albedo basis, most of the detail is left over."""
  rng = np.random.default_rng([0, 3])
  scale, offset = detail.sample(rng)
  base = model.mean_albedo
  with_detail = albedo_detail.apply_detail(base, scale, offset)
  change = (with_detail - base)[model.skin_mask > 0].reshape(-1)
  basis = model.albedo_basis[:, model.skin_mask > 0].reshape(model.num_albedo, -1).T
  coef, *_ = np.linalg.lstsq(basis, change, rcond=None)
  residual = change - basis @ coef
  assert np.linalg.norm(residual) > 0.8 * np.linalg.norm(change)
  # A smooth basis function, by contrast, is reproduced exactly.
  smooth = basis[:, 5]
  coef, *_ = np.linalg.lstsq(basis, smooth, rcond=None)
  assert np.linalg.norm(smooth - basis @ coef) < 1e-3 * np.linalg.norm(smooth)


def test_layers_where_expected(model, detail):
  """Eyebrow vertices darken, lip vertices redden, the back of the head keeps its colour
  (no eyebrow or lip there; only faint blotch edges and the noise)."""
  scale, offset = detail.sample(np.random.default_rng([1, 2]))
  grey = np.full((detail.num_vertices, 3), 0.6, np.float32)
  out = albedo_detail.apply_detail(grey, scale, offset)
  lm = model.mean_shape[model.landmarks68]
  brow = model.landmarks68[19]
  assert out[brow].mean() < 0.45
  lip = model.landmarks68[51]  # Upper lip, top centre: inside the outer contour's edge band.
  lower = np.argmin(np.linalg.norm(model.mean_shape - 0.5 * (lm[51] + lm[57]), axis=1))
  assert out[lower, 0] - out[lower, 1] > 0.1 or out[lip, 0] - out[lip, 1] > 0.1
  back = model.mean_shape[:, 2] < -0.5
  assert scale[back].min() > 0.7


def test_apply_numpy_matches_tensorflow(detail):
  import tensorflow as tf
  scale, offset = detail.sample(np.random.default_rng(5))
  base = np.random.default_rng(6).uniform(0, 1, (2, detail.num_vertices, 3)).astype(np.float32)
  ref = albedo_detail.apply_detail(base, scale, offset)
  got = albedo_detail.apply_detail(tf.constant(base), scale, offset).numpy()
  np.testing.assert_allclose(got, ref, atol=1e-6)
  assert ref.min() >= 0 and ref.max() <= 1


def test_polygon_signed_distance_square():
  square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float64)
  pts = np.array([[0.5, 0.5], [0.5, 0.9], [2.0, 0.5], [-0.5, -0.5]])
  got = albedo_detail.polygon_signed_distance(pts, square)
  np.testing.assert_allclose(got, [-0.5, -0.1, 1.0, np.sqrt(0.5)], atol=1e-12)


def test_same_in_all_views_and_in_ground_truth(model, tmp_path):
  """The synthetic renderer applies one detail to all three views; the GT holds it."""
  from mgc_face import synthetic
  renderer = synthetic.ViewRenderer(model)
  rng = np.random.default_rng([0, 1])
  sample = synthetic.render_sample(renderer, rng, synthetic.SyntheticConfig())
  albedo = sample["albedo"]
  assert albedo.shape == (3, model.num_vertices, 3)
  np.testing.assert_allclose(albedo[1], albedo[0], atol=1e-6)
  np.testing.assert_allclose(albedo[2], albedo[0], atol=1e-6)
  # The same identity drawn again gives the same albedo; detail is in it (off the basis).
  again = synthetic.render_sample(renderer, np.random.default_rng([0, 1]),
                                  synthetic.SyntheticConfig())
  np.testing.assert_array_equal(again["albedo"], albedo)
  path = tmp_path / "x_gt.npz"
  synthetic.write_ground_truth(path, sample["coefficients"], sample["vertices"][0],
                               sample["posed"], sample["landmarks2d"], sample["landmarks3d"],
                               model, albedo=albedo[0])
  gt = synthetic.read_ground_truth(path)
  np.testing.assert_array_equal(gt["albedo"], albedo[0].astype(np.float32))
