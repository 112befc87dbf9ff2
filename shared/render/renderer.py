"""Differentiable rendering on tensorflow-graphics' rasterizer.

Visibility comes from tensorflow-graphics' CPU rasterizer kernel (built by
`shared.render.rasterizer`, one call per image).  Attributes are then interpolated
with tensorflow-graphics' differentiable barycentrics: the same per-pixel
formula as its `differentiable_barycentrics` + `interpolate_vertex_attribute`
(tfg's pixel grid, edge functions and `divide_no_nan` normalisation), so
gradients flow to vertex positions (through the barycentrics of visible
triangles) and to vertex attributes.  Like the rasterizer itself, there is
no gradient through visibility changes.

What this layer adds over calling `triangle_rasterizer.rasterize`:

* interpolation and its gradient are two small C++ ops of ours
  (shared/render/kernels/interpolate_op.cc, built into the same library as tfg's
  kernel) that evaluate tfg's formula with the same float operations, for
  the covered pixels only, reading each pixel's three corners directly.
  Values equal tfg's (bit-identical on the development machine); the
  gradient is the exact vector-Jacobian product, summed into vertices per
  image (tfg instead builds per-triangle matrices for all triangles, gathers
  them per pixel and lets autodiff scatter every intermediate);
* vertices go to clip space once, not twice, and depth comes out of the same
  pass as the attributes;
* the per-image kernel calls are independent graph nodes, so they run in
  parallel, and a batch smaller than the cores splits each image's
  triangles over several calls.

bench/render.py prints the per-stage times.
"""

import dataclasses
import os

import tensorflow as tf

from shared.mesh.normals_tf import face_normals
from shared.model.camera import facing_cosine
from shared.render import rasterizer

CULL_NONE = 0  # tensorflow-graphics FaceCullingMode.NONE
NUM_LAYERS = 1
BACKGROUND_ID = -1
CLEAR_DEPTH = 1.0  # The kernel's z-buffer value where no triangle was drawn.
# A small batch rasterizes each image in up to this many parallel kernel
# calls over parts of the triangles (see `triangle_splits`).
MAX_SPLITS = 4


@dataclasses.dataclass
class RenderOutput:
  """Rendered buffers.

  image: [B, H, W, C] interpolated attributes (0 on background).
  mask: [B, H, W, 1] float32 coverage (1 = face).
  depth: [B, H, W, 1] distance along the optical axis (0 on background).
  triangle_ids: [B, H, W] int32, -1 on background.
  """
  image: tf.Tensor
  mask: tf.Tensor
  depth: tf.Tensor
  triangle_ids: tf.Tensor


def to_clip(posed, camera):
  """[B, V, 3] posed vertices -> [B, V, 4] clip-space coordinates."""
  matrix = tf.constant(camera.projection_matrix())
  homogeneous = tf.pad(posed, [[0, 0], [0, 0], [0, 1]], constant_values=1.0)
  return tf.einsum("ij,bvj->bvi", matrix, homogeneous)


