"""Locating the read-only data folder and the default face model.

The data folder (`shared/` beside the checkout, called "the data dir" here to
avoid confusion with this package) is found, in order, through:

1. the environment variable `FACE3D_DATA_DIR`;
2. `../shared` relative to the repository root (the folder holding `main.py`);
3. `../shared` relative to the current working directory.

The default face model is `FACE3D_FACE_MODEL` if set, else the ICT-FaceKit
light model embedded in this package (`shared/assets/ict_face_light/`, MIT,
see its ATTRIBUTION.md), else `<data dir>/face_models/ict_face_light/
ict_face_light.npz`.  So a clone or a `pip install` needs no data folder for
the demo; the data folder holds only the evaluation images and the BFM
topology used by some tests and benchmarks.
"""

import os
from pathlib import Path

from shared.errors import InputError

DATA_DIR_ENV = "FACE3D_DATA_DIR"
FACE_MODEL_ENV = "FACE3D_FACE_MODEL"
CACHE_DIR_ENV = "FACE3D_CACHE_DIR"
PACKAGE_ROOT = Path(__file__).resolve().parent.parent   # shared/
REPO_ROOT = PACKAGE_ROOT.parent
ICT_RELATIVE = Path("face_models/ict_face_light/ict_face_light.npz")
EMBEDDED_FACE_MODEL = PACKAGE_ROOT / "assets" / "ict_face_light" / \
    "ict_face_light.npz"
ICT_HELP = ("get ICT-FaceKit from https://github.com/ICT-VGL/ICT-FaceKit and pass "
            "its FaceXModel/ folder with --face-model, or set " + FACE_MODEL_ENV)


def data_dir_candidates():
  """Returns the folders searched for the data dir, in order."""
  out = []
  if os.environ.get(DATA_DIR_ENV):
    out.append(Path(os.environ[DATA_DIR_ENV]))
  out.append(REPO_ROOT.parent / "shared")
  out.append(Path.cwd().parent / "shared")
  return list(dict.fromkeys(out))  # Without repeats (the two are often the same).


def find_data_dir(required=True):
  """Returns the data dir, or raises `InputError` naming where it looked."""
  for candidate in data_dir_candidates():
    if candidate.is_dir() and (candidate / "face_models").is_dir():
      return candidate
  if not required:
    return None
  looked = ", ".join(str(c) for c in data_dir_candidates())
  raise InputError(f"data folder not found (looked in: {looked}); set {DATA_DIR_ENV}")


def data_file(relative):
  """Returns `<data dir>/relative`, or raises `InputError` if it is absent."""
  data_dir = find_data_dir()
  path = data_dir / relative
  if not path.exists():
    raise InputError(f"{path}: not found in the data folder")
  return path


def default_face_model_path():
  """Returns the default face model path, or raises `InputError` with help."""
  if os.environ.get(FACE_MODEL_ENV):
    path = Path(os.environ[FACE_MODEL_ENV])
    if not path.exists():
      raise InputError(f"{path}: not found (from {FACE_MODEL_ENV}); {ICT_HELP}")
    return path
  looked = [str(EMBEDDED_FACE_MODEL)]
  if EMBEDDED_FACE_MODEL.exists():
    return EMBEDDED_FACE_MODEL
  for candidate in data_dir_candidates():
    path = candidate / ICT_RELATIVE
    looked.append(str(path))
    if path.exists():
      return path
  raise InputError("default face model not found (looked in: " + ", ".join(looked) +
                   f"); {ICT_HELP}")


def cache_dir():
  """Returns the writable cache folder (`FACE3D_CACHE_DIR` or ~/.cache/face3d)."""
  base = os.environ.get(CACHE_DIR_ENV) or os.path.join(
      os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "face3d")
  path = Path(base)
  path.mkdir(parents=True, exist_ok=True)
  return path


def check_output_folder(path):
  """Raises `InputError` unless `path` is a folder that exists or can be made.

  Checks before any work is done (nothing is created): a file in the way
  (at `path` or at one of its parents) or a parent that cannot be written.
  """
  path = Path(path)
  existing = path
  while not existing.exists() and existing.parent != existing:
    existing = existing.parent
  if existing == path and not path.is_dir():
    raise InputError(f"{path}: exists and is not a folder")
  if not existing.is_dir():
    raise InputError(f"{path}: cannot make the folder: {existing} is a file")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise InputError(f"{path}: cannot write into {existing} (permission denied)")


def check_output_file(path):
  """Raises `InputError` unless the file `path` can be written (its folder made)."""
  path = Path(path)
  if path.is_dir():
    raise InputError(f"{path}: is a folder, not a file")
  if path.parent.exists() and not path.parent.is_dir():
    raise InputError(f"{path}: cannot write it: {path.parent} is a file")
  check_output_folder(path.parent)
