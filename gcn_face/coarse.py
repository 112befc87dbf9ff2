"""The coarse stage: coefficients and an image feature for each aligned crop.

3D-Face-GCNs took both from Deep3D's frozen R-Net graph (`coeff:0` and
`pool5:0`).  Here they come from our own MGC regressor: `load_coarse_stage`
is the one place where `gcn_face` imports `mgc_face`.  Anything with the
same call signature (a test stand-in, another regressor) can be wrapped in
`CoarseStage` directly.
"""

import tensorflow as tf

from shared.render.face_image import FaceSynthesizer

SKIN_THRESHOLD = 0.5  # A pixel is skin when its interpolated skin value exceeds this.


class CoarseStage:
  """A frozen regressor plus the synthesiser of its face model.

  Attributes:
    regressor: callable, images [B, H, W, 3] float32 RGB in [0, 1] ->
      (`shared.model.coeffs.Coefficients`, features [B, feature_size]).
    face_model: the `FaceModel` the coefficients belong to.
    feature_size: length of the image feature.
    synthesizer: `FaceSynthesizer` for `face_model`.
  """

  def __init__(self, regressor, face_model, feature_size, camera=None):
    self.regressor = regressor
    self.face_model = face_model
    self.feature_size = int(feature_size)
    self.synthesizer = FaceSynthesizer(face_model, camera)

  def __call__(self, images):
    """[B, H, W, 3] in [0, 1] -> (Coefficients, features [B, F]), no gradient."""
    coeffs, features = self.regressor(images)
    return tf.nest.map_structure(tf.stop_gradient, (coeffs, features))


def load_coarse_stage(checkpoint_dir, face_model=None):
  """The trained MGC regressor in `checkpoint_dir` as a `CoarseStage`.

  Raises:
    InputError: if the checkpoint is missing or does not fit the face model
      (reported by `mgc_face.infer.load_regressor`).
  """
  from mgc_face.infer import load_regressor  # The GCN -> MGC dependency, in one place.
  regressor = load_regressor(checkpoint_dir, face_model=face_model)
  return CoarseStage(regressor, regressor.face_model, regressor.feature_size)


def untrained_coarse_stage(face_model, config_name="tiny"):
  """An untrained MGC regressor as a `CoarseStage` (benchmarks and smoke tests)."""
  from mgc_face.config import get_config
  from mgc_face.infer import build_regressor
  regressor = build_regressor(face_model, get_config(config_name))
  return CoarseStage(regressor, regressor.face_model, regressor.feature_size)


def projected_skin_mask(synthesizer, coeffs):
  """The face model's skin region rendered with the given coefficients.

  Used as the alpha of images that have none (create_bin, test mode).

  Args:
    synthesizer: `FaceSynthesizer`.
    coeffs: `Coefficients` with batch B.

  Returns:
    [B, H, W, 1] float32 in {0, 1}.
  """
  synth = synthesizer(coeffs, render=False)
  skin = tf.broadcast_to(synthesizer.decoder.skin_mask[None, :, None],
                         tf.shape(synth.posed[..., :1]))
  out = synthesizer.render_attributes(synth.posed, skin)
  return tf.cast(out.image * out.mask > SKIN_THRESHOLD, tf.float32)
