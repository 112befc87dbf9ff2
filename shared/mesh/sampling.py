"""CoMA mesh sampling (Ranjan et al. 2018) with numpy and scipy only.

Reimplements CoMA's `generate_transform_matrices` without psbody-mesh or
opendr.  For each factor the current mesh is decimated by quadric edge
collapse in which vertices never move (the kept set is a subset of the
previous level), and four sparse operators are built:

* `A` [V_l, V_l]: vertex adjacency; each face adds 1 to each of its three
  edges (both directions), so interior edges weigh 2 and boundary edges 1.
* `L` [V_l, V_l]: normalised graph Laplacian `I - D^-1/2 A D^-1/2`.
* `D` [V_{l+1}, V_l]: down-sampling, a row per kept vertex (one-hot).
* `U` [V_l, V_{l+1}]: up-sampling, each fine vertex expressed on the closest
  part of the coarse mesh.

The collapse follows CoMA exactly (see `decimate`), but uses a heap with lazy
invalidation (a union-find of merged vertices resolves each popped entry)
instead of rewriting every heap entry after each collapse, so the BFM front
mesh (35,709 vertices) takes seconds rather than hours.  Level 0 is the
input mesh; level l has about `V_0 / prod(factors[:l])` vertices.

Also per level: a vertex-to-face ring table (for vertex normals) and
left/right symmetry vertex pairs.
"""

import dataclasses
import heapq
import math

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from shared.errors import InputError
from shared.mesh.normals_np import ring_vertex_normals, vertex_face_rings  # noqa: F401  (re-exported)

# np.spacing(float32(0)): CoMA's `graph.laplacian` adds this to the degrees so
# isolated vertices do not divide by zero.
LAPLACIAN_DEGREE_EPS = float(np.spacing(np.float32(0)))
# Largest eigenvalue assumed by the Chebyshev rescale: the normalised
# Laplacian's spectrum lies in [0, 2], so 2 L / lmax - I = L - I.
CHEBYSHEV_LMAX = 2.0
# How many collapses between two calls of the progress callback.
PROGRESS_EVERY = 1000
# Triangle buckets for the closest-point search: circumradii within one bucket
# differ by at most this factor.
RADIUS_BUCKET_RATIO = 2.0
# Relative enlargement of the closest-point search radius, so that rounding
# never drops the true closest triangle.
SEARCH_SLACK = 1e-9
# Points within this fraction of the bounding-box diagonal from the mirror
# plane count as on the plane and are not paired.
SYMMETRY_PLANE_TOLERANCE = 1e-6
# CoMA's closest-part codes (psbody-mesh `nearest(..., nearest_part=True)`).
PART_INTERIOR = 0
PART_EDGE_AB, PART_EDGE_BC, PART_EDGE_CA = 1, 2, 3
PART_VERTEX_A, PART_VERTEX_B, PART_VERTEX_C = 4, 5, 6
# Upper-triangle entries of a symmetric 4x4 quadric, packed as 10 numbers.
QUADRIC_ROWS, QUADRIC_COLS = np.triu_indices(4)
DTYPE = np.float32


@dataclasses.dataclass
class Hierarchy:
  """A CoMA mesh hierarchy; level 0 is the input mesh, `len(factors)+1` levels.

  Attributes:
    vertices: per level, [V_l, 3] float32 (input units; V_{l+1} = D_l V_l).
    faces: per level, [F_l, 3] int32.
    A: per level, [V_l, V_l] csr float32 adjacency (weights 1 or 2).
    L: per level, [V_l, V_l] csr float32 normalised Laplacian.
    D: per step, [V_{l+1}, V_l] csr float32 down-sampling (one-hot rows).
    U: per step, [V_l, V_{l+1}] csr float32 up-sampling.
    kept: per step, [V_{l+1}] int64 sorted indices into level l's vertices
      (None for a hierarchy loaded from a file, `shared.mesh.topology.Topology`).
    rings: per level, [V_l, R_l] int32 vertex-to-face table, padded with F_l.
    symmetry: per level, [P_l, 2] int32 (left vertex x < centre, right partner).
    factors: the decimation factors, one per step.
  """
  vertices: list
  faces: list
  A: list
  L: list
  D: list
  U: list
  kept: list
  rings: list
  symmetry: list
  factors: tuple

  @property
  def num_vertices(self):
    """Vertex count per level, a list of ints."""
    return [int(v.shape[0]) for v in self.vertices]


