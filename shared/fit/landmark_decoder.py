"""Decoding only the landmark vertices of a face model (the cheap fit stage)."""

import numpy as np
import tensorflow as tf


class LandmarkDecoder:
  """Coefficients -> the landmark vertices only ([B, N, 3]), for the cheap stage.

  The same linear model as `shared.model.decoder.FaceDecoder.shape` restricted to
  the model's `landmarks68` vertices (N = 68, or 468 for `shared.fit.dense`):
  bases [K, N * 3] instead of [K, V * 3].
  """

  def __init__(self, face_model):
    idx = np.asarray(face_model.landmarks68)
    m = face_model
    self.count = len(idx)

    def rows(basis, std):
      return tf.constant((basis[:, idx] * std[:, None, None]).reshape(len(std), -1), tf.float32)

    self.mean = tf.constant(m.mean_shape[idx], tf.float32)
    self.id_basis = rows(m.id_basis, m.id_std)
    self.exp_basis = rows(m.exp_basis, m.exp_std)
    self.mean_numpy = np.asarray(m.mean_shape[idx], np.float64)

  def __call__(self, identity, expression):
    offsets = identity @ self.id_basis + expression @ self.exp_basis
    return self.mean + tf.reshape(offsets, [-1, self.count, 3])
