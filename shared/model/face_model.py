"""The 3D morphable face model (`FaceModel`) and its loaders.

A `FaceModel` is a linear model of shape, expression and albedo on a fixed
triangle mesh.  Conventions (every loader converts to them):

* Geometry is in **decimetres** ("model units", as in Deep3D's BFM files),
  centred on the mean shape's centroid, +x to the subject's left in the image,
  +y up, +z towards the camera.  `mm_per_unit` (100) converts to millimetres.
* Bases are per unit standard deviation and the std is held separately:
  `shape = mean + sum_k (c_k * std_k) * basis_k`, so coefficients are in
  standard-deviation units.
* Albedo is linear RGB in [0, 1].
* Triangles are 0-based int32 and wound counter-clockwise seen from the front.

Readers: the project's own `.npz` (`format_version` 1), the ICT-FaceKit light
npz and a raw ICT-FaceKit `FaceXModel/` folder, and Deep3D's
`BFM_model_front.mat` layout.  `load_face_model(path)` picks by content.
"""

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Optional

import numpy as np

from shared.model import albedo as albedo_lib
from shared.errors import CORRUPT_FILE_ERRORS, InputError, corrupt
from shared.io.fileio import savez_atomic

FORMAT_KIND = "face3d-face-model"
FORMAT_VERSION = 1
MM_PER_UNIT = 100.0          # Model units are decimetres.
CM_TO_UNITS = 0.1
MM_TO_UNITS = 0.01
ICT_FACE_VERTICES = 9409     # ICT-FaceKit's "face" region is vertices [0, 9409).
ICT_EXPRESSION_STD = 0.5     # Blendshape weights live in [0, 1]; one std = 0.5.
BFM_TEX_SCALE = 255.0        # Deep3D stores texture in [0, 255].
NUM_LANDMARKS = 68
NPZ_FIELDS = ("mean_shape", "id_basis", "id_std", "exp_basis", "exp_std", "mean_albedo",
              "albedo_basis", "albedo_std", "faces", "landmarks68", "skin_mask")
BFM_KEYS = ("meanshape", "idBase", "exBase", "meantex", "texBase", "tri", "keypoints")


