"""Static shapes for the rasterizer op, so `shared.render` works in tf.function.

tensorflow-graphics' `rasterize_triangles` kernel registers no shape
function, so inside a `tf.function` its outputs have unknown rank and
`shared.render.rasterize` fails when it builds the framebuffer.  Eager mode
is unaffected.  `install()` wraps the loaded op so its outputs carry their
static shapes ([layers, H, W] and [layers, H, W, 3]).  It is idempotent and
a no-op once `shared.render` sets the shapes itself.
"""

import tensorflow as tf

from shared import rasterizer

_MARK = "_mgc_static_shapes"


def install():
  """Wraps `rasterizer.load().rasterize_triangles` with `tf.ensure_shape`."""
  ops = rasterizer.load()
  if getattr(ops, _MARK, False):
    return
  raw = ops.rasterize_triangles

  def rasterize_triangles(vertices, triangles, image_width, image_height, num_layers,
                          face_culling_mode, **kwargs):
    bary, ids, z = raw(vertices, triangles, image_width, image_height, num_layers,
                       face_culling_mode, **kwargs)
    shape = [int(num_layers), int(image_height), int(image_width)]
    return (tf.ensure_shape(bary, shape + [3]), tf.ensure_shape(ids, shape),
            tf.ensure_shape(z, shape))

  ops.rasterize_triangles = rasterize_triangles
  setattr(ops, _MARK, True)
