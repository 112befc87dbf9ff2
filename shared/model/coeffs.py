"""The coefficient vector a regressor emits, and its split into named parts.

Layout follows MGCNet (`parse_encoder.py`): identity | albedo | expression |
pose (6) | SH lighting (27).  Sizes of the first three follow the face model.
Pose is (pitch, yaw, roll) in radians then translation (x, y, z) in model
units, applied as a residual around the default pose (identity rotation, no
translation; the camera sits at `Camera.distance` on +z).
"""

import dataclasses
from typing import NamedTuple

import tensorflow as tf

NUM_POSE = 6
NUM_ROTATION = 3
NUM_SH = 27


class Coefficients(NamedTuple):
  """Named coefficient tensors (a tf.nest structure).

  identity [B, Ki], albedo [B, Ka], expression [B, Ke] in std units;
  rotation [B, 3] (pitch, yaw, roll) radians; translation [B, 3] model units;
  lighting [B, 27] SH coefficients (3 colours x 9 bands, colour-major).
  """
  identity: tf.Tensor
  albedo: tf.Tensor
  expression: tf.Tensor
  rotation: tf.Tensor
  translation: tf.Tensor
  lighting: tf.Tensor


@dataclasses.dataclass(frozen=True)
class CoeffLayout:
  """Sizes of each part; `size` is the total vector length."""
  num_id: int
  num_albedo: int
  num_exp: int

  @classmethod
  def for_model(cls, face_model):
    return cls(face_model.num_id, face_model.num_albedo, face_model.num_exp)

  @property
  def sizes(self):
    return (self.num_id, self.num_albedo, self.num_exp, NUM_ROTATION,
            NUM_POSE - NUM_ROTATION, NUM_SH)

  @property
  def size(self):
    return sum(self.sizes)

  def split(self, vector):
    """[B, size] -> `Coefficients`."""
    return Coefficients(*tf.split(vector, self.sizes, axis=-1))

  def join(self, coeffs):
    """`Coefficients` -> [B, size]."""
    return tf.concat(list(coeffs), axis=-1)

  def zeros(self, batch_size):
    """The mean face, frontal, at the default pose, with ambient light."""
    return self.split(tf.zeros([batch_size, self.size]))
