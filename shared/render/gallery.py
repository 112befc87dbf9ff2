"""A picture of a face model: several poses and expressions, shaded and depth."""

import dataclasses

import numpy as np
import tensorflow as tf

from shared.io import export
from shared.render import renderer as render_lib
from shared.render.face_image import FaceSynthesizer

SH_KEY_LIGHT = {1: -0.25, 3: 0.2}  # Band -> value, same for R, G, B: light from upper left.
NUM_SH_BANDS = 9


@dataclasses.dataclass(frozen=True)
class GalleryConfig:
  """Poses (pitch, yaw, roll) in degrees and expression std values per picture."""
  poses: tuple = ((0, 0, 0), (0, 35, 0), (0, -35, 0), (15, 0, 0), (-10, 60, 0), (0, 0, 15))
  expression_scale: float = 1.5
  identity_scale: float = 1.0
  seed: int = 0
  background: float = 0.15


def gallery_coefficients(synthesizer, config=GalleryConfig()):
  """Coefficients for the gallery: mean face, random identities and expressions."""
  layout = synthesizer.layout
  n = len(config.poses)
  rng = np.random.default_rng(config.seed)
  coeffs = layout.zeros(n)
  identity = rng.standard_normal((n, layout.num_id)).astype(np.float32) * config.identity_scale
  identity[0] = 0.0
  expression = np.zeros((n, layout.num_exp), np.float32)
  picks = rng.integers(0, layout.num_exp, size=n)
  expression[np.arange(1, n), picks[1:]] = config.expression_scale
  albedo = rng.standard_normal((n, layout.num_albedo)).astype(np.float32)
  albedo[0] = 0.0
  sh = np.zeros((n, 27), np.float32)
  for band, value in SH_KEY_LIGHT.items():
    sh[:, [band, band + NUM_SH_BANDS, band + 2 * NUM_SH_BANDS]] = value
  return coeffs._replace(identity=tf.constant(identity), expression=tf.constant(expression),
                         albedo=tf.constant(albedo), lighting=tf.constant(sh),
                         rotation=tf.constant(np.radians(config.poses), tf.float32))


def render_gallery(face_model, path, config=GalleryConfig()):
  """Renders the gallery to a PNG: shaded row on top, depth row below.

  Returns:
    The [H, W, 3] float picture that was written.
  """
  synthesizer = FaceSynthesizer(face_model)
  out = synthesizer(gallery_coefficients(synthesizer, config))
  r = render_lib.drop_back_faces(out.render, out.posed, face_model.faces, synthesizer.camera)
  size = synthesizer.camera.image_size
  background = np.full((size, size, 3), config.background, np.float32)
  shaded = [export.overlay(background, r.image[i].numpy(), r.mask[i].numpy())
            for i in range(len(config.poses))]
  depth = [export.depth_image(r.depth[i].numpy(), r.mask[i].numpy())
           for i in range(len(config.poses))]
  picture = np.clip(export.grid(shaded + depth, len(config.poses)), 0.0, 1.0)  # As written.
  export.write_png(path, picture)
  return picture
