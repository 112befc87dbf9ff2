"""Differentiable rendering on tensorflow-graphics' rasterizer.

Visibility comes from tensorflow-graphics' CPU rasterizer kernel (built by
`shared.rasterizer`, one call per image).  Attributes are then interpolated
with tensorflow-graphics' differentiable barycentrics: the same per-pixel
formula as its `differentiable_barycentrics` + `interpolate_vertex_attribute`
(tfg's pixel grid, edge functions and `divide_no_nan` normalisation), so
gradients flow to vertex positions (through the barycentrics of visible
triangles) and to vertex attributes.  Like the rasterizer itself, there is
no gradient through visibility changes.

What this layer adds over calling `triangle_rasterizer.rasterize`:

* the stage after the kernel runs under XLA (`jit_compile=True`) as four
  compiled functions: gather the corners of each pixel's triangle, shade
  (forward), then a hand-written gradient in two passes, per-pixel terms and
  the scatter into vertices, one call per triangle corner so the three
  scatters run in parallel (XLA's automatic gradient of the fused forward
  recomputes all shared per-pixel terms for every scattered value);
* only covered pixels are interpolated (compacted, their count padded to
  one of a few bucket sizes so XLA compiles few shapes);
* barycentrics are evaluated per pixel from its triangle's three corners,
  which are gathered together with the attributes in one [K, 3, N] gather,
  instead of per-triangle matrices for all T triangles;
* vertices go to clip space once, not twice, and depth is interpolated with
  the attributes and returned as its own tensor (no slicing outside XLA);
* the per-image kernel calls are independent graph nodes, so they can run
  in parallel.

bench/render.py prints the per-stage times.
"""

import dataclasses
import os

import tensorflow as tf

from shared import rasterizer

CULL_NONE = 0  # tensorflow-graphics FaceCullingMode.NONE
NUM_LAYERS = 1
BACKGROUND_ID = -1
CLEAR_DEPTH = 1.0  # The kernel's z-buffer value where no triangle was drawn.
# A small batch rasterizes each image in up to this many parallel kernel
# calls over parts of the triangles (see `triangle_splits`).
MAX_SPLITS = 4
XYW = 3  # Clip x, y, w: the corner values barycentrics are computed from.
# Compacted pixel counts are rounded up to a multiple of N / PIXEL_BUCKETS
# (N = B * H * W): at most this many shapes per batch size for XLA to compile.
PIXEL_BUCKETS = 16


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


def _corner_planes(corners):
  """[K, 3, P] corner values -> planes[k][j] = corners[k, j], each [P]."""
  return [[corners[k, j] for j in range(3)] for k in range(corners.shape[0])]


