"""The refined albedo trusted where the image can tell it: the confidence blend.

The refiner explains the image under the coarse geometry and lighting.  Where a
vertex is lit dimly, a small error in that shading is a large error in the
albedo it implies (albedo = colour / irradiance), and the refiner darkens the
albedo to copy a shadow the coarse lighting does not make (docs/gcn.md,
"Session 24").  At test and eval time the refined change over the coarse
albedo is therefore scaled per vertex by the confidence

    w = min(1, E / E_full),

E the vertex's irradiance under the (refitted) lighting, averaged over RGB,
and E_full (`GCNConfig.albedo_confidence`) the irradiance at which the image's
reading is taken in full.  It is a shrinkage towards the prior: noisy image
evidence is weighted by how much light carries it.  Training is unchanged.
"""

import tensorflow as tf


def confidence(irradiance, full_irradiance):
  """Per-vertex weight of the refined change.

  Args:
    irradiance: [B, V, 3] RGB irradiance at each vertex (unitless, 1 is the
      ambient term of white light).
    full_irradiance: float > 0, the irradiance from which the change is kept whole.

  Returns:
    [B, V, 1] in [0, 1].
  """
  mean = tf.reduce_mean(irradiance, axis=-1, keepdims=True)
  return tf.clip_by_value(mean / full_irradiance, 0.0, 1.0)


def confidence_blend(coarse, refined, irradiance, full_irradiance):
  """coarse + w (refined - coarse), w = `confidence(irradiance, full_irradiance)`.

  Args:
    coarse, refined: [B, V, 3] per-vertex albedo in [0, 1].
    irradiance: [B, V, 3] as in `confidence`.
    full_irradiance: float; 0 or less returns `refined` unchanged (off).

  Returns:
    [B, V, 3] albedo.
  """
  if full_irradiance <= 0:
    return refined
  return coarse + confidence(irradiance, full_irradiance) * (refined - coarse)
