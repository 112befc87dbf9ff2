"""The MGC regressor network before training: the mean face, shapes, input checks."""

import numpy as np
import pytest

from mgc_face import infer
from mgc_helpers import TEST_CONFIG
from shared.errors import InputError


def test_untrained_regressor_predicts_the_mean_face(ict_model):
  regressor = infer.build_regressor(ict_model, TEST_CONFIG)
  images = np.random.default_rng(0).uniform(size=(2, 224, 224, 3)).astype(np.float32)
  coeffs, features = regressor(images)
  assert features.shape == (2, regressor.feature_size)
  assert regressor.layout.size == 100 + 80 + 53 + 6 + 27
  for part in coeffs:
    np.testing.assert_array_equal(part.numpy(), 0.0)
  again = infer.regress(regressor, images[0])
  assert again.identity.shape == (1, 100)
  with pytest.raises(InputError, match="images must be"):
    infer.regress(regressor, np.zeros((1, 100, 100, 3), np.float32))
