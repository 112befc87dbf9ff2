"""Faces followed through a video's frames, and their points smoothed over time.

Each frame's faces are linked to the tracks of the frames before by box overlap
(`FaceTracks.add`); a cut between shots ends every track.  A face's box, 68 landmarks and
468 mesh points are then replaced by a local polynomial fit over time to its track's
(`local_fit_weights`: Gaussian weights over the frames within
`SmoothingConfig.radius_sigmas` widths on both sides).  That takes out most of the landmark
model's frame-to-frame jitter; a local parabola follows a turning head without the lag of a
plain running mean.  The fitted 3D face follows the smoothed points, so it is smoothed as
well (docs/photos.md, "Videos").

    tracks = FaceTracks(SmoothingConfig(), fps)
    tracks.add(frame, faces, image)     # as frames are detected, in order
    faces = tracks.smoothed(frame)      # once frames up to frame + tracks.radius are added
    tracks.forget(frame)                # drops what no later frame's smoothing needs
"""

import dataclasses
import math

import cv2
import numpy as np

from shared.photo.blazeface import iou

# `shared.photo.landmarks.Face` fields smoothed over time; `dense` only where every face in
# the window has it.
SMOOTHED_FIELDS = ("box", "landmarks68", "dense")


@dataclasses.dataclass(frozen=True)
class SmoothingConfig:
  """How a video's face points are smoothed over time (0 seconds: not at all).

  The defaults were chosen on synthetic clips with known landmarks
  (`bench/video_smoothing.py`, docs/photos.md "Videos"): a local parabola 0.12 s wide
  took out 85 % of the jitter of a head turning at up to 105 degrees per second and 78 %
  at up to 314, and lowered the position error a little at both speeds; a local line of
  the same width lagged behind the fast turn.

  Attributes:
    sigma_seconds: width (standard deviation) of the Gaussian time weights, seconds
      (3 frames at 25 fps).
    radius_sigmas: frames within this many widths on either side take part.
    degree: degree of the local polynomial (2: a parabola, which follows a turning head;
      1: a line; 0: a weighted mean).
    min_iou: box overlap (intersection over union) at which a face continues a track of
      the frames before.
    max_shift, max_size_ratio: a face that overlaps no track by `min_iou` (one that moved
      more than about half its width since: a fast pan, or `--frame-step`) continues the
      nearest track left whose predicted box (`predicted_box`) is within `max_shift` box
      sizes of it (`box_shift`) and of a size within `max_size_ratio` of its own.
    cut_correlation: a frame whose grey thumbnail (`thumbnail`) correlates less than this
      with the frame before starts a new shot: no track goes on across it.  Measured
      (docs/photos.md, "Smoothing over time"): at least 0.74 between the frames of a turning,
      zooming clip and 0.56 in a pan by 8 % of the width per frame; at most 0.17 between the
      astronaut and 14 other photos of scikit-image, and at most 0.31 between those but
      for one pair of grey pictures at 0.54 (a cut the box overlap must then catch).
    thumbnail_side: side of that thumbnail, pixels.
  """
  sigma_seconds: float = 0.12
  radius_sigmas: float = 2.5
  degree: int = 2
  min_iou: float = 0.3
  max_shift: float = 1.0
  max_size_ratio: float = 1.5
  cut_correlation: float = 0.4
  thumbnail_side: int = 32

  def radius_frames(self, fps):
    """Half-width of the window in video frames at `fps` (0 when smoothing is off)."""
    if self.sigma_seconds <= 0:
      return 0
    return int(math.ceil(self.radius_sigmas * self.sigma_seconds * fps))


def local_fit_weights(offsets, sigma, degree):
  """Weights w such that sum_i w_i x_i is the value at offset 0 of the polynomial of
  `degree` fitted to samples x_i at `offsets` by least squares with Gaussian weights
  exp(-offset^2 / (2 sigma^2)).

  Args:
    offsets: `[N]` sample times relative to the output time (any unit, as `sigma`).
    sigma: Gaussian width, > 0.
    degree: polynomial degree; lowered to N - 1 when there are fewer samples.

  Returns:
    `float64 [N]` weights summing to 1 (a constant is kept; with degree >= 1, a line too).
  """
  offsets = np.asarray(offsets, np.float64)
  degree = min(int(degree), len(offsets) - 1)
  gauss = np.exp(-0.5 * (offsets / sigma) ** 2)
  design = np.vander(offsets / sigma, degree + 1, increasing=True)     # [N, d + 1]
  weighted = design.T * gauss                                           # [d + 1, N]
  return np.linalg.solve(weighted @ design, weighted)[0]


def thumbnail(image, side):
  """`float64 [side * side]`: `image` (uint8 RGB [H, W, 3]) in grey, shrunk to side x side,
  less its mean, of unit norm (so the dot product of two is their correlation)."""
  grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
  small = cv2.resize(grey, (side, side), interpolation=cv2.INTER_AREA).astype(np.float64)
  small = small.ravel() - small.mean()
  return small / max(float(np.linalg.norm(small)), 1e-9)


def predicted_box(box, velocity, frames):
  """`float64 [4]` a box `(x0, y0, x1, y1)` moved on `frames` frames at `velocity` (`[2]`
  pixels per frame, of its centre); its size stays (a box's edges jitter more than its
  centre moves, and a face half hidden shrinks its box)."""
  return np.asarray(box, np.float64) + frames * np.tile(np.asarray(velocity, np.float64), 2)


def _centre(box):
  """`float64 [..., 2]` the centre of boxes `[..., 4]` `(x0, y0, x1, y1)`."""
  box = np.asarray(box, np.float64)
  return 0.5 * (box[..., :2] + box[..., 2:])


