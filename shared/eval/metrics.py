"""Landmark metrics and the AFLW2000-3D ground-truth reader.

NME follows the 3DDFA / AFLW2000-3D protocol: the mean point-to-point
Euclidean error over the 68 landmarks (2D, x and y), divided by
`sqrt(w * h)` of the ground-truth box, where the box is the min/max of the
ground-truth landmarks' x and y.  Functions return fractions; multiply by
`PERCENT` to report %.

Pixel convention (project-wide): continuous coordinates, pixel `i`'s centre at
`i + 0.5`.  AFLW2000-3D's `pt3d_68` is treated as 0-based pixel indices (like
dlib's output), so the reader adds `AFLW_PIXEL_OFFSET = 0.5`, exactly as
`shared.photo.landmarks` does for dlib.  NME only sees the difference, so this
choice cancels in the metric; it matters only when GT is drawn on images.
"""

from pathlib import Path

import numpy as np

from shared.errors import InputError, fail

NUM_LANDMARKS = 68
PERCENT = 100.0
YAW_BIN_EDGES = (30.0, 60.0)   # |yaw| degrees: [0,30), [30,60), [60,90]
YAW_BIN_LABELS = ("[0,30)", "[30,60)", "[60,90]")
AFLW_PIXEL_OFFSET = 0.5
AFLW_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
AFLW_LANDMARK_KEY = "pt3d_68"
AFLW_POSE_KEY = "Pose_Para"
AFLW_YAW_INDEX = 1             # Pose_Para = [pitch, yaw, roll, tx, ty, tz, scale], radians


def gt_box_size(gt):
  """`sqrt(w * h)` of the min/max box of `[N, 68, 2]` landmarks -> `[N]`."""
  gt = np.asarray(gt, np.float64)
  extent = gt.max(axis=-2) - gt.min(axis=-2)
  return np.sqrt(extent[..., 0] * extent[..., 1])


def nme_68(pred, gt):
  """Per-image normalised mean error (a fraction, not %).

  Args:
    pred: `[N, 68, 2]` (or `[68, 2]`) predicted landmarks, pixels.
    gt: same shape, ground truth, same pixel convention.

  Returns:
    `float64 [N]` (or a scalar for `[68, 2]` input): mean over the 68 points of
    `||pred - gt||_2`, divided by `gt_box_size(gt)`.
  """
  pred = np.asarray(pred, np.float64)
  gt = np.asarray(gt, np.float64)
  if pred.shape != gt.shape or pred.shape[-2:] != (NUM_LANDMARKS, 2) or pred.ndim not in (2, 3):
    raise ValueError(f"nme_68 expects two [N, 68, 2] arrays, got {pred.shape} and {gt.shape}")
  size = gt_box_size(gt)
  if np.any(size <= 0):
    raise ValueError("nme_68: a ground-truth box has zero width or height")
  return np.linalg.norm(pred - gt, axis=-1).mean(axis=-1) / size


def yaw_bins(yaw_degrees):
  """Bin labels by |yaw|: `[0,30)`, `[30,60)`, `[60,90]` (|yaw| >= 60 all go last).

  Args:
    yaw_degrees: scalar or `[N]`.

  Returns:
    `[N]` array of label strings from `YAW_BIN_LABELS` (0-d for a scalar).
  """
  index = np.digitize(np.abs(np.asarray(yaw_degrees, np.float64)), YAW_BIN_EDGES)
  return np.asarray(YAW_BIN_LABELS)[index]


def _load_mat(path):
  import scipy.io
  try:
    return scipy.io.loadmat(str(path))
  except Exception as e:  # scipy raises several types for bad files
    fail(path, f"cannot read .mat file ({type(e).__name__}: {e})")


def read_aflw2000_mat(path):
  """Reads one AFLW2000-3D ground-truth `.mat`.

  Returns:
    `(pt68 float32 [68, 2] continuous pixels, yaw_degrees float)`.

  Raises:
    InputError: unreadable file, or no `pt3d_68` / `Pose_Para` of the right shape.
  """
  mat = _load_mat(path)
  if AFLW_LANDMARK_KEY not in mat:
    fail(path, f"no '{AFLW_LANDMARK_KEY}' in this .mat (not AFLW2000-3D ground truth?)")
  if AFLW_POSE_KEY not in mat:
    fail(path, f"no '{AFLW_POSE_KEY}' in this .mat (not AFLW2000-3D ground truth?)")
  pts = np.asarray(mat[AFLW_LANDMARK_KEY], np.float64)
  if pts.ndim != 2 or pts.shape[1] != NUM_LANDMARKS or pts.shape[0] < 2:
    fail(path, f"'{AFLW_LANDMARK_KEY}' has shape {pts.shape}, expected (3, {NUM_LANDMARKS})")
  pose = np.asarray(mat[AFLW_POSE_KEY], np.float64).ravel()
  if pose.size <= AFLW_YAW_INDEX:
    fail(path, f"'{AFLW_POSE_KEY}' has {pose.size} values, expected 7")
  pt68 = (pts[:2].T + AFLW_PIXEL_OFFSET).astype(np.float32)
  return pt68, float(np.degrees(pose[AFLW_YAW_INDEX]))


def load_aflw2000_folder(folder):
  """Lists the image/ground-truth pairs of an AFLW2000-3D style folder.

  Every image `NAME.jpg` (or .jpeg/.png) with a `NAME.mat` beside it is a pair;
  images without a .mat are ignored.

  Returns:
    list, sorted by file name, of `(image_path Path, pt68 float32 [68, 2],
    yaw_degrees float)`; `pt68` is `pt3d_68[:2].T + 0.5`, yaw is
    `Pose_Para[1]` converted from radians.

  Raises:
    InputError: folder missing, no pairs, or a bad .mat.
  """
  folder = Path(folder)
  if not folder.is_dir():
    fail(folder, "AFLW2000-3D folder not found")
  samples = []
  for image_path in sorted(folder.iterdir()):
    if image_path.suffix.lower() not in AFLW_IMAGE_SUFFIXES:
      continue
    mat_path = image_path.with_suffix(".mat")
    if not mat_path.is_file():
      continue
    pt68, yaw = read_aflw2000_mat(mat_path)
    samples.append((image_path, pt68, yaw))
  if not samples:
    raise InputError(f"{folder}: no image + .mat pairs (AFLW2000-3D layout: NAME.jpg with "
                     "NAME.mat holding pt3d_68 and Pose_Para)")
  return samples
