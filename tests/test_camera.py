"""Camera: rotation, projection and the clip matrix against numpy references."""

import numpy as np
import tensorflow as tf

from shared.model import camera as camera_lib


def numpy_rotation(pitch, yaw, roll):
  cx, sx, cy, sy, cz, sz = (np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw),
                            np.cos(roll), np.sin(roll))
  rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
  ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
  rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
  return rz @ ry @ rx


def test_rotation_matches_numpy_and_is_orthonormal():
  angles = np.array([[0.3, -0.7, 0.2], [0.0, 1.2, -0.4]], np.float32)
  r = camera_lib.rotation_matrix(angles).numpy()
  for i, a in enumerate(angles):
    np.testing.assert_allclose(r[i], numpy_rotation(*a), atol=1e-6)
    np.testing.assert_allclose(r[i] @ r[i].T, np.eye(3), atol=1e-6)


def test_projection_matches_pinhole_reference():
  cam = camera_lib.Camera()
  rng = np.random.default_rng(0)
  points = rng.uniform(-1, 1, (2, 50, 3)).astype(np.float32)
  rot = np.array([[0.1, 0.4, -0.2], [0.0, -0.3, 0.0]], np.float32)
  trans = np.array([[0.1, -0.2, 0.5], [0.0, 0.0, -1.0]], np.float32)
  posed = camera_lib.transform(points, rot, trans).numpy()
  uv = camera_lib.project(posed, cam).numpy()
  for b in range(2):
    ref = points[b] @ numpy_rotation(*rot[b]).T + trans[b]
    np.testing.assert_allclose(posed[b], ref, atol=1e-5)
    # Camera-frame coordinates: x right, y down, z forward (OpenCV style).
    cam_pts = np.stack([ref[:, 0], -ref[:, 1], cam.distance - ref[:, 2]], axis=1)
    homo = cam_pts @ cam.intrinsics().T
    np.testing.assert_allclose(uv[b], homo[:, :2] / homo[:, 2:], rtol=1e-5, atol=1e-3)


def test_clip_matrix_agrees_with_projection():
  cam = camera_lib.Camera(focal=500.0, image_size=128, distance=8.0)
  points = np.array([[[0.3, -0.2, 0.4], [-0.5, 0.6, -0.1]]], np.float32)
  clip = np.einsum("ij,bvj->bvi", cam.projection_matrix(),
                   np.concatenate([points, np.ones((1, 2, 1))], -1))
  ndc = clip[..., :2] / clip[..., 3:]
  pixels = (ndc + 1.0) * cam.image_size / 2.0
  np.testing.assert_allclose(pixels, camera_lib.project(tf.constant(points), cam).numpy(),
                             atol=1e-3)
  np.testing.assert_allclose(clip[..., 3], cam.distance - points[..., 2], atol=1e-6)
  depth_ndc = clip[..., 2] / clip[..., 3]
  assert np.all(np.abs(depth_ndc) < 1.0)


def test_facing_cosine_is_the_angle_to_the_camera_centre():
  """Against the cosine computed by hand: on the axis, off it (judged by the direction to
  the camera, not by +z), sideways and facing away."""
  cam = camera_lib.Camera(distance=10.0)
  posed = np.array([[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.0]]],
                   np.float32)
  normals = np.array([[[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]],
                     np.float32)
  expected = [1.0, 10.0 / np.hypot(1.0, 10.0), 0.0, -1.0]
  np.testing.assert_allclose(camera_lib.facing_cosine(posed, normals, cam).numpy()[0], expected,
                             atol=1e-6)
