"""Starting the landmark head's coefficient map from the face model alone (no images, no labels).

With `config.landmark_head` the coefficient layer reads the normalised
coordinates of the head's 68 points (`model.normalise_landmarks`, 139
numbers).  A zero start makes the network learn the inverse of the face
model's projection from a few hundred self-supervised steps.  Instead,
`init_coefficient_head` draws `config.prior_init_samples` random faces from
the face model's prior (identity ~ N(0, 1), sparse expressions, poses and
positions within the ranges of `synthetic.SyntheticConfig`), projects their
landmarks with the training camera (no rendering), adds
`config.prior_init_noise` px of Gaussian noise (the head's expected error),
and solves a ridge regression from the normalised landmarks to identity,
expression, rotation and translation.  The solution fills the layer's rows
for those 139 inputs; every other weight keeps its zero start, so albedo and
lighting still start at the mean and ambient light.

This uses nothing but the face model, which the self-supervised objective
already decodes through; no image or ground truth of the data set is read.
It does assume the synthetic set's pose and expression ranges (documented
in docs/mgc.md).
"""

import numpy as np
import tensorflow as tf

from mgc_face import model as model_lib
from mgc_face import synthetic
from shared.fit.landmark_decoder import LandmarkDecoder
from shared.model import camera as camera_lib
from shared.model.coeffs import CoeffLayout

CHUNK = 512
MIN_WINDOW_FACES = 0.25   # A gated map's window needs more faces than this per map input.
SUPERVISED_PARTS = ("identity", "expression", "rotation", "translation")


def sample_prior(face_model, count, seed, config=synthetic.SyntheticConfig(), points=None):
  """`count` random faces: (landmarks [count, K, 2] pixels, coefficient vectors [count, size]).

  Albedo and lighting are zero (they do not move the landmarks).  `points`: [K] vertex
  ids whose projections are returned (None: the model's 68 landmarks).
  """
  layout = CoeffLayout.for_model(face_model)
  rng = np.random.default_rng(seed)
  rows = []
  for _ in range(count):
    identity, expression, _ = synthetic.sample_identity(rng, layout, config)
    rotation, translation = synthetic.sample_poses(rng, config)
    view = rng.integers(0, rotation.shape[0])
    rows.append(np.concatenate([identity, np.zeros(layout.num_albedo), expression,
                                rotation[view], translation[view],
                                np.zeros(layout.size - layout.num_id - layout.num_albedo -
                                         layout.num_exp - 6)]))
  vectors = np.asarray(rows, np.float32)
  if points is not None:
    from shared.fit.dense import dense_model
    face_model = dense_model(face_model, points)
  # Only the K points are decoded (the same numbers as decoding the whole mesh and picking
  # them, 20x faster).
  decoder, camera = LandmarkDecoder(face_model), camera_lib.Camera()

  @tf.function(reduce_retracing=True)
  def project(v):
    c = layout.split(v)
    posed = camera_lib.transform(decoder(c.identity, c.expression), c.rotation, c.translation)
    return camera_lib.project(posed, camera)

  landmarks = np.concatenate([project(tf.constant(vectors[k:k + CHUNK])).numpy()
                              for k in range(0, count, CHUNK)])
  return landmarks, vectors


def ridge(inputs, targets, penalty):
  """Ridge regression with an intercept: (W [D, T], b [T]) minimising
  |X W + b - Y|^2 + penalty |W|^2 over the rows of X = inputs."""
  mean_x, mean_y = inputs.mean(0), targets.mean(0)
  x = inputs - mean_x
  weights = np.linalg.solve(x.T @ x + penalty * np.eye(x.shape[1]), x.T @ (targets - mean_y))
  return weights, mean_y - mean_x @ weights


