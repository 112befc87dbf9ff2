"""MGC configuration: one frozen dataclass with `paper` and `tiny` presets.

Every number the model, losses and training loop use lives here, so the
functions take their constants from a config rather than hard-coding them.

Loss weights of the `paper` preset are the ones in MGCNet's example training
command (see `shared/reference/mgcnet_facts.md`, section 5), with two notes:

* the epipolar weight is 0.001 (the paper's value per issue #15) rather than
  the command's 0, because this toolkit builds the essential matrix correctly
  as [t]x R;
* the depth term is computed in millimetres (as MGCNet's depth maps are), so
  the command's 1e-4 keeps its meaning even though our model units are
  decimetres.

The `tiny` preset uses a small conv net with a landmark head (68 heatmaps,
spatial soft-argmax, trained by its own landmark loss against the same
detector-like labels as the landmark term; its first steps train only
that head, without rendering), whose normalised points feed the coefficient
layer, started from a ridge map fitted on face-model samples
(`mgc_face/prior_init.py`); Adam 5e-4 with a cosine decay over the run.
It trains on the data folder's fixed identities; since session 6 (issue 13)
its warm-up is 1600 of 1800 steps, the warm-up views are augmented (flip,
similarity warp, colour jitter: `mgc_face/augment.py`), which took the
held-out NME on the demo's data from 6.2-7.0 % to 3.8-3.9 % (two seeds;
docs/mgc.md, "Session 6"; the local refinement stage `refine_blocks` is
available but off: no gain beyond the seed spread).  `tiny_stream` is the
session-5 tiny (1000 + 200 steps, no augmentation)
on an endless stream of fresh rendered identities (`mgc_face/stream.py`,
`data_stream`): at equal steps the head localised better than on the demo's
84 fixed identities (docs/mgc.md, issue 13), but rendering every sample makes
its training too slow for the demo's budget on 2 cores (it took over 4 min
in the demo's place, against under 2 min on the fixed set).
See docs/mgc.md for the measurements behind it.  It also uses a larger
learning rate (5e-4) and a short schedule so the CPU demo trains in
minutes; with so few steps it
weights the landmark term 10x the paper's (0.01), which roughly halves the
landmark error reached in the demo's budget.  Its shape prior is stronger
too (w_reg_shape 1e-2, expression ratio 10): after 600 steps the regressor's
landmark residual is about 6-7 px, not a detector's 1-2 px, so the MAP weight
of a unit-variance prior against that residual is about 100x the paper's; with
the paper's prior the predicted identity and expression coefficients were
noise (correlation with the truth ~0, std 0.58 and 0.28) that made the face
RMSE 1.5x the mean face's.  All other weights are the paper's.
Since session 13 every preset built on `tiny` also trains a landmark cascade
after the network (`cascade_scales`, mgc_face/cascade.py: HOG squares of the
224-px view, closed-form ridge stages, trained on the training views' 2D
labels), whose points the coefficient layer reads at inference; since session
14 its stages project the points onto the labels' shape space of 15 dimensions
(30 in the stream presets, whose points are finer; `cascade_shape_components`)
and its ridge penalty is 3 (was 10); `cpu_hour`, whose refined points are at
about 1.7 px, reads identity and expression from them with the prior map at
1.5 px noise instead of the coefficient layer (`cascade_prior_noise`).
Since session 15 `tiny`'s stages also end with a joint regression from every
landmark's descriptor (16 principal components each) to all 68 offsets
(`cascade_joint_dims`; the stream presets inherit it, measured at `cpu_hour`).
Since session 16 inference averages each image's refined points with those of
its mirror image (`cascade_test_mirror`; inherited likewise; docs/mgc.md), and
`tiny`'s shape space has 20 dimensions (chosen on `out/std/probe_s1` with the
mirror: 15 / 20 / 30 gave 0.828 / 0.820 / 0.823 over three seeds).
Since session 21 `cpu_hour`'s cascade also refines 484 dense points and its
reader reads them all (`cascade_dense`; shape space 60, joint maps of rank 128;
session 20's bench measured the lever, docs/mgc.md "Session 21").
Since session 22 that reader is one prior map per 10 degrees of yaw, each fitted
on the prior faces within 10 degrees of its yaw (40,000 faces in all), blended
at the face's yaw (`cascade_reader_yaw_step`; chosen on `out/std/probe_s1`:
0.593 with one map, 0.555 gated; docs/mgc.md "Session 22").
Since session 23 `cpu_hour`'s cascade trains on 1500 fresh stream triplets (was
1000; `out/std/probe_s1` 0.556 -> 0.546 on seed 0; docs/mgc.md "Session 23").
Since session 28 `tiny`'s heatmap conv reads the concatenated maps (320
channels at 28 x 28) through a 1x1 conv to 64 channels (`heatmap_reduce`):
that 3x3 conv was about 70 % of the network's multiply-adds.  The network's
training step takes 106 ms instead of 188 ms on a slow 2-core CPU, and the
demo's training 313-317 s instead of 477-539 s there.  Over three seeds the
held-out figures did not move beyond their spread (docs/mgc.md "Session 28").
The stream presets keep the plain head (0), so their checkpoints still load.
Since session 35 `tiny`'s cascade also has a reader gated by yaw, as `cpu_hour`'s: 13
prior maps of its 68 refined points at 3 px of noise, fitted on 40,000 prior faces (about
12 s), read identity and expression instead of the coefficient layer.  Chosen on
`out/std/probe_s1` (1.5 / 2.5 / 3 / 4 / 6 px, one map, 10,000 and 20,000 faces); over three
training seeds the held-out similarity RMSE / mean face went from 0.840 +- 0.010 to 0.790 +-
0.026 on the demo's set and from 0.893 +- 0.005 to 0.837 +- 0.014 on 100 other identities,
lower in every seed (docs/mgc.md "Session 35").  `tiny_stream` keeps the coefficient layer.
"""

