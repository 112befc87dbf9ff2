"""The MGC landmark head: soft-argmax, landmark normalisation, coordinate channels, the network."""

import numpy as np
import pytest
import tensorflow as tf

from mgc_face import config as config_lib
from mgc_face import model as model_lib
from shared.model.coeffs import CoeffLayout

from mgc_helpers import fit_head_points


def numpy_soft_argmax(logits, image_size):
  """Reference: [B, H, W, K] -> [B, K, 2] expected cell centres."""
  b, h, w, k = logits.shape
  flat = logits.transpose(0, 3, 1, 2).reshape(b, k, h * w).astype(np.float64)
  probs = np.exp(flat - flat.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  probs = probs.reshape(b, k, h, w)
  xs = (np.arange(w) + 0.5) * image_size / w
  ys = (np.arange(h) + 0.5) * image_size / h
  return np.stack([(probs.sum(2) * xs).sum(-1), (probs.sum(3) * ys).sum(-1)], -1)


def test_soft_argmax_matches_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(0, 3, (2, 7, 5, 4)).astype(np.float32)
  got = model_lib.soft_argmax(tf.constant(logits), 224).numpy()
  np.testing.assert_allclose(got, numpy_soft_argmax(logits, 224), rtol=1e-5, atol=1e-4)


def test_soft_argmax_of_a_sharp_peak_is_the_cell_centre():
  logits = np.full((1, 14, 14, 2), -100.0, np.float32)
  logits[0, 3, 9, 0] = 100.0     # Row 3, column 9.
  logits[0, 0, 0, 1] = 100.0
  got = model_lib.soft_argmax(tf.constant(logits), 224).numpy()[0]
  np.testing.assert_allclose(got, [[(9 + 0.5) * 16, (3 + 0.5) * 16], [8.0, 8.0]], atol=1e-3)


def test_soft_argmax_gradient_matches_finite_differences():
  rng = np.random.default_rng(1)
  logits = tf.constant(rng.normal(0, 1, (1, 4, 3, 2)), tf.float64)
  theoretical, numerical = tf.test.compute_gradient(
      lambda x: model_lib.soft_argmax(x, 224), [logits])
  np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-6, atol=1e-6)


def test_heatmap_cross_entropy_matches_numpy_and_is_lowest_at_the_target():
  rng = np.random.default_rng(3)
  logits = rng.normal(0, 2, (2, 6, 6, 3)).astype(np.float32)
  points = rng.uniform(10, 214, (2, 3, 2)).astype(np.float32)
  sigma, cell = 1.5, 224 / 6
  centres = (np.arange(6) + 0.5) * cell
  expected = np.zeros(2)
  for b in range(2):
    for k in range(3):
      gauss = np.exp(-((centres[None, :] - points[b, k, 0]) ** 2 +
                       (centres[:, None] - points[b, k, 1]) ** 2) / (2 * (sigma * cell) ** 2))
      target = gauss / gauss.sum()
      flat = logits[b, :, :, k].astype(np.float64)
      log_probs = flat - np.log(np.exp(flat).sum())
      expected[b] -= (target * log_probs).sum() / 3
  got = model_lib.heatmap_cross_entropy(tf.constant(logits), tf.constant(points), sigma).numpy()
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # Logits equal to the log-target minimise it (to the target's entropy).
  near = np.array([[[100.0, 120.0]]], np.float32)
  ideal = -(((centres[None, :] - 100) ** 2 + (centres[:, None] - 120) ** 2)
            / (2 * (sigma * cell) ** 2))[None, :, :, None].astype(np.float32)
  best = model_lib.heatmap_cross_entropy(tf.constant(ideal), tf.constant(near), sigma).numpy()
  worse = model_lib.heatmap_cross_entropy(tf.constant(np.roll(ideal, 1, 2)), tf.constant(near),
                                          sigma).numpy()
  assert best < worse


def test_normalised_landmarks_separate_shape_position_and_size():
  rng = np.random.default_rng(2)
  points = rng.normal(100, 20, (1, 68, 2)).astype(np.float32)
  moved = 1.5 * (points - 100) + np.float32([130, 90])
  a = model_lib.normalise_landmarks(tf.constant(points)).numpy()[0]
  b = model_lib.normalise_landmarks(tf.constant(moved)).numpy()[0]
  np.testing.assert_allclose(a[:136], b[:136], atol=1e-5)          # Shape: unchanged.
  centre = points[0].mean(0)
  np.testing.assert_allclose(a[136:138], centre / 224 - 0.5, atol=1e-6)
  np.testing.assert_allclose(b[138] - a[138], np.log(1.5), atol=1e-5)  # Log size.
  np.testing.assert_allclose(np.mean(np.sum(a[:136].reshape(68, 2) ** 2, -1)), 1.0, rtol=1e-4)


