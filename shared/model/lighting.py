"""Spherical-harmonics lighting with Deng et al.'s (Deep3D) constants.

27 coefficients = 3 colour channels x 9 SH bands (colour-major).  0.8 is
added to each channel's DC band (as in Deep3D and MGCNet), so zero
coefficients mean soft white ambient light.  Colour = albedo * irradiance.
"""

import math

import tensorflow as tf

NUM_BANDS = 9
NUM_CHANNELS = 3
AMBIENT_DC = 0.8
A0 = math.pi
A1 = 2.0 * math.pi / math.sqrt(3.0)
A2 = 2.0 * math.pi / math.sqrt(8.0)
C0 = 1.0 / math.sqrt(4.0 * math.pi)
C1 = math.sqrt(3.0) / math.sqrt(4.0 * math.pi)
C2 = 3.0 * math.sqrt(5.0) / math.sqrt(12.0 * math.pi)


def sh_basis(normals):
  """The 9 SH basis values for unit normals.

  Args:
    normals: [..., 3] unit vectors (x, y, z).

  Returns:
    [..., 9] in Deep3D's order and sign convention.
  """
  x, y, z = tf.unstack(normals, axis=-1)
  return tf.stack([
      tf.fill(tf.shape(x), A0 * C0),
      -A1 * C1 * y,
      A1 * C1 * z,
      -A1 * C1 * x,
      A2 * C2 * x * y,
      -A2 * C2 * y * z,
      A2 * C2 * 0.5 / math.sqrt(3.0) * (3.0 * z * z - 1.0),
      -A2 * C2 * x * z,
      A2 * C2 * 0.5 * (x * x - y * y),
  ], axis=-1)


def irradiance(normals, sh):
  """Per-point RGB irradiance.

  Args:
    normals: [B, V, 3] unit normals (after rotation).
    sh: [B, 27] coefficients.

  Returns:
    [B, V, 3].
  """
  gamma = tf.reshape(sh, [-1, NUM_CHANNELS, NUM_BANDS])
  gamma = gamma + tf.constant([AMBIENT_DC] + [0.0] * (NUM_BANDS - 1))
  return tf.einsum("bvk,bck->bvc", sh_basis(normals), gamma)


def shade(albedo, normals, sh):
  """Lit colour = albedo * irradiance, [B, V, 3] (not clipped)."""
  return albedo * irradiance(normals, sh)
