"""Tests for shared.mesh.sampling, shared.mesh.topology and tools/make_sampling.py.

Small meshes only (icospheres, a grid); a few seconds in all.
"""

import heapq
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import trimesh

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from shared.mesh import sampling as ms  # noqa: E402
from shared.mesh import topology  # noqa: E402
from shared.errors import InputError  # noqa: E402

FACTORS = (4, 4, 4)
SPHERE_SUBDIVISIONS = 3
GRID_SIZE = 12
PERTURBATION = 0.01
SEED = 0


def icosphere(subdivisions=SPHERE_SUBDIVISIONS):
  mesh = trimesh.creation.icosphere(subdivisions=subdivisions)
  return np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)


def bumpy_sphere(subdivisions):
  """An icosphere with random radial noise: no exact cost ties."""
  vertices, faces = icosphere(subdivisions)
  radius = 1.0 + PERTURBATION * np.random.default_rng(SEED).standard_normal(len(vertices))
  return vertices * radius[:, None], faces


def grid_mesh(n=GRID_SIZE):
  """An open, gently curved n x n grid of triangles."""
  xs, ys = np.meshgrid(np.arange(n, dtype=np.float64), np.arange(n, dtype=np.float64),
                       indexing="ij")
  zs = 0.3 * np.sin(0.5 * xs) * np.cos(0.4 * ys)
  vertices = np.stack([xs.ravel(), ys.ravel(), zs.ravel()], axis=1)
  idx = np.arange(n * n).reshape(n, n)
  a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
  faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3),
                          np.stack([a, c, d], -1).reshape(-1, 3)])
  return vertices, faces


@pytest.fixture(scope="module")
def sphere_hierarchy():
  vertices, faces = icosphere()
  return ms.generate_hierarchy(vertices, faces, FACTORS)


@pytest.fixture(scope="module")
def grid_hierarchy():
  vertices, faces = grid_mesh()
  return ms.generate_hierarchy(vertices, faces, (4,))


# ----------------------------------------------------------------------------
# Hierarchy structure.


def test_level_sizes_and_shapes(sphere_hierarchy):
  h = sphere_hierarchy
  expected = [len(icosphere()[0])]
  for factor in FACTORS:
    expected.append(math.ceil(expected[-1] / factor))
  assert h.num_vertices == expected
  for level, n in enumerate(expected):
    assert h.vertices[level].shape == (n, 3)
    assert h.A[level].shape == (n, n) and h.L[level].shape == (n, n)
    assert h.rings[level].shape[0] == n
    assert h.faces[level].dtype == np.int32 and h.faces[level].max() < n
  for step in range(len(FACTORS)):
    assert h.D[step].shape == (expected[step + 1], expected[step])
    assert h.U[step].shape == (expected[step], expected[step + 1])
    for m in (h.D[step], h.U[step]):
      assert sp.isspmatrix_csr(m) and m.dtype == np.float32


def test_downsampling_picks_existing_vertices(sphere_hierarchy):
  h = sphere_hierarchy
  for step in range(len(FACTORS)):
    dense = h.D[step].toarray()
    assert np.all((dense == 0) | (dense == 1))
    assert np.all(dense.sum(axis=1) == 1)
    picked = dense.argmax(axis=1)
    assert np.all(np.diff(picked) > 0)  # Sorted, no repeats.
    np.testing.assert_array_equal(picked, h.kept[step])
    fine = h.vertices[step].astype(np.float64)
    np.testing.assert_array_equal(h.D[step] @ fine, fine[picked])
    np.testing.assert_array_equal(h.vertices[step + 1], h.vertices[step][picked])