def supervised_columns(layout, parts=SUPERVISED_PARTS):
  """Bool [size]: the entries of the coefficient `parts` (default: identity, expression,
  rotation and translation)."""
  keep = np.zeros(layout.size, bool)
  starts = np.cumsum((0,) + tuple(layout.sizes))
  names = ("identity", "albedo", "expression", "rotation", "translation", "lighting")
  for k, name in enumerate(names):
    if name in parts:
      keep[starts[k]:starts[k + 1]] = True
  return keep


def _prior_inputs(face_model, config, seed, points):
  """`config.prior_init_samples` prior faces as (normalised noisy points [count, 2K + 3],
  coefficient vectors [count, size], yaw [count] degrees), float64."""
  landmarks, vectors = sample_prior(face_model, config.prior_init_samples, seed, points=points)
  rng = np.random.default_rng(seed + 1)
  noisy = landmarks + rng.normal(0, config.prior_init_noise, landmarks.shape)
  inputs = model_lib.normalise_landmarks(tf.constant(noisy, tf.float32)).numpy().astype(np.float64)
  yaw = np.degrees(CoeffLayout.for_model(face_model).split(vectors).rotation.numpy()[:, 1])
  return inputs, vectors.astype(np.float64), yaw.astype(np.float64)


def _supervised_ridge(inputs, vectors, penalty, keep):
  """`ridge` with the columns outside `keep` zeroed: (W [D, size], b [size]) float32."""
  weights, bias = ridge(inputs, vectors, penalty)
  weights[:, ~keep] = 0.0
  bias[~keep] = 0.0
  return weights.astype(np.float32), bias.astype(np.float32)


def prior_map(face_model, config, seed=0, points=None):
  """(W [2K + 3, size], b [size]): ridge map from normalised landmarks to coefficients
  (`points`: as `sample_prior`'s; K = 68 by default)."""
  inputs, vectors, _ = _prior_inputs(face_model, config, seed, points)
  return _supervised_ridge(inputs, vectors, config.prior_init_ridge,
                           supervised_columns(CoeffLayout.for_model(face_model)))


def yaw_centres(step, max_yaw=synthetic.SyntheticConfig().max_yaw):
  """[G] yaws (degrees) from -max_yaw to max_yaw, `step` apart: a gated map's centres."""
  count = int(round(2.0 * max_yaw / step)) + 1
  return np.linspace(-max_yaw, max_yaw, count)


def yaw_gated_map(face_model, config, centres, window, seed=0, points=None):
  """(W [G, 2K + 3, size], b [G, size]): one `prior_map` per yaw in `centres` [G] (degrees),
  each fitted on the prior faces whose yaw is within `window` degrees of it.

  A single linear map must read shape from points whose layout also moves with the
  head's yaw; a map per yaw reads it from faces seen from about one side (docs/mgc.md,
  "Session 22").  The same faces and noise as `prior_map` for the same config and seed.
  """
  inputs, vectors, yaw = _prior_inputs(face_model, config, seed, points)
  keep = supervised_columns(CoeffLayout.for_model(face_model))
  maps = []
  for centre in np.asarray(centres, np.float64):
    rows = np.abs(yaw - centre) <= window
    if rows.sum() <= MIN_WINDOW_FACES * inputs.shape[1]:
      raise ValueError(f"only {rows.sum()} prior faces within {window} degrees of yaw "
                       f"{centre}; raise prior_init_samples")
    maps.append(_supervised_ridge(inputs[rows], vectors[rows], config.prior_init_ridge, keep))
  return np.stack([m[0] for m in maps]), np.stack([m[1] for m in maps])


def init_coefficient_head(network, face_model, config, seed=0):
  """Writes `prior_map` into the coefficient layer's landmark rows (no-op when off)."""
  if not (config.landmark_head and config.prior_init_samples):
    return
  weights, bias = prior_map(face_model, config, seed)
  layer = network.get_layer("coefficients")
  kernel = np.zeros(layer.kernel.shape, np.float32)
  features = int(network.outputs[1].shape[-1])
  kernel[features:features + weights.shape[0]] = weights
  layer.kernel.assign(kernel)
  layer.bias.assign(bias)
