"""5-point similarity alignment of a face to the 224 x 224 MGCNet crop.

Pixel convention (project-wide): continuous coordinates, pixel `i` covers
`[i, i+1)` with its centre at `i + 0.5`; an image spans `[0, W] x [0, H]`.
All matrices here are `[2, 3]` affine maps `p' = M[:, :2] @ p + M[:, 2]` in
that convention.  OpenCV's `warpAffine` puts pixel centres at integer
coordinates instead, so `_to_cv2` converts before warping.

The 5 points (in this order): left-of-image eye centre (subject's right eye,
mean of 0-based landmarks 36..41), right-of-image eye centre (42..47), nose
point (landmark 33, the subnasale; 1-based 34), mouth corners 48 and 54
(1-based 49 and 55).

Why landmark 33 for the nose and not 30 (the tip, which Deep3D uses): the
template below is MGCNet's `std_224_bfm09`, whose nose point (112.0,
132.863434) is exactly entry 33 of its 68-point template
`std_224_bfm09_lmFull`, and MGCNet's `cvrt_300w_to_CelebA` takes
`lm68[34 - 1]` (both in `src_common/geometry/face_align/gafr_std_align.py`).
The eye centres of the template likewise equal the means of entries 36..41 and
42..47 of `std_224_bfm09_lmFull`.

Deviation from MGCNet, on purpose: when the crop shrinks the face by more
than `MIN_WARP_SCALE` (large photos), the face region is first reduced with
`INTER_AREA` and then warped, instead of one aliasing bilinear warp.  The
returned matrices are unaffected.
"""

import dataclasses

import cv2
import numpy as np

TEMPLATE_SIZE = 224
# MGCNet std_224_bfm09 (tools/preprocess/crop_image_affine.py and
# src_common/geometry/face_align/gafr_std_align.py): eye centres, nose (lm 33),
# mouth corners, in pixels of the 224 x 224 crop ("0.75, 4700 intrinsic").
# Taken as continuous coordinates: the crop centre (112, 112) is the
# principal point of MGCNet's camera.
TEMPLATE_5 = np.array([
    [81.672401, 88.470589],
    [141.862671, 88.462921],
    [112.000000, 132.863434],
    [87.397392, 153.562943],
    [136.007263, 153.552078],
], np.float64)

LEFT_EYE = slice(36, 42)      # 0-based, subject's right eye (image left)
RIGHT_EYE = slice(42, 48)
NOSE = 33                     # subnasale, see module doc
MOUTH_LEFT = 48
MOUTH_RIGHT = 54
PIXEL_CENTER = 0.5            # continuous coordinate of pixel 0's centre
MIN_WARP_SCALE = 0.5          # below this, pre-reduce with INTER_AREA
CROP_MARGIN = 2.0             # extra source pixels kept around the crop preimage


@dataclasses.dataclass
class Aligned:
  """An aligned crop and how to go back.

  Attributes:
    image: `uint8 [S, S, C]` crop, `S = TEMPLATE_SIZE` by default.
    matrix: `float64 [2, 3]` original -> aligned (continuous coordinates).
    inverse: `float64 [2, 3]` aligned -> original.
    landmarks68: `float32 [68, 2]` the input landmarks in aligned coordinates.
  """
  image: np.ndarray
  matrix: np.ndarray
  inverse: np.ndarray
  landmarks68: np.ndarray


def five_points(landmarks68):
  """68 landmarks -> the 5 alignment points.

  Args:
    landmarks68: `[..., 68, 2]`.

  Returns:
    `[..., 5, 2]` float64: eye centres, nose (33), mouth corners (48, 54).
  """
  lm = np.asarray(landmarks68, np.float64)
  if lm.shape[-2:] != (68, 2):
    raise ValueError(f"five_points expects [..., 68, 2], got {lm.shape}")
  return np.stack([lm[..., LEFT_EYE, :].mean(-2), lm[..., RIGHT_EYE, :].mean(-2),
                   lm[..., NOSE, :], lm[..., MOUTH_LEFT, :], lm[..., MOUTH_RIGHT, :]], axis=-2)


def estimate_similarity(src, dst):
  """Least-squares similarity (rotation, uniform scale, translation) src -> dst.

  Umeyama (1991), "Least-squares estimation of transformation parameters
  between two point patterns", with the reflection guard; the same estimate as
  `skimage.transform.SimilarityTransform.estimate`.

  Args:
    src: `[N, 2]`, N >= 2, not all equal.
    dst: `[N, 2]`.

  Returns:
    `float64 [2, 3]` M with `dst ~= M[:, :2] @ src + M[:, 2]`.
  """
  src = np.asarray(src, np.float64)
  dst = np.asarray(dst, np.float64)
  if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape or len(src) < 2:
    raise ValueError(f"estimate_similarity expects two [N>=2, 2] arrays, got {src.shape} "
                     f"and {dst.shape}")
  src_mean, dst_mean = src.mean(0), dst.mean(0)
  src_c, dst_c = src - src_mean, dst - dst_mean
  src_var = (src_c ** 2).sum() / len(src)
  if src_var <= np.finfo(np.float64).tiny:
    raise ValueError("estimate_similarity: source points are all equal")
  cov = dst_c.T @ src_c / len(src)
  u, sing, vt = np.linalg.svd(cov)
  sign = np.ones(2)
  if np.linalg.det(u) * np.linalg.det(vt) < 0:
    sign[-1] = -1.0
  rotation = (u * sign) @ vt
  scale = (sing * sign).sum() / src_var
  matrix = np.empty((2, 3))
  matrix[:, :2] = scale * rotation
  matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
  return matrix


