"""What the photo test files share: a synthetic photo of one face (no data folder needed)."""

import math

import numpy as np
import tensorflow as tf

from shared.model import camera as camera_lib

RENDER_FOCAL = 800.0        # px, the render camera's focal length
IDENTITY_STD = 0.6          # the drawn identity's spread (std units)
EXPRESSION_STD = 0.3        # the drawn expression's spread (std units)


def shaded_render(ict_model, yaw_degrees, identity_seed, size=320, expression_seed=None):
  """A shaded render of one face on a grey background, uint8 [size, size, 3]: identity
  drawn from `identity_seed`, neutral expression unless `expression_seed` is given (then
  drawn from both seeds, so one identity can wear several expressions)."""
  from shared.photo.photo_render import shaded_photos
  from shared.render.face_image import FaceSynthesizer
  synth = FaceSynthesizer(ict_model, camera_lib.Camera(focal=RENDER_FOCAL, image_size=size))
  identity = np.random.default_rng(identity_seed).normal(0, IDENTITY_STD,
                                                         (1, synth.layout.num_id))
  coeffs = synth.layout.zeros(1)._replace(
      identity=tf.constant(identity, tf.float32),
      rotation=tf.constant([[0.0, math.radians(yaw_degrees), 0.0]]))
  if expression_seed is not None:
    expression = np.random.default_rng([identity_seed, expression_seed]).normal(
        0, EXPRESSION_STD, (1, synth.layout.num_exp))
    coeffs = coeffs._replace(expression=tf.constant(expression, tf.float32))
  return shaded_photos(synth, coeffs)[0][0]
