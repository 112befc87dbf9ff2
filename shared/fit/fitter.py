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
fitting the faces one by one (up to float rounding).

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
truth) has them.  `bfm_landmark_convention` swaps in the ICT vertices that
correspond to BFM's keypoints; see its doc.
"""

import dataclasses

import cv2
import numpy as np
import tensorflow as tf

from shared.model import camera as camera_lib
from shared.model import lighting
from shared.train import losses
from shared.render import renderer as render_lib
from shared.model.coeffs import Coefficients
from shared.errors import InputError
from shared.render.face_image import Synthesis

GROUPS = Coefficients._fields
COLOUR_GROUPS = ("albedo", "lighting")
NUM_LANDMARKS = 68
CONTOUR = slice(0, 17)                 # 0-based jaw landmarks
ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.999
ADAM_EPSILON = 1e-8
MIN_POSE_SCALE = 1e-6                  # guard for degenerate landmark sets

# ICT-FaceKit (face area, 9409 vertices): its own jaw landmarks 0-16
# (`idx_to_landmark_verts` in vertex_indices.json) and the vertices that
# correspond to BFM's jaw keypoints.  Derived once: Deep3D_mean.obj (BFM
# front mean) was aligned to the ICT mean shape by a 3D similarity on the 51
# interior landmarks (residual 2.9 mm), each BFM jaw keypoint
# (facemodel_info.mat `keypoints`) took its nearest ICT vertex (within
# 0.5-4.4 mm), and the right side was mirrored from the left.  The commands
# are in docs/photos.md.
ICT_NUM_VERTICES = 9409
ICT_JAW_LANDMARKS = (1225, 1888, 1052, 367, 1719, 1722, 2199, 1447, 966, 3661, 4390, 3927,
                     3924, 2608, 3272, 4088, 3443)
ICT_BFM_JAW_LANDMARKS = (8129, 8050, 7885, 8841, 8859, 1831, 790, 2196, 969, 4387, 3031, 4033,
                         9182, 9164, 7158, 7323, 7402)
# All 68 BFM keypoints the same way (same similarity, nearest ICT vertex, no
# mirroring; the jaw above is the mirrored version of 0-16).  ICT's interior
# landmarks lie 0.7-8.7 mm from BFM's (inner brows 6-9 mm, nose bridge 5-8
# mm).  Used for the 68 OUTPUT points of a fit that follows other points
# (the 468 dense ones), where the 68 need only match the convention of the
# ground truth (AFLW2000-3D: BFM keypoints), not a detector's.
ICT_BFM_LANDMARKS68 = ICT_BFM_JAW_LANDMARKS + (
    267, 1009, 1031, 1416, 2033, 4230, 3630, 3251, 3229, 2508, 971, 979, 4842, 4841, 4562, 2076,
    5, 4270, 5027, 6590, 1542, 1931, 1372, 1518, 1551, 3587, 3787, 3756, 6548, 3765, 3732, 5929,
    5695, 2069, 0, 4263, 6200, 6434, 6330, 6481, 5945, 5977, 5825, 5749, 5736, 5526, 6241, 6066,
    6241, 5533, 5736)

# Skin colour model (`skin_from_landmarks`).
SKIN_EXCLUDE = (slice(17, 22), slice(22, 27), slice(36, 42), slice(42, 48), slice(48, 60))
SKIN_TRIM = 0.8             # keep this fraction of sample pixels nearest the first estimate
SKIN_LUMA_STD_SCALE = 2.0   # shading varies luminance more than chroma
SKIN_FULL = 2.0             # Mahalanobis distance below which skin = 1
SKIN_FALLOFF = 1.5          # ... and over which it falls to exp(-1/2)
MIN_SKIN_PIXELS = 30


def bfm_landmark_convention(face_model, interior=False):
  """The face model with BFM-convention jaw landmarks, when it is ICT-FaceKit.

  For ICT-FaceKit (9409 vertices with ICT's own jaw landmarks) returns a copy
  whose `landmarks68[0:17]` are `ICT_BFM_JAW_LANDMARKS`; any other model is
  returned unchanged.  With `interior`, all 68 become BFM's keypoints
  (`ICT_BFM_LANDMARKS68`).  Coefficients are unaffected (same mesh and bases), so
  a regressor built on the original model works with the copy.

  Effect, AFLW2000-16, 12 faces dlib finds, fitted from the mean face: NME
  3.4 % with these jaw vertices, 4.4 % with ICT's (docs/photos.md).
  """
  lm = np.asarray(face_model.landmarks68)
  if (face_model.num_vertices != ICT_NUM_VERTICES or
      tuple(int(i) for i in lm[CONTOUR]) != ICT_JAW_LANDMARKS):
    return face_model
  lm = lm.copy()
  lm[CONTOUR] = ICT_BFM_JAW_LANDMARKS
  if interior:
    lm[:] = ICT_BFM_LANDMARKS68
  return dataclasses.replace(face_model, landmarks68=lm.astype(np.int32),
                             name=face_model.name + ", BFM jaw landmarks")


@dataclasses.dataclass(frozen=True)
class FitConfig:
  """Fitting schedule and weights.

  Loss weights follow Deep3D (landmark 1.6e-3, photometric 1.92, albedo
  3e-4 x 0.017 / 0.0017) except the tuned ones marked; landmark errors are in
  pixels of the 224 crop.  Tuned on AFLW2000-16 (docs/photos.md): the detail
  weight (Deep3D 20), shape weight (Deep3D 3e-4) and the contour weights.
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
  shape_weight: float = 1e-3             # tuned
  albedo_weight: float = 3e-4 / losses.DEFAULT_ALBEDO_RATIO * 0.017
  expression_ratio: float = 0.8
  init_pose: bool = True            # closed-form pose when no `init` is given
  # Stage 2 moves shape and pose at this fraction of `learning_rate`; 0 keeps
  # the stage-1 geometry and runs the cheap colour-only stage.
  photometric_geometry_ratio: float = 0.0
  # Dense points (`Fitter(point_weights=...)`): a point's weight is scaled by
  # clip(n_z / ramp, 0, 1), n its vertex's mean-shape normal turned by the
  # closed-form start pose (n_z = 1 facing the camera); the mesh model
  # guesses the points it cannot see.  <= 0: off.
  visibility_ramp: float = 0.0

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
  synthesis: `shared.render.face_image.Synthesis` of the fitted coefficients (rendered).
  losses: dict name -> numpy array: `total` [steps] mean over faces per step,
    `per_face` [steps, B], `landmark_error_px` [B] final mean Euclidean
    landmark distance (all 68 points, pixels of the crop), `landmark_weights`
    [B, 68] the weights used.
  """
  coeffs: Coefficients
  synthesis: object
  losses: dict


def skin_from_landmarks(images, landmarks):
  """A soft skin mask from each face's own colours.

  Samples the pixels inside the hull of the 68 landmarks minus brows, eyes
  and mouth, fits a Gaussian in YCrCb (trimmed to the `SKIN_TRIM` nearest
  fraction, luminance std widened by `SKIN_LUMA_STD_SCALE` for shading), and
  scores every pixel by its Mahalanobis distance d: 1 for d <= `SKIN_FULL`,
  then exp(-(d - SKIN_FULL)^2 / (2 SKIN_FALLOFF^2)).  Hair, eyes, glasses,
  beards and background inside the face region get low weight in the
  photometric loss.

  Args:
    images: [B, H, W, 3] float in [0, 1].
    landmarks: [B, 68, 2] continuous pixels in the same images.

  Returns:
    [B, H, W, 1] float32 in [0, 1] (all ones for a face with too few samples).
  """
  images = np.asarray(images, np.float32)
  landmarks = np.asarray(landmarks, np.float64)
  out = np.ones(images.shape[:3] + (1,), np.float32)
  for b in range(len(images)):  # per face: polygon fill and a 3x3 covariance
    ycc = cv2.cvtColor(images[b], cv2.COLOR_RGB2YCrCb).reshape(-1, 3)
    region = np.zeros(images.shape[1:3], np.uint8)
    cv2.fillConvexPoly(region, _cv_points(cv2.convexHull(landmarks[b].astype(np.float32))), 1)
    for part in SKIN_EXCLUDE:
      cv2.fillConvexPoly(region, _cv_points(cv2.convexHull(landmarks[b, part].astype(np.float32))), 0)
    samples = ycc[region.ravel() > 0].astype(np.float64)
    if len(samples) < MIN_SKIN_PIXELS:
      continue
    mean = np.median(samples, 0)
    for _ in range(2):   # two trimming rounds against hair, shadows and teeth
      cov = np.cov(samples.T) + np.eye(3) * 1e-6
      dist = np.einsum("ni,ij,nj->n", samples - mean, np.linalg.inv(cov), samples - mean)
      samples = samples[dist <= np.quantile(dist, SKIN_TRIM)]
      mean = samples.mean(0)
    mean, cov = samples.mean(0), np.cov(samples.T)
    scale = np.array([SKIN_LUMA_STD_SCALE, 1.0, 1.0])
    cov = cov * np.outer(scale, scale) + np.eye(3) * 1e-6
    d = np.sqrt(np.einsum("ni,ij,nj->n", ycc - mean, np.linalg.inv(cov), ycc - mean))
    prob = np.exp(-0.5 * (np.maximum(d - SKIN_FULL, 0.0) / SKIN_FALLOFF) ** 2)
    out[b, ..., 0] = prob.reshape(images.shape[1:3])
  return out


def _cv_points(points):
  """Continuous pixel coordinates -> int32 OpenCV polygon vertices (centres at integers)."""
  return np.round(np.asarray(points).reshape(-1, 2) - 0.5).astype(np.int32)


def euler_from_matrix(rotation):
  """Inverse of `camera.rotation_matrix` (R = Rz Ry Rx).

  Args:
    rotation: [..., 3, 3] numpy rotation matrices.

  Returns:
    [..., 3] (pitch, yaw, roll) radians, yaw in [-pi/2, pi/2].
  """
  r = np.asarray(rotation, np.float64)
  yaw = np.arcsin(np.clip(-r[..., 2, 0], -1.0, 1.0))
  pitch = np.arctan2(r[..., 2, 1], r[..., 2, 2])
  roll = np.arctan2(r[..., 1, 0], r[..., 0, 0])
  return np.stack([pitch, yaw, roll], axis=-1)


def pose_from_landmarks(model_points, landmarks, camera, weights=None):
  """Closed-form head pose from 2D landmarks (scaled orthographic fit).

  Fits `(u - cx, cy - v) = A [X; 1]` by weighted least squares, takes the
  scale and rotation rows from the 2x3 part (nearest matrix with orthonormal
  rows, via SVD), the third row as their cross product, and the depth from
  the scale: `tz = distance - focal / s - (R c)_z` for the points' centroid c.

  Args:
    model_points: [N, 3] or [B, N, 3] model-space landmark vertices (N = 68,
      or any other point set such as the 468 dense points).
    landmarks: [B, N, 2] target pixels (camera image, see `shared.model.camera`).
    camera: `shared.model.camera.Camera`.
    weights: optional [N] point weights (0 leaves a point out).

  Returns:
    (rotation [B, 3] (pitch, yaw, roll) radians, translation [B, 3]) float32.
  """
  target = np.asarray(landmarks, np.float64)
  batch = target.shape[0]
  count = target.shape[1]
  points = np.broadcast_to(np.asarray(model_points, np.float64), (batch, count, 3))
  w = np.ones(count) if weights is None else np.asarray(weights, np.float64)
  sw = np.sqrt(w)[None, :, None]
  design = np.concatenate([points, np.ones((batch, count, 1))], axis=-1) * sw
  centred = np.stack([target[..., 0] - camera.centre, camera.centre - target[..., 1]], -1) * sw
  affine = np.linalg.pinv(design) @ centred            # [B, 4, 2]
  linear = np.swapaxes(affine[:, :3, :], 1, 2)          # [B, 2, 3] = s R[:2]
  u, sing, vt = np.linalg.svd(linear, full_matrices=False)
  scale = np.maximum(sing.mean(-1), MIN_POSE_SCALE)     # [B]
  rows = u @ vt                                         # orthonormal rows
  rotation = np.concatenate([rows, np.cross(rows[:, 0], rows[:, 1])[:, None]], axis=1)
  # The scale is focal / depth of the points' centroid, which sits at
  # (R c)_z + t_z in front of the origin.
  centroid = (points * w[None, :, None]).sum(1) / w.sum()          # [B, 3]
  centroid_z = np.einsum("bj,bj->b", rotation[:, 2], centroid)
  depth = camera.focal / scale
  shift = affine[:, 3, :] / scale[:, None]              # t_xy in model units
  translation = np.stack([shift[:, 0], shift[:, 1], camera.distance - depth - centroid_z],
                         axis=-1)
  return euler_from_matrix(rotation).astype(np.float32), translation.astype(np.float32)


def pixel_barycentrics(clip, faces, triangle_id, size):
  """Vertex ids and perspective-correct barycentrics of every pixel.

  Args:
    clip: [B, V, 4] clip-space vertices (`shared.render.renderer.to_clip`).
    faces: [F, 3] int32 triangles.
    triangle_id: [B, S, S] int32 from `shared.render.renderer.visibility` (any value
      on background pixels; mask them afterwards).
    size: image side S.

  Returns:
    (vertex_ids [B, S, S, 3] int32, weights [B, S, S, 3] float32 summing to
    1), so a pixel's value is sum_k weights[..., k] * attribute[vertex_ids[..., k]].
    Screen positions follow the CPU rasterizer (NDC y = -1 on row 0, pixel
    centres at +0.5); the screen-space weights b_k are corrected with the
    clip w: (b_k / w_k) / sum_j (b_j / w_j).
  """
  vertex_ids = tf.gather(tf.convert_to_tensor(faces, tf.int32), triangle_id)
  w = clip[..., 3]
  screen = (clip[..., :2] / w[..., None] + 1.0) * (size / 2.0)     # [B, V, 2] pixels
  corners = tf.gather(screen, vertex_ids, batch_dims=1)              # [B, S, S, 3, 2]
  centres = tf.range(size, dtype=tf.float32) + 0.5
  py, px = tf.meshgrid(centres, centres, indexing="ij")
  pixel = tf.stack([px, py], axis=-1)[None]                          # [1, S, S, 2]
  a, b, c = corners[..., 0, :], corners[..., 1, :], corners[..., 2, :]

  def cross(u, v):
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]

  area = cross(b - a, c - a)
  area = tf.where(tf.abs(area) < 1e-12, tf.ones_like(area) * 1e-12, area)
  screen_weights = tf.stack([cross(b - pixel, c - pixel), cross(c - pixel, a - pixel),
                             cross(a - pixel, b - pixel)], axis=-1) / area[..., None]
  corrected = screen_weights / tf.gather(w, vertex_ids, batch_dims=1)
  total = tf.reduce_sum(corrected, axis=-1, keepdims=True)
  total = tf.where(tf.abs(total) < 1e-12, tf.ones_like(total), total)
  return vertex_ids, corrected / total


def _blend_matrix(vertex_ids, weights, mask, num_vertices):
  """A function [B, V, C] -> [B, S, S, C] rendering vertex values with fixed
  visibility: a sparse matrix over the covered pixels (graph code)."""
  batch, size = vertex_ids.shape[0], vertex_ids.shape[1]
  pixels = size * size
  covered = tf.where(tf.reshape(mask, [-1]) > 0)[:, 0]                  # flat b * P + p
  ids = tf.gather(tf.reshape(vertex_ids, [-1, 3]), covered)              # [N, 3]
  ids = tf.cast(ids, tf.int64) + (covered // pixels)[:, None] * num_vertices
  values = tf.gather(tf.reshape(weights, [-1, 3]), covered)
  rows = tf.repeat(covered, 3)
  matrix = tf.sparse.SparseTensor(tf.stack([rows, tf.reshape(ids, [-1])], axis=1),
                                  tf.reshape(values, [-1]),
                                  [batch * pixels, batch * num_vertices])

  def blend(vertex_values):
    channels = vertex_values.shape[-1]
    flat = tf.reshape(vertex_values, [batch * num_vertices, channels])
    image = tf.sparse.sparse_dense_matmul(matrix, flat)
    return tf.reshape(image, [batch, size, size, channels])
  return blend


# The rasterizer op is loaded through importlib, which autograph cannot convert.
_visibility = tf.autograph.experimental.do_not_convert(render_lib.visibility)


class LandmarkDecoder:
  """Coefficients -> the landmark vertices only ([B, N, 3]), for the cheap stage.

  The same linear model as `shared.model.decoder.FaceDecoder.shape` restricted to
  the model's `landmarks68` vertices (N = 68, or 468 for `shared.fit.dense`):
  bases [K, N * 3] instead of [K, V * 3].
  """

  def __init__(self, face_model):
    idx = np.asarray(face_model.landmarks68)
    m = face_model
    self.count = len(idx)

    def rows(basis, std):
      return tf.constant((basis[:, idx] * std[:, None, None]).reshape(len(std), -1), tf.float32)

    self.mean = tf.constant(m.mean_shape[idx], tf.float32)
    self.id_basis = rows(m.id_basis, m.id_std)
    self.exp_basis = rows(m.exp_basis, m.exp_std)
    self.mean_numpy = np.asarray(m.mean_shape[idx], np.float64)

  def __call__(self, identity, expression):
    offsets = identity @ self.id_basis + expression @ self.exp_basis
    return self.mean + tf.reshape(offsets, [-1, self.count, 3])


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

  def _coeffs(self, params):
    return Coefficients(*[p * s for p, s in zip(params, self.scales)])

  def _regularisation(self, coeffs):
    c = self.config
    return (c.shape_weight * losses.shape_regularisation(coeffs.identity, coeffs.expression,
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
    _, landmarks, weights, _ = inputs
    coeffs = self._coeffs(params)
    points = self.landmark_decoder(coeffs.identity, coeffs.expression)
    posed = camera_lib.transform(points, coeffs.rotation, coeffs.translation)
    projected = camera_lib.project(posed, self.camera)
    lm = self._landmark_loss(projected, landmarks, weights)
    return self.config.landmark_weight * lm + self._regularisation(coeffs)

  def _photometric_terms(self, image, mask, region, images):
    return self.config.photometric_weight * losses.photometric_loss(image, mask, images, region)

  def _photometric_objective(self, params, inputs):
    """Landmarks + photometric + regularisation on a full render."""
    images, landmarks, weights, skin = inputs
    coeffs = self._coeffs(params)
    syn = self.synthesizer(coeffs, render=False)
    lm = self._landmark_loss(syn.landmarks2d, landmarks, weights)
    batch = tf.shape(syn.colours)[0]
    attributes = tf.concat([syn.colours, tf.tile(self.skin[None], [batch, 1, 1])], axis=-1)
    out = self.synthesizer.render_attributes(syn.posed, attributes)
    photo = self._photometric_terms(out.image[..., :3], out.mask, out.image[..., 3:] * skin,
                                    images)
    return self.config.landmark_weight * lm + photo + self._regularisation(coeffs)

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
      images, _, _, skin = inputs
      params = tuple(params)
      syn = self.synthesizer(self._coeffs(params), render=False)
      clip = render_lib.to_clip(syn.posed, camera)
      triangle_id, mask = _visibility(clip, decoder.faces, (size, size))
      vertex_ids, weights = pixel_barycentrics(clip, decoder.faces, triangle_id[..., 0], size)
      blend = _blend_matrix(vertex_ids, weights, mask, decoder.num_vertices)
      region = blend(tf.tile(self.skin[None], [images.shape[0], 1, 1])) * skin
      normals = syn.normals

      def objective(p, _):
        c = self._coeffs(p)
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

  def fit(self, images, landmarks, init=None, skin=None):
    """Fits a batch of faces.

    Args:
      images: [B, S, S, 3] float32 in [0, 1], S = the camera's image size.
      landmarks: [B, 68, 2] target landmarks in the same pixel convention.
      init: optional `Coefficients` to start from (e.g. a network prediction);
        default: the mean face, posed from the landmarks.
      skin: optional [B, S, S, 1] skin probability (default: all ones; the
        model's face region is always applied); see `skin_from_landmarks`.

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
    coeffs = self.initial_coefficients(landmarks, init)
    params = tuple(v / s for v, s in zip(coeffs, self.scales))
    weights_np = self.face_weights(coeffs.rotation.numpy())
    inputs = (images, landmarks, tf.constant(weights_np), skin)
    histories = []
    for stage, steps in ((self._landmark_stage, self.config.landmark_steps),
                         (self._photometric_stage, self.config.photometric_steps)):
      if steps > 0:
        params, history = stage(params, inputs, steps)   # steps: static, traced once
        histories.append(history.numpy())
    per_face = (np.concatenate(histories) if histories
                else np.zeros((0, int(images.shape[0])), np.float32))
    if not np.isfinite(per_face).all():
      bad = int(np.argmax(~np.isfinite(per_face).all(axis=1)))
      raise InputError(f"fitting: loss became non-finite at step {bad}")
    coeffs = self._coeffs(params)
    synthesis = self.synthesize(coeffs)
    error = np.linalg.norm(synthesis.landmarks2d.numpy() - landmarks.numpy(), axis=-1).mean(-1)
    return FitResult(coeffs=coeffs, synthesis=synthesis,
                     losses={"total": per_face.mean(axis=1), "per_face": per_face,
                             "landmark_error_px": error, "landmark_weights": weights_np})
