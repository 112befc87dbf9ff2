"""The `_lm.txt` landmark file of the MGC strip datasets: 68 points per view.

Optional `#` comment lines, then for each view in the order target,
source1, source2 a header line `view <name>` followed by 68 lines `x,y` in
pixels of that view's 224x224 crop (continuous coordinates, pixel centres at
+0.5).  MGCNet's `_cam.txt` (three lines of 9 intrinsics, then per view a
header and 68 `x,y` lines) is read as well: any line that is not exactly two
numbers is skipped, and exactly 3 x 68 points must remain.

No TensorFlow here: `mgc_face.data` (the dataset) and tools/create_bin.py
(packing a strip dataset's landmarks into a .bin) share this one reader.
"""

from pathlib import Path

import numpy as np

from shared.errors import InputError
from shared.io.fileio import write_text_atomic

NUM_VIEWS = 3
NUM_LANDMARKS = 68
VIEW_NAMES = ("target", "source1", "source2")
LANDMARK_HEADER = ("# face3d landmarks v1: per view (target, source1, source2) a 'view NAME' "
                   "line, then 68 lines 'x,y' in that view's 224x224 pixels")


def read_text(path, kind):
  """The file's text; InputError if it is not UTF-8 text."""
  try:
    return Path(path).read_text()
  except UnicodeDecodeError:
    raise InputError(f"{path}: not a text {kind} (not UTF-8)") from None


def format_landmarks(landmarks):
  """[3, 68, 2] -> `_lm.txt` text."""
  landmarks = np.asarray(landmarks, np.float64)
  lines = [LANDMARK_HEADER]
  for name, points in zip(VIEW_NAMES, landmarks):
    lines.append(f"view {name}")
    lines.extend(f"{x:.3f},{y:.3f}" for x, y in points)
  return "\n".join(lines) + "\n"


def write_landmarks(path, landmarks):
  write_text_atomic(path, format_landmarks(landmarks))


def _two_numbers(line):
  parts = line.replace(",", " ").split()
  if len(parts) != 2:
    return None
  try:
    return float(parts[0]), float(parts[1])
  except ValueError:
    return None


def read_landmarks(path):
  """Reads `_lm.txt` (or MGCNet `_cam.txt`) -> [3, 68, 2] float32 (target first).

  Raises:
    InputError: missing file, wrong point count or non-finite values.
  """
  path = Path(path)
  if not path.exists():
    raise InputError(f"{path}: landmark file not found")
  points = []
  for line in read_text(path, "landmark file").splitlines():
    if line.lstrip().startswith("#"):
      continue
    xy = _two_numbers(line)
    if xy is not None:
      points.append(xy)
  expected = NUM_VIEWS * NUM_LANDMARKS
  if len(points) != expected:
    raise InputError(f"{path}: expected {expected} landmark lines 'x,y' ({NUM_VIEWS} views x "
                     f"{NUM_LANDMARKS}), found {len(points)}")
  out = np.asarray(points, np.float32).reshape(NUM_VIEWS, NUM_LANDMARKS, 2)
  if not np.isfinite(out).all():
    raise InputError(f"{path}: non-finite landmark values")
  return out
