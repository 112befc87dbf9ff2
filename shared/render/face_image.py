"""Analysis-by-synthesis: coefficients -> posed mesh, colours, landmarks, image.

`FaceSynthesizer` is the one place that chains the face model, pose, SH
lighting, projection and the renderer.  The MGC regressor, the GCN coarse
stage, per-image fitting, the demo and the synthetic dataset all use it.
"""

import dataclasses

import tensorflow as tf

from shared.model import camera as camera_lib
from shared.model import lighting
from shared.render import renderer as render_lib
from shared.model.coeffs import CoeffLayout


@dataclasses.dataclass
class Synthesis:
  """Everything derived from one batch of coefficients.

  vertices: [B, V, 3] model space (before pose).
  posed: [B, V, 3] after pose.
  normals: [B, V, 3] rotated unit normals.
  albedo: [B, V, 3] in [0, 1].
  colours: [B, V, 3] lit colours (albedo x irradiance).
  landmarks2d: [B, 68, 2] projected pixels.  landmarks3d: [B, 68, 3] posed.
  render: `RenderOutput` or None when rendering was not requested.
  """
  vertices: tf.Tensor
  posed: tf.Tensor
  normals: tf.Tensor
  albedo: tf.Tensor
  colours: tf.Tensor
  landmarks2d: tf.Tensor
  landmarks3d: tf.Tensor
  render: object = None


class FaceSynthesizer:
  """Decodes and renders coefficients for one face model and camera."""

  def __init__(self, face_model, camera=None):
    self.face_model = face_model
    self.camera = camera or camera_lib.Camera()
    self.layout = CoeffLayout.for_model(face_model)
    self.decoder = face_model.decoder()

  def __call__(self, coeffs, render=True, vertex_colours=None):
    """Synthesises a batch.

    Args:
      coeffs: `shared.model.coeffs.Coefficients` with batch B.
      render: also rasterize (colour image, mask, depth, triangle ids).
      vertex_colours: optional [B, V, 3] albedo to use instead of the model's
        albedo (e.g. a GCN-refined texture); lighting is still applied.

    Returns:
      `Synthesis`.
    """
    vertices, posed, landmarks3d, landmarks2d = self.geometry(coeffs)
    normals, albedo, colours = self.appearance(coeffs, vertices, vertex_colours)
    out = Synthesis(vertices, posed, normals, albedo, colours, landmarks2d, landmarks3d)
    if render:
      out.render = render_lib.render(posed, self.decoder.faces, colours, self.camera)
    return out

  def geometry(self, coeffs):
    """Shape and pose: (vertices [B, V, 3] model space, posed [B, V, 3],
    landmarks3d [B, 68, 3] posed, landmarks2d [B, 68, 2] pixels)."""
    vertices = self.decoder.shape(coeffs.identity, coeffs.expression)
    posed = camera_lib.transform(vertices, coeffs.rotation, coeffs.translation)
    landmarks3d = self.decoder.landmarks(posed)
    return vertices, posed, landmarks3d, camera_lib.project(landmarks3d, self.camera)

  def appearance(self, coeffs, vertices, vertex_colours=None):
    """Albedo and lighting on model-space `vertices` [B, V, 3]: (normals [B, V, 3]
    rotated, albedo [B, V, 3] (or `vertex_colours`), lit colours [B, V, 3]).

    Independent of the rasterizer, so it can run while the posed mesh is
    rasterized."""
    dec = self.decoder
    rotation = camera_lib.rotation_matrix(coeffs.rotation)
    normals = tf.einsum("bij,bvj->bvi", rotation, dec.normals(vertices))
    albedo = dec.albedo(coeffs.albedo) if vertex_colours is None else vertex_colours
    return normals, albedo, lighting.shade(albedo, normals, coeffs.lighting)

  def render_attributes(self, posed, attributes):
    """Renders arbitrary per-vertex attributes [B, V, C] on posed vertices."""
    return render_lib.render(posed, self.decoder.faces, attributes, self.camera)
