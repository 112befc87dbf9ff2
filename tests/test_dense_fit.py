"""Tests for shared.fit.dense: the 468-point correspondence file and fitting
to dense points."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from shared.fit import dense as dense_fit

from shared.fit import fitter as fitting
from shared.fit.landmark_convention import bfm_landmark_convention
from shared.errors import InputError
from shared.render.face_image import FaceSynthesizer


def test_correspondence_round_trip(tmp_path, ict_model):
  rng = np.random.default_rng(0)
  vertices = rng.integers(0, ict_model.num_vertices, 468)
  weights = rng.uniform(0, 1, 468).astype(np.float32)
  path = tmp_path / "c.npz"
  dense_fit.save_correspondence(path, ict_model, vertices, weights, spread_mm=weights * 3)
  got_v, got_w = dense_fit.load_correspondence(ict_model, path)
  np.testing.assert_array_equal(got_v, vertices)
  np.testing.assert_array_equal(got_w, weights)
  with np.load(path) as data:
    np.testing.assert_allclose(data["spread_mm"], weights * 3)


def test_correspondence_for_another_model_is_an_input_error(tmp_path, ict_model):
  import dataclasses
  path = tmp_path / "c.npz"
  dense_fit.save_correspondence(path, ict_model, np.zeros(468), np.ones(468))
  small = dataclasses.replace(ict_model, mean_shape=ict_model.mean_shape[:100])
  with pytest.raises(InputError, match="100-vertex|made for"):
    dense_fit.load_correspondence(small, path)
  (tmp_path / "bad.npz").write_bytes(b"nope")
  with pytest.raises(InputError, match="cannot read"):
    dense_fit.load_correspondence(ict_model, tmp_path / "bad.npz")


def test_packaged_correspondence_loads_and_spans_the_face(ict_model):
  vertices, weights = dense_fit.load_correspondence(ict_model)
  assert vertices.shape == (468,) and weights.shape == (468,)
  assert weights.sum() >= 400                       # measured: 410 points kept
  assert len(np.unique(vertices[weights > 0])) > 300
  points = ict_model.mean_shape[vertices[weights > 0]]
  extent = points.max(0) - points.min(0)
  assert extent[0] > 1.0 and extent[1] > 1.2        # decimetres: cheek to cheek, brow to chin


def test_dense_fit_recovers_a_synthetic_face(ict_model):
  """Points = the correspondence vertices of a known face, projected: the fit
  puts the model's 68 landmarks within a pixel or two of the truth."""
  model = bfm_landmark_convention(ict_model)
  vertices, weights = dense_fit.load_correspondence(model)
  synth = FaceSynthesizer(model)
  dense_synth = FaceSynthesizer(dense_fit.dense_model(model, vertices))
  rng = np.random.default_rng(2)
  truth = synth.layout.zeros(1)._replace(
      identity=tf.constant(rng.normal(0, 0.8, (1, model.id_basis.shape[0])), tf.float32),
      rotation=tf.constant([[0.1, 0.6, -0.1]]), translation=tf.constant([[0.1, -0.05, 0.2]]))
  target = dense_synth(truth, render=False).landmarks2d.numpy()
  config = fitting.FitConfig(landmark_steps=150, photometric_steps=0, shape_weight=1e-3,
                             expression_ratio=0.8)   # the prior the bounds were set with
  fitter = fitting.Fitter(dense_synth, config, point_weights=weights)
  images = np.zeros((1, 224, 224, 3), np.float32)
  result = fitter.fit(images, target)
  fitted = synth(result.coeffs, render=False).landmarks2d.numpy()
  true68 = synth(truth, render=False).landmarks2d.numpy()
  assert result.losses["landmark_error_px"][0] < 1.0
  assert np.linalg.norm(fitted - true68, axis=-1).mean() < 2.0


def test_pipeline_without_a_correspondence_fits_the_68_with_a_note(ict_model, monkeypatch):
  from shared.photo import reconstruct

  def missing(model, path=None):
    raise InputError("x.npz: made for a 9409-vertex model, not BFM")
  monkeypatch.setattr(dense_fit, "load_correspondence", missing)
  pipeline = reconstruct.PhotoReconstructor(ict_model, fit_config=fitting.FitConfig().with_steps(0))
  assert pipeline.dense_fitter is None
  assert pipeline.dense_note.startswith("note: x.npz") and "68 points read off the mesh" in \
      pipeline.dense_note


def test_pipeline_groups_dense_and_68_point_faces_and_keeps_their_order(ict_model):
  from shared.photo import reconstruct
  from shared.photo.landmarks import Face
  pipeline = reconstruct.PhotoReconstructor(ict_model,
                                            fit_config=fitting.FitConfig().with_steps(0))
  dense = np.zeros((468, 3), np.float32)

  def job(k, points68, with_dense=True):
    face = Face(box=np.zeros(4, np.float32), landmarks68=np.zeros((68, 2), np.float32),
                score=1.0, detector="blazeface", dense=dense if with_dense else None,
                points68=points68)
    return reconstruct.FaceJob(k, face, None)
  jobs = [job(0, "dlib"), job(1, "mesh"), job(2, "mesh", False), job(3, "mesh")]
  groups = pipeline.groups(jobs)
  assert [[j.index for j in g] for g in groups] == [[1, 3], [0, 2]]
  assert pipeline.fits_dense(jobs[1]) and not pipeline.fits_dense(jobs[0])


