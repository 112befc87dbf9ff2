"""Multi-view geometry: relative pose, epipolar loss, warping, covisibility, depth scale."""

import numpy as np
import pytest
import tensorflow as tf

from mgc_face import multiview as mv
from shared.model.camera import Camera


def rot_np(angles):
  x, y, z = angles
  rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
  ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
  rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
  return rz @ ry @ rx


def project_np(p, cam):
  d = cam.distance - p[..., 2]
  return np.stack([cam.centre + cam.focal * p[..., 0] / d,
                   cam.centre - cam.focal * p[..., 1] / d], -1)


def random_poses(rng, batch):
  rot = rng.uniform(-0.6, 0.6, (batch, 3)) * np.array([0.3, 1.0, 0.2])
  trans = rng.normal(0, 0.2, (batch, 3))
  return rot.astype(np.float32), trans.astype(np.float32)


def test_relative_pose_matches_numpy_composition():
  rng = np.random.default_rng(0)
  rot_t, trans_t = random_poses(rng, 4)
  rot_s, trans_s = random_poses(rng, 4)
  r_rel, t_rel = mv.relative_pose(rot_t, trans_t, rot_s, trans_s)
  v = rng.normal(size=(10, 3))
  for b in range(4):
    p_t = v @ rot_np(rot_t[b]).T + trans_t[b]
    p_s = v @ rot_np(rot_s[b]).T + trans_s[b]
    # T_rel = T_s T_t^-1 as 4x4 matrices.
    t_mat = np.eye(4); t_mat[:3, :3] = rot_np(rot_t[b]); t_mat[:3, 3] = trans_t[b]
    s_mat = np.eye(4); s_mat[:3, :3] = rot_np(rot_s[b]); s_mat[:3, 3] = trans_s[b]
    rel = s_mat @ np.linalg.inv(t_mat)
    np.testing.assert_allclose(r_rel[b].numpy(), rel[:3, :3], atol=1e-5)
    np.testing.assert_allclose(t_rel[b].numpy(), rel[:3, 3], atol=1e-5)
    np.testing.assert_allclose(p_t @ r_rel[b].numpy().T + t_rel[b].numpy(), p_s, atol=1e-4)


def test_camera_frame_matches_projection():
  cam = Camera()
  rng = np.random.default_rng(1)
  rot_t, trans_t = random_poses(rng, 2)
  rot_s, trans_s = random_poses(rng, 2)
  r_rel, t_rel = mv.relative_pose(rot_t, trans_t, rot_s, trans_s)
  r_c, t_c = mv.to_camera_frame(r_rel, t_rel, cam)
  k = cam.intrinsics()
  p_t = rng.normal(0, 0.5, (2, 7, 3))
  p_s = np.einsum("bij,bnj->bni", r_rel.numpy(), p_t) + t_rel.numpy()[:, None]
  c_t = p_t * np.array([1, -1, -1]) + np.array([0, 0, cam.distance])
  c_s = np.einsum("bij,bnj->bni", r_c.numpy(), c_t) + t_c.numpy()[:, None]
  pix = np.einsum("ij,bnj->bni", k, c_s)
  np.testing.assert_allclose(pix[..., :2] / pix[..., 2:], project_np(p_s, cam), atol=1e-3)


def correspondences(seed, batch=3, points=68):
  cam = Camera()
  rng = np.random.default_rng(seed)
  v = rng.normal(0, 0.6, (batch, points, 3))
  rot_t, trans_t = random_poses(rng, batch)
  rot_s, trans_s = random_poses(rng, batch)
  x_t = np.stack([project_np(v[b] @ rot_np(rot_t[b]).T + trans_t[b], cam) for b in range(batch)])
  x_s = np.stack([project_np(v[b] @ rot_np(rot_s[b]).T + trans_s[b], cam) for b in range(batch)])
  return cam, (rot_t, trans_t, rot_s, trans_s), x_t.astype(np.float32), x_s.astype(np.float32)


def test_epipolar_loss_zero_for_true_pose_positive_otherwise():
  cam, poses, x_t, x_s = correspondences(2)
  r_rel, t_rel = mv.relative_pose(*poses)
  f = mv.fundamental_matrix(r_rel, t_rel, cam)
  loss = mv.epipolar_loss(x_t, x_s, f).numpy()
  assert loss.shape == (3,)
  assert np.all(loss < 0.05), loss
  noisy = x_s + np.random.default_rng(3).normal(0, 4.0, x_s.shape).astype(np.float32)
  assert np.all(mv.epipolar_loss(x_t, noisy, f).numpy() > 1.0)
  # A wrong pose gives a clearly positive loss.
  wrong = mv.relative_pose(poses[0], poses[1], poses[2] + np.float32(0.2), poses[3])
  assert np.all(mv.epipolar_loss(x_t, x_s, mv.fundamental_matrix(*wrong, cam)).numpy() > 1.0)


def test_essential_matrix_is_t_cross_r_not_r_t_cross():
  cam, poses, x_t, x_s = correspondences(4)
  r_rel, t_rel = mv.relative_pose(*poses)
  r_c, t_c = mv.to_camera_frame(r_rel, t_rel, cam)
  e = mv.essential_matrix(r_c, t_c).numpy()
  for b in range(3):
    t = t_c[b].numpy()
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    np.testing.assert_allclose(e[b], tx @ r_c[b].numpy(), atol=1e-5)
  # MGCNet's R [t]x order does not satisfy the constraint.
  k_inv = np.linalg.inv(cam.intrinsics())
  tx = mv.skew(t_c).numpy()
  wrong = np.einsum("ji,bjk,kl->bil", k_inv, np.matmul(r_c.numpy(), tx), k_inv)
  assert np.all(mv.epipolar_loss(x_t, x_s, tf.constant(wrong, tf.float32)).numpy() > 1.0)