def transform_points(points, matrix):
  """Applies a `[2, 3]` affine map to `[..., 2]` points (continuous coordinates)."""
  points = np.asarray(points, np.float64)
  matrix = np.asarray(matrix, np.float64)
  return points @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix):
  """Inverse of a `[2, 3]` affine map, as `[2, 3]`."""
  matrix = np.asarray(matrix, np.float64)
  linear_inv = np.linalg.inv(matrix[:, :2])
  return np.concatenate([linear_inv, -(linear_inv @ matrix[:, 2])[:, None]], axis=1)


def compose_affine(outer, inner):
  """`outer(inner(p))` as one `[2, 3]` map."""
  outer = np.asarray(outer, np.float64)
  inner = np.asarray(inner, np.float64)
  return np.concatenate([outer[:, :2] @ inner[:, :2],
                         (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]], axis=1)


def _to_cv2(matrix):
  """Continuous-coordinate map -> the same map with pixel centres at integers.

  With `u = c + 0.5`: `c' = A c + (A @ [.5, .5] + b - .5)`.
  """
  out = np.array(matrix, np.float64)
  out[:, 2] += out[:, :2] @ np.full(2, PIXEL_CENTER) - PIXEL_CENTER
  return out


def warp_affine(image, matrix, size, border=cv2.BORDER_REPLICATE):
  """Warps `image` by continuous-coordinate `matrix` (source -> output).

  Bilinear with replicated borders, like MGCNet.  When the map shrinks by
  more than `MIN_WARP_SCALE`, the source region the output sees is cut out and
  reduced with `INTER_AREA` first (anti-aliasing).

  Args:
    image: `[H, W, C]` or `[H, W]`.
    matrix: `[2, 3]` source -> output.
    size: `(width, height)` of the output.
    border: OpenCV border mode (replicated by default; `cv2.BORDER_CONSTANT`
      pads with zeros).

  Returns:
    `[height, width, C]` same dtype as `image`.
  """
  matrix = np.asarray(matrix, np.float64)
  height, width = image.shape[:2]
  scale = np.sqrt(abs(np.linalg.det(matrix[:, :2])))
  if scale < MIN_WARP_SCALE:
    out_w, out_h = size
    corners = np.array([[0, 0], [out_w, 0], [0, out_h], [out_w, out_h]], np.float64)
    pre = transform_points(corners, invert_affine(matrix))
    lo = np.floor(pre.min(0) - CROP_MARGIN / scale).astype(int)
    hi = np.ceil(pre.max(0) + CROP_MARGIN / scale).astype(int)
    lo = np.clip(lo, 0, [width - 1, height - 1])
    hi = np.clip(hi, lo + 1, [width, height])
    crop = image[lo[1]:hi[1], lo[0]:hi[0]]
    crop_size = hi - lo
    small_size = np.maximum(1, np.round(crop_size * scale)).astype(int)
    small = cv2.resize(crop, tuple(int(v) for v in small_size), interpolation=cv2.INTER_AREA)
    factor = small_size / crop_size
    to_small = np.array([[factor[0], 0, -lo[0] * factor[0]],
                         [0, factor[1], -lo[1] * factor[1]]])
    image, matrix = small, compose_affine(matrix, invert_affine(to_small))
  return cv2.warpAffine(image, _to_cv2(matrix), tuple(int(v) for v in size),
                        flags=cv2.INTER_LINEAR, borderMode=border)


def align_224(image, landmarks68, template=TEMPLATE_5, size=TEMPLATE_SIZE):
  """Crops a face to the MGCNet 224 x 224 frame by a 5-point similarity.

  Args:
    image: `uint8 [H, W, C]` (RGB, or RGBA).
    landmarks68: `[68, 2]` in `image`'s continuous pixel coordinates.
    template: `[5, 2]` target points for `TEMPLATE_SIZE`; scaled by
      `size / TEMPLATE_SIZE` for other sizes.
    size: output side in pixels.

  Returns:
    `Aligned`.
  """
  landmarks68 = np.asarray(landmarks68, np.float64)
  dst = np.asarray(template, np.float64) * (size / TEMPLATE_SIZE)
  matrix = estimate_similarity(five_points(landmarks68), dst)
  crop = warp_affine(image, matrix, (size, size))
  if crop.ndim == 2 and np.asarray(image).ndim == 3:
    crop = crop[:, :, None]
  return Aligned(image=crop, matrix=matrix, inverse=invert_affine(matrix),
                 landmarks68=transform_points(landmarks68, matrix).astype(np.float32))