@dataclasses.dataclass(eq=False)
class FaceModel:
  """A linear 3DMM.  Shapes: V vertices, F faces, Ki/Ke/Ka basis sizes.

  Attributes:
    mean_shape: [V, 3] float32, decimetres, centred.
    id_basis: [Ki, V, 3] float32 per unit std.   id_std: [Ki].
    exp_basis: [Ke, V, 3] float32 per unit std.  exp_std: [Ke].
    mean_albedo: [V, 3] float32 in [0, 1].
    albedo_basis: [Ka, V, 3] float32 per unit std.  albedo_std: [Ka].
    faces: [F, 3] int32, 0-based.
    landmarks68: [68] int32 vertex indices (Multi-PIE order).
    skin_mask: [V] float32 in {0, 1}: the region used by photometric losses.
    uv: optional [V, 2] float32 texture coordinates in [0, 1].
    name: short description.  source_hash: content hash of the source file.
    mm_per_unit: millimetres per model unit.
  """
  mean_shape: np.ndarray
  id_basis: np.ndarray
  id_std: np.ndarray
  exp_basis: np.ndarray
  exp_std: np.ndarray
  mean_albedo: np.ndarray
  albedo_basis: np.ndarray
  albedo_std: np.ndarray
  faces: np.ndarray
  landmarks68: np.ndarray
  skin_mask: np.ndarray
  uv: Optional[np.ndarray] = None
  name: str = "face model"
  source_hash: str = ""
  mm_per_unit: float = MM_PER_UNIT

  @property
  def num_vertices(self):
    return self.mean_shape.shape[0]

  @property
  def num_id(self):
    return self.id_basis.shape[0]

  @property
  def num_exp(self):
    return self.exp_basis.shape[0]

  @property
  def num_albedo(self):
    return self.albedo_basis.shape[0]

  def validate(self, source="face model"):
    """Raises `InputError` naming `source` if the arrays are inconsistent."""
    v = self.mean_shape.shape[0]
    checks = [
        (self.mean_shape.ndim == 2 and self.mean_shape.shape[1] == 3, "mean_shape must be [V, 3]"),
        (self.id_basis.shape[1:] == (v, 3), f"id_basis must be [K, {v}, 3], got {self.id_basis.shape}"),
        (self.exp_basis.shape[1:] == (v, 3), f"exp_basis must be [K, {v}, 3], got {self.exp_basis.shape}"),
        (self.albedo_basis.shape[1:] == (v, 3),
         f"albedo_basis must be [K, {v}, 3], got {self.albedo_basis.shape}"),
        (self.mean_albedo.shape == (v, 3), f"mean_albedo must be [{v}, 3], got {self.mean_albedo.shape}"),
        (self.id_std.shape == (self.id_basis.shape[0],), "id_std length differs from id_basis"),
        (self.exp_std.shape == (self.exp_basis.shape[0],), "exp_std length differs from exp_basis"),
        (self.albedo_std.shape == (self.albedo_basis.shape[0],),
         "albedo_std length differs from albedo_basis"),
        (self.faces.ndim == 2 and self.faces.shape[1] == 3, "faces must be [F, 3]"),
        (self.faces.size > 0 and self.faces.min() >= 0 and self.faces.max() < v,
         f"faces index outside [0, {v})"),
        (self.landmarks68.shape == (NUM_LANDMARKS,), "landmarks68 must have 68 indices"),
        (self.landmarks68.min() >= 0 and self.landmarks68.max() < v, "landmark index out of range"),
        (self.skin_mask.shape == (v,), f"skin_mask must be [{v}]"),
        (self.uv is None or self.uv.shape == (v, 2), f"uv must be [{v}, 2]"),
    ]
    for ok, problem in checks:
      if not ok:
        raise InputError(f"{source}: {problem}")
    arrays = (self.mean_shape, self.id_basis, self.exp_basis, self.albedo_basis)
    if not all(np.isfinite(a).all() for a in arrays):
      raise InputError(f"{source}: non-finite values in the model arrays")
    return self

  def save(self, path):
    """Writes the project's `.npz` format (atomically)."""
    arrays = {k: getattr(self, k) for k in NPZ_FIELDS}
    if self.uv is not None:
      arrays["uv"] = self.uv
    savez_atomic(path, format_kind=np.array(FORMAT_KIND), format_version=np.array(FORMAT_VERSION),
                 name=np.array(self.name), source_hash=np.array(self.source_hash),
                 mm_per_unit=np.array(self.mm_per_unit), **arrays)

  def decoder(self):
    """Returns the cached TensorFlow decoder (`shared.model.decoder.FaceDecoder`)."""
    if getattr(self, "_decoder", None) is None:
      from shared.model.decoder import FaceDecoder
      self._decoder = FaceDecoder(self)
    return self._decoder

  def shape_numpy(self, id_coeff=None, exp_coeff=None):
    """Numpy reference decode of one shape: [V, 3] from [Ki] and [Ke] coefficients."""
    shape = self.mean_shape.astype(np.float64)
    if id_coeff is not None:
      shape = shape + np.einsum("k,kvc->vc", id_coeff * self.id_std, self.id_basis)
    if exp_coeff is not None:
      shape = shape + np.einsum("k,kvc->vc", exp_coeff * self.exp_std, self.exp_basis)
    return shape.astype(np.float32)


def file_hash(path):
  """SHA-256 (first 16 hex digits) of a file or of a folder's sorted files."""
  path = Path(path)
  digest = hashlib.sha256()
  files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
  for f in files:
    digest.update(f.name.encode())
    digest.update(f.read_bytes())
  return digest.hexdigest()[:16]


FOREHEAD_EXTENSION = 0.45   # Face region: brows raised by this fraction of brow-chin height.
FRONT_FACING_MIN_Z = 0.2    # Face region: vertex normal z above this (faces the camera).
JAW_LANDMARKS = slice(0, 27)  # Jaw line (0-16) and brows (17-26).