@pytest.mark.parametrize("which", ["sphere", "grid"])
def test_upsampling_exact_at_kept_and_close_elsewhere(which, sphere_hierarchy, grid_hierarchy):
  h = sphere_hierarchy if which == "sphere" else grid_hierarchy
  for step in range(len(h.factors)):
    fine = h.vertices[step].astype(np.float64)
    rebuilt = h.U[step] @ (h.D[step] @ fine)
    kept = h.kept[step]
    np.testing.assert_array_equal(rebuilt[kept], fine[kept])
    edges = trimesh.Trimesh(fine, h.faces[step], process=False).edges_unique_length
    error = np.linalg.norm(rebuilt - fine, axis=1)
    assert error.mean() < 0.5 * edges.mean(), (step, error.mean(), edges.mean())
    assert error.max() < 4.0 * edges.max(), (step, error.max(), edges.max())


def test_upsampling_weights_by_part():
  # One coarse triangle; fine points over its interior, edges and corners.
  coarse = np.array([[0.0, 0.0, 1.0], [2.0, 0.0, 1.0], [0.0, 2.0, 1.0]])
  faces = np.array([[0, 1, 2]])
  fine = np.array([[0.5, 0.5, 1.3],    # Above the interior.
                   [1.0, -0.5, 1.0],   # Beside edge ab.
                   [-1.0, -1.0, 1.0],  # Beyond corner a.
                   [2.0, 0.0, 1.0]])   # Exactly corner b.
  u = ms.upsampling_matrix(fine, coarse, faces).toarray().astype(np.float64)
  np.testing.assert_allclose(u[0], [0.5, 0.25, 0.25], atol=1e-6)
  # Edge: least squares of a, b against the fine vertex itself.
  expected_edge = np.linalg.lstsq(coarse[[0, 1]].T, fine[1], rcond=None)[0]
  np.testing.assert_allclose(u[1, :2], expected_edge, atol=1e-6)
  assert u[1, 2] == 0
  np.testing.assert_array_equal(u[2], [1, 0, 0])
  np.testing.assert_array_equal(u[3], [0, 1, 0])


def test_closest_points_match_brute_force():
  vertices, faces = bumpy_sphere(2)
  rng = np.random.default_rng(SEED)
  points = rng.standard_normal((300, 3)) * 0.7
  face, part, closest, weights = ms.closest_points_on_mesh(points, vertices, faces)
  corners = vertices[faces]
  n, f = len(points), len(faces)
  tri = np.repeat(corners[None], n, axis=0).reshape(-1, 3, 3)
  brute, _, _ = ms.closest_points_on_triangles(
      np.repeat(points, f, axis=0), tri[:, 0], tri[:, 1], tri[:, 2])
  brute_distance = np.linalg.norm(brute - np.repeat(points, f, axis=0), axis=1).reshape(n, f)
  np.testing.assert_allclose(np.linalg.norm(closest - points, axis=1), brute_distance.min(axis=1),
                             rtol=1e-9, atol=1e-12)
  np.testing.assert_allclose(np.einsum("nk,nkc->nc", weights, corners[face]), closest, atol=1e-9)
  assert set(np.unique(part)) <= set(range(7))


# ----------------------------------------------------------------------------
# Adjacency and Laplacian.


def test_adjacency_closed_mesh_all_interior(sphere_hierarchy):
  a = sphere_hierarchy.A[0]
  assert (a - a.T).nnz == 0
  np.testing.assert_array_equal(np.unique(a.data), [2.0])


def test_adjacency_open_mesh_boundary_weight_one():
  vertices, faces = grid_mesh()
  a = ms.vertex_adjacency(faces, len(vertices))
  assert (a - a.T).nnz == 0
  np.testing.assert_array_equal(np.unique(a.data), [1.0, 2.0])
  mesh = trimesh.Trimesh(vertices, faces, process=False)
  boundary = mesh.edges_sorted[trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1)]
  assert len(boundary) == 4 * (GRID_SIZE - 1)
  np.testing.assert_array_equal(np.asarray(a[boundary[:, 0], boundary[:, 1]]).ravel(), 1.0)
  assert np.count_nonzero(a.data == 1.0) == 2 * len(boundary)


