"""Looking up images at continuous pixel coordinates (bilinear, nearest).

Coordinates follow `shared.model.camera.project` and `shared.io.image_io`:
pixel (row i, col j) covers [j, j + 1) x [i, i + 1) and has its centre at
(j + 0.5, i + 0.5).  Points are [B, ..., 2] (x, y); any number of middle
dimensions (N points, or an H' x W' grid).
"""

import tensorflow as tf

PIXEL_CENTER = 0.5


def sample_bilinear(image, points, zero_outside=False):
  """Bilinear lookup of [B, H, W, C] at [B, ..., 2] continuous pixels.

  Args:
    image: [B, H, W, C].
    points: [B, ..., 2] (x, y) in pixels.
    zero_outside: False: points outside are clamped to the border pixels;
      True: values are 0 where not all four taps are in the image.

  Returns:
    (values [B, ..., C], inside [B, ..., 1] in {0, 1}: 1 where all four taps
    are in the image).  Differentiable w.r.t. image and points (inside).
  """
  height, width = image.shape[1], image.shape[2]
  x = points[..., 0] - PIXEL_CENTER
  y = points[..., 1] - PIXEL_CENTER
  inside = ((x >= 0.0) & (tf.floor(x) + 1.0 <= width - 1.0) &
            (y >= 0.0) & (tf.floor(y) + 1.0 <= height - 1.0))
  x = tf.clip_by_value(x, 0.0, width - 1.0)
  y = tf.clip_by_value(y, 0.0, height - 1.0)
  x0, y0 = tf.floor(x), tf.floor(y)
  wx, wy = (x - x0)[..., None], (y - y0)[..., None]
  x0 = tf.cast(x0, tf.int32)
  y0 = tf.cast(y0, tf.int32)
  x1 = tf.minimum(x0 + 1, width - 1)
  y1 = tf.minimum(y0 + 1, height - 1)

  def at(yy, xx):
    return tf.gather_nd(image, tf.stack([yy, xx], axis=-1), batch_dims=1)

  top = at(y0, x0) * (1.0 - wx) + at(y0, x1) * wx
  bottom = at(y1, x0) * (1.0 - wx) + at(y1, x1) * wx
  values = top * (1.0 - wy) + bottom * wy
  inside = tf.cast(inside, image.dtype)[..., None]
  if zero_outside:
    values = values * inside
  return values, inside


def sample_nearest(image, points):
  """Nearest-pixel lookup of [B, H, W, C] at [B, ..., 2] -> ([B, ..., C], inside [B, ...])."""
  height, width = image.shape[1], image.shape[2]
  col = tf.cast(tf.floor(points[..., 0]), tf.int32)
  row = tf.cast(tf.floor(points[..., 1]), tf.int32)
  inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
  index = tf.stack([tf.clip_by_value(row, 0, height - 1), tf.clip_by_value(col, 0, width - 1)],
                   axis=-1)
  return tf.gather_nd(image, index, batch_dims=1), inside


def erode(alpha, radius):
  """Grey-scale erosion of [B, H, W, 1] by a (2 radius + 1)^2 square."""
  if radius <= 0:
    return alpha
  size = 2 * radius + 1
  return -tf.nn.max_pool2d(-alpha, size, 1, "SAME")