def _toy_bias():
  rng = np.random.default_rng(3)
  mirror = np.arange(468)
  mirror[:200] = np.arange(200, 400)
  mirror[200:400] = np.arange(200)
  return dense_fit.MeshBias(np.array([0.0, 30.0, 60.0]), rng.normal(0, 2, (3, 468, 2)), mirror)


def test_mesh_bias_interpolates_in_yaw_and_mirrors_negative_yaw():
  bias = _toy_bias()
  got = bias.at([0.0, 45.0, 75.0, -45.0])
  np.testing.assert_allclose(got[0], bias.bias[0], atol=1e-6)
  np.testing.assert_allclose(got[1], 0.5 * (bias.bias[1] + bias.bias[2]), atol=1e-6)
  np.testing.assert_allclose(got[2], bias.bias[2], atol=1e-6)         # constant past the grid
  for i in (0, 250, 420):                                              # plain loop reference
    j = bias.mirror[i]
    np.testing.assert_allclose(got[3, i], [-got[1, j, 0], got[1, j, 1]], atol=1e-6)


def test_mesh_bias_round_trip_and_packaged_file(tmp_path, ict_model):
  toy = _toy_bias()
  path = tmp_path / "b.npz"
  dense_fit.save_bias(path, ict_model, toy.yaw_deg, toy.bias, toy.mirror)
  got = dense_fit.load_bias(ict_model, path)
  np.testing.assert_allclose(got.bias, toy.bias, atol=1e-6)
  np.testing.assert_array_equal(got.mirror, toy.mirror)
  (tmp_path / "bad.npz").write_bytes(b"nope")
  with pytest.raises(InputError, match="cannot read"):
    dense_fit.load_bias(ict_model, tmp_path / "bad.npz")
  packaged = dense_fit.load_bias(ict_model)
  assert (packaged.mirror[packaged.mirror] == np.arange(468)).all()   # an involution
  assert packaged.mirror[33] == 263 and packaged.mirror[61] == 291    # eye and mouth corners
  drift = np.linalg.norm(packaged.bias, axis=-1).mean(-1)
  assert drift[0] < drift[-1]                                        # grows with yaw


def test_retarget_at_the_start_pose_moves_the_targets(ict_model):
  """fit(retarget=f) with retarget_fraction 0 equals a plain fit to f's
  targets when f ignores the pose, and f sees the start pose."""
  model = bfm_landmark_convention(ict_model)
  synth = FaceSynthesizer(model)
  truth = synth.layout.zeros(1)._replace(rotation=tf.constant([[0.05, 0.4, 0.0]]))
  target = synth(truth, render=False).landmarks2d.numpy()
  shifted = target + np.array([3.0, -2.0], np.float32)
  config = fitting.FitConfig(landmark_steps=40, photometric_steps=0, retarget_fraction=0.0)
  images = np.zeros((1, 224, 224, 3), np.float32)
  seen = []

  def retarget(rotation):
    seen.append(rotation)
    return shifted
  posed = fitting.Fitter(synth, config)
  posed.fit(images, target, retarget=retarget)
  start = posed.initial_coefficients(target).rotation.numpy()
  np.testing.assert_allclose(seen[0], start, atol=1e-6)
  # Same start for both (no closed-form pose): the same fit.
  fitter = fitting.Fitter(synth, dataclasses.replace(config, init_pose=False))
  a = fitter.fit(images, target, retarget=retarget)
  b = fitter.fit(images, shifted)
  np.testing.assert_allclose(a.synthesis.landmarks2d.numpy(), b.synthesis.landmarks2d.numpy(),
                             atol=1e-3)


def test_weights_override_ignores_zero_weight_points(ict_model):
  """fit(weights=w): points with weight 0 do not move the fit."""
  model = bfm_landmark_convention(ict_model)
  synth = FaceSynthesizer(model)
  target = synth(synth.layout.zeros(1)._replace(rotation=tf.constant([[0.0, 0.3, 0.0]])),
                 render=False).landmarks2d.numpy()
  fitter = fitting.Fitter(synth, fitting.FitConfig(landmark_steps=30, photometric_steps=0,
                                                   init_pose=False))
  weights = np.ones((1, 68), np.float32)
  weights[0, 48:] = 0.0                              # the mouth
  moved = target.copy()
  moved[0, 48:] += 25.0
  images = np.zeros((1, 224, 224, 3), np.float32)
  a = fitter.fit(images, target, weights=weights)
  b = fitter.fit(images, moved, weights=weights)
  np.testing.assert_allclose(a.synthesis.landmarks2d.numpy(), b.synthesis.landmarks2d.numpy(),
                             atol=1e-4)
  np.testing.assert_array_equal(a.losses["landmark_weights"], weights)
