"""Closed-form head pose from 2D landmarks, and Euler angles of a rotation."""

import numpy as np

MIN_POSE_SCALE = 1e-6                  # guard for degenerate landmark sets


def euler_from_matrix(rotation):
  """Inverse of `camera.rotation_matrix` (R = Rz Ry Rx).

  Args:
    rotation: [..., 3, 3] numpy rotation matrices.

  Returns:
    [..., 3] (pitch, yaw, roll) radians, yaw in [-pi/2, pi/2].
  """
  r = np.asarray(rotation, np.float64)
  yaw = np.arcsin(np.clip(-r[..., 2, 0], -1.0, 1.0))
  pitch = np.arctan2(r[..., 2, 1], r[..., 2, 2])
  roll = np.arctan2(r[..., 1, 0], r[..., 0, 0])
  return np.stack([pitch, yaw, roll], axis=-1)


def pose_from_landmarks(model_points, landmarks, camera, weights=None):
  """Closed-form head pose from 2D landmarks (scaled orthographic fit).

  Fits `(u - cx, cy - v) = A [X; 1]` by weighted least squares, takes the
  scale and rotation rows from the 2x3 part (nearest matrix with orthonormal
  rows, via SVD), the third row as their cross product, and the depth from
  the scale: `tz = distance - focal / s - (R c)_z` for the points' centroid c.

  Args:
    model_points: [N, 3] or [B, N, 3] model-space landmark vertices (N = 68,
      or any other point set such as the 468 dense points).
    landmarks: [B, N, 2] target pixels (camera image, see `shared.model.camera`).
    camera: `shared.model.camera.Camera`.
    weights: optional [N] point weights (0 leaves a point out).

  Returns:
    (rotation [B, 3] (pitch, yaw, roll) radians, translation [B, 3]) float32.
  """
  target = np.asarray(landmarks, np.float64)
  batch = target.shape[0]
  count = target.shape[1]
  points = np.broadcast_to(np.asarray(model_points, np.float64), (batch, count, 3))
  w = np.ones(count) if weights is None else np.asarray(weights, np.float64)
  sw = np.sqrt(w)[None, :, None]
  design = np.concatenate([points, np.ones((batch, count, 1))], axis=-1) * sw
  centred = np.stack([target[..., 0] - camera.centre, camera.centre - target[..., 1]], -1) * sw
  affine = np.linalg.pinv(design) @ centred            # [B, 4, 2]
  linear = np.swapaxes(affine[:, :3, :], 1, 2)          # [B, 2, 3] = s R[:2]
  u, sing, vt = np.linalg.svd(linear, full_matrices=False)
  scale = np.maximum(sing.mean(-1), MIN_POSE_SCALE)     # [B]
  rows = u @ vt                                         # orthonormal rows
  rotation = np.concatenate([rows, np.cross(rows[:, 0], rows[:, 1])[:, None]], axis=1)
  # The scale is focal / depth of the points' centroid, which sits at
  # (R c)_z + t_z in front of the origin.
  centroid = (points * w[None, :, None]).sum(1) / w.sum()          # [B, 3]
  centroid_z = np.einsum("bj,bj->b", rotation[:, 2], centroid)
  depth = camera.focal / scale
  shift = affine[:, 3, :] / scale[:, None]              # t_xy in model units
  translation = np.stack([shift[:, 0], shift[:, 1], camera.distance - depth - centroid_z],
                         axis=-1)
  return euler_from_matrix(rotation).astype(np.float32), translation.astype(np.float32)
