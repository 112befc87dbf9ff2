"""The MGC regressor (backbone + coefficient head) and its training objective.

Network: image [B, 224, 224, 3] RGB in [0, 1] (no mean subtraction, as
MGCNet) -> optional resize to `config.input_size` -> backbone -> pooled
features [B, D] -> dense head -> coefficient vector [B, layout.size] in
MGCNet's order (identity | albedo | expression | pose 6 | SH 27).  The head is
zero-initialised, so an untrained regressor predicts the mean face at the
default pose under ambient light (like Deep3D's zero-initialised heads).

Backbones: "resnet50" (keras.applications ResNet-50, random init unless a
weights file is given: nothing is downloaded) and "small" (one stride-2
conv-GroupNorm-ReLU block per entry of `config.small_channels`, then global
average pooling), the CPU preset for CI and the demo.

`Objective` decodes the coefficients of all views through
`shared.synthesis.FaceSynthesizer` (one render call for all B x 3 views) and
combines the single-view terms of `shared.losses` with the multi-view terms
of `mgc_face.multiview`.
"""

from typing import NamedTuple

import keras
import tensorflow as tf

from mgc_face import multiview as mv
from shared import losses
from shared import rasterizer
from shared.coeffs import CoeffLayout
from shared.errors import InputError

IMAGE_SIZE = 224
NUM_VIEWS = 3          # target, source1, source2 (target first).
NUM_SOURCES = NUM_VIEWS - 1
SKIN_CERTAIN = 0.5     # MGCNet: skin probabilities above 0.5 count as 1.
CONV_KERNEL = 3


# ----------------------------------------------------------------------------- network

def small_backbone(config, inputs):
  """Conv-GroupNorm-ReLU blocks, each halving the resolution, then a dense embedding.

  The final feature map is small (4x4 at 112 px); it is flattened and
  projected by a dense layer rather than averaged, which keeps the spatial
  layout that pose and landmark regression need (measured: about 1.5x lower
  held-out landmark error than global pooling after 300 steps).  GroupNorm
  normalises every image's activations, which removes its overall brightness
  and colour, exactly what the lighting and albedo outputs need; so a coarse
  average-pooled copy of the input (7x7x3 at 112 px) is appended to the
  feature vector, where the linear head reads it directly (through the
  shared dense layer its information was lost to the landmark gradients).
  """
  x = inputs
  for channels in config.small_channels:
    groups = min(config.small_groups, channels)
    x = keras.layers.Conv2D(channels, CONV_KERNEL, strides=2, padding="same", use_bias=False)(x)
    x = keras.layers.GroupNormalization(groups)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(channels, CONV_KERNEL, padding="same", use_bias=False)(x)
    x = keras.layers.GroupNormalization(groups)(x)
    x = keras.layers.ReLU()(x)
  x = keras.layers.Flatten()(x)
  x = keras.layers.Dense(config.small_features, activation="relu")(x)
  if not config.small_colour_pool:
    return keras.layers.Identity(name="features")(x)
  colour = keras.layers.Flatten()(keras.layers.AveragePooling2D(config.small_colour_pool)(inputs))
  return keras.layers.Concatenate(name="features")([x, colour])


def resnet50_backbone(config, inputs, weights=None):
  """keras.applications ResNet-50 without top, average-pooled (2048 features)."""
  net = keras.applications.ResNet50(include_top=False, weights=None, pooling="avg",
                                    input_shape=(config.input_size, config.input_size, 3))
  if weights:
    try:
      net.load_weights(weights)
    except Exception as error:  # noqa: BLE001 - any load failure is a bad file.
      raise InputError(f"{weights}: cannot load ResNet-50 weights ({error})".splitlines()[0])
  return net(inputs)


BACKBONES = {"small": small_backbone, "resnet50": resnet50_backbone}


def build_network(config, layout, backbone_weights=None):
  """Keras model: images [B, 224, 224, 3] -> (coefficients [B, size], features [B, D])."""
  if config.backbone not in BACKBONES:
    raise InputError(f"unknown backbone '{config.backbone}'; choose one of: "
                     + ", ".join(sorted(BACKBONES)))
  images = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="images")
  x = images
  if config.input_size != IMAGE_SIZE:
    x = keras.layers.Resizing(config.input_size, config.input_size, interpolation="bilinear")(x)
  if config.backbone == "resnet50":
    features = resnet50_backbone(config, x, backbone_weights)
  else:
    if backbone_weights:
      raise InputError("--backbone-weights applies to the resnet50 backbone only")
    features = small_backbone(config, x)
  coefficients = keras.layers.Dense(layout.size, kernel_initializer="zeros",
                                    bias_initializer="zeros", name="coefficients")(features)
  return keras.Model(images, [coefficients, features], name=f"mgc_{config.backbone}")