# ----------------------------------------------------------------------------
# Adjacency and Laplacian.


def vertex_adjacency(faces, num_vertices):
  """Weighted vertex adjacency as CoMA's `get_vert_connectivity`.

  Args:
    faces: [F, 3] int triangles.
    num_vertices: V.

  Returns:
    [V, V] csr float32, symmetric; each face adds 1 to (i,j), (j,k), (k,i)
    and their transposes, so interior edges get 2 and boundary edges 1.
  """
  faces = np.asarray(faces, np.int64)
  rows = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
  cols = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
  ones = np.ones(rows.shape[0], DTYPE)
  adjacency = sp.coo_matrix((ones, (rows, cols)), shape=(num_vertices, num_vertices))
  adjacency = (adjacency + adjacency.T).tocsr()
  adjacency.sum_duplicates()
  return adjacency.astype(DTYPE)


def normalized_laplacian(adjacency):
  """`L = I - D^-1/2 A D^-1/2`, d = column sums of A plus a tiny epsilon.

  Args:
    adjacency: [V, V] sparse, symmetric, non-negative.

  Returns:
    [V, V] csr float32 with eigenvalues in [0, 2].
  """
  adjacency = sp.csr_matrix(adjacency, dtype=np.float64)
  degree = np.asarray(adjacency.sum(axis=0)).ravel() + LAPLACIAN_DEGREE_EPS
  inv_sqrt = sp.diags(1.0 / np.sqrt(degree))
  identity = sp.identity(adjacency.shape[0], dtype=np.float64, format="csr")
  laplacian = identity - inv_sqrt @ adjacency @ inv_sqrt
  return sp.csr_matrix(laplacian, dtype=DTYPE)


def rescale_laplacian(laplacian, lmax=CHEBYSHEV_LMAX):
  """Chebyshev rescale `2 L / lmax - I`, i.e. `L - I` for lmax = 2.

  CoMA's `rescale_L(L, lmax=2)`: the normalised Laplacian's eigenvalues are in
  [0, 2], so with lmax = 2 the result's spectrum is in [-1, 1].

  Args:
    laplacian: [V, V] sparse normalised Laplacian.
    lmax: assumed largest eigenvalue (2).

  Returns:
    [V, V] csr float32.
  """
  laplacian = sp.csr_matrix(laplacian, dtype=np.float64)
  identity = sp.identity(laplacian.shape[0], dtype=np.float64, format="csr")
  return sp.csr_matrix(laplacian * (2.0 / lmax) - identity, dtype=DTYPE)


# ----------------------------------------------------------------------------
# Quadrics and the collapse.


def face_planes(vertices, faces):
  """Unit plane equations of the faces, from the SVD as in CoMA.

  Args:
    vertices: [V, 3] float.
    faces: [F, 3] int.

  Returns:
    [F, 4] float64 `p` with `p . [x, 1] = 0` on the face and |p[:3]| = 1
    (the last right-singular vector of [[v_a, 1], [v_b, 1], [v_c, 1]]).
  """
  corners = np.asarray(vertices, np.float64)[np.asarray(faces, np.int64)]
  homogeneous = np.concatenate([corners, np.ones(corners.shape[:2] + (1,))], axis=2)
  _, _, vh = np.linalg.svd(homogeneous, full_matrices=True)
  planes = vh[:, -1, :]
  return planes / np.linalg.norm(planes[:, :3], axis=1, keepdims=True)


def vertex_quadrics(vertices, faces):
  """Per-vertex quadrics: the sum of `p p^T` over the vertex's faces.

  No area weighting (as CoMA).

  Args:
    vertices: [V, 3] float.
    faces: [F, 3] int.

  Returns:
    [V, 4, 4] float64.
  """
  faces = np.asarray(faces, np.int64)
  num_vertices = len(vertices)
  planes = face_planes(vertices, faces)
  outer = np.einsum("fi,fj->fij", planes, planes).reshape(len(faces), 16)
  incidence = sp.csr_matrix(
      (np.ones(faces.size), (faces.ravel(), np.repeat(np.arange(len(faces)), 3))),
      shape=(num_vertices, len(faces)))
  return np.asarray(incidence @ outer).reshape(num_vertices, 4, 4)