def test_coordinate_channels_span_minus_one_to_one():
  out = model_lib.CoordChannels()(tf.zeros([2, 3, 5, 1])).numpy()
  assert out.shape == (2, 3, 5, 3)
  np.testing.assert_allclose(out[0, 0, :, 1], np.linspace(-1, 1, 5), atol=1e-6)
  np.testing.assert_allclose(out[1, :, 0, 2], np.linspace(-1, 1, 3), atol=1e-6)


@pytest.fixture(scope="module")
def head_config():
  return config_lib.get_config("tiny").replace(landmark_head=True, coord_channels=True)


def test_network_with_landmark_head_starts_at_the_mean_face(head_config, ict_model):
  layout = CoeffLayout.for_model(ict_model)
  network = model_lib.build_network(head_config, layout)
  images = tf.random.uniform([2, 224, 224, 3], seed=1)
  coefficients, features, points, logits = network(images)
  assert coefficients.shape == (2, layout.size) and points.shape == (2, 68, 2)
  assert logits.shape[0] == 2 and logits.shape[-1] == 68
  np.testing.assert_array_equal(coefficients.numpy(), 0.0)
  assert features.shape[0] == 2
  assert np.all((points.numpy() > 0) & (points.numpy() < 224))
  regressor = model_lib.Regressor(network, ict_model, head_config)
  coeffs, (head_points, _) = regressor.head_landmarks(images)
  np.testing.assert_allclose(head_points.numpy(), points.numpy(), atol=1e-5)
  assert coeffs.identity.shape == (2, layout.num_id)


def test_heatmap_reduce_narrows_what_the_heatmap_conv_reads(head_config, ict_model):
  """`heatmap_reduce` puts a 1x1 conv (to that many channels) between the concatenated
  maps and the 3x3 heatmap conv; 0 builds the network without it (older checkpoints)."""
  layout = CoeffLayout.for_model(ict_model)
  concatenated = sum(head_config.small_channels[head_config.heatmap_block:])
  reduced = model_lib.build_network(head_config.replace(heatmap_reduce=48), layout)
  assert tuple(reduced.get_layer(model_lib.HEATMAP_REDUCE).kernel.shape) == (1, 1, concatenated,
                                                                             48)
  plain = model_lib.build_network(head_config.replace(heatmap_reduce=0), layout)
  with pytest.raises(ValueError):
    plain.get_layer(model_lib.HEATMAP_REDUCE)

  def kernels_3x3(network):
    return {tuple(layer.kernel.shape) for layer in network.layers
            if getattr(layer, "kernel_size", None) == (3, 3)}

  out = head_config.heatmap_channels
  assert (3, 3, 48, out) in kernels_3x3(reduced)
  assert (3, 3, concatenated, out) not in kernels_3x3(reduced)
  assert (3, 3, concatenated, out) in kernels_3x3(plain)


def test_landmark_head_learns_a_fixed_target(head_config, ict_model):
  """A few Adam steps on the head's own loss move its points towards a target."""
  layout = CoeffLayout.for_model(ict_model)
  network = model_lib.build_network(head_config, layout)
  images = tf.random.uniform([2, 224, 224, 3], seed=2)
  target = tf.constant(np.tile(np.linspace(60, 160, 68)[:, None], (2, 1, 2)).reshape(2, 68, 2),
                       tf.float32)
  first, last = fit_head_points(network, images, target, network.trainable_variables, 15)
  assert last < 0.5 * first


