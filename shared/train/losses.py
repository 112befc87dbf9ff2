"""Single-view analysis-by-synthesis losses (MGCNet's "common" terms).

Used by the MGC regressor (`mgc_face`) and by per-image fitting; nothing here
imports a model package.  Formulas follow MGCNet's `deep_3dmm_loss.py` (see
`shared/reference/mgcnet_facts.md`, section 5):

* photometric: per-pixel RGB L2 norm of (render composited over the image -
  image), weighted by the skin mask, normalised by sum(skin * render mask);
* landmarks: squared pixel distance x per-landmark weight, averaged over the
  68 landmarks; nose (28-36) and inner mouth (61-68) get a detail weight;
* regularisation: sum(id^2) + 0.8 sum(exp^2) for shape and 0.0017 sum(alb^2)
  for albedo, on coefficients in standard-deviation units;
* identity: 1 - cosine similarity of face embeddings.

Every loss returns a per-image vector [B] so callers can weight samples
(MGCNet weights multi-view terms by a per-sample flag) and then average.
"""

import numpy as np
import tensorflow as tf

NUM_LANDMARKS = 68
NOSE_LANDMARKS = tuple(range(27, 36))         # 1-based 28-36.
INNER_MOUTH_LANDMARKS = tuple(range(60, 68))  # 1-based 61-68.
DEFAULT_PHOTOMETRIC_EPS = 1e-6
DEFAULT_MASK_EPS = 1e-6
DEFAULT_EXPRESSION_RATIO = 0.8
DEFAULT_ALBEDO_RATIO = 0.0017


def landmark_weights(detail_weight):
  """[68] float32 weights: 1, and `detail_weight` for nose and inner mouth."""
  weights = np.ones(NUM_LANDMARKS, np.float32)
  weights[list(NOSE_LANDMARKS + INNER_MOUTH_LANDMARKS)] = detail_weight
  return weights


def landmark_loss(predicted, target, weights):
  """Weighted squared landmark distance.

  Args:
    predicted: [B, 68, 2] pixels.
    target: [B, 68, 2] pixels.
    weights: [68] per-landmark weights (see `landmark_weights`).

  Returns:
    [B] mean over landmarks of weight * squared distance (pixels^2).
  """
  squared = tf.reduce_sum(tf.square(predicted - target), axis=-1)
  return tf.reduce_mean(squared * tf.convert_to_tensor(weights, squared.dtype), axis=-1)


def composite(render_image, render_mask, image):
  """Render over image: [B, H, W, 3] from [B, H, W, 3], [B, H, W, 1], [B, H, W, 3]."""
  return render_image * render_mask + image * (1.0 - render_mask)


def pixel_norm(a, b, eps=DEFAULT_PHOTOMETRIC_EPS):
  """Per-pixel RGB L2 norm sqrt(sum_c (a - b)^2 + eps): [B, H, W, 1]."""
  return tf.sqrt(tf.reduce_sum(tf.square(a - b), axis=-1, keepdims=True) + eps)


def masked_mean(values, weights, eps=DEFAULT_MASK_EPS):
  """Per-image weighted mean: sum(values * w) / (sum(w) + eps), [B] from [B, H, W, 1]."""
  axes = list(range(1, len(values.shape)))
  return (tf.reduce_sum(values * weights, axis=axes) /
          (tf.reduce_sum(weights, axis=axes) + eps))


def photometric_loss(render_image, render_mask, image, skin, eps=DEFAULT_PHOTOMETRIC_EPS,
                     mask_eps=DEFAULT_MASK_EPS):
  """Skin-masked photometric error.

  Args:
    render_image: [B, H, W, 3] rendered colours.
    render_mask: [B, H, W, 1] coverage.
    image: [B, H, W, 3] input in [0, 1].
    skin: [B, H, W, 1] skin probability (1 = skin).

  Returns:
    [B] sum over pixels of skin * ||composite - image|| divided by
    sum(skin * render_mask).  Pixels outside the render composite to the
    image itself, so they contribute only sqrt(eps).
  """
  norm = pixel_norm(composite(render_image, render_mask, image), image, eps)
  axes = [1, 2, 3]
  return (tf.reduce_sum(norm * skin * render_mask, axis=axes) /
          (tf.reduce_sum(skin * render_mask, axis=axes) + mask_eps))


def shape_regularisation(identity, expression, expression_ratio=DEFAULT_EXPRESSION_RATIO):
  """sum(id^2) + ratio * sum(exp^2) per image, [B] (std-unit coefficients)."""
  return (tf.reduce_sum(tf.square(identity), axis=-1) +
          expression_ratio * tf.reduce_sum(tf.square(expression), axis=-1))


def albedo_regularisation(albedo, albedo_ratio=DEFAULT_ALBEDO_RATIO):
  """ratio * sum(albedo^2) per image, [B]."""
  return albedo_ratio * tf.reduce_sum(tf.square(albedo), axis=-1)


def identity_loss(embedding_a, embedding_b, eps=DEFAULT_MASK_EPS):
  """1 - cosine similarity of two embedding batches [B, D] -> [B]."""
  a = tf.math.l2_normalize(embedding_a, axis=-1, epsilon=eps)
  b = tf.math.l2_normalize(embedding_b, axis=-1, epsilon=eps)
  return 1.0 - tf.reduce_sum(a * b, axis=-1)
