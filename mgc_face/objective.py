"""MGCNet's training objective for a batch of view triplets.

`Objective` decodes the coefficients of all views through
`shared.render.face_image.FaceSynthesizer` (one render call for all B x 3 views) and
combines the single-view terms of `shared.train.losses` with the multi-view terms
of `mgc_face.multiview`; the regressor it scores is `mgc_face.model`.
"""

from typing import NamedTuple

import tensorflow as tf

from mgc_face import multiview as mv
from mgc_face.model import heatmap_cross_entropy
from shared.train import losses
from shared.render import rasterizer

NUM_VIEWS = 3          # target, source1, source2 (target first).
NUM_SOURCES = NUM_VIEWS - 1
SKIN_CERTAIN = 0.5     # MGCNet: skin probabilities above 0.5 count as 1.


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
          [+ w_id identity] [+ w_lm_head landmark_head]
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

  def __call__(self, coeffs, batch, multiview=True, head=None):
    """Losses for coefficients of all views.

    Args:
      coeffs: `Coefficients` with batch B * 3 (sample-major, target first).
      batch: `Batch`.
      multiview: include the multi-view terms.
      head: None or the landmark head's (points [B * 3, 68, 2], heatmap
        logits); `w_landmark_head` and `w_heatmap` pull them to the batch's
        landmarks (the same detector-like labels as the landmark term).

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
    if head is not None:
      head_total, head_terms = self.head_terms(head, landmarks)
      terms.update(head_terms)
      total += head_total
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

  def head_terms(self, head, landmarks):
    """The landmark head's own terms: (weighted sum, {landmark_head, heatmap}).

    head: (points [N, 68, 2], heatmap logits [N, h, w, 68]); landmarks [N, 68, 2].
    """
    c = self.config
    terms = {"landmark_head": tf.reduce_mean(
                 losses.landmark_loss(head[0], landmarks, self.landmark_weights)),
             "heatmap": tf.reduce_mean(heatmap_cross_entropy(head[1], landmarks,
                                                             c.heatmap_sigma))}
    return c.w_landmark_head * terms["landmark_head"] + c.w_heatmap * terms["heatmap"], terms

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