def box_shift(box, boxes):
  """How far `box` (`[4]` `(x0, y0, x1, y1)`) is from each of `boxes` (`[N, 4]`): `(shift,
  ratio)`, both `float64 [N]`: the distance between the centres over the geometric mean of
  the boxes' sizes (sqrt of the area), and the larger size over the smaller."""
  box, boxes = np.asarray(box, np.float64), np.asarray(boxes, np.float64).reshape(-1, 4)

  def size(b):
    extent = np.maximum(b[..., 2:] - b[..., :2], 1e-9)
    return np.sqrt(extent[..., 0] * extent[..., 1])

  a, b = size(box), size(boxes)
  shift = np.linalg.norm(_centre(boxes) - _centre(box), axis=-1) / np.sqrt(a * b)
  return shift, np.maximum(a, b) / np.minimum(a, b)


def _kind(face):
  """Faces continue a track only with the same kind of points."""
  return (face.dense is not None, face.points68)


class FaceTracks:
  """The faces of a video's frames, linked into tracks, smoothed on request.

  Frames must be added in increasing order.  A face continues the track of the last face
  it overlaps by at least `min_iou` among the tracks seen in the frame added before or
  within the smoothing window (each track at most once per frame, best overlaps first);
  otherwise it starts a track.  The overlap is the larger of the face's box with the
  track's latest box and with that box moved on at the track's latest velocity
  (`predicted_box`).  Faces left over then continue the nearest track left within
  `max_shift` (`box_shift`), so a face that moves more than about half its width per
  frame (a fast pan, or `--frame-step`) keeps its track.
  """

  def __init__(self, config, fps):
    self.config = config
    self.sigma = config.sigma_seconds * fps          # video frames
    self.radius = config.radius_frames(fps)
    self.frames = {}        # frame -> [(track id, Face)]
    self.last = {}          # track id -> (frame, Face, centre velocity [2] px per frame)
    self.next_id = 0
    self.previous = None    # the thumbnail of the frame added last
    self.latest = None      # the frame added last

  def add(self, frame, faces, image=None):
    """Links `faces` (`shared.photo.landmarks.Face` list) of video frame `frame` to the
    tracks; returns their track ids.  With the frame's `image` (uint8 RGB), a cut from
    the frame added before (`SmoothingConfig.cut_correlation`) ends every track first."""
    if image is not None:
      current = thumbnail(image, self.config.thumbnail_side)
      if self.previous is not None and current @ self.previous < self.config.cut_correlation:
        self.last.clear()
      self.previous = current
    live = [(tid, face, predicted_box(face.box, velocity, frame - seen))
            for tid, (seen, face, velocity) in self.last.items()
            if frame - seen <= self.radius or seen == self.latest]
    overlaps, shifts = [], []       # (score, face index, track id), both passes
    for i, face in enumerate(faces):
      candidates = [(tid, old, ahead) for tid, old, ahead in live if _kind(old) == _kind(face)]
      if not candidates:
        continue
      box = np.asarray(face.box, np.float64)
      ahead = np.stack([a for _, _, a in candidates])
      overlap = np.maximum(iou(box, np.stack([old.box for _, old, _ in candidates])),
                           iou(box, ahead))
      shift, ratio = box_shift(box, ahead)
      for o, d, r, (tid, _, _) in zip(overlap, shift, ratio, candidates):
        if o >= self.config.min_iou:
          overlaps.append((-o, i, tid))
        elif d <= self.config.max_shift and r <= self.config.max_size_ratio:
          shifts.append((d, i, tid))
    ids = [None] * len(faces)
    taken = set()
    for pairs in (overlaps, shifts):     # overlaps first, then the nearest, best first
      for _, i, tid in sorted(pairs, key=lambda p: p[0]):
        if ids[i] is None and tid not in taken:
          ids[i] = tid
          taken.add(tid)
    for i in range(len(faces)):
      velocity = np.zeros(2)
      if ids[i] is None:
        ids[i] = self.next_id
        self.next_id += 1
      else:
        seen, old, _ = self.last[ids[i]]
        velocity = (_centre(faces[i].box) - _centre(old.box)) / (frame - seen)
      self.last[ids[i]] = (frame, faces[i], velocity)
    self.frames[frame] = list(zip(ids, faces))
    self.latest = frame
    return ids

  def smoothed(self, frame):
    """The faces of `frame` (as added, in order), each with its track number (`track`) and
    its `SMOOTHED_FIELDS` replaced by the local fit over its track's faces within `radius`
    frames; those fields as added when smoothing is off."""
    if self.radius == 0:
      return [dataclasses.replace(face, track=tid) for tid, face in self.frames[frame]]
    window = [(f, entries) for f, entries in self.frames.items()
              if abs(f - frame) <= self.radius]
    out = []
    for tid, face in self.frames[frame]:
      times, faces = zip(*[(f, other) for f, entries in window
                           for other_id, other in entries if other_id == tid])
      weights = local_fit_weights(np.asarray(times) - frame, self.sigma, self.config.degree)
      changes = {}
      for name in SMOOTHED_FIELDS:
        values = [getattr(other, name) for other in faces]
        if any(v is None for v in values):
          continue
        mixed = np.tensordot(weights, np.stack(values).astype(np.float64), axes=1)
        changes[name] = mixed.astype(np.asarray(getattr(face, name)).dtype)
      out.append(dataclasses.replace(face, track=tid, **changes))
    return out

  def forget(self, frame):
    """Drops the faces that no frame after `frame` needs (those more than `radius` frames
    before it is past)."""
    for f in [f for f in self.frames if f <= frame - self.radius]:
      del self.frames[f]
    for tid in [t for t, (seen, _, _) in self.last.items() if seen < frame - self.radius]:
      del self.last[tid]
