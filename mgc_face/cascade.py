"""Cascaded refinement of the landmark head's points on the full-resolution view.

The landmark head localises its 68 points on a 112-px input through
soft-argmax heatmaps; its error (2-4 px of the 224-px view) leans towards
an average face, and the coefficient layer cannot read identity from it
(docs/mgc.md, "Session 12").  This stage is a supervised descent cascade
(Xiong and De la Torre, CVPR 2013) after the network: at stage s every point
reads a HOG descriptor of the grey 224-px view on a square of half-size
`scales[s]` pixels centred on it, and a per-landmark ridge regression maps
that descriptor to the point's offset, in units of the face's size (the
square root of the points' bounding-box area).  Stages go from coarse
squares to fine ones.  After every stage the points are projected onto a
shape space: the first `components` principal directions of the training
labels' shapes (each label set centred on its mean and divided by its face
size), which keeps the 68 points a face and averages out much of the
per-landmark error (session 14, docs/mgc.md).

Optionally (`joint_dims` > 0) each stage then moves the points again by a
joint ridge regression from the same descriptors, all of them at once, to
what remains of all 68 offsets: each landmark's descriptor, centred on that
landmark's training mean, is reduced to the first `joint_dims` principal
directions of all the training descriptors (one basis for every landmark),
the 68 x `joint_dims` values are standardised, and one solve gives the
[68 d, 136] map.  A point then moves with what the others see, which the
per-landmark solve cannot do: the jaw, whose own square is ambiguous,
follows the cheeks and the chin (session 15, docs/mgc.md).

It is trained after the network, on the training views' own 68-point
labels (the 1 px-noise detector stand-in the head and the landmark term
train on; no 3D label), starting from the head's points on those views, so
it stays self-supervised in the paper's sense.  Training is closed-form
(one ridge solve per landmark and stage; seconds).  At inference the
refined points replace the head's as the coefficient layer's input
(`mgc_face.infer.Regressor`).

Optionally the cascade carries a reader: a linear map from the refined
points (normalised as the coefficient layer's input) to some coefficients
(a mask says which), used instead of the coefficient layer for those.  The
`cpu_hour` preset reads identity and expression with the prior map
(`mgc_face/prior_init.py`) at its points' precision (session 14).  A reader
may be gated by yaw (session 22): one map per yaw in `centres` (degrees),
the two nearest the face's yaw (read from the coefficient vector) blended
linearly.

Optionally (`lift`, session 21) the cascade refines a dense point set beside
the 68 landmarks: K = 68 + M points, the M dense ones (MediaPipe's mesh points
made mirror-closed, `shared.fit.dense.symmetric_correspondence`) started by a
ridge map from the head's 68 points (`fit_lift`, fitted on the labels), all
refined together; the reader then reads all K.  Denser points read more shape
(session 20, `bench/mgc_dense_points.py`).  With many points the joint stage's
map goes to the first `joint_rank` principal directions of its targets
(`out` [r, 2K]) so the file stays small.

Stored as CKPT/cascade.npz (`save` / `load`): weights [S, K, F + 1, 2],
scales [S] (px), ridge, the shape space (mean [136], basis [C, 136]; C = 0:
no projection, as in the version-1 files of session 13) and the network
step it was trained for, the reader (weights [139, C'], bias [C'],
mask [C'] over the coefficient vector) when it has one, and the joint
stages (version 3) when it has them: descriptor means [S, 68, F], bases
[S, F, d], scales [S, K d], weights [S, K d, 2K] (or [S, K d, r] with
output bases [S, r, 2K], version 4) and biases [S, 2K], the dense points
(version 4) when it has them: the lift (weights [136, 2M], bias [2M]), their
vertex ids [M] and the mirror permutation of all K points `flip` [K], and a
yaw-gated reader (version 5): weights [G, 2K + 3, C'], biases [G, C'] and
their yaws `reader_yaw_centres` [G] (degrees, increasing).
"""

import zipfile
from pathlib import Path

import cv2
import numpy as np

from shared.errors import InputError
from shared.io.fileio import savez_atomic
from shared.render.image_sampling import PIXEL_CENTER

