"""Skin from each face's own colours: a soft mask (for the photometric fit) and
the solid region of the face that is seen unoccluded (for texture)."""

import cv2
import numpy as np

# Skin colour model (`skin_from_landmarks`).
SKIN_EXCLUDE = (slice(17, 22), slice(22, 27), slice(36, 42), slice(42, 48), slice(48, 60))
SKIN_TRIM = 0.8             # keep this fraction of sample pixels nearest the first estimate
SKIN_LUMA_STD_SCALE = 2.0   # shading varies luminance more than chroma
SKIN_FULL = 2.0             # Mahalanobis distance below which skin = 1
SKIN_FALLOFF = 1.5          # ... and over which it falls to exp(-1/2)
MIN_SKIN_PIXELS = 30
DARK_SUM = 0.12             # R + G + B below which chromaticity is not read (`skin_chromaticity`)

# The unoccluded face region (`unoccluded_face`).
REGION_SKIN = 0.5           # a pixel counts as skin above this soft skin value
REGION_OPENING = 0.06       # opening diameter as a fraction of the outer eye-corner distance
REGION_MIN_FRACTION = 0.3   # below this fraction of the landmark hull, the region is not trusted
EYE_CORNERS = (36, 45)      # outer eye corners, the face's scale
REGION_MARGIN = 0.05        # then eroded by this fraction of it (the shadow at a hair edge)
INNER_FACE = slice(27, 68)  # nose, eyes and mouth: their hull always counts as seen


def skin_from_landmarks(images, landmarks):
  """A soft skin mask from each face's own colours.

  Samples the pixels inside the hull of the 68 landmarks minus brows, eyes
  and mouth, fits a Gaussian in YCrCb (trimmed to the `SKIN_TRIM` nearest
  fraction, luminance std widened by `SKIN_LUMA_STD_SCALE` for shading), and
  scores every pixel by its Mahalanobis distance d: 1 for d <= `SKIN_FULL`,
  then exp(-(d - SKIN_FULL)^2 / (2 SKIN_FALLOFF^2)).  Hair, eyes, glasses,
  beards and background inside the face region get low weight in the
  photometric loss.

  Args:
    images: [B, H, W, 3] float in [0, 1].
    landmarks: [B, 68, 2] continuous pixels in the same images.

  Returns:
    [B, H, W, 1] float32 in [0, 1] (all ones for a face with too few samples).
  """
  images = np.asarray(images, np.float32)
  landmarks = np.asarray(landmarks, np.float64)
  out = np.ones(images.shape[:3] + (1,), np.float32)
  for b in range(len(images)):  # per face: polygon fill and a 3x3 covariance
    ycc = cv2.cvtColor(images[b], cv2.COLOR_RGB2YCrCb).reshape(-1, 3).astype(np.float64)
    prob = _skin_score(ycc, _sample_region(images.shape[1:3], landmarks[b]).ravel() > 0,
                       np.array([SKIN_LUMA_STD_SCALE, 1.0, 1.0]))
    if prob is not None:
      out[b, ..., 0] = prob.reshape(images.shape[1:3])
  return out


def skin_chromaticity(images, landmarks):
  """A soft skin mask from each face's own chromaticity, blind to shading.

  As `skin_from_landmarks`, but the Gaussian is fitted to the chromaticity
  (r, g) = (R, G) / (R + G + B), which light and shadow of one colour do not
  change, and pixels darker than `DARK_SUM` (R + G + B) score 0: their
  chromaticity is noise, and black hair is dark.  A face lit from one side
  keeps its shadowed half; hair, whose hue and saturation differ from the
  skin's, does not pass.

  Args / Returns: as `skin_from_landmarks`.
  """
  images = np.asarray(images, np.float32)
  landmarks = np.asarray(landmarks, np.float64)
  out = np.ones(images.shape[:3] + (1,), np.float32)
  for b in range(len(images)):
    total = images[b].sum(-1).reshape(-1).astype(np.float64)
    bright = total >= DARK_SUM
    rg = images[b].reshape(-1, 3)[:, :2] / np.maximum(total, DARK_SUM)[:, None]
    sample = (_sample_region(images.shape[1:3], landmarks[b]).ravel() > 0) & bright
    prob = _skin_score(rg, sample, np.ones(2))
    if prob is not None:
      out[b, ..., 0] = (prob * bright).reshape(images.shape[1:3])
  return out


def _sample_region(shape, landmarks):
  """uint8 [H, W]: the hull of the 68 landmarks minus brows, eyes and mouth."""
  region = _fill_hull(np.zeros(shape, np.uint8), landmarks, 1)
  for part in SKIN_EXCLUDE:
    _fill_hull(region, landmarks[part], 0)
  return region