def triangle_splits(batch_size, cores=None):
  """How many parallel kernel calls rasterize one image: enough to use the cores.

  The per-image calls of a batch already run in parallel, so only batches
  smaller than the core count split their triangles (at most MAX_SPLITS).
  """
  cores = cores or os.cpu_count() or 1
  return max(1, min(MAX_SPLITS, cores // max(batch_size, 1)))


def _rasterize_one(ops, clip, triangles, image_size, splits):
  """Triangle ids and z-buffer [H, W] of one image, from `splits` kernel calls.

  Each call rasterizes a contiguous part of the triangles; the parts are
  merged by depth, the earlier part winning ties, which is what one call
  does (its depth test is strict, so the first triangle wins a tie).
  """
  height, width = image_size
  count = triangles.shape[0]
  bounds = [count * k // splits for k in range(splits + 1)]
  ids = z_buffer = None
  for start, stop in zip(bounds[:-1], bounds[1:]):
    _, part_ids, part_z = ops.rasterize_triangles(clip, triangles[start:stop], width, height,
                                                  NUM_LAYERS, CULL_NONE)
    # The op has no shape function; state the static shapes for graph mode.
    part_ids = tf.ensure_shape(part_ids, [NUM_LAYERS, height, width])[0] + start
    part_z = tf.ensure_shape(part_z, [NUM_LAYERS, height, width])[0]
    if ids is None:
      ids, z_buffer = part_ids, part_z
    else:
      keep = z_buffer <= part_z
      ids, z_buffer = tf.where(keep, ids, part_ids), tf.minimum(z_buffer, part_z)
  return ids, z_buffer


def visibility(clip, triangles, image_size):
  """Per-pixel triangle ids and coverage from tensorflow-graphics' kernel.

  Args:
    clip: [B, V, 4] clip-space vertices (B must be static).
    triangles: [T, 3] int32.
    image_size: (height, width).

  Returns:
    (triangle_id [B, H, W, 1] int32 (0 on background), mask [B, H, W, 1] float32).
  """
  ops = rasterizer.load()
  clip = tf.stop_gradient(clip)
  splits = triangle_splits(clip.shape[0])
  ids, masks = [], []
  for b in range(clip.shape[0]):  # Unrolled: images rasterize in parallel.
    tri_ids, z_buffer = _rasterize_one(ops, clip[b], triangles, image_size, splits)
    ids.append(tri_ids)
    masks.append(tf.cast(tf.not_equal(z_buffer, CLEAR_DEPTH), tf.float32))
  return tf.stack(ids)[..., None], tf.stack(masks)[..., None]


def interpolate_with_depth(clip, triangles, triangle_id, mask, attributes):
  """Differentiable barycentric interpolation of attributes and depth.

  Same values as tfg's `differentiable_barycentrics` followed by
  `interpolate_vertex_attribute` (tests/test_render.py checks values and
  gradients against them), computed by our C++ op for the covered pixels
  only, with its exact gradient as a second op (shared/render/kernels/interpolate_op.cc).

  Args:
    clip: [B, V, 4] clip-space vertices.  triangles: [T, 3] int32.
    triangle_id: [B, H, W, 1] int32.  mask: [B, H, W, 1] float32.
    attributes: [B, V, A].

  Returns:
    (values [B, H, W, A], depth [B, H, W, 1] = interpolated w_clip), 0 on background;
    differentiable with respect to clip and attributes.
  """
  ops = rasterizer.load()
  triangles = tf.convert_to_tensor(triangles, tf.int32)
  triangle_id = tf.squeeze(triangle_id, -1)
  mask = tf.squeeze(tf.stop_gradient(mask), -1)

  @tf.custom_gradient
  def shade(attributes, clip):
    values, depth = ops.interpolate_attributes(attributes, clip, triangles, triangle_id, mask)

    def grad(d_values, d_depth):
      d_values = tf.zeros_like(values) if d_values is None else d_values
      d_depth = tf.zeros_like(depth) if d_depth is None else d_depth
      return ops.interpolate_attributes_grad(attributes, clip, triangles, triangle_id, mask,
                                             d_values, d_depth)
    return (values, depth), grad
  return shade(attributes, clip)


def interpolate(clip, triangles, triangle_id, mask, attributes):
  """[B, H, W, A] interpolated attributes (see `interpolate_with_depth`)."""
  return interpolate_with_depth(clip, triangles, triangle_id, mask, attributes)[0]


def rasterize_attributes(clip, triangles, attributes, image_size):
  """Rasterizes clip-space geometry and interpolates [B, V, C] attributes.

  Returns:
    (values [B, H, W, C], triangle_id [B, H, W, 1], mask [B, H, W, 1]).
  """
  triangles = tf.convert_to_tensor(triangles, tf.int32)
  triangle_id, mask = visibility(clip, triangles, image_size)
  return interpolate(clip, triangles, triangle_id, mask, attributes), triangle_id, mask


def render(posed, triangles, attributes, camera):
  """Renders attributes, mask, depth and triangle ids.

  Args:
    posed: [B, V, 3] posed vertices (model units, see `shared.model.camera`).
    triangles: [T, 3] int32, 0-based.
    attributes: [B, V, C] per-vertex attributes (e.g. lit colours).
    camera: `shared.model.camera.Camera`.

  Returns:
    `RenderOutput` with H = W = camera.image_size.
  """
  clip = to_clip(posed, camera)
  triangles = tf.convert_to_tensor(triangles, tf.int32)
  triangle_id, mask = visibility(clip, triangles, (camera.image_size, camera.image_size))
  # w_clip is the depth along the optical axis; it is interpolated with the rest.
  image, depth = interpolate_with_depth(clip, triangles, triangle_id, mask, attributes)
  ids = tf.where(mask[..., 0] > 0, triangle_id[..., 0], BACKGROUND_ID)
  return RenderOutput(image=image, mask=mask, depth=depth, triangle_ids=ids)


def front_facing(posed, triangles, triangle_ids, camera):
  """Which pixels show the front (outer side) of the surface.

  The face models are open surfaces: through their eye and mouth openings,
  and past their rim at large yaw, the rasterizer draws the inner side of
  the far surface, which lighting meant for the outside shades wrongly (a
  refined render can turn it white).  Pictures for people show the image
  there instead (`drop_back_faces`).  Losses and metrics keep every drawn
  pixel, as the synthetic training images do.

  Args:
    posed: [B, V, 3] posed vertices (model units).
    triangles: [T, 3] int32, wound so that `face_normals` points outwards.
    triangle_ids: [B, H, W] int32, `BACKGROUND_ID` where nothing was drawn.
    camera: `shared.model.camera.Camera` (its centre at (0, 0, `distance`)).

  Returns:
    [B, H, W, 1] float32: 1 where the pixel's triangle faces the camera
    centre, 0 where it faces away and on the background.
  """
  triangles = tf.convert_to_tensor(triangles, tf.int32)
  corner = tf.gather(posed, triangles[:, 0], axis=1)
  faces_camera = facing_cosine(corner, face_normals(posed, triangles), camera) > 0.0
  drawn = triangle_ids != BACKGROUND_ID
  front = tf.gather(faces_camera, tf.where(drawn, triangle_ids, 0), batch_dims=1) & drawn
  return tf.cast(front, tf.float32)[..., None]


def drop_back_faces(output, posed, triangles, camera):
  """`output` (`RenderOutput`) with the pixels that show the back of the surface
  (`front_facing`) turned to background: image, mask and depth 0, id -1."""
  front = front_facing(posed, triangles, output.triangle_ids, camera)
  return RenderOutput(image=output.image * front, mask=output.mask * front,
                      depth=output.depth * front,
                      triangle_ids=tf.where(front[..., 0] > 0, output.triangle_ids,
                                            BACKGROUND_ID))
