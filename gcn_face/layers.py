"""Graph layers on a CoMA mesh hierarchy: Chebyshev convolution, pool, unpool.

`ChebConv` is CoMA's / 3D-Face-GCNs' `chebyshev5`: with the rescaled
Laplacian L~ = L - I (lmax = 2, `shared.mesh.topology.Topology.rescaled_laplacians`)
it forms T_0 x = x, T_1 x = L~ x, T_k x = 2 L~ T_{k-1} x - T_{k-2} x, orders
the features fin * K + k and multiplies by W [Fin * K, Fout].  The bias (and
activation) that the original adds in `b1relu` are part of the layer here.

The recursion runs on one [V, B * Fin] matrix per term, so each term is a
single sparse-dense product whatever the batch size.  Products use
TensorFlow's CSR kernel (`SparseMatrixMatMul`), about 3x (forward+backward)
to 10x (forward) faster on CPU than `tf.sparse.sparse_dense_matmul` for the
ICT Laplacian (docs/gcn.md); if that module is missing from a TensorFlow
build, the COO product is used instead.

`GraphResample` applies a fixed sparse matrix to the vertex axis: the
down-sampling D [V_{l+1}, V_l] (pool) or the up-sampling U [V_l, V_{l+1}]
(unpool), as the original's `poolwT`.
"""

import keras
import numpy as np
import scipy.sparse as sp
import tensorflow as tf


try:  # The CSR kernels and their gradients (TensorFlow-internal module).
  from tensorflow.python.ops.linalg.sparse import sparse_csr_matrix_ops as _csr
except ImportError:  # pragma: no cover - depends on the TensorFlow build.
  _csr = None


class SparseMatrix:
  """A fixed sparse matrix [M, N] (float32 unless `dtype`) for products with dense [N, C].

  The gradient of a product is another product with the stored transpose
  (the matrix itself when symmetric, as the Laplacians are), so no sparse
  transpose and no gradient for the constant values are computed.

  Attributes:
    shape: (M, N).
    tensor: the ordered `tf.SparseTensor`.
  """

  def __init__(self, matrix, dtype=np.float32, _transpose=None):
    csr = sp.csr_matrix(matrix, dtype=dtype)
    coo = csr.tocoo()
    indices = np.stack([coo.row, coo.col], axis=1).astype(np.int64)
    self.shape = tuple(int(n) for n in coo.shape)
    self.tensor = tf.sparse.reorder(tf.SparseTensor(indices, coo.data, coo.shape))
    self._csr = _csr.CSRSparseMatrix(self.tensor) if _csr is not None else None
    if _transpose is not None:
      self.transpose = _transpose
    elif self.shape[0] == self.shape[1] and abs(csr - csr.T).max() == 0:
      self.transpose = self
    else:
      self.transpose = SparseMatrix(csr.T, dtype, _transpose=self)

  def _product(self, dense):
    if self._csr is not None:
      return _csr.matmul(self._csr, dense)
    return tf.sparse.sparse_dense_matmul(self.tensor, dense)

  def matmul(self, dense):
    """[N, C] -> [M, C]."""

    @tf.custom_gradient
    def product(x):
      return self._product(x), self.transpose._product

    return tf.ensure_shape(product(dense), [self.shape[0], dense.shape[1]])

  def toarray(self):
    return tf.sparse.to_dense(self.tensor).numpy()


def sparse_constant(matrix, dtype=np.float32):
  """scipy sparse (or dense numpy) [M, N] -> `SparseMatrix`."""
  return SparseMatrix(matrix, dtype)


def _vertex_major(x):
  """[B, V, F] -> ([V, B * F], (B, F)) so a sparse matrix acts on vertices."""
  shape = tf.shape(x)
  columns = tf.reshape(tf.transpose(x, [1, 0, 2]), [shape[1], shape[0] * shape[2]])
  return columns, (shape[0], shape[2])


def chebyshev_terms(x, laplacian, order):
  """T_k(L~) x for k < K, each vertex-major [V, B, Fin].

  Args:
    x: [B, V, Fin] float32.
    laplacian: [V, V] `SparseMatrix`, the rescaled Laplacian L - I.
    order: K >= 1.
  """
  x0, (batch, fin) = _vertex_major(x)
  terms = [x0]
  if order > 1:
    terms.append(laplacian.matmul(x0))
  for _ in range(2, order):
    terms.append(2.0 * laplacian.matmul(terms[-1]) - terms[-2])
  shape = [tf.shape(x)[1], batch, fin]
  return [tf.reshape(t, shape) for t in terms]


def chebyshev_features(x, laplacian, order):
  """The Chebyshev filter bank of `x`, ordered fin * K + k.

  Args:
    x: [B, V, Fin] float32.
    laplacian: [V, V] `SparseMatrix`, the rescaled Laplacian L - I.
    order: K >= 1.

  Returns:
    [B, V, Fin * K] with entry fin * K + k = (T_k(L~) x)[:, :, fin].
  """
  stacked = tf.stack(chebyshev_terms(x, laplacian, order), axis=-1)  # [V, B, Fin, K]
  stacked = tf.transpose(stacked, [1, 0, 2, 3])
  shape = tf.shape(x)
  return tf.reshape(stacked, [shape[0], shape[1], shape[2] * order])


def resample(x, matrix):
  """[B, N, F] -> [B, M, F] by a `SparseMatrix` [M, N] on the vertex axis."""
  columns, (batch, channels) = _vertex_major(x)
  out = matrix.matmul(columns)
  out = tf.reshape(out, [tf.shape(out)[0], batch, channels])
  return tf.transpose(out, [1, 0, 2])


def attach(owner, *sublayers):
  """Makes each sub-layer an attribute of `owner`, named after the layer.

  TensorFlow checkpoints follow attributes but not the lists in which Keras
  tracks layers, so a layer kept only in a list would silently be left out
  of `tf.train.Checkpoint`.  Names must be unique within `owner`.

  Returns:
    the sub-layers, as a list (for iteration).
  """
  for layer in sublayers:
    if hasattr(owner, layer.name):
      raise ValueError(f"{owner.name}: duplicate sub-layer name {layer.name!r}")
    setattr(owner, layer.name, layer)
  return list(sublayers)


class ChebConv(keras.layers.Layer):
  """Chebyshev graph convolution: [B, V, Fin] -> [B, V, channels].

  y = act(chebyshev_features(x) @ W + b), W [Fin * K, channels] (rows fin * K + k).
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
    # sum_k (T_k x) W_k with W_k = W[k::K]: the fin * K + k ordering without
    # materialising the [B, V, Fin * K] bank.
    fin = x.shape[-1]
    kernel = tf.reshape(self.kernel, [fin, self.order, self.channels])
    terms = chebyshev_terms(x, self.laplacian, self.order)
    y = tf.add_n([tf.einsum("vbi,io->vbo", t, kernel[:, k]) for k, t in enumerate(terms)])
    y = tf.transpose(y, [1, 0, 2])
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
    self.num_out = matrix.shape[0]

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