FILE_NAME = "cascade.npz"
KIND = "face3d-mgc-landmark-cascade"
VERSION = 5
READABLE_VERSIONS = (1, 2, 3, 4, 5)  # 1: no shape space; 2: no joint stages; 3: no dense
# points; 4: no yaw-gated reader.
READER_KEYS = ("reader_weights", "reader_bias", "reader_mask", "reader_yaw_centres")
JOINT_KEYS = ("joint_mean", "joint_basis", "joint_scale", "joint_weights", "joint_bias")
JOINT_OUT_KEY = "joint_out"
DENSE_KEYS = ("lift_weights", "lift_bias", "dense_vertices", "flip")
LANDMARKS = 68                  # The head's points; a lift maps them to the dense ones.
LANDMARK_BLOCK = 64             # Landmarks per block of the per-landmark solves (memory).
VIEW_BLOCK = 256                # Views per block of the joint stage's sums (memory).
MIN_STD = 1e-9                  # Floor of a joint input's standard deviation.
PATCH = 32                      # Side of the resampled square the descriptor reads, pixels.
MARGIN = 1                      # Extra samples around it for the gradients at its edge.
HOG_BLOCK = 16                  # HOG block side, pixels of that square.
HOG_CELL = 8                    # HOG cell side (and block stride).
HOG_BINS = 9                    # Unsigned orientation bins.
GREY_LEVELS = 255.0             # [0, 1] floats -> 8-bit grey, as cv2's HOG expects.


def _descriptor():
  return cv2.HOGDescriptor((PATCH, PATCH), (HOG_BLOCK, HOG_BLOCK), (HOG_CELL, HOG_CELL),
                           (HOG_CELL, HOG_CELL), HOG_BINS)


def grey(images):
  """[N, H, W, 3] float RGB in [0, 1] -> [N, H, W] uint8 grey (BT.601, as OpenCV)."""
  images = np.asarray(images, np.float32)
  weights = np.array([0.299, 0.587, 0.114], np.float32)
  return np.clip(np.rint((images @ weights) * GREY_LEVELS), 0, GREY_LEVELS).astype(np.uint8)


