"""Rotation, rigid pose, the perspective camera and projection.

Convention (Deep3D): the camera sits at (0, 0, `distance`) on the +z axis
looking at the origin, +y up.  A camera-space point (X, Y, Z) (model
coordinates after pose) has depth `d = distance - Z` and projects to
continuous pixel coordinates

    u = cx + focal * X / d,     v = cy - focal * Y / d

with the origin at the image's top-left corner, so pixel (i, j)'s centre is
at (j + 0.5, i + 0.5) and the image centre is (W/2, H/2).
"""

import dataclasses

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Camera:
  """Pinhole camera.  Defaults: Deep3D (focal 1015 px at 224 px, distance 10)."""
  focal: float = 1015.0
  image_size: int = 224
  distance: float = 10.0
  near: float = 0.5
  far: float = 50.0

  @property
  def centre(self):
    return self.image_size / 2.0

  def intrinsics(self):
    """[3, 3] float32 K matrix in the pixel convention above (y flipped)."""
    return np.array([[self.focal, 0, self.centre], [0, self.focal, self.centre], [0, 0, 1]],
                    np.float32)

  def projection_matrix(self):
    """[4, 4] float32 model-to-clip matrix for tensorflow-graphics' rasterizer.

    The CPU rasterizer puts NDC y = -1 on image row 0, so the matrix maps +Y
    (up) to negative NDC y; NDC x, y = (u, v) / (size / 2) - 1.
    """
    s = 2.0 * self.focal / self.image_size
    n, f, d = self.near, self.far, self.distance
    a = -(f + n) / (f - n)
    b = -2.0 * f * n / (f - n)
    # Eye coordinates: (X, Y, Z - d); w_clip = -z_eye = d - Z.
    return np.array([[s, 0, 0, 0],
                     [0, -s, 0, 0],
                     [0, 0, a, a * -d + b],
                     [0, 0, -1, d]], np.float32)


def rotation_matrix(angles):
  """Rotation matrices R = Rz(roll) Ry(yaw) Rx(pitch).

  Args:
    angles: [..., 3] (pitch, yaw, roll) in radians.

  Returns:
    [..., 3, 3]; rotate points with `p' = R p`.
  """
  angles = tf.convert_to_tensor(angles)
  x, y, z = tf.unstack(angles, axis=-1)
  cx, sx, cy, sy, cz, sz = tf.cos(x), tf.sin(x), tf.cos(y), tf.sin(y), tf.cos(z), tf.sin(z)
  one, zero = tf.ones_like(x), tf.zeros_like(x)
  rx = tf.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1)
  ry = tf.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1)
  rz = tf.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1)
  shape = tf.concat([tf.shape(x), [3, 3]], 0)
  rx, ry, rz = (tf.reshape(m, shape) for m in (rx, ry, rz))
  return rz @ ry @ rx


def transform(vertices, rotation, translation):
  """Applies the rigid pose.

  Args:
    vertices: [B, V, 3] model coordinates.
    rotation: [B, 3] (pitch, yaw, roll) radians.
    translation: [B, 3] model units.

  Returns:
    [B, V, 3] posed vertices `R v + t`.
  """
  r = rotation_matrix(rotation)
  return tf.einsum("bij,bvj->bvi", r, vertices) + translation[:, None, :]


def depth(posed, camera):
  """Distance along the optical axis, [B, V] (model units)."""
  return camera.distance - posed[..., 2]


def facing_cosine(posed, normals, camera):
  """Cosine between each normal and the direction from its point to the camera centre.

  Args:
    posed: [B, N, 3] posed model coordinates.
    normals: [B, N, 3] unit normals there.
    camera: `Camera` (its centre at (0, 0, `distance`)).

  Returns:
    [B, N]: 1 facing the camera, 0 at a grazing angle, negative facing away.
  """
  to_eye = tf.constant([0.0, 0.0, camera.distance], posed.dtype) - posed
  return tf.reduce_sum(normals * to_eye, axis=-1) / tf.norm(to_eye, axis=-1)


def project(posed, camera):
  """Projects posed points to continuous pixel coordinates.

  Args:
    posed: [B, N, 3] posed model coordinates.
    camera: `Camera`.

  Returns:
    [B, N, 2] (u, v) pixels, top-left origin, pixel centres at +0.5.
  """
  d = depth(posed, camera)
  u = camera.centre + camera.focal * posed[..., 0] / d
  v = camera.centre - camera.focal * posed[..., 1] / d
  return tf.stack([u, v], axis=-1)


def rotation_to_euler_degrees(rotation):
  """(pitch, yaw, roll) radians [..., 3] -> degrees numpy, for reports."""
  return np.degrees(np.asarray(rotation))
