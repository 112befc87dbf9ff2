"""GCN loss terms on hand-made inputs, the sigma schedule and the evaluation metrics."""

import numpy as np
import pytest
import tensorflow as tf

from gcn_face import evaluate, losses
from gcn_face.config import PAPER, TINY, get_config
from shared.errors import InputError

TOLERANCE = 1e-6


def test_sigma_schedule_matches_the_original():
  expected = {0: (0.0, 1.0), 1: (0.2, 0.8), 2: (0.4, 0.6), 4: (0.8, 0.2), 5: (1.0, 0.2),
              50: (1.0, 0.2)}
  for epoch, (ren, ref) in expected.items():
    assert losses.sigma(PAPER, epoch) == pytest.approx((ren, ref))
  assert losses.sigma(PAPER, 1.9) == pytest.approx((0.2, 0.8))  # A staircase per epoch.


def test_projection_loss_by_hand():
  lit = tf.constant([[[0.5, 0.5, 0.5], [1.0, 0.0, 0.0]]])
  projected = tf.constant([[[0.2, 0.5, 0.8], [9.0, 9.0, 9.0]]])  # Vertex 1 unseen: ignored.
  coarse = tf.constant([[[7.0, 7.0, 7.0], [0.0, 0.0, 0.0]]])     # Vertex 0 seen: ignored.
  vis = tf.constant([[[1.0], [0.0]]])
  seen = (0.3 + 0.0 + 0.3) / 6
  unseen = (1.0 + 0.0 + 0.0) / 6
  got = losses.projection_loss(lit, projected, vis, coarse, 0.3)
  assert float(got) == pytest.approx(seen + 0.3 * unseen, abs=TOLERANCE)


def test_pixel_loss_is_masked_l2_norm():
  image = np.zeros((1, 2, 2, 3), np.float32)
  render = np.zeros((1, 2, 2, 3), np.float32)
  render[0, 0, 0] = [3.0, 4.0, 0.0]   # Norm 5, inside both masks.
  render[0, 0, 1] = [1.0, 0.0, 0.0]   # Outside the face mask.
  render[0, 1, 0] = [0.0, 0.0, 2.0]   # Outside the render mask.
  mask = np.array([1, 1, 0, 1], np.float32).reshape(1, 2, 2, 1)
  alpha = np.array([1, 0, 1, 1], np.float32).reshape(1, 2, 2, 1)
  got = losses.pixel_loss(tf.constant(render), tf.constant(mask), tf.constant(image),
                          tf.constant(alpha))
  # Pixels (0,0) and (1,1); the zero-error pixel counts sqrt(eps) = 1e-3.
  assert float(got) == pytest.approx((5.0 + 1e-3) / 2.0, abs=1e-5)


def test_refine_symmetry_and_variance_by_hand():
  albedo = tf.constant([[[0.0, 0.0, 0.0], [0.3, 0.4, 0.0], [1.0, 1.0, 1.0]]])
  coarse = tf.zeros_like(albedo)
  assert float(losses.refine_loss(albedo, coarse)) == pytest.approx(3.7 / 9, abs=TOLERANCE)
  pairs = np.array([[0, 1], [2, 2]])
  assert float(losses.symmetry_loss(albedo, pairs)) == pytest.approx(0.5 / 2, abs=1e-5)
  skin = np.array([1.0, 1.0, 0.0])
  # Skin vertices 0 and 1: per-channel variances 0.0225, 0.04, 0.
  assert float(losses.variance_loss(albedo, skin)) == pytest.approx(0.0625 / 3, abs=TOLERANCE)


def test_lowpass_loss_matches_dense_numpy():
  """mean |U0 U1 D1 D0 (T' - T)| with the sparse operators, against dense numpy;
  a change of pure detail the low-pass removes costs less than the same-size tone change."""
  import scipy.sparse
  from gcn_face import layers
  rng = np.random.default_rng(3)
  d0 = scipy.sparse.random(6, 12, density=0.4, random_state=1, format="csr")
  d1 = scipy.sparse.random(3, 6, density=0.5, random_state=2, format="csr")
  u0 = scipy.sparse.random(12, 6, density=0.4, random_state=3, format="csr")
  u1 = scipy.sparse.random(6, 3, density=0.5, random_state=4, format="csr")
  albedo = rng.uniform(0, 1, (2, 12, 3)).astype(np.float32)
  coarse = rng.uniform(0, 1, (2, 12, 3)).astype(np.float32)
  got = losses.lowpass_loss(albedo, coarse, [layers.sparse_constant(d0), layers.sparse_constant(d1)],
                            [layers.sparse_constant(u0), layers.sparse_constant(u1)])
  op = (u0 @ u1 @ d1 @ d0).toarray()
  want = np.abs(np.einsum("uv,bvc->buc", op, albedo - coarse)).mean()
  np.testing.assert_allclose(float(got), want, rtol=1e-5)
  mean = scipy.sparse.csr_matrix(np.full((1, 12), 1 / 12))
  up = scipy.sparse.csr_matrix(np.ones((12, 1)))
  detail = np.tile(np.array([1.0, -1.0] * 6, np.float32)[None, :, None], [1, 1, 3]) * 0.1
  tone = np.full((1, 12, 3), 0.1, np.float32)
  zero = np.zeros_like(tone)
  ops = ([layers.sparse_constant(mean)], [layers.sparse_constant(up)])
  assert float(losses.lowpass_loss(detail, zero, *ops)) < 1e-7
  np.testing.assert_allclose(float(losses.lowpass_loss(tone, zero, *ops)), 0.1, rtol=1e-6)