def features(grey_images, points, half):
  """HOG descriptors around each point: [N, H, W] uint8, [N, K, 2] px -> [N, K, F] float32.

  Each point's square of half-size `half` px is resampled (bilinear, borders
  replicated) to PATCH x PATCH (points in continuous pixels, a pixel's
  centre at +PIXEL_CENTER, as the rest of the toolkit), with one more sample
  on every side so that the gradients at the square's edge read the image,
  not the next square.  The K squares are stacked into one tall image and
  cv2 computes all K descriptors in one call per image.
  """
  descriptor = _descriptor()
  step = 2.0 * half / PATCH
  side = PATCH + 2 * MARGIN
  grid = (np.arange(side, dtype=np.float32) - MARGIN + 0.5) * step - half - PIXEL_CENTER
  count = points.shape[1]
  locations = [(MARGIN, k * side + MARGIN) for k in range(count)]
  out = np.empty((len(grey_images), count, descriptor.getDescriptorSize()), np.float32)
  for n, (image, marks) in enumerate(zip(grey_images, np.asarray(points, np.float32))):
    map_x = np.broadcast_to(marks[:, 0, None, None] + grid[None, None, :], (count, side, side))
    map_y = np.broadcast_to(marks[:, 1, None, None] + grid[None, :, None], (count, side, side))
    tall = cv2.remap(image, np.ascontiguousarray(map_x.reshape(count * side, side)),
                     np.ascontiguousarray(map_y.reshape(count * side, side)),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    values = descriptor.compute(tall, (PATCH, PATCH), (0, 0), locations)
    out[n] = np.asarray(values, np.float32).reshape(count, -1)
  return out


def face_size(points):
  """[N, K, 2] -> [N, 1, 1]: square root of the points' bounding-box area (px)."""
  extent = np.maximum(points.max(1) - points.min(1), 1e-6)
  return np.sqrt(extent[:, 0] * extent[:, 1])[:, None, None]


def _normalised(points):
  """[N, K, 2] px -> ([N, 2K] centred shapes in face-size units, centres [N, 1, 2], sizes
  [N, 1, 1])."""
  centre = points.mean(1, keepdims=True)
  size = face_size(points)
  return ((points - centre) / size).reshape(len(points), -1), centre, size


def shape_space(labels, components):
  """Principal shape directions of label sets: [N, K, 2] px -> (mean [2K], basis [C, 2K])
  with orthonormal rows (C = min(components, N, 2K))."""
  shapes = _normalised(np.asarray(labels, np.float64))[0]
  mean = shapes.mean(0)
  _, _, directions = np.linalg.svd(shapes - mean, full_matrices=False)
  return mean, directions[:components]


def project(points, mean, basis):
  """The points' nearest shape in the space (position and size kept): [N, K, 2] px -> same.
  An empty basis leaves them as they are."""
  if not len(basis):
    return points
  shapes, centre, size = _normalised(points)
  shapes = mean + (shapes - mean) @ basis.T @ basis
  return shapes.reshape(points.shape) * size + centre


def _with_bias(values):
  return np.concatenate([values, np.ones(values.shape[:-1] + (1,), values.dtype)], -1)


def _offsets(descriptors, weights):
  """One stage's offsets in face-size units: [N, K, F] descriptors, [K, F + 1, 2] weights
  (last row: the bias) -> [N, K, 2], computed in the weights' precision (float32 at
  inference, float64 in training), in blocks of landmarks."""
  out = np.empty(descriptors.shape[:2] + (2,), weights.dtype)
  for start in range(0, descriptors.shape[1], LANDMARK_BLOCK):
    block = slice(start, start + LANDMARK_BLOCK)
    inputs = _with_bias(descriptors[:, block].astype(weights.dtype))
    out[:, block] = np.einsum("nkf,kfo->nko", inputs, weights[block])
  return out


def _fit_landmarks(descriptors, target, ridge):
  """[K, F + 1, 2]: each landmark's ridge map (penalty `ridge` on the weights, not the bias)
  from its descriptor [N, K, F] to its offset `target` [N, K, 2]."""
  count, values = descriptors.shape[1], descriptors.shape[2] + 1
  penalty = ridge * np.eye(values)
  penalty[-1, -1] = 0.0
  weights = np.empty((count, values, 2))
  for start in range(0, count, LANDMARK_BLOCK):
    block = slice(start, start + LANDMARK_BLOCK)
    x = _with_bias(descriptors[:, block].astype(np.float64)).transpose(1, 0, 2)  # [k, N, F+1]
    xt = x.transpose(0, 2, 1)
    weights[block] = np.linalg.solve(xt @ x + penalty, xt @ target[:, block].transpose(1, 0, 2))
  return weights


def _joint_inputs(descriptors, joint):
  """[N, K, F] descriptors -> [N, K d] standardised components for one joint stage
  (`joint`: mean [K, F], basis [F, d], scale [K d], ...), in blocks of views."""
  mean, basis, scale = joint[:3]
  out = np.empty((len(descriptors), scale.shape[0]), mean.dtype)   # The stage's precision.
  for start in range(0, len(descriptors), VIEW_BLOCK):
    rows = slice(start, start + VIEW_BLOCK)
    reduced = (descriptors[rows].astype(mean.dtype) - mean) @ basis
    out[rows] = reduced.reshape(len(reduced), -1) / scale
  return out


def _joint_offsets(descriptors, joint):
  """One joint stage's offsets in face-size units: [N, K, F] -> [N, K, 2]."""
  weights, bias, out = joint[3:]
  offsets = _joint_inputs(descriptors, joint) @ weights
  if out is not None:
    offsets = offsets @ out
  return (offsets + bias).reshape(len(descriptors), -1, 2)


def _fit_joint(descriptors, target, dims, ridge, rank=0):
  """(mean [K, F], basis [F, d], scale [K d], weights [K d, 2K] or [K d, r], bias [2K],
  out None or [r, 2K]) of one joint stage: the ridge map (penalty `ridge` x N on the
  standardised inputs) from every landmark's descriptor on the first `dims` principal
  directions of all of them to all the offsets `target` [N, K, 2]; with `rank` r > 0 to
  the targets' first r principal directions `out` only."""
  count, values = len(descriptors), descriptors.shape[-1]
  mean = descriptors.mean(0, dtype=np.float64)
  scatter = np.zeros((values, values))
  for start in range(0, count, VIEW_BLOCK):
    pooled = (descriptors[start:start + VIEW_BLOCK].astype(np.float64) - mean).reshape(-1, values)
    scatter += pooled.T @ pooled
  _, directions = np.linalg.eigh(scatter)              # Ascending eigenvalues.
  basis = directions[:, ::-1][:, :dims]
  scale = np.ones(descriptors.shape[1] * dims)
  reduced = _joint_inputs(descriptors, (mean, basis, scale))
  scale = reduced.std(0) + MIN_STD
  inputs = reduced / scale
  targets = target.reshape(count, -1)
  bias = targets.mean(0)
  targets = targets - bias
  out = None
  if 0 < rank < targets.shape[1]:
    out = np.linalg.svd(targets, full_matrices=False)[2][:rank]       # [r, 2K]
    targets = targets @ out.T
  penalty = ridge * count
  if inputs.shape[1] > count:   # Fewer views than inputs: the same solution, by the views.
    weights = inputs.T @ np.linalg.solve(inputs @ inputs.T + penalty * np.eye(count), targets)
  else:
    weights = np.linalg.solve(inputs.T @ inputs + penalty * np.eye(inputs.shape[1]),
                              inputs.T @ targets)
  return mean, basis, scale, weights, bias, out


def relative(anchors, points):
  """Points [N, K, 2] px in the frame of anchor points [N, A, 2]: ([N, 2K] centred on the
  anchors' mean and divided by their face size, centres [N, 1, 2], sizes [N, 1, 1])."""
  anchors = np.asarray(anchors, np.float64)
  centre, size = anchors.mean(1, keepdims=True), face_size(anchors)
  return ((np.asarray(points, np.float64) - centre) / size).reshape(len(points), -1), centre, size


def fit_lift(landmarks, dense, ridge):
  """(W [2A, 2M], b [2M]): the ridge map (with an intercept) from label sets `landmarks`
  [N, A, 2] px to the dense labels [N, M, 2] px of the same views, both `relative` to the
  landmarks."""
  from mgc_face.prior_init import ridge as ridge_map
  return ridge_map(relative(landmarks, landmarks)[0], relative(landmarks, dense)[0], ridge)


def lifted(points, lift):
  """[N, A, 2] px -> [N, A + M, 2]: the points followed by the dense ones `lift` (W, b,
  `fit_lift`) places from them (None: the points alone)."""
  if lift is None:
    return np.asarray(points)
  flat, centre, size = relative(points, points)
  dense = (flat @ lift[0] + lift[1]).reshape(len(points), -1, 2) * size + centre
  return np.concatenate([points, dense.astype(np.asarray(points).dtype)], 1)


def _joint_stage(stage):
  """One joint stage's arrays as float32 6-tuples (`out` None when absent, as in the
  5-tuples of version 3)."""
  stage = tuple(stage) + (None,) * (6 - len(stage))
  return tuple(None if a is None else np.asarray(a, np.float32) for a in stage)


class Cascade:
  """A trained cascade: `refine(images, points) -> points`.

  Attributes:
    weights: [S, K, F + 1, 2] per stage and point (last row: the bias).
    scales: [S] half-sizes of the squares, pixels.
    shape_mean, shape_basis: [2K] and [C, 2K], the shape space every stage projects onto
      (`shape_space`; C = 0: none).
    step: the network step the cascade was trained for.
    reader: None, or (weights [2K + 3, C'], bias [C'], mask [C'] bool): the coefficients
      under the mask are read from the refined points (`read`); or gated by yaw,
      (weights [G, 2K + 3, C'], bias [G, C'], mask, centres [G] degrees increasing).
    joint: None, or one tuple per stage (mean [K, F], basis [F, d], scale [K d], weights
      [K d, 2K] or [K d, r], bias [2K], out None or [r, 2K]) of the joint regression after
      the stage's per-landmark one.
    lift: None, or (weights [136, 2M], bias [2M]) placing M dense points from the 68.
    dense_vertices: None, or [M] the face model's vertex ids of the dense points.
    flip: None (68 landmarks: the iBUG mirror), or [K] the position of each point's
      mirror twin.
  """

  def __init__(self, weights, scales, ridge, step, shape_mean=None, shape_basis=None,
               reader=None, joint=None, lift=None, dense_vertices=None, flip=None):
    self.weights = np.asarray(weights, np.float32)
    self.scales = np.asarray(scales, np.float32)
    self.ridge = float(ridge)
    self.step = int(step)
    values = 2 * self.weights.shape[1]
    self.shape_mean = (np.zeros(values) if shape_mean is None
                       else np.asarray(shape_mean, np.float64))
    self.shape_basis = (np.zeros((0, values)) if shape_basis is None
                        else np.asarray(shape_basis, np.float64))
    self.reader = None if reader is None else (
        np.asarray(reader[0], np.float32), np.asarray(reader[1], np.float32),
        np.asarray(reader[2], bool)) + (
            (np.asarray(reader[3], np.float64),) if len(reader) > 3 and reader[3] is not None
            else ())
    self.joint = None if joint is None else [_joint_stage(stage) for stage in joint]
    self.lift = None if lift is None else tuple(np.asarray(a, np.float32) for a in lift)
    self.dense_vertices = None if dense_vertices is None else np.asarray(dense_vertices, np.int32)
    self.flip = None if flip is None else np.asarray(flip, np.int32)

  @property
  def points(self):
    """K, the number of points it refines (68, or 68 + M with dense points)."""
    return self.weights.shape[1]

  @property
  def gated(self):
    """Whether the reader is gated by yaw (`read` then needs the faces' yaws)."""
    return self.reader is not None and len(self.reader) > 3

  def read(self, normalised_points, vectors, yaw=None):
    """Coefficient vectors [N, C'] with the reader's coefficients replaced by what it reads
    from `normalised_points` [N, 2K + 3] (`mgc_face.model.normalise_landmarks` of all the
    refined points); unchanged without a reader.  A gated reader blends the maps of the
    two centres around each face's `yaw` [N] (degrees; clamped to the outer centres)."""
    if self.reader is None:
      return vectors
    weights, bias, mask = self.reader[:3]
    if not self.gated:
      return np.where(mask, normalised_points @ weights + bias, vectors).astype(np.float32)
    if yaw is None:
      raise ValueError("a yaw-gated reader needs the faces' yaws")
    centres = self.reader[3]
    position = np.interp(np.asarray(yaw, np.float64), centres, np.arange(len(centres)))
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, len(centres) - 1)
    share = (position - low)[:, None]
    read = ((1.0 - share) * (np.einsum("nd,ndc->nc", normalised_points, weights[low]) + bias[low])
            + share * (np.einsum("nd,ndc->nc", normalised_points, weights[high]) + bias[high]))
    return np.where(mask, read, vectors).astype(np.float32)

  def refine(self, images, points, grey_images=None):
    """[N, 224, 224, 3] float in [0, 1], the head's [N, 68, 2] px -> refined [N, K, 2] px
    (float32; the 68 landmarks first)."""
    grey_images = grey(images) if grey_images is None else grey_images
    points = lifted(np.array(points, np.float32), self.lift)
    for stage, (weights, half) in enumerate(zip(self.weights, self.scales)):
      descriptors = features(grey_images, points, half)
      points = points + _offsets(descriptors, weights) * face_size(points)
      if self.joint is not None:
        points = points + _joint_offsets(descriptors, self.joint[stage]) * face_size(points)
      points = project(points, self.shape_mean, self.shape_basis).astype(np.float32)
    return points

  def save(self, checkpoint_dir):
    joint = {}
    if self.joint is not None:
      joint = {key: np.stack(parts) for key, parts in zip(JOINT_KEYS, zip(*self.joint))}
      if self.joint[0][5] is not None:
        joint[JOINT_OUT_KEY] = np.stack([stage[5] for stage in self.joint])
    dense = {}
    if self.lift is not None:
      dense = dict(zip(DENSE_KEYS, self.lift + (self.dense_vertices, self.flip)))
    savez_atomic(Path(checkpoint_dir) / FILE_NAME, kind=np.array(KIND), version=VERSION,
                 weights=self.weights, scales=self.scales, ridge=self.ridge, step=self.step,
                 shape_mean=self.shape_mean, shape_basis=self.shape_basis,
                 **({} if self.reader is None else dict(zip(READER_KEYS, self.reader))),
                 **joint, **dense)


