"""Renderer: silhouettes and depth on analytic scenes, gradients vs finite differences."""

import numpy as np
import pytest
import tensorflow as tf
import trimesh

from shared.render import renderer as render_lib
from shared.model.camera import Camera

CAM = Camera(focal=200.0, image_size=64, distance=10.0)


def plane(z, half):
  v = np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]],
               np.float32)
  return v, np.array([[0, 1, 2], [0, 2, 3]], np.int32)


def test_plane_silhouette_and_depth():
  z, half = 1.0, 0.9
  v, f = plane(z, half)
  out = render_lib.render(tf.constant(v[None]), f, tf.ones([1, 4, 3]), CAM)
  d = CAM.distance - z
  lo, hi = CAM.centre - CAM.focal * half / d, CAM.centre + CAM.focal * half / d
  centres = np.arange(CAM.image_size) + 0.5
  inside_1d = (centres > lo) & (centres < hi)
  expected = inside_1d[:, None] & inside_1d[None, :]
  mask = out.mask[0, ..., 0].numpy() > 0
  np.testing.assert_array_equal(mask, expected)
  depth = out.depth[0, ..., 0].numpy()
  np.testing.assert_allclose(depth[mask], d, rtol=1e-5)
  assert np.all(depth[~mask] == 0)
  ids = out.triangle_ids[0].numpy()
  assert set(np.unique(ids[mask])) == {0, 1} and np.all(ids[~mask] == -1)


def test_sphere_silhouette_and_depth():
  radius = 1.5
  sphere = trimesh.creation.icosphere(subdivisions=5, radius=radius)
  v = np.asarray(sphere.vertices, np.float32)[None]
  out = render_lib.render(tf.constant(v), np.asarray(sphere.faces, np.int32),
                          tf.ones([1, len(sphere.vertices), 1]), CAM)
  d = CAM.distance
  # The silhouette of a sphere seen from distance d is a disc of angular radius asin(r/d).
  disc_radius = CAM.focal * np.tan(np.arcsin(radius / d))
  centres = np.arange(CAM.image_size) + 0.5
  rr = np.hypot(*np.meshgrid(centres - CAM.centre, centres - CAM.centre))
  mask = out.mask[0, ..., 0].numpy() > 0
  clear_in, clear_out = rr < disc_radius - 1.0, rr > disc_radius + 1.0
  assert mask[clear_in].all() and not mask[clear_out].any()
  # Depth along the optical axis of the front surface, ray by ray.
  x = (centres - CAM.centre) / CAM.focal
  xx, yy = np.meshgrid(x, x)
  a = xx ** 2 + yy ** 2 + 1.0
  t = (d - np.sqrt(np.maximum(d ** 2 - a * (d ** 2 - radius ** 2), 0.0))) / a
  depth = out.depth[0, ..., 0].numpy()
  np.testing.assert_allclose(depth[clear_in], t[clear_in], atol=5e-3)
  assert abs(depth[32, 32] - (d - radius)) < 5e-3


def _objective(vertices, faces, colours, weights):
  out = render_lib.render(vertices, faces, colours, CAM)
  return tf.reduce_sum(out.image * weights), out


def test_gradients_match_finite_differences():
  rng = np.random.default_rng(1)
  v = np.array([[[-1.0, -0.8, 0.2], [1.1, -0.9, -0.1], [0.1, 1.0, 0.3]]], np.float32)
  f = np.array([[0, 1, 2]], np.int32)
  colours = rng.uniform(0.2, 1.0, (1, 3, 2)).astype(np.float32)
  weights = tf.constant(rng.uniform(0, 1, (1, 64, 64, 2)).astype(np.float32))
  vt, ct = tf.Variable(v), tf.Variable(colours)
  with tf.GradientTape() as tape:
    value, base = _objective(vt, f, ct, weights)
  grad_v, grad_c = tape.gradient(value, [vt, ct])
  # Colours enter linearly: finite differences are exact up to float error.
  eps = 1e-2
  for k in range(3):
    bump = np.zeros_like(colours)
    bump[0, k, 1] = eps
    plus, _ = _objective(v, f, colours + bump, weights)
    minus, _ = _objective(v, f, colours - bump, weights)
    np.testing.assert_allclose(grad_c[0, k, 1], (plus - minus) / (2 * eps), rtol=1e-3)
  # Vertices: compare on pixels covered in the base and both perturbed renders
  # (the rasterizer has no gradient through visibility changes).
  eps = 2e-3
  base_mask = base.mask.numpy()
  for k, c in [(0, 0), (1, 1), (2, 0), (2, 2)]:
    bump = np.zeros_like(v)
    bump[0, k, c] = eps
    _, plus = _objective(v + bump, f, colours, weights)
    _, minus = _objective(v - bump, f, colours, weights)
    keep = tf.constant(base_mask * plus.mask.numpy() * minus.mask.numpy())
    fd = tf.reduce_sum((plus.image - minus.image) * weights * keep) / (2 * eps)
    vk = tf.Variable(v)
    with tf.GradientTape() as tape:
      out = render_lib.render(vk, f, colours, CAM)
      kept = tf.reduce_sum(out.image * weights * keep)
    analytic = tape.gradient(kept, vk)[0, k, c]
    np.testing.assert_allclose(analytic, fd, rtol=2e-2, atol=1e-2)
  assert np.abs(grad_v.numpy()).sum() > 0


