"""Graph layers on a CoMA mesh hierarchy: Chebyshev convolution, pool, unpool.

`ChebConv` is CoMA's / 3D-Face-GCNs' `chebyshev5`: with the rescaled
Laplacian L~ = L - I (lmax = 2, `shared.topology.Topology.rescaled_laplacians`)
it forms T_0 x = x, T_1 x = L~ x, T_k x = 2 L~ T_{k-1} x - T_{k-2} x, orders
the features fin * K + k and multiplies by W [Fin * K, Fout].  The bias (and
activation) that the original adds in `b1relu` are part of the layer here.

The recursion runs on one [V, B * Fin] matrix per term, so each term is a
single sparse-dense product whatever the batch size.

`GraphResample` applies a fixed sparse matrix to the vertex axis: the
down-sampling D [V_{l+1}, V_l] (pool) or the up-sampling U [V_l, V_{l+1}]
(unpool), as the original's `poolwT`.
"""

import keras
import numpy as np
import scipy.sparse as sp
import tensorflow as tf


def sparse_constant(matrix):
  """scipy sparse [N, M] -> ordered float32 `tf.SparseTensor`."""
  coo = sp.coo_matrix(matrix, dtype=np.float32)
  indices = np.stack([coo.row, coo.col], axis=1).astype(np.int64)
  tensor = tf.SparseTensor(indices, coo.data.astype(np.float32), coo.shape)
  return tf.sparse.reorder(tensor)


def _vertex_major(x):
  """[B, V, F] -> ([V, B * F], (B, F)) so a sparse matrix acts on vertices."""
  shape = tf.shape(x)
  columns = tf.reshape(tf.transpose(x, [1, 0, 2]), [shape[1], shape[0] * shape[2]])
  return columns, (shape[0], shape[2])


def chebyshev_features(x, laplacian, order):
  """The Chebyshev filter bank of `x`, ordered fin * K + k.

  Args:
    x: [B, V, Fin] float32.
    laplacian: [V, V] `tf.SparseTensor`, the rescaled Laplacian L - I.
    order: K >= 1.

  Returns:
    [B, V, Fin * K] with entry fin * K + k = (T_k(L~) x)[:, :, fin].
  """
  x0, (batch, fin) = _vertex_major(x)
  terms = [x0]
  if order > 1:
    terms.append(tf.sparse.sparse_dense_matmul(laplacian, x0))
  for _ in range(2, order):
    terms.append(2.0 * tf.sparse.sparse_dense_matmul(laplacian, terms[-1]) - terms[-2])
  num_vertices = tf.shape(x)[1]
  stacked = tf.reshape(tf.stack(terms), [order, num_vertices, batch, fin])  # [K, V, B, Fin]
  stacked = tf.transpose(stacked, [2, 1, 3, 0])                             # [B, V, Fin, K]
  return tf.reshape(stacked, [batch, num_vertices, fin * order])


def resample(x, matrix):
  """[B, N, F] -> [B, M, F] by a sparse [M, N] matrix on the vertex axis."""
  columns, (batch, channels) = _vertex_major(x)
  out = tf.sparse.sparse_dense_matmul(matrix, columns)
  out = tf.reshape(out, [tf.shape(out)[0], batch, channels])
  return tf.transpose(out, [1, 0, 2])


class ChebConv(keras.layers.Layer):
  """Chebyshev graph convolution: [B, V, Fin] -> [B, V, channels].

  y = act(chebyshev_features(x) @ W + b), W [Fin * K, channels].
  """

  def __init__(self, laplacian, channels, order, activation=None, use_bias=True, **kwargs):
    super().__init__(**kwargs)
    self.laplacian = laplacian
    self.channels = channels
    self.order = order
    self.activation = keras.activations.get(activation)
    self.use_bias = use_bias

  def build(self, input_shape):
    fin = int(input_shape[-1])
    self.kernel = self.add_weight(shape=(fin * self.order, self.channels), name="kernel",
                                  initializer="glorot_uniform")
    self.bias = (self.add_weight(shape=(self.channels,), name="bias", initializer="zeros")
                 if self.use_bias else None)

  def call(self, x):
    y = tf.einsum("bvi,io->bvo", chebyshev_features(x, self.laplacian, self.order),
                  self.kernel)
    if self.bias is not None:
      y = y + self.bias
    return self.activation(y)

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:-1]) + (self.channels,)


class GraphResample(keras.layers.Layer):
  """Pool (D) or unpool (U): [B, N, F] -> [B, M, F] with a fixed sparse [M, N]."""

  def __init__(self, matrix, **kwargs):
    super().__init__(**kwargs)
    self.matrix = matrix
    self.num_out = int(matrix.dense_shape[0])

  def call(self, x):
    out = resample(x, self.matrix)
    return tf.ensure_shape(out, [x.shape[0], self.num_out, x.shape[-1]])

  def compute_output_shape(self, input_shape):
    return (input_shape[0], self.num_out, input_shape[-1])


class ChebResBlock(keras.layers.Layer):
  """The resnet variant's block: ELU(cheb(ELU(cheb(x))) + shortcut(x)).

  The shortcut is the identity when widths match, else a K = 1 Chebyshev
  convolution (a per-vertex linear map), as in the original `cheb_res_block`.
  """

  def __init__(self, laplacian, channels, order, **kwargs):
    super().__init__(**kwargs)
    self.channels = channels
    self.conv1 = ChebConv(laplacian, channels, order, activation="elu", name="conv1")
    self.conv2 = ChebConv(laplacian, channels, order, name="conv2")
    self.laplacian = laplacian
    self.shortcut = None

  def build(self, input_shape):
    if int(input_shape[-1]) != self.channels:
      self.shortcut = ChebConv(self.laplacian, self.channels, 1, use_bias=False,
                               name="shortcut")

  def call(self, x):
    skip = x if self.shortcut is None else self.shortcut(x)
    return tf.nn.elu(self.conv2(self.conv1(x)) + skip)

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:-1]) + (self.channels,)