def fit(grey_images, points, labels, scales, ridge, components=0, step=0, joint_dims=0,
        joint_ridge=0.0, joint_rank=0, lift=None, dense_vertices=None, flip=None):
  """Trains the stages on views whose head points and labels are given.

  Args:
    grey_images: [N, H, W] uint8 (`grey`).
    points: [N, 68, 2] the head's points on them, px.
    labels: [N, K, 2] their labels, px (the 68 landmarks, then the dense points).
    scales: half-sizes, one stage each, px.
    ridge: penalty on the weights (not on the bias) of each landmark's solve.
    components: dimension of the labels' shape space the points are projected onto after
      each stage (0: no projection).
    step: the network step, stored with the cascade.
    joint_dims: descriptor components per landmark of the joint regression after each
      stage's per-landmark one (0: none).
    joint_ridge: its penalty, per view, on standardised inputs.
    joint_rank: > 0: the joint maps go to the first `joint_rank` principal directions of
      their targets (0: to every offset).
    lift: None (K = 68), or the (W, b) of `fit_lift` placing the dense points.
    dense_vertices, flip: stored with a lift (see `Cascade`).

  Returns:
    (the `Cascade`, the training points after each stage [S, N, K, 2]).
  """
  points = lifted(np.array(points, np.float64), lift)
  labels = np.asarray(labels, np.float64)
  mean, basis = shape_space(labels, components)
  stages, joints, trace = [], [], []
  for half in scales:
    descriptors = features(grey_images, points, half)                      # [N, K, F] float32
    size = face_size(points)
    weights = _fit_landmarks(descriptors, (labels - points) / size, ridge)
    points = points + _offsets(descriptors, weights) * size
    if joint_dims:  # The same descriptors, to what the per-landmark step left.
      size = face_size(points)
      joint = _fit_joint(descriptors, (labels - points) / size, joint_dims, joint_ridge,
                         joint_rank)
      points = points + _joint_offsets(descriptors, joint) * size
      joints.append(joint)
    points = project(points, mean, basis)
    stages.append(weights)
    trace.append(points.copy())
    del descriptors                                     # Freed before the next stage's.
  cascade = Cascade(np.stack(stages), scales, ridge, step, mean, basis,
                    joint=joints if joint_dims else None, lift=lift,
                    dense_vertices=dense_vertices, flip=flip)
  return cascade, np.stack(trace)


