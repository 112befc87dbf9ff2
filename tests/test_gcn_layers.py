"""Graph layers against dense numpy references (small random graphs)."""

import numpy as np
import pytest
import scipy.sparse as sp
import tensorflow as tf

from gcn_face import layers

SEED = 0
NUM_VERTICES = 30
NUM_COARSE = 9
BATCH = 3
FIN = 4
FOUT = 5
ORDER = 6
TOLERANCE = 1e-4


def random_graph(rng, n):
  """A random symmetric adjacency and its rescaled normalised Laplacian L - I."""
  upper = sp.random(n, n, density=0.2, random_state=np.random.RandomState(SEED)).toarray()
  adjacency = np.triu((upper > 0).astype(np.float64), 1)
  adjacency = adjacency + adjacency.T
  adjacency[np.arange(n - 1), np.arange(1, n)] = 1.0  # A path keeps it connected.
  adjacency[np.arange(1, n), np.arange(n - 1)] = 1.0
  d = adjacency.sum(axis=1) ** -0.5
  laplacian = np.eye(n) - d[:, None] * adjacency * d[None, :]
  return laplacian - np.eye(n)


def dense_chebyshev(x, lap, weight, bias, order):
  """out[b] = sum_{fin, k} (T_k x_b)[:, fin] W[fin * K + k] + bias, in float64."""
  batch, n, fin = x.shape
  out = np.zeros((batch, n, weight.shape[1]))
  for b in range(batch):
    t = [np.eye(n), lap]
    for _ in range(2, order):
      t.append(2 * lap @ t[-1] - t[-2])
    for f in range(fin):
      for k in range(order):
        out[b] += np.outer(t[k] @ x[b, :, f], weight[f * order + k])
  return out + bias


@pytest.fixture()
def rng():
  return np.random.default_rng(SEED)


def test_chebyshev_features_order_matches_dense(rng):
  lap = random_graph(rng, NUM_VERTICES)
  x = rng.standard_normal((BATCH, NUM_VERTICES, FIN)).astype(np.float32)
  got = layers.chebyshev_features(tf.constant(x), layers.sparse_constant(lap), ORDER).numpy()
  t = [np.eye(NUM_VERTICES), lap]
  for _ in range(2, ORDER):
    t.append(2 * lap @ t[-1] - t[-2])
  for b in range(BATCH):
    for f in range(FIN):
      for k in range(ORDER):
        np.testing.assert_allclose(got[b, :, f * ORDER + k], t[k] @ x[b, :, f], atol=TOLERANCE)


@pytest.mark.parametrize("order", [1, 2, ORDER])
def test_cheb_conv_matches_dense_reference(rng, order):
  lap = random_graph(rng, NUM_VERTICES)
  x = rng.standard_normal((BATCH, NUM_VERTICES, FIN)).astype(np.float32)
  conv = layers.ChebConv(layers.sparse_constant(lap), FOUT, order)
  conv.build((BATCH, NUM_VERTICES, FIN))
  conv.bias.assign(rng.standard_normal(FOUT).astype(np.float32))
  got = conv(tf.constant(x)).numpy()
  want = dense_chebyshev(x, lap, conv.kernel.numpy(), conv.bias.numpy(), order)
  np.testing.assert_allclose(got, want, atol=TOLERANCE)


def test_cheb_conv_gradient_matches_finite_differences(rng):
  lap = random_graph(rng, NUM_VERTICES)
  x = tf.constant(rng.standard_normal((1, NUM_VERTICES, 2)), tf.float64)
  conv = layers.ChebConv(layers.sparse_constant(lap, np.float64), 2, 3,
                         activation="elu", dtype="float64")
  conv.build(x.shape)
  # Seeded weights (Keras' initializer is not): a pre-activation that happens to
  # fall within the finite-difference step of ELU's kink made this test flaky.
  conv.kernel.assign(rng.standard_normal(conv.kernel.shape) * 0.3)
  conv.bias.assign(rng.standard_normal(conv.bias.shape) * 0.3)
  theoretical, numerical = tf.test.compute_gradient(conv, [x])
  np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-6)


def test_pool_and_unpool_match_dense_products(rng):
  down = sp.random(NUM_COARSE, NUM_VERTICES, density=0.3, random_state=np.random.RandomState(1))
  up = sp.random(NUM_VERTICES, NUM_COARSE, density=0.3, random_state=np.random.RandomState(2))
  x = rng.standard_normal((BATCH, NUM_VERTICES, FIN)).astype(np.float32)
  pooled = layers.GraphResample(layers.sparse_constant(down))(tf.constant(x)).numpy()
  np.testing.assert_allclose(pooled, np.einsum("mn,bnf->bmf", down.toarray(), x), atol=TOLERANCE)
  unpooled = layers.GraphResample(layers.sparse_constant(up))(tf.constant(pooled)).numpy()
  np.testing.assert_allclose(unpooled, np.einsum("nm,bmf->bnf", up.toarray(), pooled),
                             atol=TOLERANCE)
  assert pooled.shape == (BATCH, NUM_COARSE, FIN)


def test_res_block_matches_dense_reference(rng):
  lap = random_graph(rng, NUM_VERTICES)
  x = rng.standard_normal((BATCH, NUM_VERTICES, FIN)).astype(np.float32)
  block = layers.ChebResBlock(layers.sparse_constant(lap), FOUT, 3)
  got = block(tf.constant(x)).numpy()

  def elu(v):
    return np.where(v > 0, v, np.expm1(v))

  h = elu(dense_chebyshev(x, lap, block.conv1.kernel.numpy(), block.conv1.bias.numpy(), 3))
  h = dense_chebyshev(h, lap, block.conv2.kernel.numpy(), block.conv2.bias.numpy(), 3)
  skip = np.einsum("bvi,io->bvo", x, block.shortcut.kernel.numpy())
  np.testing.assert_allclose(got, elu(h + skip), atol=TOLERANCE)


def test_resample_gradient_uses_the_transpose():
  up = sp.random(NUM_VERTICES, NUM_COARSE, density=0.3, random_state=np.random.RandomState(3))
  matrix = layers.sparse_constant(up, np.float64)
  assert matrix.transpose is not matrix and matrix.transpose.shape == (NUM_COARSE, NUM_VERTICES)
  x = tf.constant(np.random.default_rng(SEED).standard_normal((2, NUM_COARSE, 3)))
  theoretical, numerical = tf.test.compute_gradient(lambda v: layers.resample(v, matrix), [x])
  np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-6)
  lap = layers.sparse_constant(random_graph(None, NUM_VERTICES))
  assert lap.transpose is lap  # Symmetric: its own transpose.


def test_attached_sublayers_are_checkpointed(tmp_path):
  import keras

  class Stack(keras.layers.Layer):
    def __init__(self):
      super().__init__()
      self.steps = layers.attach(self, keras.layers.Dense(2, name="a"),
                                 keras.layers.Dense(3, name="b"))

    def call(self, x):
      for layer in self.steps:
        x = layer(x)
      return x

  stack = Stack()
  stack(tf.zeros([1, 4]))
  path = tf.train.Checkpoint(m=stack).write(str(tmp_path / "ck"))
  saved = [n for n in tf.train.load_checkpoint(path).get_variable_to_shape_map() if "kernel" in n]
  assert len(saved) == 2 and len(stack.trainable_variables) == 4
  with pytest.raises(ValueError, match="duplicate sub-layer name"):
    layers.attach(stack, keras.layers.Dense(1, name="a"))
