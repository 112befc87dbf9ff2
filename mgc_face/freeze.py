"""Inference graphs: batch norms folded into convolutions, weights frozen as constants.

Keras 3 writes an inference batch norm as a multiply and an add after the
convolution (not TensorFlow's FusedBatchNorm), so Grappler cannot fuse it,
and every ResNet-50 layer made three extra passes over its activations.
`fold_batch_norms` returns a copy of a network in which each Conv2D that
feeds only a BatchNormalization carries the normalisation in its own
weights,

    kernel' = kernel * s,  bias' = (bias - mean) * s + beta,  s = gamma / sqrt(var + eps),

and the batch norm becomes an identity.  After `freeze` the graph is
Conv2D -> BiasAdd -> (Add) -> Relu, which Grappler's remapper fuses into
single oneDNN convolutions with post-ops.  Same outputs as the network in
inference mode up to float rounding (tests/test_mgc_freeze.py).
"""

import keras
import numpy as np
import tensorflow as tf


class FoldedBatchNorm(keras.layers.Layer):
  """Stands where a folded batch norm was: passes its input through (and, like
  the batch norm, accepts the mask argument Keras passes on)."""

  def call(self, inputs, mask=None):
    return inputs


def _foldable_pairs(model):
  """{conv layer id: bn layer} and {bn layer id: conv layer} over the model and
  every nested model: BatchNormalization layers whose only input is a Conv2D
  (with no activation) that has no other consumer."""
  conv_to_bn, bn_to_conv = {}, {}
  models = [model] + [layer for layer in model._flatten_layers(include_self=False)
                      if isinstance(layer, keras.Model)]
  consumers = {}
  for m in models:
    for layer in m.layers:
      for node in layer._inbound_nodes:
        for parent in node.parent_nodes:
          consumers.setdefault(id(parent.operation), set()).add(id(layer))
  for m in models:
    for layer in m.layers:
      if not isinstance(layer, keras.layers.BatchNormalization) or len(layer._inbound_nodes) != 1:
        continue
      parents = layer._inbound_nodes[0].parent_nodes
      if len(parents) != 1:
        continue
      conv = parents[0].operation
      if (isinstance(conv, keras.layers.Conv2D) and conv.get_config()["activation"] == "linear"
          and len(conv._inbound_nodes) == 1 and consumers.get(id(conv)) == {id(layer)}
          and layer.axis in (-1, 3)):
        conv_to_bn[id(conv)] = layer
        bn_to_conv[id(layer)] = conv
  return conv_to_bn, bn_to_conv


def _folded_weights(conv, bn):
  """(kernel, bias) of `conv` followed by `bn` in inference mode, as one conv."""
  weights = [w.numpy().astype(np.float64) for w in conv.weights]
  kernel = weights[0]
  bias = weights[1] if len(weights) > 1 else np.zeros(kernel.shape[-1])
  params = {w.path.split("/")[-1]: w.numpy().astype(np.float64) for w in bn.weights}
  channels = kernel.shape[-1]
  gamma = params.get("gamma", np.ones(channels))
  beta = params.get("beta", np.zeros(channels))
  scale = gamma / np.sqrt(params["moving_variance"] + bn.epsilon)
  return ((kernel * scale).astype(np.float32),
          ((bias - params["moving_mean"]) * scale + beta).astype(np.float32))


def fold_batch_norms(model):
  """A copy of `model` (Keras functional, nested models included) with each
  foldable Conv2D + BatchNormalization pair merged into one biased Conv2D.

  The copy has its own weights (a snapshot); layers that are not folded keep
  their values.  Inference only: the copy has no batch-norm statistics.
  A model without foldable pairs is returned as it is.
  """
  conv_to_bn, bn_to_conv = _foldable_pairs(model)
  if not conv_to_bn:
    return model
  originals = {}

  def clone(layer):
    if id(layer) in bn_to_conv:
      new = FoldedBatchNorm(name=layer.name)
    elif id(layer) in conv_to_bn:
      config = dict(layer.get_config(), use_bias=True)
      new = layer.__class__.from_config(config)
    else:
      new = layer.__class__.from_config(layer.get_config())
    originals[id(new)] = layer
    return new

  copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
  for new in copy._flatten_layers(include_self=False):
    old = originals.get(id(new))
    if old is None or isinstance(new, keras.Model) or not new.weights:
      continue
    if id(old) in conv_to_bn:
      new.set_weights(list(_folded_weights(old, conv_to_bn[id(old)])))
    else:
      new.set_weights(old.get_weights())
  return copy


def freeze(model, input_spec):
  """A concrete function of `model` in inference mode with its weights as
  constants (so Grappler can constant-fold and fuse), for inputs `input_spec`."""
  from tensorflow.python.framework.convert_to_constants import (
      convert_variables_to_constants_v2)
  concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(input_spec)
  return convert_variables_to_constants_v2(concrete)
