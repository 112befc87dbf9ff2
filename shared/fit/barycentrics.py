"""Per-pixel vertex ids and perspective-correct barycentrics, and the fixed-
visibility sparse blend they define (the cheap photometric stage of the fit)."""

import tensorflow as tf


def pixel_barycentrics(clip, faces, triangle_id, size):
  """Vertex ids and perspective-correct barycentrics of every pixel.

  Args:
    clip: [B, V, 4] clip-space vertices (`shared.render.renderer.to_clip`).
    faces: [F, 3] int32 triangles.
    triangle_id: [B, S, S] int32 from `shared.render.renderer.visibility` (any value
      on background pixels; mask them afterwards).
    size: image side S.

  Returns:
    (vertex_ids [B, S, S, 3] int32, weights [B, S, S, 3] float32 summing to
    1), so a pixel's value is sum_k weights[..., k] * attribute[vertex_ids[..., k]].
    Screen positions follow the CPU rasterizer (NDC y = -1 on row 0, pixel
    centres at +0.5); the screen-space weights b_k are corrected with the
    clip w: (b_k / w_k) / sum_j (b_j / w_j).
  """
  vertex_ids = tf.gather(tf.convert_to_tensor(faces, tf.int32), triangle_id)
  w = clip[..., 3]
  screen = (clip[..., :2] / w[..., None] + 1.0) * (size / 2.0)     # [B, V, 2] pixels
  corners = tf.gather(screen, vertex_ids, batch_dims=1)              # [B, S, S, 3, 2]
  centres = tf.range(size, dtype=tf.float32) + 0.5
  py, px = tf.meshgrid(centres, centres, indexing="ij")
  pixel = tf.stack([px, py], axis=-1)[None]                          # [1, S, S, 2]
  a, b, c = corners[..., 0, :], corners[..., 1, :], corners[..., 2, :]

  def cross(u, v):
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]

  area = cross(b - a, c - a)
  area = tf.where(tf.abs(area) < 1e-12, tf.ones_like(area) * 1e-12, area)
  screen_weights = tf.stack([cross(b - pixel, c - pixel), cross(c - pixel, a - pixel),
                             cross(a - pixel, b - pixel)], axis=-1) / area[..., None]
  corrected = screen_weights / tf.gather(w, vertex_ids, batch_dims=1)
  total = tf.reduce_sum(corrected, axis=-1, keepdims=True)
  total = tf.where(tf.abs(total) < 1e-12, tf.ones_like(total), total)
  return vertex_ids, corrected / total


def blend_matrix(vertex_ids, weights, mask, num_vertices):
  """A function [B, V, C] -> [B, S, S, C] rendering vertex values with fixed
  visibility: a sparse matrix over the covered pixels (graph code)."""
  batch, size = vertex_ids.shape[0], vertex_ids.shape[1]
  pixels = size * size
  covered = tf.where(tf.reshape(mask, [-1]) > 0)[:, 0]                  # flat b * P + p
  ids = tf.gather(tf.reshape(vertex_ids, [-1, 3]), covered)              # [N, 3]
  ids = tf.cast(ids, tf.int64) + (covered // pixels)[:, None] * num_vertices
  values = tf.gather(tf.reshape(weights, [-1, 3]), covered)
  rows = tf.repeat(covered, 3)
  matrix = tf.sparse.SparseTensor(tf.stack([rows, tf.reshape(ids, [-1])], axis=1),
                                  tf.reshape(values, [-1]),
                                  [batch * pixels, batch * num_vertices])

  def blend(vertex_values):
    channels = vertex_values.shape[-1]
    flat = tf.reshape(vertex_values, [batch * num_vertices, channels])
    image = tf.sparse.sparse_dense_matmul(matrix, flat)
    return tf.reshape(image, [batch, size, size, channels])
  return blend
