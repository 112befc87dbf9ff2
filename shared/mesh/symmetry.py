"""Left-right mirror symmetry of a face mesh.

A face model's mean mesh is (nearly) symmetric about the plane x = c through
the vertices' mean x.  `mirror_permutation` pairs every vertex with its twin
across that plane, so a point set on the mesh can be mirrored with the image
(x -> width - x) by a permutation, as the 68 landmarks are.
"""

import numpy as np
from scipy.spatial import cKDTree

TOLERANCE = 1e-3    # Largest twin distance accepted, as a fraction of the mesh's width.


def mirror_permutation(vertices, tolerance=TOLERANCE):
  """Each vertex's mirror twin: [V, 3] -> [V] int (an involution).

  Args:
    vertices: [V, 3] model-space positions, x across the face.
    tolerance: largest distance between a reflected vertex and its twin, as a
      fraction of the mesh's x extent.

  Raises:
    ValueError: the mesh is not symmetric within `tolerance`, or the pairing is
      not its own inverse.
  """
  vertices = np.asarray(vertices, np.float64)
  reflected = vertices.copy()
  reflected[:, 0] = 2.0 * vertices[:, 0].mean() - vertices[:, 0]
  distance, twin = cKDTree(vertices).query(reflected)
  width = np.ptp(vertices[:, 0])
  if distance.max() > tolerance * width or np.any(twin[twin] != np.arange(len(vertices))):
    raise ValueError(f"mesh is not mirror-symmetric: a vertex's twin is "
                     f"{distance.max() / width:.2g} of the width away")
  return twin.astype(np.int32)


def symmetric_subset(vertices, indices, twin):
  """The vertices of `indices` on one half and their twins: a mirror-closed set.

  Args:
    vertices: [V, 3] positions.  indices: [K] int vertex ids.  twin: [V] from
      `mirror_permutation`.

  Returns:
    (subset [M] sorted int32 vertex ids, flip [M] int32: position in `subset` of
    each entry's twin).
  """
  vertices = np.asarray(vertices)
  indices = np.unique(np.asarray(indices))
  left = indices[vertices[indices, 0] <= vertices[:, 0].mean()]
  subset = np.unique(np.concatenate([left, twin[left]])).astype(np.int32)
  flip = np.searchsorted(subset, twin[subset]).astype(np.int32)
  return subset, flip