def pack_quadrics(quadrics):
  """[..., 4, 4] symmetric quadrics -> [..., 10] upper-triangle entries."""
  return quadrics[..., QUADRIC_ROWS, QUADRIC_COLS]


def quadric_form(q, x, y, z):
  """`[x, y, z, 1] Q [x, y, z, 1]^T` for a packed quadric `q` (10 entries).

  Works identically on Python floats and numpy arrays (only elementwise
  + and *), so the heap's initial costs and the loop's recomputed costs are
  bit-for-bit the same numbers.

  Args:
    q: sequence of 10 packed entries (floats or arrays of one shape S).
    x, y, z: the point (floats or arrays of shape S).

  Returns:
    A float or an array of shape S.
  """
  return (x * (q[0] * x + 2.0 * (q[1] * y + q[2] * z + q[3])) +
          y * (q[4] * y + 2.0 * (q[5] * z + q[6])) +
          z * (q[7] * z + 2.0 * q[8]) + q[9])


def edge_collapse_costs(quadrics, vertices, rows, cols):
  """CoMA's collapse costs for edges (r, c), vectorised.

  Qs = Q_r + Q_c; keep_r = [v_r, 1] Qs [v_r, 1]^T (cost of keeping r and
  destroying c), keep_c likewise; cost = min(keep_r, keep_c).

  Args:
    quadrics: [V, 4, 4] float64.
    vertices: [V, 3] float.
    rows, cols: [E] int vertex indices.

  Returns:
    (cost, keep_r, keep_c), each [E] float64.
  """
  packed = pack_quadrics(quadrics)
  q_sum = (packed[rows] + packed[cols]).T
  v = np.asarray(vertices, np.float64)
  keep_r = quadric_form(q_sum, v[rows, 0], v[rows, 1], v[rows, 2])
  keep_c = quadric_form(q_sum, v[cols, 0], v[cols, 1], v[cols, 2])
  return np.minimum(keep_r, keep_c), keep_r, keep_c


def unique_edges(faces):
  """[E, 2] int64 unique undirected edges (r < c), sorted by (c, r) as CoMA."""
  faces = np.asarray(faces, np.int64)
  edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
  edges = np.sort(edges, axis=1)
  edges = np.unique(edges, axis=0)
  return edges[np.lexsort((edges[:, 0], edges[:, 1]))]