def face_region_mask(mean_shape, faces, landmarks):
  """Skin/face-region mask for models that ship none (ICT: the whole head).

  A vertex is in the face region when it faces the camera in the mean shape
  and its (x, y) lies inside the polygon of the jaw line and the brows, with
  the brows raised to include the forehead.

  Args:
    mean_shape: [V, 3].  faces: [F, 3].  landmarks: [68] vertex indices.

  Returns:
    [V] float32 in {0, 1}.
  """
  from matplotlib.path import Path as PolygonPath
  from shared.mesh.normals_np import ring_vertex_normals, vertex_face_rings
  normals = ring_vertex_normals(mean_shape, faces, vertex_face_rings(faces, mean_shape.shape[0]))
  outline = mean_shape[landmarks[JAW_LANDMARKS], :2].copy()
  chin_y = mean_shape[landmarks[8], 1]
  brows = slice(17, 27)
  outline[brows, 1] += FOREHEAD_EXTENSION * (outline[brows, 1] - chin_y)
  order = np.r_[0:17, 26:16:-1]  # Jaw left to right, then brows right to left.
  inside = PolygonPath(outline[order]).contains_points(mean_shape[:, :2])
  return (inside & (normals[:, 2] > FRONT_FACING_MIN_Z)).astype(np.float32)


def _centre(mean_shape):
  return mean_shape - mean_shape.mean(axis=0, keepdims=True)


def _finish(mean_shape, id_basis, id_std, exp_basis, exp_std, faces, landmarks, skin_mask,
            uv, name, source_hash, albedo=None):
  """Fills in the synthetic albedo when missing, casts, validates."""
  faces = np.asarray(faces, np.int32)
  mean_shape = _centre(np.asarray(mean_shape, np.float32))
  if albedo is None:
    albedo = albedo_lib.synthetic_albedo(mean_shape.shape[0], faces)
  mean_albedo, albedo_basis, albedo_std = albedo
  model = FaceModel(
      mean_shape=mean_shape.astype(np.float32),
      id_basis=np.asarray(id_basis, np.float32), id_std=np.asarray(id_std, np.float32),
      exp_basis=np.asarray(exp_basis, np.float32), exp_std=np.asarray(exp_std, np.float32),
      mean_albedo=np.asarray(mean_albedo, np.float32),
      albedo_basis=np.asarray(albedo_basis, np.float32),
      albedo_std=np.asarray(albedo_std, np.float32), faces=faces,
      landmarks68=np.asarray(landmarks, np.int32).ravel(),
      skin_mask=np.asarray(skin_mask, np.float32).ravel(),
      uv=None if uv is None else np.asarray(uv, np.float32), name=name, source_hash=source_hash)
  return model


def _npz_get(data, key, path):
  if key not in data.files:
    raise InputError(f"{path}: missing array '{key}'")
  return data[key]


def load_project_npz(path, data):
  """Reads the project's own `.npz` (already opened as `data`)."""
  version = int(data["format_version"])
  if version != FORMAT_VERSION:
    raise InputError(f"{path}: face model format version {version}; this toolkit reads "
                     f"version {FORMAT_VERSION}")
  fields = {k: _npz_get(data, k, path) for k in NPZ_FIELDS}
  model = FaceModel(**fields, uv=data["uv"] if "uv" in data.files else None,
                    name=str(data["name"]), source_hash=str(data["source_hash"]),
                    mm_per_unit=float(data["mm_per_unit"]))
  return model.validate(str(path))


def load_ict_npz(path, data):
  """Reads the ICT-FaceKit light npz (cm, no albedo, bases = mesh - neutral)."""
  mean = _npz_get(data, "mean_shape", path).astype(np.float32) * CM_TO_UNITS
  id_basis = _npz_get(data, "id_basis", path).astype(np.float32) * CM_TO_UNITS
  exp_basis = _npz_get(data, "exp_basis", path).astype(np.float32) * CM_TO_UNITS
  faces = _npz_get(data, "faces", path)
  landmarks = _npz_get(data, "landmarks68", path)
  for name, basis in (("id_basis", id_basis), ("exp_basis", exp_basis)):
    if basis.ndim != 3 or basis.shape[1:] != mean.shape:
      raise InputError(f"{path}: {name} has shape {basis.shape}, expected [K, {mean.shape[0]}, 3] "
                       "to match mean_shape")
  id_std = np.ones(id_basis.shape[0], np.float32)  # ICT identities are unit-variance modes.
  exp_basis = exp_basis / ICT_EXPRESSION_STD
  exp_std = np.full(exp_basis.shape[0], ICT_EXPRESSION_STD, np.float32)
  uv = data["uv"] if "uv" in data.files else None
  model = _finish(mean, id_basis, id_std, exp_basis, exp_std, faces, landmarks,
                  face_region_mask(mean, faces, landmarks), uv, "ICT-FaceKit (light npz)", file_hash(path))
  return model.validate(str(path))


