"""MGC evaluation metrics: rigid and similarity-aligned RMSE."""

import numpy as np


def test_procrustes_rmse_removes_rigid_motion():
  from mgc_face.evaluate import aligned_rmse
  from scipy.spatial.transform import Rotation
  rng = np.random.default_rng(4)
  truth = rng.normal(size=(500, 3))
  moved = truth @ Rotation.from_euler("xyz", [20, -50, 10], degrees=True).as_matrix().T + 3.0
  assert aligned_rmse(moved, truth) < 1e-9
  noise = rng.normal(0, 0.01, truth.shape)
  np.testing.assert_allclose(aligned_rmse(moved + noise, truth), np.sqrt((noise ** 2).sum(1).mean()),
                             rtol=0.05)
  region = np.zeros(500, bool)
  region[:100] = True
  assert aligned_rmse(moved, truth, region) < 1e-9


def test_similarity_rmse_also_removes_one_scale():
  from mgc_face.evaluate import aligned_rmse
  from scipy.spatial.transform import Rotation
  rng = np.random.default_rng(5)
  truth = rng.normal(size=(400, 3))
  moved = 0.9 * truth @ Rotation.from_euler("xyz", [-10, 35, 5], degrees=True).as_matrix().T - 2.0
  assert aligned_rmse(moved, truth, with_scale=True) < 1e-9
  # Rigid alignment keeps the 10 % size error: sqrt(mean |0.1 x|^2) for centred points.
  centred = truth - truth.mean(0)
  np.testing.assert_allclose(aligned_rmse(moved, truth),
                             0.1 * np.sqrt((centred ** 2).sum(1).mean()), rtol=1e-3)
  # A mirror is not a rotation: the fitted transform stays proper.
  mirrored = truth * np.array([-1.0, 1.0, 1.0])
  assert aligned_rmse(mirrored, truth, with_scale=True) > 0.1


def test_yaw_bins_split_views_by_absolute_yaw():
  from mgc_face.evaluate import by_yaw, yaw_bin_labels, yaw_bins
  assert yaw_bin_labels((0, 20, 40, 90)) == ["[0,20)", "[20,40)", "[40,90]"]
  np.testing.assert_array_equal(yaw_bins([-5.0, 19.9, 20.0, -39.0, 40.0, 95.0]), [0, 0, 1, 1, 2, 2])
  yaw = np.array([3.0, -10.0, 30.0, 50.0])
  rmse = np.array([1.0, 3.0, 2.0, 4.0])
  mean = np.array([2.0, 2.0, 4.0, 4.0])
  nme = np.array([1.0, 2.0, 3.0, 4.0])
  rows = by_yaw(yaw, rmse, mean, nme)
  assert rows["[0,20)"] == {"views": 2, "rmse_sim_vs_mean_face": 1.0, "nme_percent": 1.5}
  assert rows["[20,40)"]["rmse_sim_vs_mean_face"] == 0.5
  assert rows["[40,90]"]["views"] == 1
  assert set(by_yaw([5.0], [1.0], [1.0], [1.0])) == {"[0,20)"}  # Empty bins are left out.


def test_shape_parts_split_the_error_into_identity_and_expression():
  import tensorflow as tf
  from mgc_face.evaluate import aligned_rmse, shape_parts
  from shared.model.coeffs import CoeffLayout
  from shared.model.decoder import FaceDecoder
  from shared.model.face_model import load_face_model
  model = load_face_model()
  layout = CoeffLayout.for_model(model)
  decoder = FaceDecoder(model)
  region = model.skin_mask > 0.5
  rng = np.random.default_rng(7)
  truth_vector = np.zeros((2, layout.size), np.float32)
  truth_vector[:, :model.num_id] = rng.normal(size=model.num_id)  # One identity, two views.
  start = model.num_id + model.num_albedo
  truth_vector[:, start:start + model.num_exp] = 0.3 * rng.normal(size=model.num_exp)
  truth = layout.split(tf.constant(truth_vector))
  vertices = decoder.shape(truth.identity, truth.expression).numpy()[0]
  # Exact coefficients: both parts are exact; predicting nothing scores the references.
  parts = shape_parts(decoder, truth, truth, vertices, region)
  np.testing.assert_allclose(parts["identity"], 0.0, atol=1e-5)
  np.testing.assert_allclose(parts["expression"], 0.0, atol=1e-5)
  mean_identity = decoder.shape(tf.zeros_like(truth.identity), truth.expression).numpy()[0]
  np.testing.assert_allclose(parts["mean_identity"],
                             aligned_rmse(mean_identity, vertices, region, True), rtol=1e-6)
  neutral = decoder.shape(truth.identity, tf.zeros_like(truth.expression)).numpy()[0]
  np.testing.assert_allclose(parts["neutral"], aligned_rmse(neutral, vertices, region, True),
                             rtol=1e-6)
  # A wrong identity shows in the identity part only; the expression part stays exact.
  wrong = truth._replace(identity=-truth.identity)
  parts = shape_parts(decoder, wrong, truth, vertices, region)
  assert min(parts["identity"]) > max(parts["mean_identity"])
  np.testing.assert_allclose(parts["expression"], 0.0, atol=1e-5)
