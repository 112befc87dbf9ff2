"""Per-image fitting (analysis by synthesis) of 3DMM coefficients.

Starting from a network prediction (or the mean face), Adam optimises the
coefficients of a batch of faces with the same renderer and single-view
losses as training (`shared.losses`): landmarks, skin-masked photometric
error and regularisation.  The first `landmark_steps` steps use landmarks
and regularisation only (no rendering: cheap, and they settle pose and
shape); the remaining steps add the photometric term.  Everything is
vectorised over the batch of faces.

Each coefficient group is optimised in its own scale (`FitConfig.*_scale`):
Adam moves every variable by about `learning_rate` per step, so a group's
scale is its step size in its own units.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from shared import losses
from shared.coeffs import Coefficients
from shared.errors import InputError

GROUPS = Coefficients._fields


@dataclasses.dataclass(frozen=True)
class FitConfig:
  """Fitting schedule and weights (Deep3D's loss weights by default)."""
  steps: int = 60
  landmark_steps: int = 40
  learning_rate: float = 0.01
  # Step sizes per group, in that group's units per step (with learning_rate).
  identity_scale: float = 5.0       # std units
  albedo_scale: float = 5.0         # std units
  expression_scale: float = 5.0     # std units
  rotation_scale: float = 2.0       # radians
  translation_scale: float = 2.0    # model units (dm)
  lighting_scale: float = 3.0       # SH coefficients
  photometric_weight: float = 1.92
  landmark_weight: float = 1.6e-3
  landmark_detail_weight: float = 20.0
  shape_weight: float = 3e-4
  albedo_weight: float = 3e-4 / losses.DEFAULT_ALBEDO_RATIO * 0.017
  expression_ratio: float = 0.8

  def scales(self):
    return Coefficients(self.identity_scale, self.albedo_scale, self.expression_scale,
                        self.rotation_scale, self.translation_scale, self.lighting_scale)


@dataclasses.dataclass
class FitResult:
  """coeffs: fitted `Coefficients` (numpy-backed tensors).
  synthesis: `shared.synthesis.Synthesis` of the fitted coefficients (rendered).
  losses: dict name -> [steps] total loss per step (mean over faces).
  """
  coeffs: Coefficients
  synthesis: object
  losses: dict


class Fitter:
  """Fits coefficients to images and 2D landmarks for one face model."""

  def __init__(self, synthesizer, config=FitConfig()):
    self.synthesizer = synthesizer
    self.config = config
    self.landmark_weights = tf.constant(losses.landmark_weights(config.landmark_detail_weight))
    self.skin = tf.constant(synthesizer.face_model.skin_mask[:, None])
    self._steps = {}

  def _objective(self, coeffs, images, landmarks, skin, photometric):
    c = self.config
    syn = self.synthesizer(coeffs, render=False)
    lm = losses.landmark_loss(syn.landmarks2d, landmarks, self.landmark_weights)
    reg = (c.shape_weight * losses.shape_regularisation(coeffs.identity, coeffs.expression,
                                                        c.expression_ratio) +
           c.albedo_weight * losses.albedo_regularisation(coeffs.albedo))
    total = c.landmark_weight * lm + reg
    if photometric:
      batch = tf.shape(syn.colours)[0]
      attributes = tf.concat([syn.colours, tf.tile(self.skin[None], [batch, 1, 1])], axis=-1)
      out = self.synthesizer.render_attributes(syn.posed, attributes)
      region = out.image[..., 3:] * skin
      photo = losses.photometric_loss(out.image[..., :3], out.mask, images, region)
      total = total + c.photometric_weight * photo
    return tf.reduce_mean(total)

  def _step_fn(self, photometric, variables, optimizer, scales):
    # Without the photometric term, albedo and lighting have no gradient.
    trained = [v for v, name in zip(variables, GROUPS)
               if photometric or name not in ("albedo", "lighting")]

    @tf.function
    def step(images, landmarks, skin):
      with tf.GradientTape() as tape:
        coeffs = Coefficients(*[v * s for v, s in zip(variables, scales)])
        loss = self._objective(coeffs, images, landmarks, skin, photometric)
      grads = tape.gradient(loss, trained)
      optimizer.apply_gradients(zip(grads, trained))
      return loss
    return step

  def fit(self, images, landmarks, init=None, skin=None):
    """Fits a batch of faces.

    Args:
      images: [B, H, W, 3] float32 in [0, 1] (camera image size).
      landmarks: [B, 68, 2] target landmarks in the same pixel convention.
      init: optional `Coefficients` to start from (default: the mean face).
      skin: optional [B, H, W, 1] skin probability (default: all ones; the
        model's face region is always applied).

    Returns:
      `FitResult`.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    landmarks = tf.convert_to_tensor(landmarks, tf.float32)
    batch = int(images.shape[0])
    if not np.isfinite(landmarks.numpy()).all():
      raise InputError("fitting: target landmarks contain NaN or Inf")
    init = init if init is not None else self.synthesizer.layout.zeros(batch)
    skin = tf.ones_like(images[..., :1]) if skin is None else tf.convert_to_tensor(skin)
    scales = self.config.scales()
    variables = [tf.Variable(tf.convert_to_tensor(v, tf.float32) / s, name=n)
                 for v, s, n in zip(init, scales, GROUPS)]
    optimizer = tf.keras.optimizers.Adam(self.config.learning_rate)
    history = []
    steps = {p: self._step_fn(p, variables, optimizer, scales) for p in (False, True)}
    for k in range(self.config.steps):
      loss = steps[k >= self.config.landmark_steps](images, landmarks, skin)
      history.append(float(loss))
      if not np.isfinite(history[-1]):
        raise InputError(f"fitting: loss became {history[-1]} at step {k}")
    coeffs = Coefficients(*[tf.convert_to_tensor(v * s) for v, s in zip(variables, scales)])
    return FitResult(coeffs=coeffs, synthesis=self.synthesizer(coeffs),
                     losses={"total": np.asarray(history)})