def load_npz(path):
  """Reads a `.npz`: the project's format or the ICT light layout."""
  try:
    handle = open(path, "rb")  # Ours to close, even when np.load fails.
  except OSError as error:
    corrupt(path, ".npz face model", error)
  with handle:
    try:
      data = np.load(handle, allow_pickle=False)
    except Exception as error:  # noqa: BLE001 - any parse failure is a bad file.
      raise InputError(f"{path}: not a readable .npz file ({type(error).__name__})") from None
    try:
      with data:   # Members are decompressed (and CRC-checked) on access.
        if "format_kind" in data.files:
          return load_project_npz(path, data)
        if "mean_shape" in data.files and "id_basis" in data.files:
          return load_ict_npz(path, data)
    except CORRUPT_FILE_ERRORS as error:
      corrupt(path, ".npz face model", error)
  raise InputError(f"{path}: .npz is neither a face3d face model nor an ICT-FaceKit npz "
                   "(no 'format_kind' or 'mean_shape'/'id_basis' arrays)")


def load_bfm_mat(path):
  """Reads Deep3D's `BFM_model_front.mat` layout.

  Keys: meanshape [1, 3V] (decimetres), idBase [3V, Ki], exBase [3V, Ke]
  (both already per unit std), meantex [1, 3V] in [0, 255], texBase [3V, Ka],
  tri [F, 3] 1-based, keypoints [1, 68] 1-based, optional skinmask [1, V].
  """
  import scipy.io as sio
  try:
    mat = sio.loadmat(path)
  except Exception as error:  # noqa: BLE001
    raise InputError(f"{path}: not a readable .mat file ({type(error).__name__})") from None
  missing = [k for k in BFM_KEYS if k not in mat]
  if missing:
    raise InputError(f"{path}: not a BFM_model_front.mat layout, missing keys: "
                     + ", ".join(missing))
  mean = np.asarray(mat["meanshape"], np.float32).reshape(-1, 3)
  v = mean.shape[0]

  def basis(key):
    b = np.asarray(mat[key], np.float32)
    if b.shape[0] != 3 * v:
      raise InputError(f"{path}: {key} has {b.shape[0]} rows, expected {3 * v} (3 x vertices)")
    return b.T.reshape(-1, v, 3)

  id_basis, exp_basis, tex_basis = basis("idBase"), basis("exBase"), basis("texBase")
  mean_tex = np.asarray(mat["meantex"], np.float32).reshape(-1, 3) / BFM_TEX_SCALE
  if mean_tex.shape[0] != v:
    raise InputError(f"{path}: meantex has {mean_tex.shape[0]} vertices, expected {v}")
  faces = np.asarray(mat["tri"]).astype(np.int64) - 1
  landmarks = np.asarray(mat["keypoints"]).astype(np.int64).ravel() - 1
  skin = (np.asarray(mat["skinmask"]).ravel() > 0) if "skinmask" in mat else np.ones(v)
  albedo = (mean_tex, tex_basis / BFM_TEX_SCALE, np.ones(tex_basis.shape[0], np.float32))
  model = _finish(mean, id_basis, np.ones(id_basis.shape[0]), exp_basis,
                  np.ones(exp_basis.shape[0]), faces, landmarks, skin, None,
                  "BFM (Deep3D front layout)", file_hash(path), albedo=albedo)
  return model.validate(str(path))


def _read_obj(path):
  """Minimal OBJ reader: vertices [V, 3], polygons (list of vertex index lists),
  texcoords [T, 2] and per-polygon texcoord indices.  0-based."""
  vertices, texcoords, polygons, poly_tex = [], [], [], []
  with open(path) as f:
    for line in f:
      if line.startswith("v "):
        vertices.append(line.split()[1:4])
      elif line.startswith("vt "):
        texcoords.append(line.split()[1:3])
      elif line.startswith("f "):
        items = [p.split("/") for p in line.split()[1:]]
        polygons.append([int(p[0]) - 1 for p in items])
        poly_tex.append([int(p[1]) - 1 if len(p) > 1 and p[1] else -1 for p in items])
  return (np.asarray(vertices, np.float32), polygons,
          np.asarray(texcoords, np.float32).reshape(-1, 2), poly_tex)


