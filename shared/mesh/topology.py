"""The mesh-hierarchy `.npz` format shared by the model packages.

A topology file holds a CoMA hierarchy (`shared.mesh.sampling`) for one face
model and one list of decimation factors:

* `format_version` (int, `FORMAT_VERSION`), `kind` (`FORMAT_KIND`),
  `source_hash` (str, the face model's `source_hash`), `factors` ([S] int32),
  `num_vertices` ([S+1] int64).
* Per level l in [0, S]: `vertices_l` [V_l, 3] float32 (model units),
  `faces_l` [F_l, 3] int32, `rings_l` [V_l, R_l] int32 (padded with F_l),
  `symmetry_l` [P_l, 2] int32, and the csr matrices `A_l`, `L_l`.
* Per step l in [0, S): the csr matrices `D_l` [V_{l+1}, V_l] and
  `U_l` [V_l, V_{l+1}].
A csr matrix `M` is stored as `M_data` (float32), `M_indices`, `M_indptr`
(int32) and `M_shape` (int64 [2]).

`load_topology` refuses missing, corrupt, other-version, inconsistent or stale
files with one `InputError` line; `get_or_build_topology` is the cached entry
point used when no sampling file is given.
"""

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from shared.errors import InputError, fail
from shared.io.fileio import savez_atomic
from shared.io.paths import cache_dir
from shared.mesh import normals_np
from shared.mesh import sampling as mesh_sampling

FORMAT_KIND = "face3d-topology"
FORMAT_VERSION = 1
CACHE_SUBDIR = "topology"
REBUILD_HINT = "rebuild with tools/make_sampling.py"
# The modules that build a hierarchy: their source is part of the cache file's name, so a
# change to the algorithm builds the hierarchy again instead of reading an older one (the
# build takes about 1.5 s for the ICT model on 2 cores).
BUILDER_MODULES = (mesh_sampling, normals_np)
BUILDER_KEY_LENGTH = 8
DIGEST_LENGTH = 16
LEVEL_ARRAYS = ("vertices", "faces", "rings", "symmetry")
LEVEL_MATRICES = ("A", "L")
STEP_MATRICES = ("D", "U")
MATRIX_PARTS = ("data", "indices", "indptr", "shape")
MATRIX_DTYPE = np.float32


@dataclasses.dataclass
class Topology(mesh_sampling.Hierarchy):
  """A mesh hierarchy as stored in a topology `.npz`: a `Hierarchy` with provenance.

  S = len(factors) steps, S + 1 levels. The `Hierarchy` fields (vertices,
  faces, A, L, D, U, kept, rings, symmetry, factors; `num_vertices`) keep their
  meaning; `kept` is None when the hierarchy was loaded from a file.

  Attributes (besides `Hierarchy`'s):
    source_hash: str, the face model it was built for.
    path: the file it came from, or None.
  """
  source_hash: str = ""
  path: object = None

  @property
  def num_levels(self):
    """S + 1."""
    return len(self.num_vertices)

  def digest(self):
    """Hex digest (DIGEST_LENGTH) of the hierarchy as stored (levels and matrices at float32;
    the face model's hash included), the same built or loaded: what a GCN checkpoint records
    of the hierarchy it was trained on."""
    digest = hashlib.sha256()
    for name, array in sorted(topology_arrays(self, self.source_hash, self.factors).items()):
      array = np.ascontiguousarray(array)
      digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
      digest.update(array.tobytes())
    return digest.hexdigest()[:DIGEST_LENGTH]

  def rescaled_laplacians(self):
    """Per level, the Chebyshev-rescaled `L - I` ([V_l, V_l] csr float32)."""
    return [mesh_sampling.rescale_laplacian(lap) for lap in self.L]


def factors_key(factors):
  """'4-4-4-4' for (4, 4, 4, 4): the factors part of cache file names."""
  return "-".join(str(int(f)) for f in factors)


def normalise_factors(factors):
  """Factors as a tuple of ints >= 1, or `InputError`."""
  try:
    values = list(factors)
    out = tuple(int(f) for f in values)
    whole = all(float(f) == g for f, g in zip(values, out))
  except (TypeError, ValueError):
    raise InputError(f"factors must be integers >= 1, got {factors!r}") from None
  if not out or not whole or min(out) < 1:
    raise InputError(f"factors must be a non-empty list of integers >= 1, got {values}")
  return out


def _matrix_arrays(name, matrix):
  matrix = sp.csr_matrix(matrix, dtype=MATRIX_DTYPE)
  matrix.sort_indices()
  return {f"{name}_data": matrix.data.astype(MATRIX_DTYPE),
          f"{name}_indices": matrix.indices.astype(np.int32),
          f"{name}_indptr": matrix.indptr.astype(np.int32),
          f"{name}_shape": np.asarray(matrix.shape, np.int64)}