def test_laplacian_symmetric_with_spectrum_in_0_2(sphere_hierarchy, grid_hierarchy):
  for lap in (sphere_hierarchy.L[1], grid_hierarchy.L[0]):
    dense = lap.toarray().astype(np.float64)
    np.testing.assert_allclose(dense, dense.T, atol=1e-7)
    eig = np.linalg.eigvalsh(dense)
    assert eig.min() > -1e-5 and eig.max() < 2.0 + 1e-5
    assert abs(eig.min()) < 1e-5  # Connected graph: one zero eigenvalue.
    rescaled = ms.rescale_laplacian(lap).toarray()
    np.testing.assert_allclose(rescaled, dense - np.eye(len(dense)), atol=1e-7)


# ----------------------------------------------------------------------------
# Quadrics and the collapse.


def test_quadric_costs_hand_computed():
  vertices = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.3, 0.2, 1.0]])
  faces = np.array([[0, 1, 2], [0, 1, 3], [1, 2, 3], [0, 2, 3]])
  q = np.zeros((4, 4, 4))
  for face in faces:
    a, b, c = vertices[face]
    normal = np.cross(b - a, c - a)
    normal /= np.linalg.norm(normal)
    plane = np.append(normal, -normal @ a)
    for v in face:
      q[v] += np.outer(plane, plane)
  np.testing.assert_allclose(ms.vertex_quadrics(vertices, faces), q, atol=1e-12)
  planes = ms.face_planes(vertices, faces)
  np.testing.assert_allclose(np.linalg.norm(planes[:, :3], axis=1), 1.0)
  rows, cols = np.array([0, 1, 2]), np.array([3, 3, 1])
  cost, keep_r, keep_c = ms.edge_collapse_costs(q, vertices, rows, cols)
  for k, (r, c) in enumerate(zip(rows, cols)):
    q_sum = q[r] + q[c]
    pr, pc = np.append(vertices[r], 1.0), np.append(vertices[c], 1.0)
    assert keep_r[k] == pytest.approx(pr @ q_sum @ pr, abs=1e-12)
    assert keep_c[k] == pytest.approx(pc @ q_sum @ pc, abs=1e-12)
    assert cost[k] == min(keep_r[k], keep_c[k])
  # By hand for edge (0, 3): every plane through both vertices contributes 0;
  # keeping 3 pays for plane z = 0 (distance 1), keeping 0 for the plane of
  # face (1, 2, 3), normal (1, 1, 0.5) / 1.5, at distance 2/3 from the origin.
  assert keep_c[0] == pytest.approx(1.0, abs=1e-12)
  assert keep_r[0] == pytest.approx(4.0 / 9.0, abs=1e-12)
  assert cost[0] == keep_r[0]


def naive_coma_decimate(vertices, faces, target):
  """The algorithm as described (full heap rewrite, recount every step)."""
  q = ms.vertex_quadrics(vertices, faces)
  homogeneous = np.concatenate([vertices, np.ones((len(vertices), 1))], axis=1)

  def costs(r, c):
    q_sum = q[r] + q[c]
    keep_r = homogeneous[r] @ q_sum @ homogeneous[r]
    keep_c = homogeneous[c] @ q_sum @ homogeneous[c]
    return min(keep_r, keep_c), keep_r, keep_c, q_sum

  heap = [(costs(r, c)[0], (r, c)) for r, c in ms.unique_edges(faces).tolist()]
  heapq.heapify(heap)
  faces = faces.copy()
  count = len(vertices)
  while count > target:
    stored, (r, c) = heapq.heappop(heap)
    if r == c:
      continue
    cost, keep_r, keep_c, q_sum = costs(r, c)
    if cost > stored:
      heapq.heappush(heap, (cost, (r, c)))
      continue
    keep, gone = (r, c) if keep_r < keep_c else (c, r)
    faces[faces == gone] = keep
    heap = [(s, tuple(keep if x == gone else x for x in e)) for s, e in heap]
    q[r] = q_sum
    q[c] = q_sum
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) &
                  (faces[:, 2] != faces[:, 0])]
    count = len(np.unique(faces))
  return np.unique(faces), faces


