"""Local refinement of the landmark head's points (model.bilinear_sample, LandmarkRefinement)."""

import numpy as np
import tensorflow as tf

from mgc_face import config as config_lib
from mgc_face import model as model_lib
from shared.model.coeffs import CoeffLayout

from mgc_helpers import fit_head_points

REFINE = config_lib.get_config("tiny").replace(refine_blocks=(0, 1), prior_init_samples=0)


def numpy_bilinear(feature_map, points, image_size):
  """Reference: cell centres at (j + 0.5) s, clamped to the border cells."""
  b, h, w, c = feature_map.shape
  out = np.zeros(points.shape[:2] + (c,))
  cell = image_size / w
  for n in range(b):
    for k, (x, y) in enumerate(points[n]):
      gx = min(max(x / cell - 0.5, 0.0), w - 1)
      gy = min(max(y / cell - 0.5, 0.0), h - 1)
      x0, y0 = min(int(np.floor(gx)), w - 2), min(int(np.floor(gy)), h - 2)
      fx, fy = gx - x0, gy - y0
      out[n, k] = ((1 - fx) * (1 - fy) * feature_map[n, y0, x0] +
                   fx * (1 - fy) * feature_map[n, y0, x0 + 1] +
                   (1 - fx) * fy * feature_map[n, y0 + 1, x0] +
                   fx * fy * feature_map[n, y0 + 1, x0 + 1])
  return out


def test_bilinear_sample_matches_numpy_inside_and_at_the_border():
  rng = np.random.default_rng(0)
  feature_map = rng.normal(size=(2, 7, 7, 5)).astype(np.float32)
  points = rng.uniform(-10, 234, (2, 30, 2)).astype(np.float32)
  points[0, 0] = (224 / 7 * 2.5, 224 / 7 * 4.5)   # a cell centre: exactly that cell
  got = model_lib.bilinear_sample(tf.constant(feature_map), tf.constant(points), 224).numpy()
  np.testing.assert_allclose(got, numpy_bilinear(feature_map, points, 224), atol=1e-5)
  np.testing.assert_allclose(got[0, 0], feature_map[0, 4, 2], atol=1e-5)


def test_refined_head_starts_at_the_soft_argmax_and_learns_an_offset(ict_model):
  layout = CoeffLayout.for_model(ict_model)
  network = model_lib.build_network(REFINE, layout)
  images = tf.random.uniform([2, 224, 224, 3], seed=3)
  _, _, points, logits = network(images)
  np.testing.assert_allclose(points.numpy(), model_lib.soft_argmax(logits).numpy(), atol=1e-4)
  # Only the refinement's weights are trained towards points shifted by 3 px: the loss falls.
  refine = network.get_layer("refinement")
  target = tf.stop_gradient(points) + 3.0
  first, last = fit_head_points(network, images, target, refine.trainable_variables, 30)
  assert last < 0.3 * first


def test_bilinear_sample_of_a_non_finite_point_reads_a_valid_cell():
  feature_map = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
  points = np.array([[[np.nan, 10.0]], [[np.inf, -np.inf]]], np.float32)
  got = model_lib.bilinear_sample(tf.constant(feature_map), tf.constant(points), 224).numpy()
  np.testing.assert_allclose(got[:, 0], feature_map[:, 0, 0])


def test_trainer_with_refinement_skips_a_nan_step_then_applies_a_good_one(mgc_dataset, ict_model,
                                                                          tmp_path):
  """NaN images give NaN head points: the step is skipped (no gather failure), then training goes on."""
  from mgc_face import train as train_lib
  from mgc_helpers import SINGLE_VIEW, first_batch
  config = SINGLE_VIEW.replace(refine_blocks=(0, 1), landmark_warmup_steps=1)
  trainer = train_lib.Trainer(ict_model, config, tmp_path, log=lambda m: None)
  batch = first_batch(mgc_dataset)
  refine = trainer.regressor.network.get_layer("refinement")
  before = [v.numpy().copy() for v in refine.weights]
  terms, applied, _ = trainer.train_step(batch._replace(images=batch.images * np.float32("nan")))
  assert not applied and not np.isfinite(terms["total"])
  for old, new in zip(before, refine.weights):
    np.testing.assert_array_equal(old, new.numpy())
  _, applied, _ = trainer.train_step(batch)
  assert applied
  assert any(not np.array_equal(old, new.numpy()) for old, new in zip(before, refine.weights))