def decimate(vertices, faces, target, progress=None):
  """CoMA's QSlim-style decimation; vertices never move.

  The algorithm (CoMA `qslim_decimator_transformer`):
  1. Q = `vertex_quadrics`; one heap entry (cost, (r, c)) per unique edge.
  2. While more than `target` vertices are referenced by faces: pop the
     cheapest entry; skip it if r == c; recompute its cost with the current
     quadrics at the ORIGINAL positions; if the cost grew, push it back with
     the new cost; else keep r if keep_r < keep_c (else c), replace the
     destroyed index by the kept one in the faces and in every heap entry,
     set Q_r = Q_c = Q_r + Q_c and drop degenerate faces.

  Instead of rewriting every heap entry, each destroyed vertex points to its
  survivor in a union-find and a popped entry is resolved through it, which
  gives the same (r, c) as CoMA's in-place rewrite.  Faces are updated through
  per-vertex face sets, so a collapse costs O(degree) plus heap operations.
  Deviations, none of which changes a result except through exact ties:
  * ties in cost are broken by the indices at push time (CoMA's rewritten
    entries compare by the rewritten indices);
  * `p^T Q p` is evaluated from the 10 distinct entries of Q (`quadric_form`)
    rather than by 4x4 products, so it differs from CoMA by rounding only;
  * the loop counts vertices referenced by faces from the start (CoMA starts
    from len(V)); the same whenever every vertex is in a face.

  Args:
    vertices: [V, 3] float.
    faces: [F, 3] int.
    target: number of vertices to keep.
    progress: optional callable(int) called with the number of vertices removed
      since its previous call.

  Returns:
    kept: [K] int64 sorted indices of the surviving vertices (K <= target).
    new_faces: [F', 3] int32 triangles indexing `kept` (order of the input
      faces, degenerate ones dropped).

  Raises:
    InputError: if the mesh cannot be reduced to `target` vertices.
  """
  vertices = np.asarray(vertices, np.float64)
  faces = np.asarray(faces, np.int64)
  num_vertices = len(vertices)
  quadrics = vertex_quadrics(vertices, faces)
  edges = unique_edges(faces)
  costs, _, _ = edge_collapse_costs(quadrics, vertices, edges[:, 0], edges[:, 1])
  heap = list(zip(costs.tolist(), edges[:, 0].tolist(), edges[:, 1].tolist()))
  heapq.heapify(heap)

  packed = pack_quadrics(quadrics).tolist()
  points = vertices.tolist()
  parent = list(range(num_vertices))
  tri = faces.tolist()
  face_sets = [set() for _ in range(num_vertices)]
  for f, (a, b, c) in enumerate(tri):
    face_sets[a].add(f)
    face_sets[b].add(f)
    face_sets[c].add(f)
  alive = np.ones(len(tri), bool)
  count = sum(1 for s in face_sets if s)
  removed_since_report = 0

  def find(i):
    root = i
    while parent[root] != root:
      root = parent[root]
    while parent[i] != root:
      parent[i], i = root, parent[i]
    return root

  heappop, heappush = heapq.heappop, heapq.heappush
  while count > target:
    if not heap:
      raise InputError(f"mesh with {num_vertices} vertices cannot be decimated to "
                       f"{target} vertices (ran out of edges at {count})")
    stored, r, c = heappop(heap)
    r, c = find(r), find(c)
    if r == c:
      continue
    qr, qc = packed[r], packed[c]
    q_sum = [qr[k] + qc[k] for k in range(10)]
    pr, pc = points[r], points[c]
    keep_r = quadric_form(q_sum, pr[0], pr[1], pr[2])
    keep_c = quadric_form(q_sum, pc[0], pc[1], pc[2])
    cost = min(keep_r, keep_c)
    if cost > stored:
      heappush(heap, (cost, r, c))
      continue
    keep, gone = (r, c) if keep_r < keep_c else (c, r)
    parent[gone] = keep
    packed[r] = q_sum
    packed[c] = q_sum

    before = count
    keep_faces, gone_faces = face_sets[keep], face_sets[gone]
    count -= bool(keep_faces) + bool(gone_faces)
    touched = set()
    for f in gone_faces:
      corners = tri[f]
      if f in keep_faces:  # The face held both: it degenerates.
        alive[f] = False
        keep_faces.discard(f)
        for v in corners:
          if v != keep and v != gone:
            face_sets[v].discard(f)
            touched.add(v)
      else:
        corners[corners.index(gone)] = keep
        keep_faces.add(f)
    face_sets[gone] = set()
    count += bool(keep_faces)
    for v in touched:  # A third vertex whose only faces degenerated drops out.
      if not face_sets[v]:
        count -= 1
    removed_since_report += before - count
    if progress is not None and removed_since_report >= PROGRESS_EVERY:
      progress(removed_since_report)
      removed_since_report = 0
  if progress is not None and removed_since_report:
    progress(removed_since_report)

  new_faces = np.asarray(tri, np.int64).reshape(-1, 3)[alive]
  kept = np.unique(new_faces)
  remap = np.full(num_vertices, -1, np.int64)
  remap[kept] = np.arange(len(kept))
  return kept, remap[new_faces].astype(np.int32)


def downsampling_matrix(kept, num_vertices):
  """D with D[i, kept[i]] = 1.

  Args:
    kept: [K] int sorted indices of the kept vertices.
    num_vertices: V, the fine vertex count.

  Returns:
    [K, V] csr float32.
  """
  kept = np.asarray(kept, np.int64)
  return sp.csr_matrix((np.ones(len(kept), DTYPE), (np.arange(len(kept)), kept)),
                       shape=(len(kept), num_vertices))


# ----------------------------------------------------------------------------
# Closest points on a mesh and the up-sampling matrix.


