"""The MGC objective: finite terms, the multi-view terms' flags, the identity loss."""

import numpy as np
import pytest
import tensorflow as tf

from mgc_face import model as model_lib
from mgc_face import objective as objective_lib
from mgc_helpers import TEST_CONFIG, first_batch
from shared.train.embedding import FaceEmbedder
from shared.errors import InputError


def test_objective_is_finite_and_multiview_terms_follow_the_flags(mgc_dataset, ict_model):
  from shared.render.face_image import FaceSynthesizer
  batch = first_batch(mgc_dataset, 2)
  regressor = model_lib.build_regressor(ict_model, TEST_CONFIG)
  objective = objective_lib.Objective(FaceSynthesizer(ict_model), TEST_CONFIG)
  coeffs, _ = regressor(objective_lib.flatten_views(batch.images))
  total, terms, visuals = objective(coeffs, batch)
  assert np.isfinite(total.numpy())
  for name in ("landmark", "photometric", "reg_shape", "reg_albedo", "mv_pixel", "mv_depth",
               "mv_epipolar"):
    assert np.isfinite(terms[name].numpy()), name
  assert terms["landmark"].numpy() > 10.0      # The mean face is far from the landmarks.
  assert terms["mv_pixel"].numpy() > 0.0
  # Identical predicted poses give F = 0: the epipolar term is exactly 0 there ...
  assert terms["mv_epipolar"].numpy() == 0.0
  # ... and positive once the views' poses differ.
  rotation = np.zeros((6, 3), np.float32)
  rotation[:, 1] = [0.0, -0.5, 0.5, 0.1, -0.4, 0.6]
  _, posed_terms, _ = objective(coeffs._replace(rotation=tf.constant(rotation)), batch)
  assert posed_terms["mv_epipolar"].numpy() > 0.1
  assert visuals["overlay"].shape == (2, 224, 224, 3)
  mono = batch._replace(flags=tf.zeros_like(batch.flags))
  _, mono_terms, _ = objective(coeffs, mono)
  assert mono_terms["mv_pixel"].numpy() == 0.0 and mono_terms["mv_epipolar"].numpy() == 0.0
  _, single, _ = objective(coeffs, batch, multiview=False)
  assert "mv_pixel" not in single
  np.testing.assert_allclose(single["landmark"].numpy(), terms["landmark"].numpy(), rtol=1e-5)


def test_identity_loss_uses_a_face_embedding_savedmodel(mgc_dataset, ict_model, tmp_path):
  from shared.render.face_image import FaceSynthesizer

  class Embedder(tf.Module):
    def __init__(self):
      super().__init__()
      self.w = tf.Variable(np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)])
    def embed(self, images):
      return {"embedding": tf.reduce_mean(images, axis=[1, 2]) @ self.w}

  module = Embedder()
  tf.saved_model.save(module, str(tmp_path / "embedder"),
                      signatures={"serving_default": module.embed})
  embedder = FaceEmbedder(tmp_path / "embedder")
  assert embedder(tf.zeros([2, 224, 224, 3])).shape == (2, 8)
  batch = first_batch(mgc_dataset)
  objective = objective_lib.Objective(FaceSynthesizer(ict_model), TEST_CONFIG, embedder)
  coeffs = model_lib.CoeffLayout.for_model(ict_model).zeros(3)
  total, terms, _ = objective(coeffs, batch, multiview=False)
  assert 0.0 < terms["identity"].numpy() <= 2.0
  with pytest.raises(InputError, match="embedding model not found"):
    FaceEmbedder(tmp_path / "missing")
