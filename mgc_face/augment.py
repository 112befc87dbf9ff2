"""Augmentation of the landmark head's warm-up batches (fixed data sets only).

On a fixed set of a few dozen identities the landmark head overfits during
its head-only warm-up (docs/mgc.md, issue 13).  These ops make each warm-up
view a new variation of its face: a horizontal flip (with the 68-point
index permutation, so a left-eye label stays on the left eye of the flipped
face), a random similarity transform of the crop (scale, in-plane rotation,
shift about the crop centre) applied to the image and its landmarks alike,
and a brightness / per-channel colour jitter.  All ops are vectorised over
the views and draw from stateless generators seeded by (seed, element
index), so a run is reproducible.

Only the head-only warm-up steps see augmented views: the full steps' multi-view
and photometric terms need the true camera of every view, so they read the
triplets unchanged (`mgc_face.train.make_input`).

Conventions: landmarks are continuous pixels with pixel centres at +0.5 (as
`_lm.txt`); a similarity maps a point p to A (p - c) + c + t with c the crop
centre (size / 2).  The flip is the affine map x -> size - x, so a view's flip and
similarity make one map, and the image is resampled once, bilinearly by inverse
mapping (ImageProjectiveTransformV3 on pixel indices, whose centres are at integer
coordinates), edges filled by reflection.
"""

import math

import numpy as np
import tensorflow as tf