def test_prior_map_reads_shape_and_pose_from_clean_landmarks(ict_model):
  """The ridge map fitted on face-model samples predicts fresh samples' coefficients."""
  from mgc_face import prior_init
  config = config_lib.get_config("tiny").replace(prior_init_samples=1500, prior_init_noise=1.0)
  weights, bias = prior_init.prior_map(ict_model, config, seed=0)
  layout = CoeffLayout.for_model(ict_model)
  assert weights.shape == (139, layout.size) and bias.shape == (layout.size,)
  keep = prior_init.supervised_columns(layout)
  assert np.all(weights[:, ~keep] == 0) and np.all(bias[~keep] == 0)
  landmarks, truth = prior_init.sample_prior(ict_model, 200, seed=7)
  predicted = model_lib.normalise_landmarks(tf.constant(landmarks)).numpy() @ weights + bias
  parts = layout.split(tf.constant(predicted))
  true_parts = layout.split(tf.constant(truth))
  yaw = np.corrcoef(parts.rotation.numpy()[:, 1], true_parts.rotation.numpy()[:, 1])[0, 1]
  first_id = np.corrcoef(parts.identity.numpy()[:, 0], true_parts.identity.numpy()[:, 0])[0, 1]
  assert yaw > 0.95 and first_id > 0.5, (yaw, first_id)


def test_yaw_gated_map_is_the_prior_map_of_each_yaw_window(ict_model):
  """Each gated map is the ridge of the same prior faces within its window (numpy reference);
  and on fresh faces the gated maps, each read at its own yaw, read identity better."""
  from mgc_face import prior_init
  config = config_lib.get_config("tiny").replace(prior_init_samples=6000, prior_init_noise=1.0)
  centres = prior_init.yaw_centres(30.0)
  np.testing.assert_allclose(centres, [-60, -30, 0, 30, 60])
  weights, bias = prior_init.yaw_gated_map(ict_model, config, centres, 15.0, seed=0)
  layout = CoeffLayout.for_model(ict_model)
  assert weights.shape == (5, 139, layout.size) and bias.shape == (5, layout.size)
  landmarks, vectors = prior_init.sample_prior(ict_model, 6000, 0)
  noisy = landmarks + np.random.default_rng(1).normal(0, 1.0, landmarks.shape)
  inputs = model_lib.normalise_landmarks(tf.constant(noisy, tf.float32)).numpy()
  yaw = np.degrees(layout.split(tf.constant(vectors)).rotation.numpy()[:, 1])
  keep = prior_init.supervised_columns(layout)
  rows = np.abs(yaw - 30.0) <= 15.0
  x = np.concatenate([inputs[rows], np.ones((rows.sum(), 1))], 1).astype(np.float64)
  penalty = config.prior_init_ridge * np.eye(x.shape[1])
  penalty[-1, -1] = 0.0          # The intercept is not penalised.
  solution = np.linalg.solve(x.T @ x + penalty, x.T @ vectors[rows])
  np.testing.assert_allclose(weights[3][:, keep], solution[:-1, keep], rtol=2e-3, atol=2e-3)
  assert np.all(weights[:, :, ~keep] == 0) and np.all(bias[:, ~keep] == 0)
  single = prior_init.prior_map(ict_model, config, seed=0)
  fresh, truth = prior_init.sample_prior(ict_model, 400, seed=7)
  fresh = fresh + np.random.default_rng(3).normal(0, 1.0, fresh.shape)
  fresh_inputs = model_lib.normalise_landmarks(tf.constant(fresh, tf.float32)).numpy()
  fresh_yaw = np.degrees(layout.split(tf.constant(truth)).rotation.numpy()[:, 1])
  nearest = np.abs(fresh_yaw[:, None] - centres).argmin(1)
  gated = np.einsum("nd,ndc->nc", fresh_inputs, weights[nearest]) + bias[nearest]
  identity = slice(0, 10)        # The components 68 noisy points can read (0.94 against 1).

  def error(predicted):
    return np.sqrt(np.mean((predicted[:, identity] - truth[:, identity]) ** 2))
  assert error(gated) < 0.97 * error(fresh_inputs @ single[0] + single[1]), (
      error(gated), error(fresh_inputs @ single[0] + single[1]))


def test_prior_start_fills_only_the_landmark_rows(ict_model):
  from mgc_face import prior_init
  config = config_lib.get_config("tiny").replace(prior_init_samples=300)
  layout = CoeffLayout.for_model(ict_model)
  network = model_lib.build_network(config, layout)
  prior_init.init_coefficient_head(network, ict_model, config, seed=0)
  weights, bias = prior_init.prior_map(ict_model, config, seed=0)
  images = tf.random.uniform([1, 224, 224, 3], seed=3)
  coefficients, features, points, _ = network(images)
  expected = model_lib.normalise_landmarks(points).numpy() @ weights + bias
  np.testing.assert_allclose(coefficients.numpy(), expected, rtol=1e-4, atol=1e-4)
