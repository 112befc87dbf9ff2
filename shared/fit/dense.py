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
CORRESPONDENCE_FILE = CORRESPONDENCE_DIR / "mediapipe468_ict.npz"
CORRESPONDENCE_KIND = "face3d-mesh468-correspondence"
CORRESPONDENCE_VERSION = 1


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


def load_correspondence(face_model, path=CORRESPONDENCE_FILE):
  """(vertices [468] int32, weights [468] float32) for `face_model`.

  Raises:
    InputError: missing or unreadable file, or made for another vertex count.
  """
  path = Path(path)
  try:
    with np.load(path) as data:
      kind = str(data["format_kind"])
      count = int(data["num_vertices"])
      vertices, weights = data["vertices"].astype(np.int32), data["weights"].astype(np.float32)
  except (OSError, KeyError, ValueError) as error:
    raise InputError(f"{path}: cannot read the 468-point correspondence ({error})") from None
  if kind != CORRESPONDENCE_KIND:
    raise InputError(f"{path}: not a 468-point correspondence file (kind {kind!r})")
  if count != face_model.num_vertices or vertices.max(initial=0) >= face_model.num_vertices:
    raise InputError(f"{path}: made for a {count}-vertex model, not {face_model.name} "
                     f"({face_model.num_vertices} vertices); rebuild it with "
                     "tools/make_mesh_correspondence.py")
  return vertices, weights


def dense_model(face_model, vertices):
  """A copy of `face_model` whose landmark vertices are the 468 `vertices`
  (so `Fitter`/`FaceSynthesizer` on it fit and project the dense points)."""
  return dataclasses.replace(face_model, landmarks68=np.asarray(vertices, np.int32),
                             name=face_model.name + ", 468 dense landmarks")