def closest_points_on_triangles(points, a, b, c):
  """Closest point on each triangle (Ericson, Real-Time Collision Detection 5.1.5).

  Args:
    points: [N, 3] float64 query points.
    a, b, c: [N, 3] float64 triangle corners, one triangle per point.

  Returns:
    closest: [N, 3] float64 closest points.
    part: [N] int CoMA part code: 0 interior, 1-3 edges ab/bc/ca, 4-6 corners.
    weights: [N, 3] float64 barycentric weights of `closest` on (a, b, c).
  """
  ab, ac = b - a, c - a
  ap, bp, cp = points - a, points - b, points - c
  d1 = np.einsum("ij,ij->i", ab, ap)
  d2 = np.einsum("ij,ij->i", ac, ap)
  d3 = np.einsum("ij,ij->i", ab, bp)
  d4 = np.einsum("ij,ij->i", ac, bp)
  d5 = np.einsum("ij,ij->i", ab, cp)
  d6 = np.einsum("ij,ij->i", ac, cp)
  vc = d1 * d4 - d3 * d2
  vb = d5 * d2 - d1 * d6
  va = d3 * d6 - d5 * d4
  with np.errstate(divide="ignore", invalid="ignore"):
    t_ab = d1 / (d1 - d3)
    t_ca = d2 / (d2 - d6)
    t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
    denom = va + vb + vc
    v_in, w_in = vb / denom, vc / denom
  # Ericson's tests in his order; the first that holds decides.
  conditions = [
      (d1 <= 0) & (d2 <= 0),
      (d3 >= 0) & (d4 <= d3),
      (vc <= 0) & (d1 >= 0) & (d3 <= 0),
      (d6 >= 0) & (d5 <= d6),
      (vb <= 0) & (d2 >= 0) & (d6 <= 0),
      (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0),
  ]
  zero, one = np.zeros_like(d1), np.ones_like(d1)
  weight_b = np.select(conditions, [zero, one, t_ab, zero, zero, 1.0 - t_bc], v_in)
  weight_c = np.select(conditions, [zero, zero, zero, one, t_ca, t_bc], w_in)
  part = np.select(conditions, [PART_VERTEX_A, PART_VERTEX_B, PART_EDGE_AB, PART_VERTEX_C,
                                PART_EDGE_CA, PART_EDGE_BC], PART_INTERIOR)
  weight_b = np.nan_to_num(weight_b)
  weight_c = np.nan_to_num(weight_c)
  weights = np.stack([1.0 - weight_b - weight_c, weight_b, weight_c], axis=1)
  closest = a + ab * weight_b[:, None] + ac * weight_c[:, None]
  return closest, part, weights


def _radius_buckets(radii):
  """Splits triangle indices into groups whose radii differ by <= the ratio."""
  order = np.argsort(radii)
  sorted_radii = radii[order]
  buckets, start = [], 0
  while start < len(order):
    limit = max(sorted_radii[start], np.finfo(np.float64).tiny) * RADIUS_BUCKET_RATIO
    stop = int(np.searchsorted(sorted_radii, limit, side="right"))
    stop = max(stop, start + 1)
    buckets.append(order[start:stop])
    start = stop
  return buckets


def closest_points_on_mesh(points, vertices, faces):
  """Exact closest point on a triangle mesh for each query point.

  An upper bound on each point's distance is the distance to the nearest mesh
  vertex (cKDTree).  A triangle with centroid m and radius R (max corner
  distance from m) can only hold a closer point if |p - m| <= bound + R, so
  the triangles are bucketed by R and each bucket's centroids are searched with
  a ball query; the candidates are then tested exactly, all vectorised.

  Args:
    points: [N, 3] float query points.
    vertices: [V, 3] float mesh vertices.
    faces: [F, 3] int mesh triangles.

  Returns:
    face: [N] int64 index of the closest triangle.
    part: [N] int CoMA part code (see `closest_points_on_triangles`).
    closest: [N, 3] float64 closest points.
    weights: [N, 3] float64 barycentric weights of `closest` on `faces[face]`.
  """
  points = np.asarray(points, np.float64)
  vertices = np.asarray(vertices, np.float64)
  faces = np.asarray(faces, np.int64)
  bound, _ = cKDTree(vertices).query(points)
  corners = vertices[faces]
  centroids = corners.mean(axis=1)
  radii = np.linalg.norm(corners - centroids[:, None], axis=2).max(axis=1)
  scale = float(np.ptp(vertices, axis=0).max())
  point_ids, face_ids = [], []
  for bucket in _radius_buckets(radii):
    tree = cKDTree(centroids[bucket])
    reach = (bound + radii[bucket].max()) * (1.0 + SEARCH_SLACK) + SEARCH_SLACK * scale
    hits = tree.query_ball_point(points, reach, return_sorted=False)
    lengths = np.fromiter(map(len, hits), np.int64, len(hits))
    flat = np.fromiter((i for h in hits for i in h), np.int64, int(lengths.sum()))
    point_ids.append(np.repeat(np.arange(len(points)), lengths))
    face_ids.append(bucket[flat])
  point_ids = np.concatenate(point_ids)
  face_ids = np.concatenate(face_ids)
  tri = corners[face_ids]
  closest, part, weights = closest_points_on_triangles(
      points[point_ids], tri[:, 0], tri[:, 1], tri[:, 2])
  distance = np.einsum("ij,ij->i", closest - points[point_ids], closest - points[point_ids])
  order = np.lexsort((face_ids, distance, point_ids))
  first = order[np.searchsorted(point_ids[order], np.arange(len(points)))]
  return face_ids[first], part[first], closest[first], weights[first]