def _triangulate(polygons, keep_below):
  """Fan-triangulates polygons whose vertices are all < keep_below."""
  tris = []
  for poly in polygons:
    if max(poly) >= keep_below:
      continue
    tris.extend([poly[0], poly[i], poly[i + 1]] for i in range(1, len(poly) - 1))
  return np.asarray(tris, np.int32)


def load_ict_folder(path):
  """Reads a raw ICT-FaceKit `FaceXModel/` folder (obj files + vertex_indices.json).

  Uses the face region (vertices [0, 9409)), `identity###.obj` as identity
  modes and the expressions listed in `vertex_indices.json`.  This is a
  one-off conversion; save the result with `FaceModel.save` for fast reuse.
  """
  folder = Path(path)
  index_file = folder / "vertex_indices.json"
  neutral_file = folder / "generic_neutral_mesh.obj"
  for needed in (index_file, neutral_file):
    if not needed.exists():
      raise InputError(f"{folder}: not an ICT-FaceKit FaceXModel folder ({needed.name} missing)")
  try:
    indices = json.loads(index_file.read_text())
    landmarks = np.asarray(indices["idx_to_landmark_verts"], np.int32)
    expression_names = list(indices["expressions"])
  except (ValueError, KeyError) as error:
    raise InputError(f"{index_file}: malformed vertex_indices.json ({error})") from None
  neutral, polygons, texcoords, poly_tex = _read_obj(neutral_file)
  n = min(ICT_FACE_VERTICES, neutral.shape[0])
  faces = _triangulate(polygons, n)
  uv = None
  if len(texcoords):
    uv = np.zeros((n, 2), np.float32)
    for poly, tex in zip(polygons, poly_tex):  # One-off conversion, not a hot path.
      for vi, ti in zip(poly, tex):
        if vi < n and ti >= 0:
          uv[vi] = texcoords[ti]
  identity_files = sorted(folder.glob("identity[0-9][0-9][0-9].obj"))
  if not identity_files:
    raise InputError(f"{folder}: no identity###.obj files found")

  def deltas(files):
    out = []
    for f in files:
      verts = _read_obj(f)[0]
      if verts.shape[0] < n:
        raise InputError(f"{f}: {verts.shape[0]} vertices, expected at least {n}")
      out.append(verts[:n] - neutral[:n])
    return np.stack(out) * CM_TO_UNITS

  expression_files = [folder / f"{name}.obj" for name in expression_names]
  missing = [f.name for f in expression_files if not f.exists()]
  if missing:
    raise InputError(f"{folder}: expression meshes missing: {', '.join(missing[:5])}")
  id_basis = deltas(identity_files)
  exp_basis = deltas(expression_files) / ICT_EXPRESSION_STD
  model = _finish(neutral[:n] * CM_TO_UNITS, id_basis, np.ones(len(identity_files)), exp_basis,
                  np.full(len(expression_files), ICT_EXPRESSION_STD), faces, landmarks,
                  face_region_mask(neutral[:n], faces, landmarks), uv, "ICT-FaceKit (FaceXModel folder)", file_hash(folder))
  return model.validate(str(folder))


def load_face_model(path=None):
  """Loads a face model from a project npz, ICT npz, ICT folder or BFM .mat.

  Args:
    path: file or folder; None for the default model (see `shared.io.paths`).

  Returns:
    A validated `FaceModel`.

  Raises:
    InputError: with one line naming the file and the problem.
  """
  if path is None:
    from shared.io.paths import default_face_model_path
    path = default_face_model_path()
  path = Path(path)
  if not path.exists():
    from shared.io.paths import ICT_HELP
    raise InputError(f"{path}: face model not found; {ICT_HELP}")
  if path.is_dir():
    return load_ict_folder(path)
  if path.suffix.lower() == ".mat":
    return load_bfm_mat(path)
  if path.suffix.lower() == ".npz":
    return load_npz(path)
  raise InputError(f"{path}: unknown face model format (expected .npz, .mat or a "
                   "FaceXModel/ folder)")