@pytest.mark.parametrize("which", ["sphere", "grid"])
def test_decimate_matches_naive_coma_loop(which):
  vertices, faces = bumpy_sphere(2) if which == "sphere" else grid_mesh(8)
  if which == "grid":
    vertices = vertices + PERTURBATION * np.random.default_rng(SEED).standard_normal(
        vertices.shape)
  target = math.ceil(len(vertices) / 4)
  removed = []
  kept, new_faces = ms.decimate(vertices, faces, target, progress=removed.append)
  want_kept, want_faces = naive_coma_decimate(vertices, faces, target)
  np.testing.assert_array_equal(kept, want_kept)
  np.testing.assert_array_equal(kept[new_faces], want_faces)
  assert sum(removed) == len(vertices) - len(kept)


def test_bad_meshes_raise_input_error():
  vertices, faces = icosphere(1)
  with pytest.raises(InputError, match="outside"):
    ms.generate_hierarchy(vertices, faces + len(vertices), (4,))
  with pytest.raises(InputError, match="NaN"):
    ms.generate_hierarchy(vertices * np.nan, faces, (4,))
  with pytest.raises(InputError, match="factor"):
    ms.generate_hierarchy(vertices, faces, (0.5,))


# ----------------------------------------------------------------------------
# Rings and symmetry.


def test_rings_give_trimesh_normals(sphere_hierarchy):
  h = sphere_hierarchy
  for level in (0, 1):
    vertices, faces, rings = h.vertices[level], h.faces[level], h.rings[level]
    assert rings.dtype == np.int32
    real = rings[rings < len(faces)]
    np.testing.assert_array_equal(np.bincount(real, minlength=len(faces)), 3)
    for v in range(0, len(vertices), 7):
      want = np.nonzero((faces == v).any(axis=1))[0]
      np.testing.assert_array_equal(np.sort(rings[v][rings[v] < len(faces)]), want)
    normals = ms.ring_vertex_normals(vertices, faces, rings)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    # Same direction as trimesh's (angle-weighted) normals ...
    cosine = np.einsum("ij,ij->i", normals, mesh.vertex_normals)
    assert cosine.min() > (0.999 if level == 0 else 0.95)
    # ... and equal to area-weighted normals over trimesh's own vertex-face table.
    weighted = np.concatenate([mesh.face_normals * mesh.area_faces[:, None], np.zeros((1, 3))])
    summed = weighted[mesh.vertex_faces].sum(axis=1)  # Padding -1 picks the zero row.
    np.testing.assert_allclose(normals, summed / np.linalg.norm(summed, axis=1, keepdims=True),
                               atol=1e-6)


def test_symmetry_pairs_exact_on_symmetric_mesh():
  rng = np.random.default_rng(SEED)
  half = rng.uniform([-2.0, -1.0, -1.0], [-0.1, 1.0, 1.0], size=(200, 3))
  centre_x = 5.0
  half[:, 0] += centre_x
  mirror = half.copy()
  mirror[:, 0] = 2.0 * centre_x - mirror[:, 0]
  middle = np.array([[centre_x, 0.0, 0.3]])
  vertices = np.concatenate([half, middle, mirror])
  order = rng.permutation(len(vertices))
  vertices = vertices[order]
  pairs, distances = ms.symmetry_pairs(vertices, return_distances=True)
  assert pairs.shape == (200, 2) and pairs.dtype == np.int32
  left, right = vertices[pairs[:, 0]], vertices[pairs[:, 1]]
  assert np.all(left[:, 0] < centre_x) and np.all(right[:, 0] > centre_x)
  np.testing.assert_allclose(right[:, 0], 2.0 * centre_x - left[:, 0], atol=1e-12)
  np.testing.assert_array_equal(right[:, 1:], left[:, 1:])
  assert distances.max() < 1e-12


