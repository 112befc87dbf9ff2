"""The refined change carried under occluders: a harmonic fill over the mesh.

Where hair or a hand hides part of a face in a photo, the refiner does not
read the image there (`TexturePipeline.coarse(..., seen=...)`) and returns
about the coarse albedo.  The refined albedo around it carries the image's
tone, which the coarse albedo misses by a few per cent, so the hidden part
would show as a patch of another colour.  Test mode therefore replaces the
refined change d = refined - coarse on the hidden vertices by the harmonic
interpolation of d from the vertices around them: the d that solves

    (L d)_v = 0 for each hidden vertex v,  d_u fixed elsewhere,

L = Deg - A the graph Laplacian of the mesh.  The hidden part takes the tone
of its surroundings and adds no detail of its own.
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


def _reaches_known(edges, known):
  """[V] bool: vertices whose connected part of the mesh holds a known vertex."""
  _, labels = csgraph.connected_components(edges, directed=False)
  return np.isin(labels, np.unique(labels[known]))
