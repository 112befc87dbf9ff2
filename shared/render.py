"""Differentiable rendering on tensorflow-graphics' rasterizer.

Visibility comes from tensorflow-graphics' CPU rasterizer kernel (built by
`shared.rasterizer`), and attributes are interpolated with its
differentiable barycentrics, so gradients flow to vertex positions (through
the barycentrics of visible triangles) and to vertex attributes.  Like the
rasterizer itself, there is no gradient through visibility changes.

Compared with calling `triangle_rasterizer.rasterize` directly, `render`
transforms vertices to clip space once (not twice) and interpolates all
attributes plus depth in a single gather.
"""

import dataclasses

import tensorflow as tf
from tensorflow_graphics.rendering import barycentrics as tfg_barycentrics
from tensorflow_graphics.rendering import framebuffer as tfg_framebuffer
from tensorflow_graphics.rendering import interpolate as tfg_interpolate

from shared import rasterizer

CULL_NONE = 0  # tensorflow-graphics FaceCullingMode.NONE
NUM_LAYERS = 1
BACKGROUND_ID = -1


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


def rasterize(clip, triangles, image_size):
  """Visibility per pixel with tensorflow-graphics' kernel.

  Args:
    clip: [B, V, 4] clip-space vertices (B must be static).
    triangles: [T, 3] int32.
    image_size: (height, width).

  Returns:
    A tensorflow-graphics `Framebuffer` with differentiable barycentrics,
    triangle ids [B, H, W, 1], vertex ids and foreground mask.
  """
  ops = rasterizer.load()
  height, width = image_size
  clip_stop = tf.stop_gradient(clip)
  ids, masks = [], []
  for b in range(clip.shape[0]):  # Unrolled: images rasterize in parallel.
    _, tri_ids, z_buffer = ops.rasterize_triangles(clip_stop[b], triangles, width, height,
                                                    NUM_LAYERS, CULL_NONE)
    ids.append(tri_ids)
    masks.append(tf.cast(tf.not_equal(z_buffer, 1.0), tf.float32))
  # Single-layer framebuffer: drop the layer axis.
  triangle_id = tf.stack(ids)[:, 0, :, :, None]
  mask = tf.stack(masks)[:, 0, :, :, None]
  placeholder = tf.zeros(tf.concat([tf.shape(mask)[:-1], [3]], 0))
  framebuffer = tfg_framebuffer.Framebuffer(
      foreground_mask=mask, triangle_id=triangle_id,
      vertex_ids=tf.gather(triangles, triangle_id[..., 0]),
      barycentrics=tfg_framebuffer.RasterizedAttribute(placeholder, None, None))
  return tfg_barycentrics.differentiable_barycentrics(framebuffer, clip, triangles)


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
  triangles = tf.convert_to_tensor(triangles, tf.int32)
  clip = to_clip(posed, camera)
  size = (camera.image_size, camera.image_size)
  framebuffer = rasterize(clip, triangles, size)
  # w_clip is the depth along the optical axis; interpolate it with the rest.
  stacked = tf.concat([attributes, clip[..., 3:]], axis=-1)
  values = tfg_interpolate.interpolate_vertex_attribute(stacked, framebuffer).value
  mask = framebuffer.foreground_mask
  ids = framebuffer.triangle_id[..., 0]
  ids = tf.where(mask[..., 0] > 0, ids, BACKGROUND_ID)
  return RenderOutput(image=values[..., :-1], mask=mask, depth=values[..., -1:],
                      triangle_ids=ids)