# ----------------------------------------------------------------------------
# The topology file.


def test_topology_round_trip(tmp_path, sphere_hierarchy):
  path = tmp_path / "topo.npz"
  topology.save_topology(path, sphere_hierarchy, "abc123", FACTORS)
  topo = topology.load_topology(path, expected_source_hash="abc123", expected_factors=FACTORS)
  assert topo.factors == FACTORS and topo.source_hash == "abc123"
  assert topo.num_vertices == sphere_hierarchy.num_vertices
  for name in ("A", "L", "D", "U"):
    for got, want in zip(getattr(topo, name), getattr(sphere_hierarchy, name)):
      assert sp.isspmatrix_csr(got) and got.dtype == np.float32
      assert (got != want).nnz == 0
  for name in ("vertices", "faces", "rings", "symmetry"):
    for got, want in zip(getattr(topo, name), getattr(sphere_hierarchy, name)):
      np.testing.assert_array_equal(got, want)
  assert topo.rescaled_laplacians()[0].shape == topo.L[0].shape


@pytest.fixture
def saved_topology(tmp_path, grid_hierarchy):
  path = tmp_path / "topo.npz"
  topology.save_topology(path, grid_hierarchy, "abc123", (4,))
  return path


def _rewrite(path, **changes):
  with np.load(path) as data:
    arrays = {k: data[k] for k in data.files}
  for key, value in changes.items():
    if value is None:
      del arrays[key]
    else:
      arrays[key] = value
  np.savez(path, **arrays)