def _fill_hull(mask, points, value):
  """Fills the convex hull of points [N, 2] (continuous pixels) in the uint8 mask; returns it."""
  cv2.fillConvexPoly(mask, _cv_points(cv2.convexHull(np.asarray(points, np.float32))), value)
  return mask


def _skin_score(features, sample, scale):
  """[N] soft skin score of each pixel's features [N, C] under a trimmed Gaussian fitted to
  the rows `sample` ([N] bool), its std scaled by `scale` [C]; None if too few samples."""
  samples = features[sample]
  if len(samples) < MIN_SKIN_PIXELS:
    return None
  regulariser = np.eye(features.shape[1]) * 1e-6
  mean = np.median(samples, 0)
  for _ in range(2):   # two trimming rounds against hair, shadows and teeth
    cov = np.cov(samples.T) + regulariser
    dist = np.einsum("ni,ij,nj->n", samples - mean, np.linalg.inv(cov), samples - mean)
    samples = samples[dist <= np.quantile(dist, SKIN_TRIM)]
    mean = samples.mean(0)
  mean, cov = samples.mean(0), np.cov(samples.T)
  cov = cov * np.outer(scale, scale) + regulariser
  d = np.sqrt(np.einsum("ni,ij,nj->n", features - mean, np.linalg.inv(cov), features - mean))
  return np.exp(-0.5 * (np.maximum(d - SKIN_FULL, 0.0) / SKIN_FALLOFF) ** 2)


def _cv_points(points):
  """Continuous pixel coordinates -> int32 OpenCV polygon vertices (centres at integers)."""
  return np.round(np.asarray(points).reshape(-1, 2) - 0.5).astype(np.int32)


def unoccluded_face(images, landmarks):
  """The solid region of each face that its skin colour says is not occluded.

  The skin test is `skin_chromaticity`'s, which shading does not change.
  Hair over the forehead, a hand or a scarf passes it here and there (strands
  lit like skin), but not as a solid area.  The skin pixels (soft value above
  `REGION_SKIN`) are opened with a disc of `REGION_OPENING` times the outer
  eye-corner distance, which removes such scattered passes; the connected
  part that covers most of the 68 landmarks' hull is kept and its holes
  (eyes, brows, mouth, shadows) are filled; it is eroded by `REGION_MARGIN`
  times that distance (the shadow a fringe casts and the strands at its
  edge), and the hull of the nose, eyes and mouth landmarks is added (a brow
  touching the hair can open an eye's hole to the outside).  Where that part
  covers less than `REGION_MIN_FRACTION` of the hull (skin only in patches too
  small to be a face, or a photo too dark to read), the result is all ones:
  no occluder is claimed.  In a grey photo hair passes the test, so nothing is
  claimed there either.

  Args:
    images: [B, H, W, 3] float in [0, 1].
    landmarks: [B, 68, 2] continuous pixels in the same images.

  Returns:
    [B, H, W, 1] float32 in {0, 1}: 1 on the face seen unoccluded (and the
    surroundings the opening keeps, such as a neck of the same colour).
  """
  skin = skin_chromaticity(images, landmarks)
  landmarks = np.asarray(landmarks, np.float64)
  out = np.ones_like(skin)
  height, width = skin.shape[1:3]
  for b in range(len(skin)):   # per face: morphology and connected parts
    scale = np.linalg.norm(landmarks[b, EYE_CORNERS[0]] - landmarks[b, EYE_CORNERS[1]])
    size = max(1, int(round(REGION_OPENING * scale)))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    opened = cv2.morphologyEx((skin[b, ..., 0] > REGION_SKIN).astype(np.uint8), cv2.MORPH_OPEN,
                              disc)
    count, parts = cv2.connectedComponents(opened)
    hull = _fill_hull(np.zeros((height, width), np.uint8), landmarks[b], 1)
    overlap = np.bincount(parts[hull > 0], minlength=count)[1:]
    if overlap.size == 0 or overlap.max() < REGION_MIN_FRACTION * hull.sum():
      continue
    region = (parts == 1 + np.argmax(overlap)).astype(np.uint8)
    flooded = np.pad(region, 1)   # the background flooded from the padded corner:
    cv2.floodFill(flooded, None, (0, 0), 1)   # what it cannot reach is a hole
    region = np.maximum(region, 1 - flooded[1:-1, 1:-1])
    margin = int(round(REGION_MARGIN * scale))
    if margin > 0:
      region = cv2.erode(region, cv2.getStructuringElement(
          cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1)))
    out[b, ..., 0] = _fill_hull(region, landmarks[b, INNER_FACE], 1)
  return out
