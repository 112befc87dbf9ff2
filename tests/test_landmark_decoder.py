"""`shared.fit.landmark_decoder.LandmarkDecoder`: the landmark rows of the face model only."""

import numpy as np
import tensorflow as tf

from shared.fit.dense import dense_model
from shared.fit.landmark_decoder import LandmarkDecoder
from shared.model.decoder import FaceDecoder


def _coefficients(face_model, batch, seed):
  rng = np.random.default_rng(seed)
  return (rng.normal(0, 1, (batch, face_model.id_basis.shape[0])).astype(np.float32),
          rng.normal(0, 1, (batch, face_model.exp_basis.shape[0])).astype(np.float32))


def test_matches_numpy_reference(ict_model):
  """mean + sum_k c_k std_k basis_k at the 68 landmark vertices, in float64 numpy."""
  identity, expression = _coefficients(ict_model, 3, seed=0)
  got = LandmarkDecoder(ict_model)(tf.constant(identity), tf.constant(expression)).numpy()
  idx = np.asarray(ict_model.landmarks68)
  m = ict_model
  want = (m.mean_shape[idx][None]
          + np.einsum("bk,knd->bnd", identity.astype(np.float64) * m.id_std, m.id_basis[:, idx])
          + np.einsum("bk,knd->bnd", expression.astype(np.float64) * m.exp_std,
                      m.exp_basis[:, idx]))
  assert got.shape == (3, len(idx), 3)
  np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())


def test_agrees_with_full_decoder_on_dense_points(ict_model):
  """The 468 dense-fit vertices: the same points as decoding the whole mesh, then indexing."""
  rng = np.random.default_rng(1)
  vertices = rng.choice(ict_model.num_vertices, 468, replace=False)
  model = dense_model(ict_model, vertices)
  identity, expression = _coefficients(ict_model, 2, seed=2)
  decoder = LandmarkDecoder(model)
  got = decoder(tf.constant(identity), tf.constant(expression)).numpy()
  full = FaceDecoder(ict_model).shape(tf.constant(identity), tf.constant(expression)).numpy()
  assert decoder.count == 468
  np.testing.assert_allclose(got, full[:, vertices], atol=1e-5)
  np.testing.assert_allclose(decoder.mean_numpy, ict_model.mean_shape[vertices], atol=1e-6)