def test_truncated_topology_raises_input_error(saved_topology):
  data = saved_topology.read_bytes()
  saved_topology.write_bytes(data[:len(data) // 2])
  with pytest.raises(InputError, match="topo.npz: corrupt"):
    topology.load_topology(saved_topology)


def test_garbage_and_missing_topology_raise_input_error(tmp_path):
  path = tmp_path / "topo.npz"
  with pytest.raises(InputError, match="topo.npz: topology file not found"):
    topology.load_topology(path)
  path.write_bytes(b"not a zip file at all")
  with pytest.raises(InputError, match="topo.npz: corrupt"):
    topology.load_topology(path)


def test_wrong_version_raises_input_error(saved_topology):
  _rewrite(saved_topology, format_version=np.asarray(topology.FORMAT_VERSION + 1))
  with pytest.raises(InputError, match="topo.npz: topology format version 2"):
    topology.load_topology(saved_topology)


def test_missing_key_raises_input_error(saved_topology):
  _rewrite(saved_topology, U_0_indptr=None)
  with pytest.raises(InputError, match="topo.npz: missing key 'U_0_indptr'"):
    topology.load_topology(saved_topology)


def test_stale_source_hash_and_factors_raise_input_error(saved_topology):
  with pytest.raises(InputError, match="topo.npz: built for face model abc123 but the "
                     "current model is def456; rebuild with tools/make_sampling.py"):
    topology.load_topology(saved_topology, expected_source_hash="def456")
  with pytest.raises(InputError, match=r"topo.npz: built with factors \[4\]"):
    topology.load_topology(saved_topology, expected_factors=(2,))


def test_inconsistent_topology_raises_input_error(saved_topology):
  _rewrite(saved_topology, num_vertices=np.asarray([10, 3]))
  with pytest.raises(InputError, match="topo.npz: inconsistent level 0"):
    topology.load_topology(saved_topology)


def fake_face_model(source_hash="feedface"):
  vertices, faces = icosphere(2)
  return types.SimpleNamespace(mean_shape=vertices.astype(np.float32),
                               faces=faces.astype(np.int32), source_hash=source_hash,
                               name="icosphere", mm_per_unit=100.0)


def test_get_or_build_topology_caches(tmp_path, monkeypatch):
  monkeypatch.setenv("FACE3D_CACHE_DIR", str(tmp_path))
  model = fake_face_model()
  built = topology.get_or_build_topology(model, (4, 4), progress=False)
  expected = tmp_path / "topology" / f"feedface_4-4_{topology.builder_key()}.npz"
  assert built.path == expected and expected.is_file()

  def no_build(*args, **kwargs):
    raise AssertionError("rebuilt although cached")

  monkeypatch.setattr(topology, "build_topology", no_build)
  cached = topology.get_or_build_topology(model, (4, 4), progress=False)
  assert cached.num_vertices == built.num_vertices
  for got, want in zip(cached.U, built.U):
    assert (got != want).nnz == 0


def test_cache_name_follows_the_builder_source(tmp_path):
  """A change to the hierarchy code names another cache file (found in session 31: the cache
  was keyed by face model and factors only, so it would have outlived an algorithm change)."""
  source = tmp_path / "sampling.py"
  source.write_text("x = 1\n")
  first = topology.builder_key((str(source),))
  source.write_text("x = 2\n")
  topology.builder_key.cache_clear()
  assert topology.builder_key((str(source),)) != first
  assert len(first) == topology.BUILDER_KEY_LENGTH
  topology.builder_key.cache_clear()
  files = [m.__file__ for m in topology.BUILDER_MODULES]
  assert any(f.endswith("sampling.py") for f in files)
  assert topology.builder_key() in topology.default_cache_path("feedface", (4,)).name


def test_digest_is_the_same_built_and_loaded(tmp_path):
  built = topology.get_or_build_topology(fake_face_model(), (4,), cache_path=tmp_path / "t.npz",
                                         progress=False)
  loaded = topology.load_topology(tmp_path / "t.npz", "feedface", (4,))
  assert built.digest() == loaded.digest() and len(built.digest()) == topology.DIGEST_LENGTH
  loaded.L[0].data[0] += 1e-3   # Any change to what the GCN reads changes it.
  assert loaded.digest() != built.digest()


def test_get_or_build_topology_rebuilds_corrupt_cache(tmp_path, capsys):
  path = tmp_path / "cache.npz"
  path.write_bytes(b"garbage")
  topo = topology.get_or_build_topology(fake_face_model(), (4,), cache_path=path,
                                        progress=False)
  assert topo.num_vertices == [162, 41]
  assert "rebuilding" in capsys.readouterr().err
  assert topology.load_topology(path, "feedface", (4,)).num_vertices == [162, 41]


# ----------------------------------------------------------------------------
# The command line.


@pytest.fixture
def make_sampling(monkeypatch):
  fake = types.ModuleType("shared.model.face_model")

  def load_face_model(path=None):
    if path is not None and not Path(path).exists():
      raise InputError(f"{path}: face model not found")
    return fake_face_model()

  fake.load_face_model = load_face_model
  monkeypatch.setitem(sys.modules, "shared.model.face_model", fake)
  sys.path.insert(0, str(REPO / "tools"))
  try:
    import make_sampling as module
  finally:
    sys.path.remove(str(REPO / "tools"))
  return module


def test_make_sampling_writes_file(tmp_path, make_sampling, capsys):
  output = tmp_path / "sampling.npz"
  assert make_sampling.main(["--factors", "4", "4", "--output", str(output), "--quiet"]) == 0
  out = capsys.readouterr().out
  assert "162 -> 41 -> 11" in out
  assert topology.load_topology(output, "feedface", (4, 4)).num_vertices == [162, 41, 11]


def test_make_sampling_reports_input_errors(tmp_path, make_sampling, capsys):
  code = make_sampling.main(["--face-model", str(tmp_path / "missing.npz"), "--output",
                             str(tmp_path / "x.npz"), "--quiet"])
  assert code == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and "missing.npz" in err and len(err.splitlines()) == 1
  assert make_sampling.main(["--factors", "0", "--quiet"]) == 2