import dataclasses
import json

PAPER = "paper"
TINY = "tiny"
TINY_STREAM = "tiny_stream"
CPU_HOUR = "cpu_hour"


@dataclasses.dataclass(frozen=True)
class MGCConfig:
  """All hyper-parameters of the MGC regressor and its training."""
  name: str = PAPER
  # Network.
  backbone: str = "resnet50"          # "resnet50" or "small".
  input_size: int = 224               # Network input side (images are resized to it).
  small_channels: tuple = (16, 32, 64, 96, 128)  # "small" backbone: one stride-2 block each.
  small_groups: int = 8               # GroupNorm groups in the "small" backbone.
  small_norm: str = "group"           # "small" backbone normalisation: "group" or "batch".
  small_features: int = 256           # "small" backbone: length of the feature vector.
  small_colour_pool: int = 16         # "small": pool factor of the input colour skip (0 = off).
  coord_channels: bool = False        # Append x, y coordinate channels to the input (CoordConv).
  # Landmark head ("small" only): per-landmark heatmaps -> spatial soft-argmax -> 68 points,
  # whose normalised coordinates feed the coefficient head beside the pooled features.
  landmark_head: bool = False
  heatmap_block: int = 1              # Heatmaps at the output of this block (0-based; stride 2^(k+1)).
  heatmap_channels: int = 64          # Channels of the conv before the 68 heatmap logits.
  heatmap_reduce: int = 0             # > 0: a 1x1 conv to this many channels before that conv.
  landmark_hidden: int = 256          # Hidden units of the landmark -> coefficient MLP (0: linear).
  # Local refinement of the head's points (model.LandmarkRefinement): the maps of these blocks
  # sampled on a patch around each soft-argmax point, an MLP predicts an offset (empty: off).
  refine_blocks: tuple = ()
  refine_patch: int = 3               # Samples per side of the patch.
  refine_spacing: float = 4.0         # Their spacing, pixels of the 224-px input.
  refine_hidden: int = 64             # Hidden units of the offset MLP.
  # Cascaded refinement of the head's points, trained after the network (mgc_face/cascade.py):
  # supervised descent on HOG squares of the 224-px view, one ridge stage per half-size in px
  # (empty: off).  Inference feeds the refined points to the coefficient layer.
  cascade_scales: tuple = ()
  cascade_ridge: float = 3.0          # Penalty of each landmark's ridge solve.
  cascade_shape_components: int = 0   # Shape space the points are projected onto (0: none).
  # Joint regression after each stage's per-landmark one: descriptor components per landmark
  # (0: none) and its ridge penalty per view on the standardised inputs (session 15).
  cascade_joint_dims: int = 0
  cascade_joint_ridge: float = 3.0
  # > 0: identity and expression are read from the refined points by the prior map
  # (mgc_face/prior_init.py, `prior_init_samples` faces) with this landmark noise in px, instead
  # of by the coefficient layer (0: the layer).
  cascade_prior_noise: float = 0.0
  cascade_stream_samples: int = 0     # Fresh stream triplets it also trains on (mgc_face/stream.py).
  # Inference averages each image's refined points with those of its mirror image (the
  # network and the cascade run on both; the mirror's points mapped back; session 16).
  cascade_test_mirror: bool = False
  # Dense points (session 21): the cascade also refines MediaPipe's mesh points made
  # mirror-closed (shared.fit.dense.symmetric_correspondence, 484 ICT vertices), placed from the
  # head's 68 by a ridge map with this penalty and trained on their projections with the
  # labels' noise; the reader reads all of them.  Fixed data sets need their _gt.npz files.
  cascade_dense: bool = False
  cascade_lift_ridge: float = 1e-3
  cascade_joint_rank: int = 0         # > 0: joint maps to this many target directions (file size).
  # The reader as one prior map per yaw, this many degrees apart over the data's yaw range (0:
  # one map), each fitted on the prior faces within `cascade_reader_yaw_window` degrees of its
  # yaw; `cascade_reader_samples` prior faces in all (0: `prior_init_samples`; session 22).
  cascade_reader_yaw_step: float = 0.0
  cascade_reader_yaw_window: float = 10.0
  cascade_reader_samples: int = 0
  w_landmark_head: float = 0.0        # Weight of the head's own landmark loss (pixels^2).
  w_heatmap: float = 0.0              # Weight of the heatmap cross-entropy (nats).
  heatmap_sigma: float = 1.0          # Its Gaussian targets' std, in heatmap cells.
  landmark_warmup_steps: int = 0      # First steps train the head's terms only (no rendering).
  # Augmentation of the warm-up's views (fixed data sets only; mgc_face/augment.py): the full
  # steps always read the triplets unchanged (their geometry terms need the true cameras).
  augment_flip: float = 0.0           # Probability of a horizontal flip (68-point permutation).
  augment_scale: float = 0.0          # Scale factor exp(U(-a, a)) about the crop centre.
  augment_rotation: float = 0.0       # In-plane rotation U(-a, a) degrees.
  augment_shift: float = 0.0          # Shift U(-a, a) x crop size per axis.
  augment_brightness: float = 0.0     # Gain 1 + U(-a, a) on all channels.
  augment_colour: float = 0.0         # Gain 1 + U(-a, a) per channel.
  # Start of the landmark -> coefficient map from face-model samples (mgc_face/prior_init.py).
  prior_init_samples: int = 0         # Random faces drawn from the model's prior (0: zero start).
  prior_init_noise: float = 2.0       # Pixels of noise added to their projected landmarks.
  prior_init_ridge: float = 0.1       # Ridge penalty of the map.
  # Optimiser and schedule.
  learning_rate: float = 1e-4
  learning_rate_decay: str = "constant"  # "constant" or "cosine" (over the run's steps).
  learning_rate_floor: float = 0.0    # Cosine: final rate as a fraction of the start.
  beta1: float = 0.9
  batch_size: int = 2                 # Triplets per step (3 views each).
  steps: int = 20001
  checkpoint_every: int = 1000
  keep_checkpoints: int = 3
  summary_every: int = 100
  image_summary_every: int = 1000
  max_consecutive_bad_steps: int = 50  # Abort when this many steps in a row are non-finite.
  shuffle_buffer: int = 256
  # Training data: False reads the --data set's train.txt; True renders a fresh random identity
  # for every sample inside the input pipeline (mgc_face/stream.py; --data then only names
  # nothing the trainer reads, the held-out set stays the eval's).
  data_stream: bool = False
  # Single-view ("common") loss weights.
  w_landmark: float = 0.001
  landmark_detail_weight: float = 5.0  # Nose (28-36) and inner mouth (61-68).
  w_photometric: float = 1.9
  w_identity: float = 0.2             # Used only when a face-embedding model is given.
  w_reg_shape: float = 1e-4
  w_reg_albedo: float = 3e-4
  reg_expression_ratio: float = 0.8   # Shape reg = sum(id^2) + 0.8 sum(exp^2).
  reg_albedo_ratio: float = 0.0017    # Albedo reg = 0.0017 sum(albedo^2).
  # Multi-view loss weights.
  multiview: bool = True
  w_multiview: float = 1.0
  w_mv_pixel: float = 0.15
  w_mv_ssim: float = 0.0
  w_mv_depth: float = 1e-4            # On millimetres.
  w_mv_epipolar: float = 0.001
  covisible_rings: int = 1            # Expand covisible vertices by this many face rings.
  # Numerical guards.
  photometric_eps: float = 1e-6       # Inside the per-pixel sqrt, as MGCNet.
  mask_eps: float = 1e-6              # Denominators of masked means.

  def replace(self, **changes):
    """Returns a copy with `changes` applied (unknown names raise TypeError)."""
    return dataclasses.replace(self, **changes)

  def to_dict(self):
    out = dataclasses.asdict(self)
    out["small_channels"] = list(self.small_channels)
    out["refine_blocks"] = list(self.refine_blocks)
    out["cascade_scales"] = list(self.cascade_scales)
    return out

  def to_json(self):
    return json.dumps(self.to_dict(), sort_keys=True)

  @classmethod
  def from_dict(cls, data):
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in data.items() if k in fields}
    for name in ("small_channels", "refine_blocks", "cascade_scales"):
      if name in values:
        values[name] = tuple(values[name])
    return cls(**values)


