"""Values carried over a mesh's unknown vertices: a harmonic fill.

A change measured on some vertices (what a photo shows against a model) is
carried onto the vertices where it was not measured, smoothly and with no
detail of its own: the d that solves

    (L d)_v = 0 for each unknown vertex v,  d_u fixed on the known ones,

L = Deg - A the graph Laplacian of the mesh.  Two users:

- GCN test mode on photos (`gcn_face.infer.TestStep`): where hair or a hand
  hides part of the face, the refiner does not read the image there and
  returns about the coarse albedo, while the refined albedo around it carries
  the image's tone; the refined change (refined - coarse) on the hidden
  vertices is filled from around them, so no patch of another colour shows.
- The photo pipeline's UV texture (`shared.photo.reconstruct`): on the
  vertices the photo does not show, or shows at a grazing angle, the change
  (photo - fitted colour) is filled from the vertices it shows well.
"""

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spl
from scipy.sparse import csgraph


def harmonic_fill(values, known, adjacency):
  """Values on the unknown vertices interpolated harmonically from the known ones.

  Args:
    values: [V, C] float; the rows of unknown vertices are ignored.
    known: [V] bool, the vertices whose values are kept.
    adjacency: [V, V] scipy sparse, nonzero where two vertices share an edge
      (weights are ignored).

  Returns:
    [V, C] float64: `values` on the known vertices; on each unknown one, the
    mean of its neighbours (a discrete harmonic function).  An unknown part
    with no path to a known vertex gets 0.
  """
  values = np.asarray(values, np.float64)
  known = np.asarray(known, bool)
  out = np.where(known[:, None], values, 0.0)
  unknown = ~known
  if not unknown.any() or not known.any():
    return out
  edges = sp.csr_matrix(adjacency, dtype=np.float64, copy=True)
  edges.data[:] = 1.0
  edges.setdiag(0.0)
  edges.eliminate_zeros()
  laplacian = (sp.diags(np.asarray(edges.sum(axis=1)).ravel()) - edges).tocsr()
  rows = laplacian[unknown]
  inner = rows[:, unknown].tocsc()
  # Unknown vertices cut off from every known one make `inner` singular there: pin them at 0.
  reached = _reaches_known(edges, known)
  isolated = ~reached[unknown]
  if isolated.any():
    inner = (inner + sp.diags(isolated.astype(np.float64))).tocsc()
  rhs = -(rows[:, known] @ values[known])
  solved = spl.spsolve(inner, rhs)
  out[unknown] = np.asarray(solved).reshape(-1, values.shape[1])
  return out


def fill_change(base, values, known, adjacency):
  """`values` on the known vertices; elsewhere `base` plus the change (values - base)
  filled harmonically from them (`harmonic_fill`).

  Args:
    base, values: [V, C] float (e.g. coarse and refined albedo, or fitted and photo colours).
    known: [V] bool, where `values` are kept.
    adjacency: [V, V] scipy sparse mesh edges.

  Returns:
    [V, C] float64; `base` on a part with no known vertex.
  """
  base = np.asarray(base, np.float64)
  return base + harmonic_fill(np.asarray(values, np.float64) - base, known, adjacency)


def _reaches_known(edges, known):
  """[V] bool: vertices whose connected part of the mesh holds a known vertex."""
  _, labels = csgraph.connected_components(edges, directed=False)
  return np.isin(labels, np.unique(labels[known]))
