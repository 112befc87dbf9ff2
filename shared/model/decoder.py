"""TensorFlow decoding of a `FaceModel`: coefficients -> shape and albedo."""

import tensorflow as tf

from shared.mesh import normals_tf as geometry


class FaceDecoder(tf.Module):
  """Holds a face model's arrays as constants and decodes coefficients.

  Bases are stored pre-multiplied by their std and flattened to [K, 3V] so
  that decoding is one matmul per part.
  """

  def __init__(self, face_model, name="face_decoder"):
    super().__init__(name=name)
    m = face_model
    v = m.num_vertices

    def flat(basis, std):
      return tf.constant((basis * std[:, None, None]).reshape(basis.shape[0], 3 * v))

    self.num_vertices = v
    self.mean_shape = tf.constant(m.mean_shape)
    self.mean_albedo = tf.constant(m.mean_albedo)
    self.id_basis = flat(m.id_basis, m.id_std)
    self.exp_basis = flat(m.exp_basis, m.exp_std)
    self.albedo_basis = flat(m.albedo_basis, m.albedo_std)
    self.faces = tf.constant(m.faces, tf.int32)
    self.rings = tf.constant(geometry.vertex_face_rings(m.faces, v))
    self.landmarks68 = tf.constant(m.landmarks68, tf.int32)
    self.skin_mask = tf.constant(m.skin_mask)

  def shape(self, identity, expression):
    """[B, Ki], [B, Ke] std units -> [B, V, 3] model-space vertices."""
    offsets = identity @ self.id_basis + expression @ self.exp_basis
    return self.mean_shape + tf.reshape(offsets, [-1, self.num_vertices, 3])

  def albedo(self, albedo):
    """[B, Ka] std units -> [B, V, 3] albedo, clipped to [0, 1]."""
    colours = self.mean_albedo + tf.reshape(albedo @ self.albedo_basis,
                                            [-1, self.num_vertices, 3])
    return tf.clip_by_value(colours, 0.0, 1.0)

  def normals(self, vertices):
    """[B, V, 3] -> [B, V, 3] unit vertex normals."""
    return geometry.vertex_normals(vertices, self.faces, self.rings)

  def landmarks(self, vertices):
    """[B, V, 3] -> [B, 68, 3] landmark vertices."""
    return tf.gather(vertices, self.landmarks68, axis=1)