def topology_arrays(hierarchy, source_hash, factors):
  """The npz arrays for a `Hierarchy` (or `Topology`), a dict name -> array."""
  factors = normalise_factors(factors)
  num_levels = len(hierarchy.vertices)
  if num_levels != len(factors) + 1:
    raise ValueError(f"{num_levels} levels for {len(factors)} factors")
  arrays = {
      "format_version": np.asarray(FORMAT_VERSION, np.int64),
      "kind": np.asarray(FORMAT_KIND),
      "source_hash": np.asarray(str(source_hash)),
      "factors": np.asarray(factors, np.int32),
      "num_vertices": np.asarray([len(v) for v in hierarchy.vertices], np.int64),
  }
  for level in range(num_levels):
    arrays[f"vertices_{level}"] = np.asarray(hierarchy.vertices[level], np.float32)
    arrays[f"faces_{level}"] = np.asarray(hierarchy.faces[level], np.int32)
    arrays[f"rings_{level}"] = np.asarray(hierarchy.rings[level], np.int32)
    arrays[f"symmetry_{level}"] = np.asarray(hierarchy.symmetry[level], np.int32)
    arrays.update(_matrix_arrays(f"A_{level}", hierarchy.A[level]))
    arrays.update(_matrix_arrays(f"L_{level}", hierarchy.L[level]))
  for step in range(num_levels - 1):
    arrays.update(_matrix_arrays(f"D_{step}", hierarchy.D[step]))
    arrays.update(_matrix_arrays(f"U_{step}", hierarchy.U[step]))
  return arrays


def save_topology(path, hierarchy, source_hash, factors):
  """Writes a hierarchy to `path` (npz, atomically).

  Args:
    path: output file.
    hierarchy: a `shared.mesh.sampling.Hierarchy` (or a `Topology`).
    source_hash: the face model's `source_hash`.
    factors: the decimation factors it was built with.
  """
  savez_atomic(path, **topology_arrays(hierarchy, source_hash, factors))


class _Fields:
  """Key access to an open npz that reports a missing key with the file name."""

  def __init__(self, path, data):
    self.path, self.data, self.files = path, data, set(data.files)

  def __getitem__(self, key):
    if key not in self.files:
      fail(self.path, f"missing key {key!r}; {REBUILD_HINT}")
    return self.data[key]


def _read_matrix(fields, name):
  shape = tuple(int(s) for s in fields[f"{name}_shape"])
  return sp.csr_matrix((fields[f"{name}_data"].astype(MATRIX_DTYPE),
                        fields[f"{name}_indices"], fields[f"{name}_indptr"]), shape=shape)


def _read(path, data):
  """Parses an open npz into a `Topology` (no hash or factor checks)."""
  fields = _Fields(path, data)
  if "format_version" not in fields.files:
    fail(path, "not a topology file (no format_version); " + REBUILD_HINT)
  if str(fields["kind"]) != FORMAT_KIND:
    fail(path, f"not a topology file (kind {str(fields['kind'])!r}); {REBUILD_HINT}")
  version = int(fields["format_version"])
  if version != FORMAT_VERSION:
    fail(path, f"topology format version {version}, this code reads version "
         f"{FORMAT_VERSION}; {REBUILD_HINT}")
  factors = tuple(int(f) for f in fields["factors"])
  num_levels = len(factors) + 1
  level = {name: [fields[f"{name}_{l}"] for l in range(num_levels)] for name in LEVEL_ARRAYS}
  mats = {name: [_read_matrix(fields, f"{name}_{l}") for l in range(num_levels)]
          for name in LEVEL_MATRICES}
  mats.update({name: [_read_matrix(fields, f"{name}_{l}") for l in range(num_levels - 1)]
               for name in STEP_MATRICES})
  stored = [int(n) for n in fields["num_vertices"]]
  for l, (n, vertices) in enumerate(zip(stored, level["vertices"])):
    if n != len(vertices):
      fail(path, f"inconsistent level {l}: num_vertices says {n} but the level has "
           f"{len(vertices)} vertices; {REBUILD_HINT}")
  if len(stored) != num_levels:
    fail(path, f"has {len(stored)} vertex counts for {len(factors)} factors; {REBUILD_HINT}")
  return Topology(factors=factors, source_hash=str(fields["source_hash"]),
                  vertices=level["vertices"], faces=level["faces"], rings=level["rings"],
                  symmetry=level["symmetry"], kept=None, path=Path(path), **mats)


def _check_consistent(path, topo):
  """Raises `InputError` if the arrays do not fit together."""
  sizes = topo.num_vertices
  if len(sizes) != len(topo.factors) + 1:
    fail(path, f"has {len(sizes)} levels for {len(topo.factors)} factors; {REBUILD_HINT}")
  for l, n in enumerate(sizes):
    checks = [(topo.vertices[l].shape, (n, 3)), (topo.A[l].shape, (n, n)),
              (topo.L[l].shape, (n, n)), (topo.rings[l].shape[:1], (n,))]
    if l < len(sizes) - 1:
      checks += [(topo.D[l].shape, (sizes[l + 1], n)), (topo.U[l].shape, (n, sizes[l + 1]))]
    for got, want in checks:
      if tuple(got) != want:
        fail(path, f"inconsistent level {l}: an array of shape {tuple(got)} where {want} "
             f"was expected; {REBUILD_HINT}")
    faces = topo.faces[l]
    if faces.ndim != 2 or faces.shape[1] != 3 or (faces.size and (faces.min() < 0 or
                                                                  faces.max() >= n)):
      fail(path, f"inconsistent level {l}: faces do not index {n} vertices; {REBUILD_HINT}")