def test_matches_tensorflow_graphics_triangle_rasterizer():
  """Our layer returns what tfg's own rasterize returns for the same mesh."""
  from tensorflow_graphics.rendering import rasterization_backend, triangle_rasterizer
  sphere = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
  v = tf.constant((np.asarray(sphere.vertices)[None] + [0.2, -0.1, 0.0]).astype(np.float32))
  f = np.asarray(sphere.faces, np.int32)
  colours = tf.constant(np.asarray(sphere.vertices, np.float32)[None] * 0.5 + 0.5)
  ours = render_lib.render(v, f, colours, CAM)
  theirs = triangle_rasterizer.rasterize(
      v, f, {"c": colours}, CAM.projection_matrix()[None], (64, 64), enable_cull_face=False,
      backend=rasterization_backend.RasterizationBackends.CPU)
  np.testing.assert_allclose(ours.image.numpy(), theirs["c"].numpy(), atol=1e-5)
  np.testing.assert_array_equal(ours.mask.numpy(), theirs["mask"].numpy())


def _tfg_interpolation(clip, faces, triangle_id, mask, attributes):
  """tfg's own differentiable_barycentrics + interpolate_vertex_attribute (autodiff),
  run eagerly: our op performs the same float operations in the same order."""
  from tensorflow_graphics.rendering import barycentrics, framebuffer, interpolate
  shape = tf.concat([tf.shape(mask)[:-1], [3]], 0)
  buffer = framebuffer.Framebuffer(
      foreground_mask=mask, triangle_id=triangle_id,
      vertex_ids=tf.gather(faces, triangle_id[..., 0]),
      barycentrics=framebuffer.RasterizedAttribute(tf.zeros(shape), None, None))
  buffer = barycentrics.differentiable_barycentrics(buffer, clip, faces)
  return interpolate.interpolate_vertex_attribute(attributes, buffer).value


def test_interpolation_values_and_gradients_match_tfg_barycentrics():
  """Our op's values equal tfg's, and its gradient equals tfg's autodiff (up to the
  order of the per-vertex sums)."""
  rng = np.random.default_rng(2)
  sphere = trimesh.creation.icosphere(subdivisions=3, radius=1.2)
  faces = np.asarray(sphere.faces, np.int32)
  faces[::2] = faces[::2, ::-1]  # Both windings: tfg's determinant sign must cancel.
  v = np.asarray(sphere.vertices, np.float32)[None].repeat(2, 0)
  v[1] += [0.3, -0.2, 0.5]
  clip = tf.Variable(render_lib.to_clip(tf.constant(v), CAM))
  colours = tf.Variable(rng.uniform(0, 1, (2, len(v[0]), 3)).astype(np.float32))
  faces_t = tf.constant(faces)
  triangle_id, mask = render_lib.visibility(clip, faces_t, (64, 64))
  weights = tf.constant(rng.uniform(-1, 1, (2, 64, 64, 4)).astype(np.float32))
  results = []
  for ours in (True, False):
    with tf.GradientTape() as tape:
      if ours:
        values, depth = render_lib.interpolate_with_depth(clip, faces_t, triangle_id, mask,
                                                          colours)
        out = tf.concat([values, depth], -1)
      else:
        out = _tfg_interpolation(clip, faces_t, triangle_id, mask,
                                 tf.concat([colours, clip[..., 3:]], -1))
      loss = tf.reduce_sum(out * weights)
    results.append([out] + tape.gradient(loss, [clip, colours]))
  (out, d_clip, d_col), (ref, ref_clip, ref_col) = results
  # Bit-identical on the development machine; a tolerance keeps the test valid where
  # TensorFlow's own kernels (tfg's side) use fused multiply-adds.
  np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-6, atol=1e-7)
  for grad, expected in [(d_col, ref_col), (d_clip, ref_clip)]:
    scale = np.abs(expected.numpy()).max()
    assert scale > 0
    np.testing.assert_allclose(grad.numpy() / scale, expected.numpy() / scale, atol=1e-5)
  assert np.abs(d_clip.numpy()[..., 2]).max() == 0  # Clip z only decides visibility.