def _pinv_solve(matrices, targets):
  """Least-squares solutions like `np.linalg.lstsq`, batched.

  Args:
    matrices: [N, 3, 2] float64.
    targets: [N, 3] float64.

  Returns:
    [N, 2] float64.
  """
  rcond = np.finfo(np.float64).eps * max(matrices.shape[1:])
  return np.einsum("nij,nj->ni", np.linalg.pinv(matrices, rcond=rcond), targets)


def upsampling_matrix(fine_vertices, coarse_vertices, coarse_faces, kept=None):
  """CoMA's `setup_deformation_transfer`: each fine vertex on the coarse mesh.

  For each fine vertex the closest point on the coarse mesh is found:
  * interior of a triangle: the barycentric weights of that point;
  * on an edge: least squares of the two edge endpoints against the fine
    vertex itself (as CoMA does);
  * a corner: weight 1 on it.
  Kept vertices (`kept[i]` is coarse vertex i) map 1:1 exactly.

  Args:
    fine_vertices: [N, 3] float.
    coarse_vertices: [K, 3] float.
    coarse_faces: [F, 3] int.
    kept: optional [K] int, the fine index of each coarse vertex.

  Returns:
    [N, K] csr float32.
  """
  fine = np.asarray(fine_vertices, np.float64)
  coarse = np.asarray(coarse_vertices, np.float64)
  coarse_faces = np.asarray(coarse_faces, np.int64)
  face, part, _, weights = closest_points_on_mesh(fine, coarse, coarse_faces)
  corner_ids = coarse_faces[face]
  coeffs = np.where(part[:, None] == PART_INTERIOR, weights, 0.0)

  on_edge = (part >= PART_EDGE_AB) & (part <= PART_EDGE_CA)
  first = part[on_edge] - PART_EDGE_AB
  second = (first + 1) % 3
  rows = np.nonzero(on_edge)[0]
  ends = np.stack([coarse[corner_ids[rows, first]], coarse[corner_ids[rows, second]]], axis=2)
  edge_coeffs = _pinv_solve(ends, fine[rows])
  coeffs[rows, first] = edge_coeffs[:, 0]
  coeffs[rows, second] = edge_coeffs[:, 1]

  on_corner = part >= PART_VERTEX_A
  rows = np.nonzero(on_corner)[0]
  coeffs[rows, part[rows] - PART_VERTEX_A] = 1.0

  if kept is not None:
    kept = np.asarray(kept, np.int64)
    coeffs[kept] = 0.0
    coeffs[kept, 0] = 1.0
    corner_ids[kept, 0] = np.arange(len(kept))
  num_fine = len(fine)
  matrix = sp.csr_matrix(
      (coeffs.ravel(), (np.repeat(np.arange(num_fine), 3), corner_ids.ravel())),
      shape=(num_fine, len(coarse)))
  matrix.sum_duplicates()
  matrix.eliminate_zeros()
  return matrix.astype(DTYPE)


# ----------------------------------------------------------------------------
# Rings and symmetry.