PRESETS = {
    PAPER: MGCConfig(),
    TINY: MGCConfig(
        name=TINY, backbone="small", input_size=112, learning_rate=5e-4, batch_size=2,
        steps=1800, checkpoint_every=100, summary_every=10, image_summary_every=100,
        shuffle_buffer=256, w_landmark=0.01, w_reg_shape=1e-2, reg_expression_ratio=10.0,
        coord_channels=True, landmark_head=True, w_landmark_head=0.01, w_heatmap=1.0,
        prior_init_samples=4000, prior_init_noise=4.0, learning_rate_decay="cosine",
        landmark_warmup_steps=1600, augment_flip=0.5, augment_scale=0.1, augment_rotation=10.0,
        augment_shift=0.05, augment_brightness=0.2, augment_colour=0.1,
        cascade_scales=(24.0, 16.0, 12.0, 8.0, 6.0), cascade_shape_components=20,
        cascade_joint_dims=16, cascade_stream_samples=200,
        cascade_test_mirror=True, heatmap_reduce=64, cascade_prior_noise=3.0,
        cascade_reader_yaw_step=10.0, cascade_reader_samples=40000),
}
# The stream never repeats a face, so it needs no augmentation; it keeps session 5's schedule
# (cpu_hour's checkpoints stay resumable) and the coefficient layer as the reader of its
# points (`tiny`'s reader, session 35, was chosen for tiny's coarser points; `cpu_hour` sets
# its own).
NO_READER = dict(cascade_prior_noise=0.0, cascade_reader_yaw_step=0.0, cascade_reader_samples=0)
NO_AUGMENT = dict(augment_flip=0.0, augment_scale=0.0, augment_rotation=0.0, augment_shift=0.0,
                  augment_brightness=0.0, augment_colour=0.0)
