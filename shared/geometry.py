"""Mesh geometry: vertex-to-face rings and vertex normals."""

import numpy as np
import tensorflow as tf


def vertex_face_rings(faces, num_vertices):
  """Per-vertex list of adjacent faces, padded with F ("no face").

  Args:
    faces: [F, 3] int triangles.
    num_vertices: V.

  Returns:
    [V, R] int32 with R the largest ring size; entries equal to F are padding.
  """
  faces = np.asarray(faces, np.int64)
  num_faces = faces.shape[0]
  vertex = faces.ravel()
  face = np.repeat(np.arange(num_faces), 3)
  order = np.argsort(vertex, kind="stable")
  vertex, face = vertex[order], face[order]
  counts = np.bincount(vertex, minlength=num_vertices)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  slot = np.arange(len(vertex)) - starts[vertex]
  rings = np.full((num_vertices, max(int(counts.max()), 1)), num_faces, np.int32)
  rings[vertex, slot] = face
  return rings


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