def load(checkpoint_dir):
  """The checkpoint folder's cascade, or None when it has none (InputError when damaged)."""
  path = Path(checkpoint_dir) / FILE_NAME
  if not path.is_file():
    return None
  try:
    with np.load(path) as data:
      version = int(data["version"])
      if str(data["kind"]) != KIND or version not in READABLE_VERSIONS:
        raise InputError(f"{path}: not a landmark cascade of version "
                         f"{' or '.join(map(str, READABLE_VERSIONS))}")
      weights, scales = data["weights"], data["scales"]
      expected = (len(scales), None, _descriptor().getDescriptorSize() + 1, 2)
      if weights.ndim != 4 or any(e is not None and e != w for e, w in zip(expected,
                                                                            weights.shape)):
        raise InputError(f"{path}: stage weights of shape {list(weights.shape)}, expected "
                         f"[{len(scales)}, K, {expected[2]}, 2]")
      mean = basis = None
      if version >= 2:
        mean, basis = data["shape_mean"], data["shape_basis"]
        values = 2 * weights.shape[1]
        if mean.shape != (values,) or basis.ndim != 2 or basis.shape[1] != values:
          raise InputError(f"{path}: shape space of shapes {list(mean.shape)} and "
                           f"{list(basis.shape)}, expected [{values}] and [C, {values}]")
      reader = None
      if READER_KEYS[0] in data:
        reader = _check_reader(path, [data[key] for key in READER_KEYS if key in data])
      joint = None
      if version >= 3 and JOINT_KEYS[0] in data:
        joint = _check_joint(path, [data[key] for key in JOINT_KEYS],
                             data[JOINT_OUT_KEY] if JOINT_OUT_KEY in data else None,
                             weights.shape)
      dense = [None] * len(DENSE_KEYS)
      if version >= 4 and DENSE_KEYS[0] in data:
        dense = _check_dense(path, [data[key] for key in DENSE_KEYS], weights.shape[1])
      return Cascade(weights, scales, float(data["ridge"]), int(data["step"]), mean, basis,
                     reader, joint, dense[:2] if dense[0] is not None else None, *dense[2:])
  except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as error:
    raise InputError(f"{path}: damaged landmark cascade ({type(error).__name__})") from None