class Regressor:
  """Image -> coefficients regressor for one face model.

  Attributes:
    network: the Keras model.  face_model, config, layout.
    feature_size: D, the length of the pooled backbone features.
  """

  def __init__(self, network, face_model, config):
    self.network = network
    self.face_model = face_model
    self.config = config
    self.layout = CoeffLayout.for_model(face_model)
    self.feature_size = int(network.outputs[1].shape[-1])

  def __call__(self, images, training=False):
    """images [B, 224, 224, 3] float32 in [0, 1] -> (`Coefficients`, features [B, D])."""
    vector, features = self.network(images, training=training)
    return self.layout.split(vector), features


def build_regressor(face_model, config, backbone_weights=None):
  """An untrained `Regressor` (zero head: mean face, default pose)."""
  layout = CoeffLayout.for_model(face_model)
  return Regressor(build_network(config, layout, backbone_weights), face_model, config)


# ----------------------------------------------------------------------------- objective

class Batch(NamedTuple):
  """A training batch of B samples with V = 3 views each (target first).

  images [B, 3, 224, 224, 3] in [0, 1]; skins [B, 3, 224, 224, 1] in [0, 1];
  landmarks [B, 3, 68, 2] pixels; flags [B] float32 (0 mono, 1, 2 multi-view).
  """
  images: tf.Tensor
  skins: tf.Tensor
  landmarks: tf.Tensor
  flags: tf.Tensor


def process_skin(skin):
  """MGCNet's `process_skin`: probabilities above 0.5 become 1."""
  return tf.where(skin > SKIN_CERTAIN, tf.ones_like(skin), skin)


def flatten_views(x):
  """[B, V, ...] -> [B * V, ...] (sample-major)."""
  return tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0))


def unflatten_views(x):
  """[B * V, ...] -> [B, V, ...]."""
  return tf.reshape(x, tf.concat([[-1, NUM_VIEWS], tf.shape(x)[1:]], 0))


def pairs(x):
  """[B, V, ...] -> (targets [2B, ...], sources [2B, ...]): (t, s1) then (t, s2)."""
  targets = tf.concat([x[:, 0]] * NUM_SOURCES, 0)
  sources = tf.concat([x[:, k] for k in range(1, NUM_VIEWS)], 0)
  return targets, sources


