"""UV texture maps: splatting per-vertex colours into a texture image.

Uses the same tensorflow-graphics rasterizer as `shared.render.renderer`, with the
mesh laid out in UV space (u right, v up, as in OBJ files), so the texture
matches OBJ texture coordinates.
"""

import numpy as np
import tensorflow as tf

from shared.render import renderer as render_lib

DEFAULT_TEXTURE_SIZE = 512
UV_DEPTH = 0.5  # Any depth inside the clip volume.


def uv_texture_map(uv, faces, colours, size=DEFAULT_TEXTURE_SIZE, background=0.0):
  """Renders per-vertex colours into UV space.

  Args:
    uv: [V, 2] texture coordinates in [0, 1] (v up).
    faces: [F, 3] int triangles.
    colours: [V, C] per-vertex values.
    size: output texture side in pixels.
    background: value for texels no triangle covers.

  Returns:
    [size, size, C] float32 numpy image, row 0 = top (v = 1).
  """
  uv = np.asarray(uv, np.float32)
  # NDC y = -1 is row 0 of the CPU rasterizer, so v = 1 (top) maps to y = -1.
  clip = np.stack([2.0 * uv[:, 0] - 1.0, 1.0 - 2.0 * uv[:, 1],
                   np.full(len(uv), UV_DEPTH), np.ones(len(uv))], axis=1).astype(np.float32)
  values, _, mask = render_lib.rasterize_attributes(
      tf.constant(clip[None]), np.asarray(faces, np.int32),
      tf.constant(np.asarray(colours, np.float32)[None]), (size, size))
  values, mask = values[0].numpy(), mask[0].numpy()
  return values * mask + background * (1.0 - mask)
