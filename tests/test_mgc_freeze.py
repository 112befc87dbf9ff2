"""Batch-norm folding and frozen inference graphs: same outputs as the Keras network."""

import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mgc_face import freeze

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from mgc_speed import trained_like_batch_norms  # noqa: E402


def _batch_norms(network):
  return [layer for layer in network._flatten_layers(include_self=False)
          if isinstance(layer, keras.layers.BatchNormalization)]


def _residual_net():
  """Conv+BN pairs (with and without a conv bias), a residual add, a nested model,
  and one BN that must not fold (its conv also feeds another layer)."""
  inner_in = keras.Input((16, 16, 8))
  y = keras.layers.Conv2D(8, 3, padding="same", use_bias=True)(inner_in)
  y = keras.layers.BatchNormalization(epsilon=1e-3)(y)
  inner = keras.Model(inner_in, keras.layers.ReLU()(y), name="inner")
  x_in = keras.Input((16, 16, 3))
  x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(x_in)
  x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
  shared_conv = keras.layers.Conv2D(8, 1)(x)
  side = keras.layers.BatchNormalization()(shared_conv)
  x = keras.layers.Add()([inner(x), side, shared_conv])
  x = keras.layers.GlobalAveragePooling2D()(x)
  return keras.Model(x_in, [keras.layers.Dense(5)(x), x])


def _check_same_outputs(network, shape, atol):
  trained_like_batch_norms(network, np.random.default_rng(0))
  folded = freeze.fold_batch_norms(network)
  images = tf.constant(np.random.default_rng(1).uniform(size=shape).astype(np.float32))
  frozen = freeze.freeze(folded, tf.TensorSpec(shape, tf.float32))
  expected = network(images, training=False)
  for got, want in zip(frozen(images), expected):
    scale = float(np.abs(want.numpy()).max())
    assert scale > 0
    np.testing.assert_allclose(got.numpy() / scale, want.numpy() / scale, atol=atol)
  return folded


def test_folded_residual_net_matches_keras_inference():
  network = _residual_net()
  folded = _check_same_outputs(network, (2, 16, 16, 3), 1e-5)
  # Two of the three batch norms fold; the one after the shared conv stays.
  assert len(_batch_norms(network)) == 3 and len(_batch_norms(folded)) == 1
  # The original network is untouched (still has its batch norms and weights).
  assert all(layer.built for layer in _batch_norms(network))


def test_folded_resnet50_matches_keras_inference():
  network = keras.applications.ResNet50(include_top=False, weights=None, pooling="avg",
                                        input_shape=(64, 64, 3))
  outputs = keras.layers.Dense(7)(network.output)
  model = keras.Model(network.input, [outputs, network.output])
  folded = _check_same_outputs(model, (1, 64, 64, 3), 1e-4)
  assert not _batch_norms(folded)


def test_model_without_pairs_is_returned_unchanged():
  x_in = keras.Input((8, 8, 3))
  x = keras.layers.GroupNormalization(1)(keras.layers.Conv2D(4, 3)(x_in))
  model = keras.Model(x_in, x)
  assert freeze.fold_batch_norms(model) is model
