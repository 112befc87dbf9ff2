"""The GCN texture losses (3D-Face-GCNs' `compute_loss`, with the paper's pixel term).

With T' the refined albedo, T the coarse (PCA) albedo, c = SH-lit colours:

| term        | definition                                                  | weight            |
|-------------|-------------------------------------------------------------|-------------------|
| pixel       | per-pixel RGB L2 norm of render' - image, mean over M_proj x M_face | pixel x ren |
| project     | L1(c' vis, proj vis) + 0.3 L1(c' (1-vis), c (1-vis))        | project x ren     |
| perception  | 1 - cos(E(image), E(render' pasted on image))               | 0.2 x ren         |
| symmetry    | mean over mirror pairs of ||T'_left - T'_right||_2           | 0.5 x ren         |
| variance    | per-channel variance of T' over the skin vertices           | 0.01 x ren        |
| refine      | L1(T', T)                                                   | refine x ref      |
| fc L2       | sum of squared fc weights / 2 (tf.nn.l2_loss)               | 5e-4              |
| lowpass     | L1 of the mesh low-pass of T' - T (not in the original)     | lowpass (0 = off) |
| adversarial | WGAN-GP: -E[D(fake)] (critic: E[D(fake)] - E[D(real)] + 10 GP) | 1e-3 x ren     |

ren = clip(0.2 epoch, 0, 1) and ref = clip(1 - ren, 0.2, 1) (`sigma`).

Unlike the original code, where the masked image terms were only logged,
the pixel term is optimised, as the paper states (L_pix, an L2 norm masked
by the projection and face masks); the adversarial term sits inside the
ren group as in the paper's sigma_1 (L_pix + 0.2 L_id + 0.001 L_adv).
All terms are means over the batch.
"""

import numpy as np
import tensorflow as tf

from gcn_face import layers
from shared.train import losses as shared_losses

NORM_EPS = 1e-12  # Inside square roots: a finite gradient at zero distance.
TERMS = ("pixel", "project", "perception", "symmetry", "variance", "refine", "fc_l2",
         "adversarial", "lowpass")


def sigma(config, epoch):
  """The schedule: (ren weight, ref weight) for `epoch` (whole epochs, a staircase)."""
  ren = float(np.clip(config.ren_ramp * int(epoch), 0.0, 1.0))
  ref = float(np.clip(1.0 - ren, config.ref_min, 1.0))
  return ren, ref


def composite(render_image, render_mask, image, alpha):
  """The render pasted on the image inside render mask x alpha: [B, H, W, 3]."""
  inside = render_mask * alpha
  return render_image * inside + image * (1.0 - inside)


def pixel_loss(render_image, render_mask, image, alpha):
  """Mean over the batch of the masked per-pixel L2 norm (scalar).

  Args:
    render_image: [B, H, W, 3] render of the refined lit colours.
    render_mask: [B, H, W, 1] its coverage (M_proj).
    image: [B, H, W, 3] input in [0, 1].
    alpha: [B, H, W, 1] face / skin mask of the input (M_face).
  """
  return tf.reduce_mean(shared_losses.photometric_loss(render_image, render_mask, image, alpha))


def projection_loss(lit, projected, visibility, lit_coarse, invisible_weight):
  """Projected-colour L1 (scalar).

  Args:
    lit: [B, V, 3] refined lit colours c'.
    projected: [B, V, 3] image colours at the projected vertices.
    visibility: [B, V, 1] in [0, 1].
    lit_coarse: [B, V, 3] coarse lit colours c.
    invisible_weight: weight of the invisible term (0.3).

  Returns:
    mean |c' vis - proj vis| + invisible_weight * mean |c' (1 - vis) - c (1 - vis)|.
  """
  hidden = 1.0 - visibility
  seen = tf.reduce_mean(tf.abs((lit - projected) * visibility))
  unseen = tf.reduce_mean(tf.abs((lit - lit_coarse) * hidden))
  return seen + invisible_weight * unseen


def refine_loss(albedo, coarse_albedo):
  """mean |T' - T| (scalar), both [B, V, 3]; with the true albedo as `coarse_albedo`,
  the `truth_albedo` term."""
  return tf.reduce_mean(tf.abs(albedo - coarse_albedo))


