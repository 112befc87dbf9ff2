"""The confidence blend of the refined albedo against a numpy reference."""

import numpy as np
import pytest
import tensorflow as tf

from gcn_face import confidence

FULL = 1.5


def inputs(seed=0, batch=2, vertices=50):
  rng = np.random.default_rng(seed)
  coarse = rng.uniform(0, 1, (batch, vertices, 3)).astype(np.float32)
  refined = rng.uniform(0, 1, (batch, vertices, 3)).astype(np.float32)
  irradiance = rng.uniform(-0.2, 2.5, (batch, vertices, 3)).astype(np.float32)
  irradiance[:, 0] = -0.1   # In shadow (second-order SH can go below 0).
  return coarse, refined, irradiance


def test_blend_matches_numpy():
  coarse, refined, irradiance = inputs()
  weight = np.clip(irradiance.mean(-1, keepdims=True) / FULL, 0, 1)
  expected = coarse + weight * (refined - coarse)
  got = confidence.confidence_blend(tf.constant(coarse), tf.constant(refined),
                                    tf.constant(irradiance), FULL).numpy()
  np.testing.assert_allclose(got, expected, atol=1e-6)
  # Weight 1 where the light reaches FULL, 0 where it is dark (negative SH irradiance too).
  bright = irradiance.mean(-1) >= FULL
  dark = irradiance.mean(-1) <= 0
  assert bright.any() and dark.any()
  np.testing.assert_allclose(got[bright], refined[bright], atol=1e-6)
  np.testing.assert_allclose(got[dark], coarse[dark], atol=1e-6)


@pytest.mark.parametrize("off", [0.0, -1.0])
def test_off_returns_the_refined_albedo(off):
  coarse, refined, irradiance = inputs(1)
  got = confidence.confidence_blend(coarse, refined, irradiance, off)
  np.testing.assert_array_equal(np.asarray(got), refined)


def test_confidence_shape_and_range():
  _, _, irradiance = inputs(2, batch=3, vertices=7)
  weight = confidence.confidence(tf.constant(irradiance), FULL).numpy()
  assert weight.shape == (3, 7, 1) and weight.min() >= 0 and weight.max() <= 1