# iBUG 68-point mirror: index k of a flipped face is landmark FLIP_PERMUTATION[k] of the original.
_JAW = list(range(16, -1, -1))
_BROWS = list(range(26, 21, -1)) + list(range(21, 16, -1))
_NOSE = [27, 28, 29, 30] + list(range(35, 30, -1))
_EYES = [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
_MOUTH = [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
_INNER = [64, 63, 62, 61, 60, 67, 66, 65]
FLIP_PERMUTATION = tuple(_JAW + _BROWS + _NOSE + _EYES + _MOUTH + _INNER)
FILL_MODE = "REFLECT"
INTERPOLATION = "BILINEAR"


def active(config):
  """True when any augmentation of `config` (an `MGCConfig`) is on."""
  return bool(config.augment_flip or config.augment_scale or config.augment_rotation or
              config.augment_shift or config.augment_brightness or config.augment_colour)


def similarity_matrices(scale, angle, shift, size):
  """Forward similarities: [N, 2, 3] matrices M with p' = M[:, :2] p + M[:, 2] (pixels).

  scale [N], angle [N] (radians, counter-clockwise on screen, i.e. y down),
  shift [N, 2] (pixels); about the crop centre size / 2.
  """
  cos, sin = scale * tf.cos(angle), scale * tf.sin(angle)
  linear = tf.stack([tf.stack([cos, sin], -1), tf.stack([-sin, cos], -1)], -2)   # [N, 2, 2]
  centre = tf.fill([2], tf.cast(size, scale.dtype) / 2.0)
  offset = centre + shift - tf.linalg.matvec(linear, tf.broadcast_to(centre, tf.shape(shift)))
  return tf.concat([linear, offset[..., None]], -1)


def warp_images(images, matrices):
  """Resamples [N, H, W, C] so that the point p of an image moves to M p (continuous pixels)."""
  linear, offset = matrices[:, :, :2], matrices[:, :, 2]
  inverse = tf.linalg.inv(linear)
  # Output index q (centre q + 0.5) samples the input at inv(A)(q + 0.5 - t) - 0.5.
  half = tf.constant([0.5, 0.5], images.dtype)
  inv_offset = tf.linalg.matvec(inverse, half - offset) - half
  transforms = tf.concat([inverse[:, 0], inv_offset[:, 0:1], inverse[:, 1], inv_offset[:, 1:2],
                          tf.zeros([tf.shape(images)[0], 2], images.dtype)], -1)
  shape = tf.shape(images)[1:3]
  return tf.raw_ops.ImageProjectiveTransformV3(
      images=images, transforms=transforms, output_shape=shape, fill_value=0.0,
      interpolation=INTERPOLATION, fill_mode=FILL_MODE)


def transform_points(points, matrices):
  """[N, K, 2] points -> M p."""
  return tf.einsum("nij,nkj->nki", matrices[:, :, :2], points) + matrices[:, None, :, 2]


def flip_points(points, flags, width):
  """[N, 68, 2] -> the flagged views' points (flags [N] bool) mirrored (x -> width - x) and
  permuted (`FLIP_PERMUTATION`), so that a left-eye label stays on the left eye."""
  mirrored_points = tf.gather(points, FLIP_PERMUTATION, axis=1)
  mirrored_points = tf.stack([width - mirrored_points[..., 0], mirrored_points[..., 1]], -1)
  return tf.where(flags[:, None, None], mirrored_points, points)


def flip_matrices(flags, width):
  """[N, 2, 3] forward maps: x -> width - x for the flagged views, the identity for the rest."""
  sign = tf.where(flags, -1.0, 1.0)
  zero, one = tf.zeros_like(sign), tf.ones_like(sign)
  shift = tf.where(flags, tf.cast(width, tf.float32), 0.0)
  return tf.stack([tf.stack([sign, zero, shift], -1), tf.stack([zero, one, zero], -1)], -2)


def compose(outer, inner):
  """[N, 2, 3] maps: p -> outer(inner(p))."""
  linear = tf.matmul(outer[:, :, :2], inner[:, :, :2])
  offset = tf.linalg.matvec(outer[:, :, :2], inner[:, :, 2]) + outer[:, :, 2]
  return tf.concat([linear, offset[..., None]], -1)


def augment_views(config, images, skins, points, seed):
  """Augments N views: (images [N, S, S, 3], skins [N, S, S, 1], points [N, 68, 2]).

  skins: None to leave out (the landmark head's warm-up does not read them); the same
    images and points come back either way.
  seed: int32 [2] stateless seed (e.g. (run seed, element index)).
  """
  count = tf.shape(images)[0]
  size = tf.shape(images)[1]
  seeds = tf.random.experimental.stateless_split(seed, 6)
  uniform = lambda k, shape: tf.random.stateless_uniform(shape, seeds[k], -1.0, 1.0)  # noqa: E731
  matrices = None   # The view's flip and similarity as one forward map [N, 2, 3].
  if config.augment_flip:
    flags = tf.random.stateless_uniform([count], seeds[0]) < config.augment_flip
    width = tf.shape(images)[2]
    matrices = flip_matrices(flags, width)
    points = flip_points(points, flags, tf.cast(width, points.dtype))
  if config.augment_scale or config.augment_rotation or config.augment_shift:
    scale = tf.exp(config.augment_scale * uniform(1, [count]))
    angle = math.radians(config.augment_rotation) * uniform(2, [count])
    shift = config.augment_shift * tf.cast(size, tf.float32) * uniform(3, [count, 2])
    similarity = similarity_matrices(scale, angle, shift, size)
    points = transform_points(points, similarity)
    matrices = similarity if matrices is None else compose(similarity, matrices)
  if matrices is not None:
    if skins is None:
      images = warp_images(images, matrices)
    else:
      both = warp_images(tf.concat([images, skins], -1), matrices)
      images, skins = both[..., :3], both[..., 3:]
  if config.augment_brightness or config.augment_colour:
    gain = (1.0 + config.augment_brightness * uniform(4, [count, 1, 1, 1])) * \
        (1.0 + config.augment_colour * uniform(5, [count, 1, 1, 3]))
    images = tf.clip_by_value(images * gain, 0.0, 1.0)
  return images, skins, points


def flip_permutation():
  """The permutation as an int array (for tests and numpy users)."""
  return np.asarray(FLIP_PERMUTATION)


def mirror_points(points, width, permutation=FLIP_PERMUTATION):
  """NumPy `flip` of point sets alone: [N, K, 2] px on images `width` px wide -> the same
  points on the mirror images (x -> width - x, indices permuted by `permutation` [K], the
  position of each point's mirror twin; default: the 68 landmarks').  Its own inverse."""
  points = np.asarray(points)[:, permutation]
  return np.stack([width - points[..., 0], points[..., 1]], -1).astype(np.float32)
