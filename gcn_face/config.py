"""GCN texture-refinement settings: one frozen dataclass, two presets.

`paper` holds the values of 3D-Face-GCNs (Lin et al., CVPR 2020) as read from
its code and paper (see ../shared/reference/gcn_coma_deep3d_facts.md):
Chebyshev order K = 6, factors (4, 4, 4, 4), decoder/refiner widths, Adam
1e-4 decayed by 0.98 per epoch (staircase), batch 4, per-variable gradient
clip 5, WGAN-GP with weight 1e-3, gradient penalty 10 and 5 critic steps,
and the loss weights and sigma schedule of `compute_loss`.  `tiny` keeps the
architecture and the losses but shrinks widths and schedule so the demo runs
on two CPU cores in a couple of minutes.

Every number a function needs lives here; functions take a `GCNConfig`.
"""

import dataclasses
import json

from shared.errors import InputError

ARCHITECTURES = ("normal", "resnet")


@dataclasses.dataclass(frozen=True)
class GCNConfig:
  """All settings of the GCN stage.

  Architecture (per-level widths run from fine to coarse for encoders and
  from coarse to fine for decoders):
    factors: decimation factor per hierarchy step (S steps, S + 1 levels).
    cheb_order: K, the number of Chebyshev terms T_0..T_{K-1}.
    decoder_fc_channels: channels per vertex of the coarsest level after the
      decoder's first fully connected layer.
    decoder_channels: normal variant, width after each unpooling (S values).
    refiner_channels: normal variant, encoder widths at levels 1..S; the
      decoder mirrors them.  refiner_input_channels: the width of the first
      convolution at level 0.
    refiner_bottleneck: the fully connected bottleneck (nz).
    refiner_skip_levels: levels whose encoder output is concatenated into
      the decoder (normal variant).
    resnet_decoder_channels: resnet variant, block widths after each
      unpooling (the last is 3: albedo).
    resnet_refiner_channels: resnet variant, (width at level 0, width at
      level 1) of the one-down, one-up refiner.
  Discriminator (--gan): disc_channels for the 1x1 conv then the 3x3 convs
    (each but the last followed by 2x max-pooling); disc_leak: leaky-ReLU slope.
  Inputs:
    image_size: the aligned crop side (pixels); the .bin must match.
    erosion_radius: pixels the skin alpha is eroded by before it is sampled
      at the vertices (the original erodes the segmentation).
    depth_tolerance: model units a vertex may lie behind the rendered
      surface and still count as unoccluded.
    embedding_size: the user embedding model's image size (FaceNet: 160).
    delit_input: also feed the refiner the projected colour divided by the
      coarse shading (3 more channels; not in the original).
    combine_inputs: the final combine convolution also sees the refiner's
      per-vertex inputs (a full-resolution path; not in the original).
    relight: refit the SH lighting per image by least squares to the image
      colours on the visible vertices, the coarse albedo held
      (`model.refit_lighting`, ridge `relight_ridge`); the de-lit input and
      the refined render use it (not in the original; the coarse render
      keeps the regressor's lighting).
    coarse_fit_steps: refit the coarse coefficients (pose, identity,
      expression) per image to its 68 2D landmarks before refinement, this
      many Adam steps of `shared.fit.fitter.Fitter`'s landmark stage from the
      regressor's prediction, at train, test and eval time (0: off, as the
      original).  The landmarks come from the .bin (tools/create_bin.py packs
      the strip dataset's `_lm.txt`) or the photo front end's detector;
      images without landmarks keep the regressor's coefficients (training
      says so in one warning line).
    coarse_fit_colour_steps: after that, this many steps of the Fitter's
      colour stage (albedo and lighting against the image inside the alpha,
      with the 3DMM albedo prior; geometry held), so the coarse albedo is a
      per-image fit rather than the regressor's guess (0: off; needs
      landmarks like `coarse_fit_steps`).
    albedo_confidence: at test and eval time, keep the refined albedo's change
      over the coarse one in proportion min(1, E / albedo_confidence) per
      vertex, E its RGB-mean irradiance under the (refitted) lighting: dim
      vertices, where the refiner takes shading for albedo, keep more of the
      coarse albedo (`gcn_face.confidence`; not in the original; 0: off).
      Training is unchanged.
  Losses (weights multiply the sigma schedule as in the original):
    pixel_weight: masked per-pixel L2 between the refined render and input.
    project_weight, invisible_weight: projected-colour L1 (visible) plus
      `invisible_weight` times L1 against the coarse colour (invisible).
    perception_weight, symmetry_weight, variance_weight: x ren sigma.
    refine_weight: L1 between refined and coarse albedo, x ref sigma.
    lowpass_weight, lowpass_levels: L1 of the mesh low-pass (`lowpass_levels`
      pool steps down, as many unpool steps up) of the refined minus the coarse
      albedo, not scheduled: the refined albedo keeps the coarse albedo's low
      frequencies (its tone; the image cannot tell albedo from lighting there)
      and takes only detail from the image (not in the original; 0: off).
    truth_albedo_weight: L1 between the refined albedo and the true per-vertex
      albedo of each training record, not scheduled (synthetic `.bin`s only:
      `gcn_face.evaluate.truth_albedo` reads it from the data set's `_gt.npz`
      files; not in the original, which has no truth; 0: off).  It measures
      what the refiner can reach when told the answer (bench/gcn_truth_ceiling.py).
    fc_l2_weight: L2 on fully connected weights.
    adversarial_weight, gradient_penalty, critic_steps: WGAN-GP.
    ren_ramp: ren sigma = clip(ren_ramp * epoch, 0, 1); ref sigma =
      clip(1 - ren sigma, ref_min, 1).
  Optimisation:
    batch_size, learning_rate, lr_decay (per epoch, staircase), clip_norm
    (per variable), epochs; steps_per_epoch None means len(data) / batch;
    adam_beta1.  log_every (TensorBoard scalars) / checkpoint_every: steps;
    keep_checkpoints; max_consecutive_bad_steps: non-finite steps in a row
    before a run stops (shared.train.train_loop).
  """
  name: str = "paper"
  arch: str = "normal"
  factors: tuple = (4, 4, 4, 4)
  cheb_order: int = 6
  decoder_fc_channels: int = 32
  decoder_channels: tuple = (16, 16, 16, 16)
  refiner_input_channels: int = 16
  refiner_channels: tuple = (16, 32, 64, 128)
  refiner_bottleneck: int = 512
  refiner_skip_levels: tuple = (2, 3)
  resnet_decoder_channels: tuple = (16, 16, 16, 3)
  resnet_refiner_channels: tuple = (16, 32)
  disc_channels: tuple = (16, 32, 64, 128, 256, 512)
  disc_leak: float = 0.2
  image_size: int = 224
  delit_input: bool = False
  combine_inputs: bool = False
  relight: bool = False
  relight_ridge: float = 1e-3
  coarse_fit_steps: int = 0
  coarse_fit_colour_steps: int = 0
  # The coarse refit's shape prior (`FitConfig.shape_weight`, `expression_ratio`): the photo
  # fit's values when it was chosen (session 6), kept when the photo fit's changed (session 41).
  coarse_fit_shape_weight: float = 1e-3
  coarse_fit_expression_ratio: float = 0.8
  albedo_confidence: float = 0.0
  erosion_radius: int = 2
  depth_tolerance: float = 0.05
  embedding_size: int = 160
  pixel_weight: float = 1.0
  project_weight: float = 1.0
  invisible_weight: float = 0.3
  perception_weight: float = 0.2
  symmetry_weight: float = 0.5
  variance_weight: float = 0.01
  refine_weight: float = 1.0
  lowpass_weight: float = 0.0
  lowpass_levels: int = 2
  truth_albedo_weight: float = 0.0
  fc_l2_weight: float = 5e-4
  adversarial_weight: float = 1e-3
  gradient_penalty: float = 10.0
  critic_steps: int = 5
  ren_ramp: float = 0.2
  ref_min: float = 0.2
  batch_size: int = 4
  learning_rate: float = 1e-4
  lr_decay: float = 0.98
  clip_norm: float = 5.0
  adam_beta1: float = 0.9
  epochs: int = 50
  steps_per_epoch: object = None
  log_every: int = 100
  checkpoint_every: int = 1000
  keep_checkpoints: int = 3
  max_consecutive_bad_steps: int = 50  # Abort when this many steps in a row are non-finite.

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)

  def to_json(self):
    return json.dumps(dataclasses.asdict(self), sort_keys=True)

  @classmethod
  def from_json(cls, text):
    values = json.loads(text)
    known = {f.name for f in dataclasses.fields(cls)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known}
    return cls(**values)


