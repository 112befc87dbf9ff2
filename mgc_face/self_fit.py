"""Test-time self-supervised fit: the regressor's coefficients refined on the image itself.

The regressor's coefficients for an image start a short Adam fit on MGCNet's
own single-view objective (`mgc_face.objective.Objective`): the skin-masked
photometric term, the 68-landmark term pulled to the network's **own**
landmark-head points (the model's projected landmarks for a network without
a head), and the shape and albedo priors.  No label of any kind enters: the
image, its skin mask and what the network predicted from it are all it uses,
so it runs wherever the regressor runs.  The landmark term is weak
(`SelfFitConfig.w_landmark`, 0.3x the paper's 1e-3): the head's points are
several pixels off, and they are there to hold pose, not to set shape; the
photometric term (through SH shading) reads the shape.

This is analysis by synthesis after the network, as the photo pipeline's fit
is (`shared.fit.fitter`), not part of the network: its figures are reported
beside the regressor's, never in their place (`mgc_face.evaluate`).

`fit_objective` is the one Adam loop over an `Objective` (also used by
`bench/mgc_mv_fit_probe.py` for its per-triplet fits).
"""

import dataclasses

import numpy as np
import tensorflow as tf

from mgc_face import objective as objective_lib
from shared.fit.fitter import FitConfig

_FIT_DEFAULTS = FitConfig()


@dataclasses.dataclass(frozen=True)
class SelfFitConfig:
  """The test-time fit's schedule and the weights it changes in the regressor's config.

  Chosen on the held-out identities of two synthetic data sets that are not
  the demo's (seeds 1 and 2 of `tools/make_synthetic_dataset.py
  --identities 13 --test-identities 12`), see docs/mgc.md.
  """
  steps: int = 300                     # Adam steps; 0 turns the fit off.
  learning_rate: float = _FIT_DEFAULTS.learning_rate
  final_lr_ratio: float = 0.1          # Exponential decay to this fraction at the last step.
  w_landmark: float = 3e-4             # Pull to the head's points (pixels^2).
  w_reg_shape: float = 3e-4            # Shape prior (std units^2).
  batch_views: int = 36                # Views fitted at once (one graph per batch size).


def objective_config(config, self_config):
  """The regressor's `MGCConfig` with the self-fit's landmark and shape weights and no term
  that needs more than the image (the head's losses, the identity embedding)."""
  return config.replace(w_landmark=self_config.w_landmark, w_reg_shape=self_config.w_reg_shape,
                        w_landmark_head=0.0, w_heatmap=0.0, w_identity=0.0)


def step_scales(layout, fit_config=_FIT_DEFAULTS):
  """[1, size] per-coefficient step sizes of the landmark fitter, in the layout's order."""
  return tf.constant(np.concatenate([np.full(n, s, np.float32) for n, s in
                                     zip(layout.sizes, fit_config.scales())])[None])


def fit_objective(objective, layout, start, batch, steps, learning_rate, final_lr_ratio,
                  multiview=False, scales=None, progress=False):
  """Adam on `objective` from `start`.

  Args:
    objective: `mgc_face.objective.Objective`.
    layout: `shared.model.coeffs.CoeffLayout`.
    start: [B * V, size] coefficient vectors (sample-major, as the batch's views).
    batch: `objective.Batch` with B samples of V views.
    steps: Adam steps (0: `start` back unchanged).
    learning_rate, final_lr_ratio: the rate decays exponentially to
      `learning_rate * final_lr_ratio` at the last step.
    multiview: include the objective's multi-view terms.
    scales: [1, size] step sizes (default `step_scales(layout)`): the fit runs
      on coefficients / scales.
    progress: show a progress bar over the steps.

  Returns:
    (fitted [B * V, size] numpy, {term: float} at the last step).
  """
  start = np.asarray(start, np.float32)
  if steps <= 0:
    return start, {}
  scales = step_scales(layout) if scales is None else scales
  params = tf.Variable(start / scales)
  schedule = tf.keras.optimizers.schedules.ExponentialDecay(learning_rate, steps, final_lr_ratio)
  optimizer = tf.keras.optimizers.Adam(schedule)

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      total, terms, _ = objective(layout.split(params * scales), batch, multiview=multiview)
    optimizer.apply_gradients([(tape.gradient(total, params), params)])
    return terms

  from tqdm import tqdm
  terms = {}
  for _ in tqdm(range(steps), desc="self-fit", unit="step", disable=not progress, leave=False):
    terms = step()
  return (params * scales).numpy(), {k: float(v) for k, v in terms.items()}


class SelfFitter:
  """Refines regressed coefficients on their own images, without labels.

  Args:
    synthesizer: the `FaceSynthesizer` of the regressor's face model.
    config: the regressor's `MGCConfig` (photometric and albedo weights, the
      expression prior's ratio), changed by `objective_config`.
    self_config: `SelfFitConfig`.
  """

  def __init__(self, synthesizer, config, self_config=SelfFitConfig()):
    self.config = self_config
    self.objective = objective_lib.Objective(synthesizer, objective_config(config, self_config))

  def __call__(self, layout, start, images, skins, landmarks, progress=False):
    """Fitted coefficient vectors.

    Args:
      layout: `CoeffLayout` of the face model.
      start: [N, size] the regressor's coefficient vectors.
      images: [N, 224, 224, 3] in [0, 1]; skins: [N, 224, 224, 1] skin
        probabilities in [0, 1]; landmarks: [N, 68, 2] the network's own
        points, pixels.
      progress: show a progress bar per batch of views.

    Returns:
      [N, size] numpy.
    """
    c = self.config
    fitted = []
    for lo in range(0, len(start), c.batch_views):
      hi = lo + c.batch_views
      n = len(start[lo:hi])
      batch = objective_lib.Batch(  # One view per "sample": the fit is single-view.
          tf.constant(images[lo:hi, None], tf.float32), tf.constant(skins[lo:hi, None], tf.float32),
          tf.constant(landmarks[lo:hi, None], tf.float32), tf.zeros([n]))
      vectors, _ = fit_objective(self.objective, layout, start[lo:hi], batch, c.steps,
                                 c.learning_rate, c.final_lr_ratio, progress=progress)
      fitted.append(vectors)
    return np.concatenate(fitted)