def _check_reader(path, arrays):
  """The reader's arrays (as `READER_KEYS`; the yaw centres only when gated); InputError on
  shapes that do not fit together or centres that do not increase."""
  weights = arrays[0]
  gated = len(arrays) > 3
  groups = [arrays[3].shape[0]] if gated else []
  expected = [tuple(groups) + weights.shape[-2:], tuple(groups) + weights.shape[-1:],
              weights.shape[-1:]] + [tuple(groups)] * gated
  if weights.ndim != 2 + gated or any(a.shape != e for a, e in zip(arrays, expected)):
    names = "[G, D, C], [G, C], [C] and [G]" if gated else "[D, C], [C] and [C]"
    raise InputError(f"{path}: reader of shapes {[list(a.shape) for a in arrays]}, "
                     f"expected {names}")
  if gated and np.any(np.diff(arrays[3]) <= 0):
    raise InputError(f"{path}: the reader's yaw centres do not increase")
  return arrays


def _check_joint(path, arrays, out, weights_shape):
  """The joint stages' arrays (as `JOINT_KEYS`, and the output bases `out` [S, r, 2K] or
  None) as per-stage tuples; InputError on shapes that do not fit together."""
  mean, basis, scale, weights, bias = arrays
  stages, count, values = weights_shape[0], weights_shape[1], weights_shape[2] - 1
  dims = basis.shape[-1] if basis.ndim == 3 else 0
  outputs = 2 * count if out is None else out.shape[1]
  expected = ((stages, count, values), (stages, values, dims), (stages, count * dims),
              (stages, count * dims, outputs), (stages, 2 * count))
  if out is not None:
    arrays, expected = arrays + [out], expected + ((stages, outputs, 2 * count),)
  if not dims or out is not None and out.ndim != 3 or any(
      a.shape != e for a, e in zip(arrays, expected)):
    raise InputError(f"{path}: joint stages of shapes {[list(a.shape) for a in arrays]}, "
                     f"expected {[list(e) for e in expected]}")
  return list(zip(mean, basis, scale, weights, bias, [None] * stages if out is None else out))


def _check_dense(path, arrays, count):
  """The dense points' arrays (as `DENSE_KEYS`) for a cascade of `count` points; InputError
  on shapes that do not fit together or a `flip` that is not a mirror pairing."""
  lift_weights, lift_bias, vertices, flip = arrays
  dense = count - LANDMARKS
  expected = ((2 * LANDMARKS, 2 * dense), (2 * dense,), (dense,), (count,))
  if dense <= 0 or any(a.shape != e for a, e in zip(arrays, expected)):
    raise InputError(f"{path}: dense points of shapes {[list(a.shape) for a in arrays]}, "
                     f"expected {[list(e) for e in expected]}")
  if flip.min() < 0 or flip.max() >= count or np.any(flip[flip] != np.arange(count)):
    raise InputError(f"{path}: its mirror permutation is not a pairing of the {count} points")
  return arrays
