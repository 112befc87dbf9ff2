"""The test-time self-supervised fit (`mgc_face.self_fit`)."""

import dataclasses

import numpy as np
import tensorflow as tf


def held_out_views(root):
  """(images [3, 224, 224, 3], skins [3, 224, 224, 1], truth dict) of the first held-out sample."""
  from mgc_face import data as data_lib
  from mgc_face import synthetic
  records, _, _ = data_lib.scan(root, "test")
  record = records[0]
  images = data_lib.read_strip(record.image_path(root))
  skins = data_lib.read_strip(record.skin_path(root), grayscale=True)
  return images, skins, synthetic.read_ground_truth(record.gt_path(root))


def test_zero_steps_return_the_start(ict_model, mgc_dataset):
  from mgc_face.config import get_config
  from mgc_face.self_fit import SelfFitConfig, SelfFitter
  from shared.model.coeffs import CoeffLayout
  from shared.render.face_image import FaceSynthesizer
  images, skins, truth = held_out_views(mgc_dataset)
  layout = CoeffLayout.for_model(ict_model)
  fitter = SelfFitter(FaceSynthesizer(ict_model), get_config("tiny"), SelfFitConfig(steps=0))
  start = truth["coefficients"].astype(np.float32)
  out = fitter(layout, start, images, skins, truth["landmarks2d"])
  np.testing.assert_array_equal(out, start)


def test_self_fit_moves_the_mean_shape_towards_the_truth(ict_model, mgc_dataset):
  """From the true pose, light and albedo with the mean shape, the fit (photometric term and the
  2D landmarks, no 3D label) lowers the similarity-aligned face error of every view."""
  from mgc_face.config import get_config
  from mgc_face.evaluate import SKIN_REGION, aligned_rmse
  from mgc_face.self_fit import SelfFitConfig, SelfFitter
  from shared.model.coeffs import CoeffLayout
  from shared.render.face_image import FaceSynthesizer
  images, skins, truth = held_out_views(mgc_dataset)
  layout = CoeffLayout.for_model(ict_model)
  synth = FaceSynthesizer(ict_model)
  true_coeffs = layout.split(tf.constant(truth["coefficients"], tf.float32))
  start = layout.join(true_coeffs._replace(identity=tf.zeros_like(true_coeffs.identity),
                                           expression=tf.zeros_like(true_coeffs.expression))).numpy()
  config = dataclasses.replace(SelfFitConfig(), steps=60)
  fitted = SelfFitter(synth, get_config("tiny"), config)(layout, start, images, skins,
                                                           truth["landmarks2d"])
  region = ict_model.skin_mask > SKIN_REGION

  def errors(vectors):
    c = layout.split(tf.constant(vectors))
    shapes = synth.decoder.shape(c.identity, c.expression).numpy()
    return np.array([aligned_rmse(s, truth["vertices"], region, True) for s in shapes])

  before, after = errors(start), errors(fitted)
  assert np.all(after < 0.9 * before), (before, after)
  # Only the coefficients' values change, never their layout.
  assert fitted.shape == start.shape and np.all(np.isfinite(fitted))
