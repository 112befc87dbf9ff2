"""Per-image fitting (analysis by synthesis) of 3DMM coefficients.

Starting from a network prediction, or from the mean face posed in closed
form from the landmarks (`pose_from_landmarks`), Adam optimises the
coefficients of a batch of faces with the same renderer and single-view
losses as training (`shared.train.losses`): landmarks, skin-masked photometric
error and regularisation.  Two stages:

1. `landmark_steps` steps of landmarks + shape regularisation.  Only the 68
   landmark vertices are decoded (`LandmarkDecoder`), so a step costs about
   a millisecond and many steps are affordable.  This settles pose,
   identity and expression.
2. `photometric_steps` steps of the skin-masked photometric loss (plus the
   landmark term and regularisation) on full renders.  With
   `photometric_geometry_ratio = 0` (default) the geometry from stage 1 is
   kept: the mesh, its normals and its rasterization are computed once and
   only albedo and lighting move, so a step is cheap.  A ratio > 0 also moves
   shape and pose at that fraction of the learning rate; each step then
   re-decodes and re-rasterizes the mesh, about 10x the cost (see
   docs/photos.md for what it buys).

Each stage is one `tf.function` holding a `tf.while_loop` (no Python per
step), traced once per batch size; a caller that pads its batches to a fixed
size compiles once.  Adam is written out in the loop: every coefficient of
every face has its own moments, and the objective is the SUM over faces, so
faces do not influence each other and a batch gives the same result as
fitting the faces one by one (up to float rounding), unless `fit` is told they
share one identity (`share_identity`).

Each coefficient group is optimised in its own scale (`FitConfig.*_scale`):
Adam moves every variable by about `learning_rate` per step, so a group's
scale is its step size in its own units.  The learning rate decays
exponentially to `final_lr_ratio` of its start within each stage.

Starting pose.  From the mean face at the default pose, gradient descent
often stalls in a wrong pose (NME 4.5 % instead of 3.4 % on AFLW2000-16), so
without `init` the mean face is first posed by `pose_from_landmarks`, a
closed-form scaled-orthographic fit of its landmark vertices to the interior
landmarks.  A network's `init` is re-posed the same way when that fits the
landmarks better (`initial_coefficients`).

Contour landmarks.  Landmarks 0-16 (the jaw) of a 3DMM are fixed vertices,
while a 2D detector (dlib, trained on 300-W) puts them on the visible outline
of the cheek and chin.  The two agree only for a roughly frontal face; when
the head turns or tilts, the detector's jaw slides along the outline (and
dlib's jaw is also its least reliable part on tilted faces).  So the jaw
weight is `contour_weight * exp(-(pitch^2 + yaw^2) / (2 contour_pose_sigma^2))`
with the pose of the closed-form start, i.e. full weight when frontal and
about none past 20 degrees; the interior points (brows, eyes, nose, mouth)
decide pose and shape, and the model's own jaw follows.  The closed-form
pose never uses the jaw.

Which vertices are "the jaw" matters as much: ICT-FaceKit's own
`landmarks68` put landmarks 0-16 on the front of the cheeks, 2-3 cm inside
the jaw line where BFM (Deep3D, MGCNet, 3DDFA and the AFLW2000-3D ground
truth) has them.  `shared.fit.landmark_convention.bfm_landmark_convention` swaps in the ICT vertices that
correspond to BFM's keypoints; see its doc.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from shared.model import camera as camera_lib
from shared.model import lighting
from shared.train import losses
from shared.render import renderer as render_lib
from shared.model.coeffs import Coefficients
from shared.errors import InputError
from shared.render.face_image import Synthesis
from shared.fit.barycentrics import blend_matrix, pixel_barycentrics
from shared.fit.landmark_convention import CONTOUR, NUM_LANDMARKS
from shared.fit.landmark_decoder import LandmarkDecoder
from shared.fit.pose import pose_from_landmarks

GROUPS = Coefficients._fields
COLOUR_GROUPS = ("albedo", "lighting")
ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.999
ADAM_EPSILON = 1e-8

@dataclasses.dataclass(frozen=True)
class FitConfig:
  """Fitting schedule and weights.

  Loss weights follow Deep3D (landmark 1.6e-3, photometric 1.92, albedo
  3e-4 x 0.017 / 0.0017) except the tuned ones marked; landmark errors are in
  pixels of the 224 crop.  Tuned on AFLW2000-16 in issue 6 (docs/photos.md): the
  detail weight (Deep3D 20) and the contour weights; rescanned on synthetic
  renders (`bench/photo_synthetic.py`), where they sit at the optimum within
  noise.  The shape prior (Deep3D 3e-4) was chosen for the 3D shape on synthetic
  renders in session 41 (below).
  """
  landmark_steps: int = 200
  photometric_steps: int = 30
  learning_rate: float = 0.01
  colour_learning_rate: float = 0.005  # stage 2 with frozen geometry (0.01+ overshoots)
  final_lr_ratio: float = 0.1        # lr decays exponentially to this ratio within a stage
  # Step sizes per group, in that group's units per step (with learning_rate).
  identity_scale: float = 5.0       # std units
  albedo_scale: float = 5.0         # std units
  expression_scale: float = 5.0     # std units
  rotation_scale: float = 2.0       # radians
  translation_scale: float = 2.0    # model units (dm)
  lighting_scale: float = 3.0       # SH coefficients
  photometric_weight: float = 1.92
  landmark_weight: float = 1.6e-3
  landmark_detail_weight: float = 1.0    # tuned; nose + inner mouth (Deep3D: 20, MGCNet: 5)
  contour_weight: float = 1.0            # tuned; jaw 0-16 when frontal (module doc)
  contour_pose_sigma: float = 10.0       # tuned; degrees, <= 0: no pose fall-off
  # The shape prior: identity `shape_weight`, expression `shape_weight * expression_ratio`.
  # Chosen in session 41 for the 3D shape on synthetic renders (`bench/same_person.py
  # --arms own`, 3 seeds): 1e-3 and 0.8 gave 0.965 +- 0.015 of the mean face's RMSE, these
  # 0.925, every seed 0.033-0.045 lower, with the 68-point NME of `bench/photo_synthetic.py`
  # 5.85 -> 5.88 % (docs/photos.md "The shape prior").  Before, 1e-3 was tuned for the NME.
  shape_weight: float = 3e-3             # tuned
  albedo_weight: float = 3e-4 / losses.DEFAULT_ALBEDO_RATIO * 0.017
  expression_ratio: float = 3.0          # tuned
  init_pose: bool = True            # closed-form pose when no `init` is given
  # Stage 2 moves shape and pose at this fraction of `learning_rate`; 0 keeps
  # the stage-1 geometry and runs the cheap colour-only stage.
  photometric_geometry_ratio: float = 0.0
  # Dense points (`Fitter(point_weights=...)`): a point's weight is scaled by
  # clip(n_z / ramp, 0, 1), n its vertex's mean-shape normal turned by the
  # closed-form start pose (n_z = 1 facing the camera); the mesh model
  # guesses the points it cannot see.  <= 0: off.
  visibility_ramp: float = 0.0
  # `fit(..., retarget=f)`: the landmark stage stops after this fraction of
  # its steps, the targets become f(rotation so far) and the stage resumes;
  # 0: f gets the start pose (0, 0.3 and 0.5 scored alike on synthetic renders).
  retarget_fraction: float = 0.0
  # The shape prior pulls identity and expression towards `fit(init=...)`'s instead of the
  # mean face's: a regressor's estimate as the prior's mean (MGC eval, session 22).
  shape_prior_at_start: bool = False

  @property
  def steps(self):
    return self.landmark_steps + self.photometric_steps

  def with_steps(self, steps):
    """The same config with `steps` in all, split between the stages in the
    current proportion (0 disables fitting; photometric gets at least 1 step
    when there are >= 2 and it had any)."""
    steps = int(steps)
    if steps < 0:
      raise InputError(f"--fit-steps {steps}: must be >= 0")
    if steps == 0 or self.steps == 0:
      return dataclasses.replace(self, landmark_steps=0, photometric_steps=0)
    photometric = int(round(steps * self.photometric_steps / self.steps))
    if self.photometric_steps and steps >= 2:
      photometric = max(photometric, 1)
    return dataclasses.replace(self, landmark_steps=steps - photometric,
                               photometric_steps=photometric)

  def scales(self):
    return Coefficients(self.identity_scale, self.albedo_scale, self.expression_scale,
                        self.rotation_scale, self.translation_scale, self.lighting_scale)

  def landmark_weights(self):
    """[68] per-landmark weights before the pose fall-off: detail weight for
    nose and inner mouth, contour weight for the jaw."""
    weights = losses.landmark_weights(self.landmark_detail_weight)
    weights[CONTOUR] = self.contour_weight
    return weights


@dataclasses.dataclass
class FitResult:
  """coeffs: fitted `Coefficients` (tensors, [B, ...]).
  synthesis: `shared.render.face_image.Synthesis` of the fitted coefficients
    (rendered), or None from `fit(..., render=False)`.
  losses: dict name -> numpy array: `total` [steps] mean over faces per step,
    `per_face` [steps, B], `landmark_error_px` [B] final mean Euclidean
    landmark distance (all 68 points, pixels of the crop), `landmark_weights`
    [B, 68] the weights used.
  """
  coeffs: Coefficients
  synthesis: object
  losses: dict


# The rasterizer op is loaded through importlib, which autograph cannot convert.
_visibility = tf.autograph.experimental.do_not_convert(render_lib.visibility)


class Fitter:
  """Fits coefficients to images and 2D landmarks for one face model.

  Args:
    synthesizer: `shared.render.face_image.FaceSynthesizer` (face model and camera);
      for ICT-FaceKit, build it on `bfm_landmark_convention(model)`.
    config: `FitConfig`.
    point_weights: None for the 68 landmarks (their weights and the jaw's
      pose fall-off come from `config`); for another point set (the model's
      `landmarks68` holding N vertex ids, e.g. `shared.fit.dense`), `[N]`
      fixed weights: no contour treatment, every weighted point poses the
      start.
  """

  def __init__(self, synthesizer, config=FitConfig(), point_weights=None):
    self.synthesizer = synthesizer
    self.config = config
    self.point_weights = None if point_weights is None else np.asarray(point_weights, np.float32)
    self.num_landmarks = len(synthesizer.face_model.landmarks68)
    if self.point_weights is None and self.num_landmarks != NUM_LANDMARKS:
      raise ValueError(f"Fitter: a {self.num_landmarks}-point model needs point_weights")
    model = synthesizer.face_model
    mean = tf.constant(np.asarray(model.mean_shape, np.float32)[None])
    self.point_normals = tf.gather(synthesizer.decoder.normals(mean)[0],
                                   np.asarray(model.landmarks68)).numpy()    # [N, 3]
    self.camera = synthesizer.camera
    self.layout = synthesizer.layout
    self.decoder = synthesizer.decoder
    self.landmark_decoder = LandmarkDecoder(synthesizer.face_model)
    self.skin = tf.constant(synthesizer.face_model.skin_mask[:, None], tf.float32)
    self.scales = tuple(tf.constant(s, tf.float32) for s in config.scales())
    geometry = config.photometric_geometry_ratio

    @tf.function
    def synthesize(coeffs):
      syn = synthesizer(Coefficients(*coeffs))
      r = syn.render
      return (syn.vertices, syn.posed, syn.normals, syn.albedo, syn.colours, syn.landmarks2d,
              syn.landmarks3d, r.image, r.mask, r.depth, r.triangle_ids)
    self._synthesize = synthesize
    self._landmark_stage = self._make_stage(self._landmark_objective, config.learning_rate,
                                            [0.0 if n in COLOUR_GROUPS else 1.0 for n in GROUPS],
                                            jit_compile=True)
    if geometry > 0:
      self._photometric_stage = self._make_stage(
          self._photometric_objective, config.learning_rate,
          [1.0 if n in COLOUR_GROUPS else geometry for n in GROUPS])
    else:
      self._photometric_stage = self._make_colour_stage()

  # -- objectives (per face, [B]) ----------------------------------------------------------

  def _coeffs(self, params, inputs):
    """`Coefficients` of `params` (each group times its scale), the identity mixed by
    `inputs`' last two entries: identity = mix [B, B] @ identity + offset [B, Ki]
    (`_identity_inputs`: the identity matrix and 0 unless one is shared or fixed)."""
    coeffs = Coefficients(*[p * s for p, s in zip(params, self.scales)])
    mix, offset = inputs[6:8]
    return coeffs._replace(identity=tf.matmul(mix, coeffs.identity) + offset)

  def _regularisation(self, coeffs, inputs):
    """Priors per face [B]; the shape prior's centre is `inputs[4:6]`.  A shared identity's
    prior counts once per face that shares it, as in each face's own fit (`fit`)."""
    c = self.config
    centre_identity, centre_expression = inputs[4:6]
    return (c.shape_weight * losses.shape_regularisation(coeffs.identity - centre_identity,
                                                         coeffs.expression - centre_expression,
                                                         c.expression_ratio) +
            c.albedo_weight * losses.albedo_regularisation(coeffs.albedo))

  @staticmethod
  def _landmark_loss(predicted, target, weights):
    """[B] weighted mean over the 68 points of the squared distance (px^2),
    weights [B, 68] (`face_weights`)."""
    squared = tf.reduce_sum(tf.square(predicted - target), axis=-1)
    return tf.reduce_mean(squared * weights, axis=-1)

  def _landmark_objective(self, params, inputs):
    """Landmarks + regularisation, decoding the landmark vertices only."""
    landmarks, weights = inputs[1:3]
    coeffs = self._coeffs(params, inputs)
    points = self.landmark_decoder(coeffs.identity, coeffs.expression)
    posed = camera_lib.transform(points, coeffs.rotation, coeffs.translation)
    projected = camera_lib.project(posed, self.camera)
    lm = self._landmark_loss(projected, landmarks, weights)
    return self.config.landmark_weight * lm + self._regularisation(coeffs, inputs)

  def _photometric_terms(self, image, mask, region, images):
    return self.config.photometric_weight * losses.photometric_loss(image, mask, images, region)

  def _photometric_objective(self, params, inputs):
    """Landmarks + photometric + regularisation on a full render."""
    images, landmarks, weights, skin = inputs[:4]
    coeffs = self._coeffs(params, inputs)
    syn = self.synthesizer(coeffs, render=False)
    lm = self._landmark_loss(syn.landmarks2d, landmarks, weights)
    batch = tf.shape(syn.colours)[0]
    attributes = tf.concat([syn.colours, tf.tile(self.skin[None], [batch, 1, 1])], axis=-1)
    out = self.synthesizer.render_attributes(syn.posed, attributes)
    photo = self._photometric_terms(out.image[..., :3], out.mask, out.image[..., 3:] * skin,
                                    images)
    return self.config.landmark_weight * lm + photo + self._regularisation(coeffs, inputs)

  # -- optimisation -------------------------------------------------------------------------

  def _adam_loop(self, objective, params, inputs, steps, learning_rate, rates):
    """`steps` Adam steps on `objective(params, inputs) -> [B]` (graph code).

    Returns (params, losses [steps, B]).  Groups with rate 0 stay put.
    """
    c = self.config
    batch = inputs[1].shape[0]
    first = tuple(tf.zeros_like(p) for p in params)
    second = tuple(tf.zeros_like(p) for p in params)
    history = tf.TensorArray(tf.float32, size=steps, element_shape=[batch])
    decay = tf.math.log(tf.constant(c.final_lr_ratio, tf.float32)) / tf.cast(
        tf.maximum(steps - 1, 1), tf.float32)
    for k in tf.range(steps):
      with tf.GradientTape() as tape:
        tape.watch(params)
        per_face = objective(params, inputs)
        total = tf.reduce_sum(per_face)   # sum: faces stay independent (module doc)
      grads = tape.gradient(total, params, unconnected_gradients=tf.UnconnectedGradients.ZERO)
      t = tf.cast(k + 1, tf.float32)
      lr = learning_rate * tf.exp(decay * tf.cast(k, tf.float32))
      lr_t = lr * tf.sqrt(1.0 - ADAM_BETA2 ** t) / (1.0 - ADAM_BETA1 ** t)
      new = []
      for p, g, m, v, rate in zip(params, grads, first, second, rates):
        if rate == 0:
          new.append((p, m, v))
          continue
        m = ADAM_BETA1 * m + (1.0 - ADAM_BETA1) * g
        v = ADAM_BETA2 * v + (1.0 - ADAM_BETA2) * tf.square(g)
        new.append((p - rate * lr_t * m / (tf.sqrt(v) + ADAM_EPSILON), m, v))
      params, first, second = (tuple(x) for x in zip(*new))
      history = history.write(k, per_face)
    return params, history.stack()

  def _make_stage(self, objective, learning_rate, rates, jit_compile=False):
    """A tf.function (params, inputs, steps) -> (params, losses [steps, B])."""

    @tf.function(jit_compile=jit_compile)
    def stage(params, inputs, steps):
      return self._adam_loop(objective, tuple(params), tuple(inputs), steps, learning_rate, rates)
    return stage

  def _make_colour_stage(self):
    """Stage 2 with frozen geometry: rasterize once, then optimise albedo and
    lighting against the photometric loss (+ albedo regularisation).

    With the geometry fixed, a rendered pixel is a fixed blend of its
    triangle's three vertex colours, so the stage computes each covered
    pixel's vertex ids and perspective-correct barycentrics once
    (`pixel_barycentrics`, the same weights tensorflow-graphics interpolates
    with) into a sparse [pixels, vertices] matrix, and a step's render is one
    sparse-dense product: about 10x cheaper than re-interpolating.
    """
    decoder, camera = self.decoder, self.camera
    size = camera.image_size
    rates = [1.0 if n in COLOUR_GROUPS else 0.0 for n in GROUPS]

    @tf.function
    def stage(params, inputs, steps):
      images, skin = inputs[0], inputs[3]
      params = tuple(params)
      syn = self.synthesizer(self._coeffs(params, inputs), render=False)
      clip = render_lib.to_clip(syn.posed, camera)
      triangle_id, mask = _visibility(clip, decoder.faces, (size, size))
      vertex_ids, weights = pixel_barycentrics(clip, decoder.faces, triangle_id[..., 0], size)
      blend = blend_matrix(vertex_ids, weights, mask, decoder.num_vertices)
      region = blend(tf.tile(self.skin[None], [images.shape[0], 1, 1])) * skin
      normals = syn.normals

      def objective(p, inputs):
        c = self._coeffs(p, inputs)
        colours = lighting.shade(decoder.albedo(c.albedo), normals, c.lighting)
        return (self._photometric_terms(blend(colours), mask, region, images) +
                self.config.albedo_weight * losses.albedo_regularisation(c.albedo))

      return self._adam_loop(objective, params, tuple(inputs), steps,
                             self.config.colour_learning_rate, rates)
    return stage

  # -- public ----------------------------------------------------------------------------

  def synthesize(self, coeffs):
    """`synthesizer(coeffs)` with rendering, compiled (one graph call instead
    of op-by-op dispatch).  Returns `Synthesis`."""
    fields = self._synthesize(tuple(tf.convert_to_tensor(v, tf.float32) for v in coeffs))
    *parts, image, mask, depth, ids = fields
    return Synthesis(*parts, render=render_lib.RenderOutput(image, mask, depth, ids))

  def face_weights(self, rotation):
    """[B, N] landmark weights for faces at `rotation` [B, 3] radians (module doc)."""
    c = self.config
    if self.point_weights is not None:
      weights = np.tile(self.point_weights[None], [len(rotation), 1])
      if c.visibility_ramp > 0:
        turn = camera_lib.rotation_matrix(tf.constant(np.asarray(rotation, np.float32))).numpy()
        facing = np.einsum("bj,nj->bn", turn[:, 2], self.point_normals)     # n_z per point
        weights *= np.clip(facing / c.visibility_ramp, 0.0, 1.0)
      return weights.astype(np.float32)
    weights = np.tile(c.landmark_weights()[None], [len(rotation), 1])
    if c.contour_pose_sigma > 0:
      angle = np.degrees(np.asarray(rotation))[:, :2]
      falloff = np.exp(-0.5 * (angle ** 2).sum(-1) / c.contour_pose_sigma ** 2)
      weights[:, CONTOUR] *= falloff[:, None]
    return weights.astype(np.float32)

  def initial_coefficients(self, landmarks, init=None):
    """The starting point (`Coefficients` of tensors).

    Without `init`: the mean face, posed in closed form from the interior
    landmarks (`pose_from_landmarks`), or at the default pose when
    `config.init_pose` is off.  With `init` (e.g. a network's prediction): per
    face, whichever of `init` and `init` re-posed in closed form (with its own
    shape) projects its interior landmarks closer to `landmarks`, so a poor
    network pose cannot strand the fit.
    """
    landmarks = np.asarray(landmarks, np.float32)
    batch = landmarks.shape[0]
    if init is None:
      coeffs = self.layout.zeros(batch)
      points = self.landmark_decoder.mean_numpy
    else:
      coeffs = Coefficients(*[tf.convert_to_tensor(v, tf.float32) for v in init])
      points = self.landmark_decoder(coeffs.identity, coeffs.expression).numpy()
    if not self.config.init_pose:
      return coeffs
    weights = self._pose_weights()
    rotation, translation = pose_from_landmarks(points, landmarks, self.camera, weights)
    posed = coeffs._replace(rotation=tf.constant(rotation), translation=tf.constant(translation))
    if init is None:
      return posed
    keep = self._interior_error(coeffs, landmarks) <= self._interior_error(posed, landmarks)
    return Coefficients(*[tf.where(keep.reshape((-1,) + (1,) * (a.shape.rank - 1)), a, b)
                          for a, b in zip(coeffs, posed)])

  def _identity_inputs(self, batch, share_identity=None, fixed_identity=None):
    """(mix [B, B], offset [B, Ki]) float32 tensors of `fit`'s identity options: the
    identity matrix and 0 (each face its own); the normalised `share_identity` weights
    as the rows of the faces that share, the identity matrix's rows for those of weight
    0, and 0; or 0 and `fixed_identity`.

    Raises:
      ValueError: both options, or weights or an identity of the wrong shape, negative
        or all zero weights.
    """
    mix, offset = np.eye(batch, dtype=np.float32), None
    if share_identity is not None and fixed_identity is not None:
      raise ValueError("fit: share_identity and fixed_identity exclude each other")
    if share_identity is not None:
      w = np.asarray(share_identity, np.float64)
      if w.shape != (batch,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"fit: share_identity must be [{batch}] weights >= 0, not all 0")
      mix = np.where(w[:, None] > 0, (w / w.sum())[None], mix).astype(np.float32)
    zero = np.zeros((batch, self.layout.num_id), np.float32)
    if fixed_identity is not None:
      fixed = np.asarray(fixed_identity, np.float32)
      fixed = np.tile(fixed[None], [batch, 1]) if fixed.ndim == 1 else fixed
      if fixed.shape != zero.shape or not np.isfinite(fixed).all():
        raise ValueError(f"fit: fixed_identity must be finite [{zero.shape[1]}] or "
                         f"{list(zero.shape)}")
      mix, offset = np.zeros_like(mix), fixed
    return tf.constant(mix), tf.constant(zero if offset is None else offset)

  def _pose_weights(self):
    """[N] weights of the closed-form pose: the interior 68 points (no jaw),
    or the fixed point weights."""
    if self.point_weights is not None:
      return self.point_weights.astype(np.float64)
    weights = self.config.landmark_weights()
    weights[CONTOUR] = 0.0
    return weights

  def _interior_error(self, coeffs, landmarks):
    """[B] weighted mean pixel distance of the points that pose the start
    (the interior landmarks 17-67 for 68 points)."""
    points = self.landmark_decoder(coeffs.identity, coeffs.expression)
    posed = camera_lib.transform(points, coeffs.rotation, coeffs.translation)
    projected = camera_lib.project(posed, self.camera).numpy()
    w = self._pose_weights()
    return (np.linalg.norm(projected - landmarks, axis=-1) * w).sum(-1) / w.sum()

  def fit(self, images, landmarks, init=None, skin=None, weights=None, retarget=None,
          render=True, share_identity=None, fixed_identity=None):
    """Fits a batch of faces.

    Args:
      images: [B, S, S, 3] float32 in [0, 1], S = the camera's image size.
      landmarks: [B, 68, 2] target landmarks in the same pixel convention.
      init: optional `Coefficients` to start from (e.g. a network prediction);
        default: the mean face, posed from the landmarks.
      skin: optional [B, S, S, 1] skin probability (default: all ones; the
        model's face region is always applied); see `skin_from_landmarks`.
      weights: optional [B, N] point weights replacing `face_weights`.
      retarget: optional `rotation [B, 3] radians (numpy) -> [B, N, 2]` new
        targets, called once `config.retarget_fraction` of the landmark
        steps are done (at 0: with the start pose), e.g. to correct a
        detector's pose-dependent bias (`shared.dense_fit.MeshBias`).
      render: False skips the final synthesis and render (`FitResult.synthesis`
        None; the landmark error then comes from the landmark vertices alone).
      share_identity: optional [B] weights >= 0, not all 0: the faces show one person.
        They get one identity, the weighted mean of their identity variables, fitted
        to all of them at once (their terms add up, the identity prior's too, so the
        identity is held as firmly as in one face's fit: counting its prior once let it
        follow the dense points' biases, docs/photos.md "One person"); pose,
        expression, albedo and light stay per face.  A face of weight 0 (e.g. a
        batch's padding) is fitted on its own, with its own identity, and does not
        move the shared one.
      fixed_identity: optional [Ki] or [B, Ki] identity (std units) held fixed: the
        other coefficients are fitted to it (e.g. a person's identity from a
        `share_identity` fit over other images).  Not with `share_identity`.

    Returns:
      `FitResult` (with zero steps: the starting point, rendered).

    Raises:
      ValueError: wrong shapes.  InputError: non-finite landmarks or loss.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    landmarks = tf.convert_to_tensor(landmarks, tf.float32)
    size = self.camera.image_size
    if images.shape.rank != 4 or tuple(images.shape[1:]) != (size, size, 3):
      raise ValueError(f"fit: images must be [B, {size}, {size}, 3], got {images.shape}")
    if tuple(landmarks.shape) != (images.shape[0], self.num_landmarks, 2):
      raise ValueError(f"fit: landmarks must be [B, {self.num_landmarks}, 2], "
                       f"got {landmarks.shape}")
    if not np.isfinite(landmarks.numpy()).all():
      raise InputError("fitting: target landmarks contain NaN or Inf")
    skin = tf.ones_like(images[..., :1]) if skin is None else tf.convert_to_tensor(skin, tf.float32)
    batch = int(images.shape[0])
    mix, offset = self._identity_inputs(batch, share_identity, fixed_identity)
    start = init
    if share_identity is not None or fixed_identity is not None:
      base = self.initial_coefficients(landmarks, None) if init is None else init
      base = Coefficients(*[tf.convert_to_tensor(v, tf.float32) for v in base])
      start = base._replace(identity=tf.matmul(mix, base.identity) + offset)
    coeffs = self.initial_coefficients(landmarks, start)
    params = tuple(v / s for v, s in zip(coeffs, self.scales))
    if fixed_identity is not None:     # the identity comes from `offset` alone
      params = tuple(tf.zeros_like(p) if n == "identity" else p for n, p in zip(GROUPS, params))
    weights_np = (self.face_weights(coeffs.rotation.numpy()) if weights is None
                  else np.asarray(weights, np.float32))
    centre = ((coeffs.identity, coeffs.expression)
              if self.config.shape_prior_at_start and init is not None
              else (tf.zeros_like(coeffs.identity), tf.zeros_like(coeffs.expression)))
    inputs = (images, landmarks, tf.constant(weights_np), skin) + centre + (mix, offset)
    histories = []
    landmark_steps = self.config.landmark_steps
    parts = [(self._landmark_stage, landmark_steps)]
    if retarget is not None:
      first = int(round(landmark_steps * self.config.retarget_fraction))
      parts = [(self._landmark_stage, first), ("retarget", 0),
               (self._landmark_stage, landmark_steps - first)]
    for stage, steps in parts + [(self._photometric_stage, self.config.photometric_steps)]:
      if stage == "retarget":
        rotation = self._coeffs(params, inputs).rotation.numpy()
        landmarks = tf.convert_to_tensor(np.asarray(retarget(rotation), np.float32))
        inputs = (images, landmarks) + inputs[2:]
      elif steps > 0:
        params, history = stage(params, inputs, steps)   # steps: static, traced once
        histories.append(history.numpy())
    per_face = (np.concatenate(histories) if histories
                else np.zeros((0, int(images.shape[0])), np.float32))
    if not np.isfinite(per_face).all():
      bad = int(np.argmax(~np.isfinite(per_face).all(axis=1)))
      raise InputError(f"fitting: loss became non-finite at step {bad}")
    coeffs = self._coeffs(params, inputs)
    synthesis = self.synthesize(coeffs) if render else None
    projected = (synthesis.landmarks2d if render else camera_lib.project(camera_lib.transform(
        self.landmark_decoder(coeffs.identity, coeffs.expression), coeffs.rotation,
        coeffs.translation), self.camera))
    error = np.linalg.norm(projected.numpy() - landmarks.numpy(), axis=-1).mean(-1)
    return FitResult(coeffs=coeffs, synthesis=synthesis,
                     losses={"total": per_face.mean(axis=1), "per_face": per_face,
                             "landmark_error_px": error, "landmark_weights": weights_np})