def test_depth_scale_recovers_known_scale():
  rng = np.random.default_rng(6)
  reference = rng.uniform(9, 11, (2, 8, 8, 1)).astype(np.float32)
  mask = (rng.uniform(size=(2, 8, 8, 1)) > 0.3).astype(np.float32)
  scale = mv.depth_scale(reference, reference / 1.7, mask).numpy().ravel()
  np.testing.assert_allclose(scale, 1.7, rtol=1e-5)
  loss = mv.depth_consistency(tf.constant(reference / 1.7), tf.constant(reference),
                              tf.constant(mask), 100.0).numpy()
  np.testing.assert_allclose(loss, 0.0, atol=1e-3)
  bumped = reference.copy(); bumped[:, 2:4] += 0.1
  assert np.all(mv.depth_consistency(tf.constant(bumped), tf.constant(reference),
                                     tf.constant(mask), 100.0).numpy() > 1.0)


def test_ssim_loss_zero_for_identical_images():
  rng = np.random.default_rng(7)
  a = tf.constant(rng.uniform(size=(2, 12, 12, 3)).astype(np.float32))
  mask = tf.ones([2, 12, 12, 1])
  np.testing.assert_allclose(mv.ssim_loss(a, a, mask).numpy(), 0.0, atol=1e-5)
  assert np.all(mv.ssim_loss(a, tf.reverse(a, [1]), mask).numpy() > 0.1)


@pytest.fixture(scope="module")
def two_views(ict_model):
  """Mean face with a smooth model-space texture at two poses 25 degrees apart."""
  from shared.render.face_image import FaceSynthesizer
  synth = FaceSynthesizer(ict_model)
  coeffs = synth.layout.zeros(2)
  rotation = tf.constant([[0.05, -0.15, 0.0], [0.0, 0.28, 0.03]])
  coeffs = coeffs._replace(rotation=rotation,
                           translation=tf.constant([[0.02, 0.0, 0.0], [-0.03, 0.05, 0.1]]))
  out = synth(coeffs, render=False)
  texture = 0.5 + 0.5 * tf.sin(7.0 * out.vertices)  # Same surface colour in both views.
  rendered = synth.render_attributes(out.posed, texture)
  return synth, coeffs, rendered


def test_covisible_mask_of_identical_views_equals_visible_mask(two_views):
  synth, _, rendered = two_views
  ids = rendered.triangle_ids
  dec = synth.decoder
  same = mv.covisible_mask(ids, ids, dec.faces, dec.rings)
  np.testing.assert_array_equal(same.numpy(), rendered.mask.numpy())
  other = mv.covisible_mask(ids[:1], ids[1:], dec.faces, dec.rings).numpy()
  target_mask = rendered.mask.numpy()[:1]
  assert np.all(other <= target_mask)
  assert 0.5 * target_mask.sum() < other.sum() < target_mask.sum()


def test_identical_pose_warp_reproduces_image(two_views):
  _, _, rendered = two_views
  image, depth = rendered.image[:1], rendered.depth[:1]
  eye = tf.eye(3, batch_shape=[1])
  warped, valid, proj_depth = mv.inverse_warp(image, depth, eye, tf.zeros([1, 3]), Camera())
  mask = (valid * rendered.mask[:1]).numpy()[0, ..., 0] > 0
  assert mask.sum() > 0.9 * rendered.mask.numpy()[0].sum()
  np.testing.assert_allclose(warped.numpy()[0][mask], image.numpy()[0][mask], atol=1e-4)
  np.testing.assert_allclose(proj_depth.numpy()[0][mask], depth.numpy()[0][mask], atol=1e-4)


def test_warp_with_true_relative_pose_aligns_views(two_views):
  synth, coeffs, rendered = two_views
  cam = Camera()
  r_rel, t_rel = mv.relative_pose(coeffs.rotation[:1], coeffs.translation[:1],
                                  coeffs.rotation[1:], coeffs.translation[1:])
  cov = mv.covisible_mask(rendered.triangle_ids[:1], rendered.triangle_ids[1:],
                          synth.decoder.faces, synth.decoder.rings)

  def error(r, t):
    w = mv.view_synthesis(rendered.image[1:], rendered.depth[1:], rendered.mask[1:],
                          rendered.depth[:1], rendered.mask[:1], cov, r, t, cam)
    pixel = mv.pixel_consistency(w.image, rendered.image[:1], w.mask).numpy()[0]
    depth = mv.depth_consistency(w.depth, w.projected_depth, w.mask, 100.0).numpy()[0]
    return pixel, depth

  good_pixel, good_depth = error(r_rel, t_rel)
  bad_r, bad_t = mv.relative_pose(coeffs.rotation[:1] + tf.constant([[0.0, 0.1, 0.0]]),
                                  coeffs.translation[:1], coeffs.rotation[1:],
                                  coeffs.translation[1:])
  bad_pixel, bad_depth = error(bad_r, bad_t)
  assert good_pixel < 0.5 * bad_pixel, (good_pixel, bad_pixel)
  assert good_depth < 0.5 * bad_depth, (good_depth, bad_depth)