PRESETS[TINY_STREAM] = PRESETS[TINY].replace(name=TINY_STREAM, data_stream=True, steps=1200,
                                             landmark_warmup_steps=1000,
                                             cascade_stream_samples=1000,
                                             cascade_shape_components=30, heatmap_reduce=0,
                                             **NO_AUGMENT, **NO_READER)
# Defined from the supervised probes (head NME 3.1 % after 3000 head-only steps on 400
# identities, still falling).  End to end in 48 min 48 s on 2 cores with 1500 cascade
# triplets, peak 7.4 GB (session 24; 46 min with 1000 in session 22; docs/mgc.md "Session 24";
# 1 h 23 min on a slower, first-generation Zen CPU in session 32).
PRESETS[CPU_HOUR] = PRESETS[TINY_STREAM].replace(name=CPU_HOUR, steps=9000, landmark_warmup_steps=6000,
                                          checkpoint_every=500, summary_every=50,
                                          image_summary_every=1000, cascade_prior_noise=1.5,
                                          cascade_dense=True, cascade_shape_components=60,
                                          cascade_joint_rank=128, cascade_reader_yaw_step=10.0,
                                          cascade_reader_samples=40000,
                                          cascade_stream_samples=1500)


def get_config(name):
  """Returns the preset called `name` (InputError for an unknown name)."""
  from shared.errors import InputError
  if name not in PRESETS:
    raise InputError(f"unknown config '{name}'; choose one of: {', '.join(sorted(PRESETS))}")
  return PRESETS[name]