def symmetry_pairs(vertices, return_distances=False):
  """Left/right vertex pairs under the mirror x -> 2 c - x.

  c is the centre of the x range (bounding box).  Every vertex left of the
  plane (x < c, beyond a tiny tolerance) is paired with the vertex nearest to
  its mirror image (cKDTree).

  Args:
    vertices: [V, 3] float.
    return_distances: also return the mirror-match distances.

  Returns:
    pairs: [P, 2] int32, (left vertex, right partner).
    distances: [P] float64 |mirror(left) - right|, if `return_distances`.
  """
  vertices = np.asarray(vertices, np.float64)
  low, high = vertices.min(axis=0), vertices.max(axis=0)
  centre = 0.5 * (low[0] + high[0])
  tolerance = SYMMETRY_PLANE_TOLERANCE * np.linalg.norm(high - low)
  left = np.nonzero(vertices[:, 0] < centre - tolerance)[0]
  mirrored = vertices[left].copy()
  mirrored[:, 0] = 2.0 * centre - mirrored[:, 0]
  distances, right = cKDTree(vertices).query(mirrored)
  pairs = np.stack([left, right], axis=1).astype(np.int32)
  return (pairs, distances) if return_distances else pairs


# ----------------------------------------------------------------------------
# The hierarchy.


def decimation_target(num_vertices, factor):
  """ceil(V / factor), CoMA's target vertex count."""
  return int(math.ceil(num_vertices / factor))


def generate_hierarchy(vertices, faces, factors, progress=None):
  """CoMA's `generate_transform_matrices` plus rings and symmetry pairs.

  Args:
    vertices: [V, 3] float, the template mesh (any unit).
    faces: [F, 3] int triangles (0-based).
    factors: sequence of decimation factors, e.g. (4, 4, 4, 4).
    progress: optional callable(int), called with the number of vertices
      removed since its previous call (see `total_collapses` for the total).

  Returns:
    A `Hierarchy` with len(factors) + 1 levels.
  """
  vertices = np.asarray(vertices, np.float64)
  faces = np.asarray(faces, np.int64)
  _check_mesh(vertices, faces)
  if not len(factors) or min(factors) < 1:
    raise InputError(f"decimation factors must be >= 1, got {list(factors)}")
  level_vertices, level_faces, downs, ups, kept_list = [vertices], [faces], [], [], []
  for factor in factors:
    fine_v, fine_f = level_vertices[-1], level_faces[-1]
    target = decimation_target(len(fine_v), factor)
    kept, coarse_f = decimate(fine_v, fine_f, target, progress=progress)
    coarse_v = fine_v[kept]
    kept_list.append(kept)
    downs.append(downsampling_matrix(kept, len(fine_v)))
    ups.append(upsampling_matrix(fine_v, coarse_v, coarse_f, kept))
    level_vertices.append(coarse_v)
    level_faces.append(coarse_f.astype(np.int64))
  adjacency = [vertex_adjacency(f, len(v)) for v, f in zip(level_vertices, level_faces)]
  return Hierarchy(
      vertices=[v.astype(DTYPE) for v in level_vertices],
      faces=[f.astype(np.int32) for f in level_faces],
      A=adjacency,
      L=[normalized_laplacian(a) for a in adjacency],
      D=downs,
      U=ups,
      kept=kept_list,
      rings=[vertex_face_rings(f, len(v)) for v, f in zip(level_vertices, level_faces)],
      symmetry=[symmetry_pairs(v) for v in level_vertices],
      factors=tuple(factors))


def total_collapses(num_vertices, factors):
  """Vertices removed over all levels (the progress total), an int."""
  total = 0
  for factor in factors:
    target = decimation_target(num_vertices, factor)
    total += num_vertices - target
    num_vertices = target
  return total


def _check_mesh(vertices, faces):
  """Raises `InputError` for meshes the decimation cannot take."""
  if vertices.ndim != 2 or vertices.shape[1] != 3 or not len(vertices):
    raise InputError(f"mesh vertices must be [V, 3], got {vertices.shape}")
  if faces.ndim != 2 or faces.shape[1] != 3 or not len(faces):
    raise InputError(f"mesh faces must be [F, 3], got {faces.shape}")
  if faces.min() < 0 or faces.max() >= len(vertices):
    raise InputError(f"mesh faces index vertices outside [0, {len(vertices)})")
  if not np.all(np.isfinite(vertices)):
    raise InputError("mesh vertices contain NaN or infinity")