PAPER = GCNConfig()

# Tiny: the paper's layers, widths and losses on the ICT hierarchy (9409 ->
# 2353 -> 589 -> 148 -> 37), with a smaller fc bottleneck and critic, a 10x
# learning rate and 12-step "epochs", so that the sigma schedule runs its
# course (ren reaches 1 at step 60) within the demo's 120 steps.  Narrower
# graph convolutions (8 channels) learned too slowly to beat the coarse
# texture in that budget, and 3e-3 collapsed to a constant texture
# (docs/gcn.md).
#
# Issue 15 (synthetic faces with albedo detail outside the basis): tiny also
# feeds the refiner the de-lit projected colour, adds the level-0 skip
# connection and lets the combine convolution see the per-vertex inputs
# (full-resolution paths for detail), and lowers the symmetry weight (moles
# and freckles are not symmetric) and the floor of the refine weight (which
# pulls towards the detail-free coarse albedo).  Measured on 12 held-out
# identities, the face-region L1 change went from -2 % to -26..-59 % (docs/gcn.md).
# It also refits the SH lighting per image with the coarse albedo held
# (`relight`): the refined albedo no longer absorbs the shading the regressor's
# lighting misses (albedo RMSE against the truth +115 % -> +40 % over coarse,
# L1 -69 % -> -74 %; docs/gcn.md).
# Session 6: the coarse stage is refitted per image to the 68 landmarks (30
# landmark-stage steps of shared.fit.fitter; the .bin carries the landmarks):
# the tiny MGC mesh lands 1.3 px instead of 6.5 px from the truth, and the
# albedo RMSE over coarse went from +35..+40 % to +8..+11 % (seeds 0, 1),
# L1 from -74..-78 % to -80..-81 % (docs/gcn.md, "Session 6").
# Session 25: at test and eval time the refined change is kept in proportion
# to each vertex's irradiance, in full from 1.5 (`albedo_confidence`, chosen on
# a separate validation set over 1 / 1.5 / 2 and three GCN seeds): the refined
# albedo goes from +11 % over the coarse one to about -6..-9 % (docs/gcn.md,
# "Session 25").
TINY = GCNConfig(
    name="tiny",
    coarse_fit_steps=30,
    albedo_confidence=1.5,
    delit_input=True,
    relight=True,
    combine_inputs=True,
    refiner_skip_levels=(0, 2, 3),
    symmetry_weight=0.1,
    ref_min=0.05,
    refiner_bottleneck=128,
    disc_channels=(4, 8, 8, 16, 16, 16),
    learning_rate=1e-3,
    steps_per_epoch=12,
    epochs=10,
    log_every=20,
    checkpoint_every=120,
)

PRESETS = {"paper": PAPER, "tiny": TINY}


def get_config(name, arch=None):
  """The preset `name` ('paper' or 'tiny'), optionally with another arch."""
  if name not in PRESETS:
    raise InputError(f"unknown config preset {name!r}; choose one of: {', '.join(PRESETS)}")
  config = PRESETS[name]
  if arch is not None:
    if arch not in ARCHITECTURES:
      raise InputError(f"unknown --arch {arch!r}; choose one of: {', '.join(ARCHITECTURES)}")
    config = config.replace(arch=arch)
  return config
