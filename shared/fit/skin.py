"""A soft skin mask from each face's own colours (for the photometric fit)."""

import cv2
import numpy as np

# Skin colour model (`skin_from_landmarks`).
SKIN_EXCLUDE = (slice(17, 22), slice(22, 27), slice(36, 42), slice(42, 48), slice(48, 60))
SKIN_TRIM = 0.8             # keep this fraction of sample pixels nearest the first estimate
SKIN_LUMA_STD_SCALE = 2.0   # shading varies luminance more than chroma
SKIN_FULL = 2.0             # Mahalanobis distance below which skin = 1
SKIN_FALLOFF = 1.5          # ... and over which it falls to exp(-1/2)
MIN_SKIN_PIXELS = 30


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
    ycc = cv2.cvtColor(images[b], cv2.COLOR_RGB2YCrCb).reshape(-1, 3)
    region = np.zeros(images.shape[1:3], np.uint8)
    cv2.fillConvexPoly(region, _cv_points(cv2.convexHull(landmarks[b].astype(np.float32))), 1)
    for part in SKIN_EXCLUDE:
      cv2.fillConvexPoly(region, _cv_points(cv2.convexHull(landmarks[b, part].astype(np.float32))), 0)
    samples = ycc[region.ravel() > 0].astype(np.float64)
    if len(samples) < MIN_SKIN_PIXELS:
      continue
    mean = np.median(samples, 0)
    for _ in range(2):   # two trimming rounds against hair, shadows and teeth
      cov = np.cov(samples.T) + np.eye(3) * 1e-6
      dist = np.einsum("ni,ij,nj->n", samples - mean, np.linalg.inv(cov), samples - mean)
      samples = samples[dist <= np.quantile(dist, SKIN_TRIM)]
      mean = samples.mean(0)
    mean, cov = samples.mean(0), np.cov(samples.T)
    scale = np.array([SKIN_LUMA_STD_SCALE, 1.0, 1.0])
    cov = cov * np.outer(scale, scale) + np.eye(3) * 1e-6
    d = np.sqrt(np.einsum("ni,ij,nj->n", ycc - mean, np.linalg.inv(cov), ycc - mean))
    prob = np.exp(-0.5 * (np.maximum(d - SKIN_FULL, 0.0) / SKIN_FALLOFF) ** 2)
    out[b, ..., 0] = prob.reshape(images.shape[1:3])
  return out


def _cv_points(points):
  """Continuous pixel coordinates -> int32 OpenCV polygon vertices (centres at integers)."""
  return np.round(np.asarray(points).reshape(-1, 2) - 0.5).astype(np.int32)
