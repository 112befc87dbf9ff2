"""Numpy mesh helpers shared by the TF geometry, the sampling code and loaders.

No TensorFlow here, so mesh sampling and file loaders stay light.
"""

import numpy as np


def vertex_face_rings(faces, num_vertices):
  """Vertex-to-face table for vertex normals.

  Args:
    faces: [F, 3] int triangles.
    num_vertices: V.

  Returns:
    [V, R] int32, R the largest ring size; row v lists the faces holding v
    in increasing order, padded with F ("no face").
  """
  faces = np.asarray(faces, np.int64)
  num_faces = len(faces)
  vertex = faces.ravel()
  face = np.repeat(np.arange(num_faces), 3)
  order = np.argsort(vertex, kind="stable")
  vertex, face = vertex[order], face[order]
  counts = np.bincount(vertex, minlength=num_vertices)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  slot = np.arange(len(vertex)) - starts[vertex]
  rings = np.full((num_vertices, max(int(counts.max(initial=0)), 1)), num_faces, np.int32)
  rings[vertex, slot] = face
  return rings


def ring_vertex_normals(vertices, faces, rings):
  """Unit vertex normals from a ring table (area-weighted face normals).

  Args:
    vertices: [V, 3] float.
    faces: [F, 3] int.
    rings: [V, R] int from `vertex_face_rings`.

  Returns:
    [V, 3] float64 unit normals (zero for vertices without faces).
  """
  corners = np.asarray(vertices, np.float64)[np.asarray(faces, np.int64)]
  normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
  normals = np.concatenate([normals, np.zeros((1, 3))])  # Row F: "no face".
  summed = normals[rings].sum(axis=1)
  length = np.linalg.norm(summed, axis=1, keepdims=True)
  return np.divide(summed, length, out=np.zeros_like(summed), where=length > 0)
