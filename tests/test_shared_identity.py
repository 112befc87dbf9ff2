"""Tests for `Fitter.fit`'s identity options: one identity shared by several images of a
person (`share_identity`), and an identity held fixed (`fixed_identity`)."""

import numpy as np
import pytest
import tensorflow as tf

from shared.fit import fitter as fitting
from shared.fit.landmark_convention import bfm_landmark_convention
from shared.render.face_image import FaceSynthesizer

# Landmark stage only: the identity options act on the geometry.  The shape prior of the
# bounds below (the photo default until session 41).
CONFIG = fitting.FitConfig(landmark_steps=150, photometric_steps=0, shape_weight=1e-3,
                           expression_ratio=0.8)
YAWS = (-40.0, 0.0, 40.0)        # degrees: one person seen from three sides
NOISE_PX = 1.0                   # landmark noise, as the synthetic sets' labels


@pytest.fixture(scope="module")
def synthesizer(ict_model):
  return FaceSynthesizer(bfm_landmark_convention(ict_model))


@pytest.fixture(scope="module")
def fitter(synthesizer):
  return fitting.Fitter(synthesizer, CONFIG)


def _person(synthesizer, seed, yaws=YAWS):
  """(images [B, 224, 224, 3], noisy landmarks [B, 68, 2], coefficients): one identity,
  a different expression and pose per image."""
  rng = np.random.default_rng(seed)
  layout, count = synthesizer.layout, len(yaws)
  identity = np.tile(rng.normal(0, 0.7, (1, layout.num_id)), [count, 1]).astype(np.float32)
  rotation = np.radians([[rng.uniform(-10, 10), yaw, 0.0] for yaw in yaws]).astype(np.float32)
  coeffs = layout.zeros(count)._replace(
      identity=tf.constant(identity),
      expression=tf.constant(rng.normal(0, 0.3, (count, layout.num_exp)).astype(np.float32)),
      rotation=tf.constant(rotation))
  landmarks = synthesizer(coeffs, render=False).landmarks2d.numpy()
  landmarks += rng.normal(0, NOISE_PX, landmarks.shape).astype(np.float32)
  images = np.full((count, 224, 224, 3), 0.5, np.float32)      # unused by the landmark stage
  return images, landmarks, coeffs


def _identity_error(synthesizer, identity, truth):
  """[B] RMS vertex distance (model units; 1 = 100 mm for ICT) of the neutral faces of two
  identities."""
  decoder = synthesizer.decoder
  zeros = tf.zeros([len(identity), synthesizer.layout.num_exp])
  a = decoder.shape(tf.constant(identity, tf.float32), zeros)
  b = decoder.shape(tf.constant(truth, tf.float32), zeros)
  return np.sqrt(np.mean(np.sum(np.square((a - b).numpy()), -1), -1))


def test_a_shared_identity_is_one_and_closer_to_the_truth(synthesizer, fitter):
  own, shared = [], []
  for seed in range(3):
    images, landmarks, truth = _person(synthesizer, seed)
    alone = fitter.fit(images, landmarks, render=False)
    joint = fitter.fit(images, landmarks, render=False, share_identity=np.ones(len(YAWS)))
    identity = joint.coeffs.identity.numpy()
    np.testing.assert_allclose(identity, np.tile(identity[:1], [len(YAWS), 1]), atol=1e-6)
    own.append(_identity_error(synthesizer, alone.coeffs.identity.numpy(), truth.identity))
    shared.append(_identity_error(synthesizer, identity, truth.identity))
    # Fitted to one identity, each view's points land as close as its own fit's do.
    assert (joint.losses["landmark_error_px"]
            <= alone.losses["landmark_error_px"] + 0.1 * NOISE_PX).all()
  # Three views of one face pin its identity better than one view does, if not by much
  # (2.70 against 2.82 mm: 68 points leave much of a face's shape unseen from any side).
  assert np.mean(shared) < np.mean(own), (np.mean(shared), np.mean(own))


def test_a_zero_weight_face_is_fitted_on_its_own(synthesizer, fitter):
  images, landmarks, _ = _person(synthesizer, 0, yaws=(-30.0, 30.0))
  other_images, other_landmarks, _ = _person(synthesizer, 7, yaws=(10.0,))
  two = fitter.fit(images, landmarks, render=False, share_identity=[1.0, 1.0])
  three = fitter.fit(np.concatenate([images, other_images]),
                     np.concatenate([landmarks, other_landmarks]), render=False,
                     share_identity=[1.0, 1.0, 0.0])
  np.testing.assert_allclose(three.coeffs.identity.numpy()[:2], two.coeffs.identity.numpy(),
                             atol=1e-4)
  alone = fitter.fit(other_images, other_landmarks, render=False)
  np.testing.assert_allclose(three.coeffs.identity.numpy()[2], alone.coeffs.identity.numpy()[0],
                             atol=1e-4)


def test_a_fixed_identity_stays_and_the_rest_fits_to_it(synthesizer, fitter):
  images, landmarks, truth = _person(synthesizer, 1)
  fixed = truth.identity.numpy()[0]
  result = fitter.fit(images, landmarks, render=False, fixed_identity=fixed)
  np.testing.assert_array_equal(result.coeffs.identity.numpy(),
                                np.tile(fixed[None], [len(YAWS), 1]))
  # The true identity leaves only the noise: the points land within about its size.
  assert result.losses["landmark_error_px"].max() < 2.0 * NOISE_PX


def test_bad_identity_options_are_refused(synthesizer, fitter):
  images, landmarks, truth = _person(synthesizer, 2, yaws=(0.0, 20.0))
  with pytest.raises(ValueError, match="exclude each other"):
    fitter.fit(images, landmarks, share_identity=[1, 1], fixed_identity=truth.identity[0])
  for weights in ([1.0], [0.0, 0.0], [1.0, -1.0], [np.nan, 1.0]):
    with pytest.raises(ValueError, match="share_identity"):
      fitter.fit(images, landmarks, share_identity=weights)
  with pytest.raises(ValueError, match="fixed_identity"):
    fitter.fit(images, landmarks, fixed_identity=np.zeros((3, 3)))