def test_split_kernel_calls_equal_one_call():
  """Rasterizing parts of the triangles in parallel and merging by depth = one kernel call,
  ties included (two coincident copies of a sphere: the first copy must win everywhere)."""
  from shared.render import rasterizer
  sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.8)
  faces = np.asarray(sphere.faces, np.int32)
  faces = np.concatenate([faces, faces[::-1]])  # The same surface twice, reversed order.
  posed = tf.constant(np.asarray(sphere.vertices, np.float32)[None])
  clip = render_lib.to_clip(posed, CAM)[0]
  ops = rasterizer.load()
  size = (CAM.image_size, CAM.image_size)
  ids_one, z_one = render_lib._rasterize_one(ops, clip, tf.constant(faces), size, 1)
  for splits in (2, 3, 4):
    ids, z = render_lib._rasterize_one(ops, clip, tf.constant(faces), size, splits)
    np.testing.assert_array_equal(ids.numpy(), ids_one.numpy())
    np.testing.assert_array_equal(z.numpy(), z_one.numpy())
  covered = z_one.numpy() < render_lib.CLEAR_DEPTH
  assert covered.any() and (ids_one.numpy()[covered] < len(faces) // 2).mean() > 0.99
  assert render_lib.triangle_splits(8, cores=2) == 1
  assert render_lib.triangle_splits(1, cores=2) == 2
  assert render_lib.triangle_splits(1, cores=64) == render_lib.MAX_SPLITS


def test_interpolation_gradient_strips_and_bad_ids():
  """The gradient of a small batch (summed over row strips in parallel) equals the
  gradient of the images one by one, and out-of-range triangle ids fail clearly."""
  from shared.render import rasterizer
  sphere = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
  faces = tf.constant(np.asarray(sphere.faces, np.int32))
  v = np.asarray(sphere.vertices, np.float32)[None].repeat(3, 0)
  v[1] += [0.2, 0.1, 0.3]
  v[2] -= [0.3, 0.0, -0.2]
  clip = tf.constant(render_lib.to_clip(tf.constant(v), CAM))
  colours = tf.constant(np.random.default_rng(3).uniform(size=(3, len(v[0]), 2)), tf.float32)
  triangle_id, mask = render_lib.visibility(clip, faces, (64, 64))

  def grads(b):
    with tf.GradientTape() as tape:
      tape.watch([clip, colours])
      values, depth = render_lib.interpolate_with_depth(
          clip[b], faces, triangle_id[b], mask[b], colours[b])
      loss = tf.reduce_sum(values ** 2) + tf.reduce_sum(depth)
    return tape.gradient(loss, [clip, colours])

  batch = grads(slice(0, 3))
  for b in range(3):
    single = grads(slice(b, b + 1))
    for got, expected in zip(batch, single):
      np.testing.assert_allclose(got[b], expected[b], rtol=1e-5, atol=1e-6)
  ops = rasterizer.load()
  bad = tf.where(mask[..., 0] > 0, len(sphere.faces), 0)
  with pytest.raises(tf.errors.InvalidArgumentError, match="triangle ids outside"):
    ops.interpolate_attributes(colours, clip, faces, bad, mask[..., 0])


def test_front_facing_drops_the_inside_seen_through_a_hole():
  """A sphere with its front cap cut off: through the hole the rasterizer draws the
  inside of the back half, which `front_facing` marks and `drop_back_faces` removes."""
  radius, cut = 1.5, 0.8
  sphere = trimesh.creation.icosphere(subdivisions=5, radius=radius)
  v = np.asarray(sphere.vertices, np.float32)
  f = np.asarray(sphere.faces, np.int32)
  posed = tf.constant(v[None])
  whole = render_lib.render(posed, f, tf.ones([1, len(v), 1]), CAM)
  front = render_lib.front_facing(posed, f, whole.triangle_ids, CAM).numpy()[0, ..., 0]
  np.testing.assert_array_equal(front, whole.mask.numpy()[0, ..., 0])   # all outside
  open_f = f[v[f].mean(1)[:, 2] < cut * radius]
  out = render_lib.render(posed, open_f, tf.ones([1, len(v), 1]), CAM)
  front = render_lib.front_facing(posed, open_f, out.triangle_ids, CAM).numpy()[0, ..., 0]
  # The hole's rim is the circle z = cut * radius, of radius sqrt(1 - cut^2) * radius.
  hole = CAM.focal * np.sqrt(1 - cut ** 2) * radius / (CAM.distance - cut * radius)
  centres = np.arange(CAM.image_size) + 0.5
  rr = np.hypot(*np.meshgrid(centres - CAM.centre, centres - CAM.centre))
  drawn = out.mask.numpy()[0, ..., 0] > 0
  inside, ring = rr < hole - 1.5, (rr > hole + 1.5) & drawn
  assert drawn[inside].all() and not front[inside].any() and front[ring].all()
  dropped = render_lib.drop_back_faces(out, posed, open_f, CAM)
  kept = front > 0
  np.testing.assert_array_equal(dropped.mask.numpy()[0, ..., 0], front)
  np.testing.assert_array_equal(dropped.triangle_ids.numpy()[0],
                                np.where(kept, out.triangle_ids.numpy()[0], -1))
  np.testing.assert_array_equal(dropped.depth.numpy()[0, ..., 0],
                                np.where(kept, out.depth.numpy()[0, ..., 0], 0.0))
  assert ring.sum() > 100 and inside.sum() > 100
