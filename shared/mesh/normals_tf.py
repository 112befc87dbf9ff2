"""Mesh geometry: vertex-to-face rings and vertex normals."""

import tensorflow as tf

from shared.mesh.normals_np import vertex_face_rings  # noqa: F401  (re-exported)


def face_normals(vertices, faces):
  """Unnormalised face normals (area-weighted), [B, F, 3]."""
  tri = tf.gather(vertices, faces, axis=1)
  return tf.linalg.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0])


def vertex_normals(vertices, faces, rings):
  """Unit vertex normals: area-weighted mean of the ring's face normals.

  Args:
    vertices: [B, V, 3].
    faces: [F, 3] int32.
    rings: [V, R] int32 from `vertex_face_rings` (F = padding).

  Returns:
    [B, V, 3] unit normals.
  """
  normals = face_normals(vertices, faces)
  normals = tf.pad(normals, [[0, 0], [0, 1], [0, 0]])  # Row F is the zero "no face".
  summed = tf.reduce_sum(tf.gather(normals, rings, axis=1), axis=2)
  return tf.math.l2_normalize(summed, axis=-1, epsilon=1e-12)