class Objective:
  """MGCNet's total loss for a batch of triplets.

  total = w_lm lm + w_pix photo + w_reg_s reg_shape + w_reg_c reg_albedo
          [+ w_id identity]
          + w_mv (w_pixel pixel + w_ssim ssim + w_epi epipolar + w_depth depth)

  Single-view terms are averaged over all B x 3 views.  Multi-view terms are
  averaged over the two (target, source) pairs of each sample, weighted per
  sample by clip(flag, 0, 1) (pixel, SSIM, depth) and clip(flag - 1, 0, 1)
  (epipolar), as MGCNet.
  """

  def __init__(self, synthesizer, config, embedder=None):
    rasterizer.load()  # Build/load the kernel eagerly, not while tracing.
    self.synth = synthesizer
    self.config = config
    self.embedder = embedder
    self.landmark_weights = tf.constant(losses.landmark_weights(config.landmark_detail_weight))
    self.mm_per_unit = float(synthesizer.face_model.mm_per_unit)
    camera, mm = synthesizer.camera, self.mm_per_unit
    with_ssim = config.w_mv_ssim > 0

    def terms(*tensors):
      return mv.pair_terms(*tensors, camera=camera, mm_per_unit=mm, with_ssim=with_ssim,
                           eps=config.photometric_eps, mask_eps=config.mask_eps)

    self._pair_terms = tf.function(terms, jit_compile=True)

    def decode(coeffs):
      out = synthesizer(coeffs, render=False)
      return out.posed, out.colours, out.landmarks2d

    # Decoding (shape, normals, SH shading, projection) has no custom op, so
    # it compiles with XLA too; the rasterizer runs outside.
    self._decode = tf.function(decode, jit_compile=True)

  def __call__(self, coeffs, batch, multiview=True):
    """Losses for coefficients of all views.

    Args:
      coeffs: `Coefficients` with batch B * 3 (sample-major, target first).
      batch: `Batch`.
      multiview: include the multi-view terms.

    Returns:
      (total scalar, dict of scalar terms, dict of visuals [.., H, W, C]).
    """
    c = self.config
    images = flatten_views(batch.images)
    skins = process_skin(flatten_views(batch.skins))
    landmarks = flatten_views(batch.landmarks)
    posed, colours, landmarks2d = self._decode(coeffs)
    rendered = self.synth.render_attributes(posed, colours)
    photo = losses.photometric_loss(rendered.image, rendered.mask, images, skins,
                                    c.photometric_eps, c.mask_eps)
    lm = losses.landmark_loss(landmarks2d, landmarks, self.landmark_weights)
    reg_shape = losses.shape_regularisation(coeffs.identity, coeffs.expression,
                                            c.reg_expression_ratio)
    reg_albedo = losses.albedo_regularisation(coeffs.albedo, c.reg_albedo_ratio)
    terms = {"landmark": tf.reduce_mean(lm), "photometric": tf.reduce_mean(photo),
             "reg_shape": tf.reduce_mean(reg_shape), "reg_albedo": tf.reduce_mean(reg_albedo)}
    total = (c.w_landmark * terms["landmark"] + c.w_photometric * terms["photometric"] +
             c.w_reg_shape * terms["reg_shape"] + c.w_reg_albedo * terms["reg_albedo"])
    composite = losses.composite(rendered.image, rendered.mask, images)
    if self.embedder is not None and c.w_identity > 0:
      identity = losses.identity_loss(self.embedder(composite), self.embedder(images))
      terms["identity"] = tf.reduce_mean(identity)
      total += c.w_identity * terms["identity"]
    visuals = {"input": images[::NUM_VIEWS], "overlay": composite[::NUM_VIEWS]}
    if multiview:
      mv_total, mv_terms, mv_visuals = self.multiview(coeffs, rendered, batch)
      terms.update(mv_terms)
      visuals.update(mv_visuals)
      total += c.w_multiview * mv_total
    terms["total"] = total
    return total, terms, visuals

  def multiview(self, coeffs, r, batch):
    """The multi-view terms for all (target, source) pairs at once (r: `RenderOutput`)."""
    c = self.config
    dec = self.synth.decoder
    rot_t, rot_s = pairs(unflatten_views(coeffs.rotation))
    trans_t, trans_s = pairs(unflatten_views(coeffs.translation))
    ids_t, ids_s = pairs(unflatten_views(r.triangle_ids))
    depth_t, depth_s = pairs(unflatten_views(r.depth))
    mask_t, mask_s = pairs(unflatten_views(r.mask))
    img_t, img_s = pairs(batch.images)
    lm_t, lm_s = pairs(batch.landmarks)
    covisible = tf.stop_gradient(mv.covisible_mask(ids_t, ids_s, dec.faces, dec.rings,
                                                   c.covisible_rings))
    out = self._pair_terms(img_t, img_s, depth_t, depth_s, mask_t, mask_s, covisible, rot_t,
                           trans_t, rot_s, trans_s, lm_t, lm_s)
    flags = tf.concat([batch.flags] * NUM_SOURCES, 0)
    w_mv = tf.clip_by_value(flags, 0.0, 1.0)
    w_epi = tf.clip_by_value(flags - 1.0, 0.0, 1.0)
    terms = {"mv_pixel": tf.reduce_mean(w_mv * out.pixel),
             "mv_depth": tf.reduce_mean(w_mv * out.depth),
             "mv_epipolar": tf.reduce_mean(w_epi * out.epipolar)}
    total = (c.w_mv_pixel * terms["mv_pixel"] + c.w_mv_depth * terms["mv_depth"] +
             c.w_mv_epipolar * terms["mv_epipolar"])
    if c.w_mv_ssim > 0:
      terms["mv_ssim"] = tf.reduce_mean(w_mv * out.ssim)
      total += c.w_mv_ssim * terms["mv_ssim"]
    batch_size = batch.flags.shape[0]
    visuals = {"warped_source1": out.warped[:batch_size],
               "covisible1": tf.tile(covisible[:batch_size], [1, 1, 1, 3])}
    return total, terms, visuals