def covered_pixels(mask):
  """The covered pixels of a batch, compacted, so later passes skip the background.

  The count is rounded up to a multiple of N / PIXEL_BUCKETS (N = B * H * W)
  so that the XLA-compiled passes see a few distinct shapes only; the padding
  entries point at pixel 0 with weight 0.

  Args:
    mask: [B, H, W, 1] float32 coverage.

  Returns:
    (pixels [P] int32 flat indices into B * H * W, in increasing order,
    weight [P] float32: 1 for covered pixels, 0 for padding).
  """
  flat = tf.reshape(mask, [-1]) > 0
  bucket = -(-flat.shape[0] // PIXEL_BUCKETS)
  pixels = tf.cast(tf.where(flat)[:, 0], tf.int32)
  count = tf.shape(pixels)[0]
  padding = tf.maximum((count + bucket - 1) // bucket, 1) * bucket - count
  return tf.pad(pixels, [[0, padding]]), tf.pad(tf.ones([count], tf.float32), [[0, padding]])


def _pixel_coordinates(pixels, image_size):
  """tfg's normalized pixel centres of flat pixel indices, each [P].

  The same float operations as tfg's `normalized_pixel_coordinates`,
  (2 i + 1) / size - 1, x right and y down in [-1, 1].
  """
  height, width = image_size
  in_image = pixels % (height * width)
  column = tf.cast(in_image % width, tf.float32)
  row = tf.cast(in_image // width, tf.float32)
  return (2.0 * column + 1.0) / float(width) - 1.0, (2.0 * row + 1.0) / float(height) - 1.0


def _edge(a, b, px, py):
  """Edge function p . (a x b) of corners a, b = (x, y, w) at p = (px, py, 1).

  Written term by term as tfg's `compute_triangle_matrices` (d11 px + d21 py +
  d31, ...), so the per-pixel value is the same float computation.
  """
  ax, ay, aw = a
  bx, by, bw = b
  return (ay * bw - aw * by) * px + (aw * bx - ax * bw) * py + (ax * by - ay * bx)


def _edge_vjp(a, b, px, py, g):
  """g times the gradients of `_edge` with respect to a (b x p) and b (p x a)."""
  ax, ay, aw = a
  bx, by, bw = b
  da = ((by - bw * py) * g, (bw * px - bx) * g, (bx * py - by * px) * g)
  db = ((aw * py - ay) * g, (ax - aw * px) * g, (ay * px - ax * py) * g)
  return da, db


def _clip_corners(planes):
  """The three corners' (x, y, w) planes: the last XYW of the K planes."""
  return [tuple(planes[-XYW + i][j] for i in range(XYW)) for j in range(3)]


def _barycentrics(planes, px, py):
  """Perspective-correct barycentrics as tfg's `differentiable_barycentrics`.

  tfg multiplies each triangle's matrix by the sign of its determinant; that
  sign cancels exactly in the normalisation (negation is exact in floats), so
  it is left out.

  Returns:
    (sum of edge values [P], barycentrics [3] of [P] before weighting; 0 where
    the sum is 0, as tfg's `divide_no_nan`).
  """
  corners = _clip_corners(planes)
  edges = [_edge(corners[(i + 1) % 3], corners[(i + 2) % 3], px, py) for i in range(3)]
  total = edges[0] + edges[1] + edges[2]
  return total, [tf.math.divide_no_nan(e, total) for e in edges]


@tf.function(jit_compile=True)
def _gather_corners(data, triangles, triangle_id, pixels):
  """Per-vertex data at the corners of each compacted pixel's triangle, as planes.

  The planar [K, 3, P] layout keeps every later per-pixel pass reading
  contiguous arrays (about 15% less CPU than a [P, 3, K] layout, measured with bench/render.py).

  Args:
    data: [B, V, K] per-vertex values.  triangles: [T, 3] int32.
    triangle_id: [B, H, W, 1] int32.  pixels: [P] int32 flat pixel indices.

  Returns:
    (index [3, P] int32 into the flattened [B * V] vertices, planes [K, 3, P]).
  """
  num_vertices, k = tf.shape(data)[1], data.shape[-1]
  image_pixels = triangle_id.shape[1] * triangle_id.shape[2]
  ids = tf.gather(tf.reshape(triangle_id, [-1]), pixels)
  vertex_ids = tf.gather(triangles, ids) + (pixels // image_pixels * num_vertices)[:, None]
  index = tf.transpose(vertex_ids)  # [3, P]
  return index, tf.gather(tf.transpose(tf.reshape(data, [-1, k])), index, axis=1)


def _expand(compact, pixels, image_shape):
  """[P, C] rows of the compacted pixels -> [B, H, W, C], 0 on background.

  A scatter (padding rows are 0 and add nothing to pixel 0); under XLA this
  is cheaper than a cumulative sum of the mask and a gather.
  """
  num_pixels = image_shape[0] * image_shape[1] * image_shape[2]
  image = tf.scatter_nd(pixels[:, None], compact, [num_pixels, compact.shape[-1]])
  return tf.reshape(image, list(image_shape) + [compact.shape[-1]])


@tf.function(jit_compile=True)
def _shade(corners, pixels, weight, mask):
  """Forward: [A + 3, 3, P] corner planes (attributes, then x, y, w) of the
  compacted pixels ([P] `pixels` with [P] `weight`, see `covered_pixels`) and
  the [B, H, W, 1] coverage -> (attributes [B, H, W, A], depth w [B, H, W, 1]),
  0 on background, plus the edge-value sum [P] and the unweighted barycentrics
  (3 of [P]) for the backward pass, so that it need not recompute them."""
  planes = _corner_planes(corners)
  px, py = _pixel_coordinates(pixels, mask.shape[1:3])
  total, unweighted = _barycentrics(planes, px, py)
  b = [x * weight for x in unweighted]
  channels = [b[0] * c[0] + b[1] * c[1] + b[2] * c[2] for c in planes]
  image = _expand(tf.stack(channels[:-XYW] + channels[-1:], -1), pixels,  # Attributes, w.
                  mask.shape[:3])
  values, depth = image[..., :-1], image[..., -1:]
  return values, depth, total, tuple(unweighted)


def _compact_grads(d_values, d_depth, pixels, weight):
  """Upstream image gradients at the compacted pixels, as A + 1 planes [P] (depth last)."""
  num_attr = d_values.shape[-1]
  rows = tf.gather(tf.reshape(d_values, [-1, num_attr]), pixels)
  depth = tf.gather(tf.reshape(d_depth, [-1]), pixels)
  return [rows[:, c] * weight for c in range(num_attr)] + [depth * weight]


@tf.function(jit_compile=True)
def _shade_vjp_pixels(corners, pixels, weight, total, unweighted, d_values, d_depth):
  """Backward, per pixel: gradients of the three edge values (3 of [P]) and the
  compacted upstream gradients ([A + 1, P]).

  Kept apart from `_corner_vjp_scatter` so that XLA stores these planes
  instead of recomputing them for each of the 3 * K scattered values.
  """
  planes = _corner_planes(corners)
  dys = _compact_grads(d_values, d_depth, pixels, weight)
  values = planes[:-XYW] + [[w for _, _, w in _clip_corners(planes)]]  # Depth is w.
  g = [tf.add_n([values[c][j] * dys[c] for c in range(len(dys))]) for j in range(3)]
  g_dot_b = g[0] * unweighted[0] + g[1] * unweighted[1] + g[2] * unweighted[2]
  d_edges = tuple(tf.math.divide_no_nan(g[i] - g_dot_b, total) for i in range(3))
  return d_edges, tf.stack(dys)


@tf.function(jit_compile=True)
def _corner_vjp_scatter(corner, corners, index, pixels, weight, dys, d_edges, unweighted,
                        image_size, num_rows):
  """Backward for one triangle corner (0, 1, 2): its [P, K] gradients summed into
  [num_rows, K] vertices.

  One compiled call per corner: XLA runs a scatter on one thread, and the
  three independent calls run in parallel on TensorFlow's inter-op threads.
  """
  planes = _corner_planes(corners)
  px, py = _pixel_coordinates(pixels, image_size)
  b = weight * unweighted[corner]
  dys = tf.unstack(dys)
  xyw = _clip_corners(planes)
  d_xyw = [0.0, 0.0, b * dys[-1]]
  for i in range(3):  # Corner j is `a` of edge j - 1 and `b` of edge j + 1.
    ja, jb = (i + 1) % 3, (i + 2) % 3
    if corner in (ja, jb):
      da, db = _edge_vjp(xyw[ja], xyw[jb], px, py, d_edges[i])
      d_xyw = [x + y for x, y in zip(d_xyw, da if corner == ja else db)]
  rows = tf.stack([b * dy for dy in dys[:-1]] + d_xyw, -1)
  return tf.math.unsorted_segment_sum(rows, index[corner], num_rows)


def interpolate_with_depth(clip, triangles, triangle_id, mask, attributes):
  """Differentiable barycentric interpolation of attributes and depth.

  Same values as tfg's `differentiable_barycentrics` followed by
  `interpolate_vertex_attribute` (tests/test_render.py checks values and
  gradients against them), computed under XLA for the covered pixels only
  (`covered_pixels`), with a hand-written gradient: XLA's automatic one
  recomputes every shared per-pixel term for each scattered value and was
  the slowest stage (see bench/render.py).

  Args:
    clip: [B, V, 4] clip-space vertices.  triangles: [T, 3] int32.
    triangle_id: [B, H, W, 1] int32.  mask: [B, H, W, 1] float32.
    attributes: [B, V, A].

  Returns:
    (values [B, H, W, A], depth [B, H, W, 1] = interpolated w_clip), 0 on background;
    differentiable with respect to clip and attributes.
  """
  data = tf.concat([attributes, clip[..., 0:2], clip[..., 3:4]], -1)  # [B, V, A + 3]
  pixels, weight = covered_pixels(mask)

  @tf.custom_gradient
  def shade(data):
    index, corners = _gather_corners(data, triangles, triangle_id, pixels)
    values, depth, total, unweighted = _shade(corners, pixels, weight, mask)

    def grad(d_values, d_depth):
      d_values = tf.zeros_like(values) if d_values is None else d_values
      d_depth = tf.zeros_like(depth) if d_depth is None else d_depth
      d_edges, dys = _shade_vjp_pixels(corners, pixels, weight, total, unweighted, d_values,
                                       d_depth)
      d_data = tf.add_n([
          _corner_vjp_scatter(j, corners, index, pixels, weight, dys, d_edges, unweighted,
                              tuple(mask.shape[1:3]), data.shape[0] * data.shape[1])
          for j in range(3)])
      return tf.reshape(d_data, tf.shape(data))
    return (values, depth), grad
  return shade(data)


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
    posed: [B, V, 3] posed vertices (model units, see `shared.camera`).
    triangles: [T, 3] int32, 0-based.
    attributes: [B, V, C] per-vertex attributes (e.g. lit colours).
    camera: `shared.camera.Camera`.

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