def test_symmetry_gradient_finite_at_perfect_symmetry():
  albedo = tf.Variable(tf.ones([1, 2, 3]))
  with tf.GradientTape() as tape:
    loss = losses.symmetry_loss(albedo, np.array([[0, 1]]))
  assert np.isfinite(tape.gradient(loss, albedo).numpy()).all()


def test_total_loss_groups_terms_like_the_paper():
  terms = {"pixel": 1.0, "project": 2.0, "perception": 3.0, "symmetry": 4.0, "variance": 5.0,
           "adversarial": 6.0, "refine": 7.0, "fc_l2": 8.0}
  ren, ref = 0.5, 0.8
  want = (ren * (1.0 + 2.0 + 0.2 * 3.0 + 0.5 * 4.0 + 0.01 * 5.0 + 1e-3 * 6.0)
          + ref * 7.0 + 5e-4 * 8.0)
  assert float(losses.total_loss(terms, ren, ref, PAPER)) == pytest.approx(want)
  assert float(losses.total_loss({"refine": 1.0}, 0.0, 1.0, PAPER)) == pytest.approx(1.0)


def test_gradient_penalty_of_a_linear_critic():
  weights = tf.constant(np.full((1, 2, 2, 3), 0.5, np.float32))  # ||w|| = sqrt(12) / 2.

  def critic(x):
    return tf.reduce_sum(x * weights, axis=[1, 2, 3])

  real, fake = tf.zeros([2, 2, 2, 3]), tf.ones([2, 2, 2, 3])
  penalty = losses.gradient_penalty(critic, real, fake, seed=[1, 2])
  assert float(penalty) == pytest.approx((np.sqrt(12) / 2 - 1) ** 2, rel=1e-5)
  loss = losses.critic_loss(tf.constant([1.0, 3.0]), tf.constant([0.0, 0.0]), 0.5, PAPER)
  assert float(loss) == pytest.approx(1e-3 * (0.0 - 2.0 + 10 * 0.5))


def test_perception_loss_is_one_minus_cosine():
  a = tf.constant([[1.0, 0.0], [1.0, 1.0]])
  b = tf.constant([[0.0, 2.0], [2.0, 2.0]])
  assert float(losses.perception_loss(a, b)) == pytest.approx((1.0 + 0.0) / 2, abs=1e-5)


def test_masked_metrics_by_hand():
  image = np.full((16, 16, 3), 0.5)
  render = image.copy()
  render[:8] += 0.1
  mask = np.zeros((16, 16))
  mask[4:12] = 1.0
  got = evaluate.masked_metrics(image, render, mask)
  assert got["l1"] == pytest.approx(0.05)
  assert got["psnr"] == pytest.approx(10 * np.log10(1 / 0.005))
  same = evaluate.masked_metrics(image, image, mask)
  assert same["l1"] == 0 and same["ssim"] == pytest.approx(1.0)
  assert evaluate.masked_metrics(image, render, np.zeros((16, 16))) is None


def test_presets():
  assert (PAPER.learning_rate, PAPER.lr_decay, PAPER.batch_size, PAPER.clip_norm) == \
      (1e-4, 0.98, 4, 5.0)
  assert (PAPER.adversarial_weight, PAPER.gradient_penalty, PAPER.critic_steps) == (1e-3, 10, 5)
  assert PAPER.cheb_order == 6 and PAPER.factors == (4, 4, 4, 4)
  assert get_config("tiny", "resnet").arch == "resnet" and TINY.name == "tiny"
  assert TINY.from_json(TINY.to_json()) == TINY
  with pytest.raises(InputError, match="unknown config preset"):
    get_config("huge")