def load_topology(path, expected_source_hash=None, expected_factors=None):
  """Loads and checks a topology file.

  Args:
    path: the npz written by `save_topology`.
    expected_source_hash: if given, the current face model's `source_hash`.
    expected_factors: if given, the factors the caller wants.

  Returns:
    A `Topology`.

  Raises:
    InputError: one line naming the file and the problem (missing, corrupt,
      other version, missing keys, inconsistent, other face model or factors).
  """
  path = Path(path)
  if not path.is_file():
    fail(path, "topology file not found; create it with tools/make_sampling.py")
  try:
    with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as data:
      topo = _read(path, data)  # (Our handle: closed even when np.load fails.)
  except InputError:
    raise
  except Exception as e:  # zip, zlib, format and value errors of a corrupt file.
    fail(path, f"corrupt or unreadable topology file ({type(e).__name__}: "
         f"{str(e).splitlines()[0] if str(e) else 'no detail'}); {REBUILD_HINT}")
  _check_consistent(path, topo)
  if expected_source_hash is not None and topo.source_hash != str(expected_source_hash):
    fail(path, f"built for face model {topo.source_hash} but the current model is "
         f"{expected_source_hash}; {REBUILD_HINT}")
  if expected_factors is not None:
    want = normalise_factors(expected_factors)
    if topo.factors != want:
      fail(path, f"built with factors {list(topo.factors)} but {list(want)} were asked for; "
           f"{REBUILD_HINT}")
  return topo


@functools.lru_cache(maxsize=None)
def builder_key(paths=None):
  """Hex digest (BUILDER_KEY_LENGTH) of the hierarchy builder's source files (`paths`:
  default the files of BUILDER_MODULES)."""
  digest = hashlib.sha256()
  for path in paths or tuple(m.__file__ for m in BUILDER_MODULES):
    digest.update(Path(path).read_bytes())
  return digest.hexdigest()[:BUILDER_KEY_LENGTH]


def default_cache_path(source_hash, factors):
  """`cache_dir()/topology/<source_hash>_<factors>_<builder_key>.npz`."""
  return (cache_dir() / CACHE_SUBDIR /
          f"{source_hash}_{factors_key(factors)}_{builder_key()}.npz")


@contextlib.contextmanager
def _build_lock(path):
  """Exclusive lock beside `path` so concurrent processes build only once."""
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(str(path) + ".lock", "a") as handle:
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(handle, fcntl.LOCK_UN)


def build_topology(vertices, faces, factors, source_hash="", progress=True):
  """Builds a `Topology` in memory.

  Args:
    vertices: [V, 3] float template vertices.
    faces: [F, 3] int triangles.
    factors: decimation factors.
    source_hash: recorded in the result.
    progress: show a tqdm bar on stderr.

  Returns:
    A `Topology` (path None).
  """
  factors = normalise_factors(factors)
  bar = None
  callback = None
  if progress:
    from tqdm import tqdm
    bar = tqdm(total=mesh_sampling.total_collapses(len(vertices), factors),
               desc="mesh hierarchy", unit="vertex", file=sys.stderr)
    callback = bar.update
  try:
    hierarchy = mesh_sampling.generate_hierarchy(vertices, faces, factors, progress=callback)
  finally:
    if bar is not None:
      bar.close()
  return Topology(**{f.name: getattr(hierarchy, f.name)
                     for f in dataclasses.fields(mesh_sampling.Hierarchy)},
                  source_hash=str(source_hash))


def get_or_build_topology(face_model, factors, cache_path=None, progress=True):
  """The topology for a face model: from the cache, else built once and cached.

  A cached file that is unreadable or stale is rebuilt and replaced.

  Args:
    face_model: a `shared.model.face_model.FaceModel` (uses `mean_shape`, `faces`,
      `source_hash`).
    factors: decimation factors, e.g. (4, 4, 4, 4).
    cache_path: file to use instead of `default_cache_path(...)`.
    progress: show a tqdm bar while building.

  Returns:
    A `Topology` whose `path` is the cache file.
  """
  factors = normalise_factors(factors)
  source_hash = str(face_model.source_hash)
  path = Path(cache_path) if cache_path else default_cache_path(source_hash, factors)

  def cached():
    if not path.is_file():
      return None
    try:
      return load_topology(path, expected_source_hash=source_hash, expected_factors=factors)
    except InputError as e:
      print(f"warning: {e}; rebuilding", file=sys.stderr)
      return None

  topo = cached()
  if topo is not None:
    return topo
  with _build_lock(path):
    topo = cached()  # Another process may have built it while we waited.
    if topo is not None:
      return topo
    topo = build_topology(face_model.mean_shape, face_model.faces, factors,
                          source_hash=source_hash, progress=progress)
    save_topology(path, topo, source_hash, factors)
    topo.path = path
    return topo