def lowpass_loss(albedo, coarse_albedo, down, up):
  """mean |U_0 .. U_{k-1} D_{k-1} .. D_0 (T' - T_pca)|: the low frequencies of the change.

  Args:
    albedo, coarse_albedo: [B, V, 3].
    down, up: the first k pooling [V_{l+1}, V_l] and unpooling [V_l, V_{l+1}]
      matrices (`gcn_face.layers.SparseMatrix`).
  """
  x = albedo - coarse_albedo
  for matrix in down:
    x = layers.resample(x, matrix)
  for matrix in reversed(up):
    x = layers.resample(x, matrix)
  return tf.reduce_mean(tf.abs(x))


def symmetry_loss(albedo, pairs):
  """Mean Euclidean colour distance between mirror vertices (scalar).

  Args:
    albedo: [B, V, 3].
    pairs: [P, 2] int (left vertex, right vertex).
  """
  pairs = tf.convert_to_tensor(pairs, tf.int32)
  left = tf.gather(albedo, pairs[:, 0], axis=1)
  right = tf.gather(albedo, pairs[:, 1], axis=1)
  squared = tf.reduce_sum(tf.square(left - right), axis=-1)
  return tf.reduce_mean(tf.sqrt(squared + NORM_EPS))


def variance_loss(albedo, skin):
  """Per-channel variance of the albedo over the skin vertices, averaged (scalar).

  Args:
    albedo: [B, V, 3].
    skin: [V] weights in {0, 1}.
  """
  weights = tf.convert_to_tensor(skin, albedo.dtype)[None, :, None]
  count = tf.reduce_sum(weights)
  mean = tf.reduce_sum(albedo * weights, axis=1, keepdims=True) / count
  return tf.reduce_mean(tf.reduce_sum(tf.square(albedo - mean) * weights, axis=1) / count)


def perception_loss(embedding_real, embedding_fake):
  """Mean of 1 - cos(E(image), E(composite)) (scalar)."""
  return tf.reduce_mean(shared_losses.identity_loss(embedding_real, embedding_fake))


def fc_l2_loss(kernels):
  """sum_k ||W_k||^2 / 2 over the fully connected kernels (scalar)."""
  return tf.add_n([tf.nn.l2_loss(k) for k in kernels]) if kernels else tf.constant(0.0)


def gradient_penalty(critic, real, fake, seed=None):
  """WGAN-GP: mean over the batch of (||grad D(x_hat)||_2 - 1)^2.

  x_hat = e real + (1 - e) fake with e ~ U(0, 1) per image.
  """
  batch = tf.shape(real)[0]
  if seed is None:
    e = tf.random.uniform([batch, 1, 1, 1])
  else:
    e = tf.random.stateless_uniform([batch, 1, 1, 1], seed)
  mixed = e * real + (1.0 - e) * fake
  with tf.GradientTape() as tape:
    tape.watch(mixed)
    score = critic(mixed)
  grad = tape.gradient(score, mixed)
  norm = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=[1, 2, 3]) + NORM_EPS)
  return tf.reduce_mean(tf.square(norm - 1.0))


def critic_loss(score_real, score_fake, penalty, config):
  """adv x (E[D(fake)] - E[D(real)] + GP weight x GP)."""
  return config.adversarial_weight * (tf.reduce_mean(score_fake) - tf.reduce_mean(score_real)
                                      + config.gradient_penalty * penalty)


def total_loss(terms, ren, ref, config):
  """The generator objective from a dict of scalar terms (missing terms are 0)."""
  get = lambda name: terms.get(name, 0.0)  # noqa: E731
  rendered = (config.pixel_weight * get("pixel") + config.project_weight * get("project")
              + config.perception_weight * get("perception")
              + config.symmetry_weight * get("symmetry")
              + config.variance_weight * get("variance")
              + config.adversarial_weight * get("adversarial"))
  return ren * rendered + ref * config.refine_weight * get("refine") + \
      config.fc_l2_weight * get("fc_l2") + config.lowpass_weight * get("lowpass") + \
      config.truth_albedo_weight * get("truth_albedo")
