"""The GCN texture model: per-vertex inputs, decoder, refiner, combine, critic.

Data flow for a batch of aligned crops (see `refine_inputs` and `TextureGCN`):

    image feature [B, F] ----------------------> decoder  -> [B, V, 3]
    coarse albedo, projected colours, visibility
                       [B, V, 7] --------------> refiner  -> [B, V, 3]
    concat [B, V, 6] -> Chebyshev conv (3) -> tanh -> refined albedo

The original works in [-1, 1] (tanh output, images x / 127.5 - 1).  Our
albedo and images live in [0, 1]: the refiner inputs are mapped to [-1, 1]
with 2x - 1 and the tanh output back with (t + 1) / 2, so the network sees
the original's ranges.

`normal` (the original code's default) is a U-Net-like refiner with skip
connections and ELU; `resnet` (the paper's text) uses residual blocks.
"""

import keras
import numpy as np
import tensorflow as tf

from shared.model import camera as camera_lib
from shared.model import lighting
from shared.render.image_sampling import erode, sample_bilinear, sample_nearest
from shared.errors import InputError
from gcn_face import layers

NUM_RGB = 3
REFINER_INPUT_CHANNELS = 7   # coarse albedo (3), projected colour x visibility (3), visibility.
DELIT_CHANNELS = 3           # Optional: the projected colour divided by the coarse shading.
MIN_IRRADIANCE = 0.05        # Below this the de-lit colour is not trusted (vis set to 0 there).


def refiner_input_channels(config):
  """Channels of the refiner's per-vertex input: 7, or 10 with `config.delit_input`."""
  return REFINER_INPUT_CHANNELS + (DELIT_CHANNELS if config.delit_input else 0)


def to_signed(x):
  """[0, 1] -> [-1, 1]."""
  return 2.0 * x - 1.0


def from_signed(x):
  """[-1, 1] -> [0, 1]."""
  return 0.5 * (x + 1.0)


# ---------------------------------------------------------------------------
# Per-vertex inputs.


def vertex_visibility(synth, points, render, alpha, camera, config):
  """Which vertices see the image: [B, V, 1] in [0, 1].

  visibility = front-facing (normal towards the camera centre)
             x eroded skin alpha sampled at the projected vertex
             x unoccluded (vertex depth within `depth_tolerance` of the
               rendered depth at its pixel, which must be covered).

  Args:
    synth: coarse `Synthesis` (posed [B, V, 3], normals [B, V, 3]).
    points: [B, V, 2] the projected vertices (pixels).
    render: its `RenderOutput` (mask, depth [B, H, W, 1]).
    alpha: [B, H, W, 1] skin / face alpha of the input.
    camera: `shared.model.camera.Camera`.
    config: `GCNConfig`.
  """
  facing = camera_lib.facing_cosine(synth.posed, synth.normals, camera)[..., None] > 0.0
  skin, _ = sample_bilinear(erode(alpha, config.erosion_radius), points)
  covered, inside = sample_nearest(tf.concat([render.mask, render.depth], -1), points)
  depth = camera_lib.depth(synth.posed, camera)[..., None]
  unoccluded = ((covered[..., :1] > 0.0) & inside[..., None] &
                (depth <= covered[..., 1:] + config.depth_tolerance))
  return tf.cast(facing & unoccluded, tf.float32) * skin


def sample_vertices(image, alpha, synth, render, camera, config):
  """Image colours at the projected vertices [B, V, 3] and their visibility [B, V, 1]."""
  points = camera_lib.project(synth.posed, camera)
  colours, _ = sample_bilinear(image, points)
  vis = vertex_visibility(synth, points, render, alpha, camera, config)
  return tf.stop_gradient(colours), tf.stop_gradient(vis)


def refine_inputs(image, alpha, synth, render, camera, config, sh=None, sampled=None):
  """The refiner's per-vertex input and the projected colours.

  Args:
    image: [B, H, W, 3] input in [0, 1].
    alpha: [B, H, W, 1].
    synth, render: the coarse `Synthesis` and its `RenderOutput`.
    camera, config: `Camera`, `GCNConfig`.
    sh: [B, 27] the coarse SH lighting; needed with `config.delit_input`.
    sampled: `sample_vertices(...)` of the same arguments if already computed.

  Returns:
    (inputs [B, V, C] = [2 T_pca - 1, (2 c - 1) vis, vis] and, with
     `config.delit_input`, (2 d - 1) vis with d = clip(c / irradiance, 0, 1),
     the image colour divided by the coarse shading: a direct estimate of the
     albedo where the vertex is seen (C = `refiner_input_channels(config)`),
     projected colours c [B, V, 3] in [0, 1], visibility [B, V, 1]).
  """
  if sampled is None:
    sampled = sample_vertices(image, alpha, synth, render, camera, config)
  colours, vis = sampled
  parts = [to_signed(synth.albedo), to_signed(colours) * vis, vis]
  if config.delit_input:
    irradiance = lighting.irradiance(synth.normals, sh)
    lit_enough = tf.cast(tf.reduce_min(irradiance, -1, keepdims=True) > MIN_IRRADIANCE,
                         tf.float32)
    delit = tf.clip_by_value(colours / tf.maximum(irradiance, MIN_IRRADIANCE), 0.0, 1.0)
    parts.append(to_signed(delit) * vis * lit_enough)
  inputs = tf.concat(parts, axis=-1)
  return tf.stop_gradient(inputs), tf.stop_gradient(colours), tf.stop_gradient(vis)


def refit_lighting(albedo, normals, colours, weights, ridge, prior=None):
  """SH lighting fitted by least squares to the image with the albedo held.

  Per image and colour channel c, the 9 coefficients g minimise
  sum_v w_v (a_vc (Y_v . g) - col_vc)^2 + ridge |g - g_0|^2, Y the SH basis
  of the normals and g_0 the prior (`prior` plus the ambient offset; the
  zero lighting by default): the lighting that best explains the image under
  this albedo, so that shading the coarse lighting misses is not left for
  the albedo to absorb.

  Args:
    albedo, normals, colours: [B, V, 3] (colours: image colours at the vertices).
    weights: [B, V, 1] visibility in [0, 1].
    ridge: Tikhonov weight.
    prior: optional [B, 27] SH coefficients the ridge pulls towards (e.g. the
      regressor's lighting); None: zero.

  Returns:
    [B, 27] SH coefficients (colour-major, as `Coefficients.lighting`).
  """
  basis = lighting.sh_basis(normals)                                    # [B, V, 9]
  ambient = tf.constant([lighting.AMBIENT_DC] + [0.0] * (lighting.NUM_BANDS - 1))
  weighted = weights * albedo                                           # [B, V, 3]
  gram = tf.einsum("bvc,bvk,bvl->bckl", weighted * albedo, basis, basis)
  rhs = tf.einsum("bvc,bvk->bck", weighted * colours, basis)[..., None]
  eye = tf.eye(lighting.NUM_BANDS, batch_shape=[1, 1])
  centre = ambient[None, None, :]
  if prior is not None:
    centre = centre + tf.reshape(tf.cast(prior, centre.dtype),
                                 [-1, lighting.NUM_CHANNELS, lighting.NUM_BANDS])
  gamma = tf.linalg.solve(gram + ridge * eye, rhs + ridge * centre[..., None])
  sh = gamma[..., 0] - ambient                                          # [B, 3, 9]
  return tf.stop_gradient(tf.reshape(sh, [-1, lighting.NUM_CHANNELS * lighting.NUM_BANDS]))


# ---------------------------------------------------------------------------
# Generator.


class _Operators:
  """The hierarchy's sparse operators as TensorFlow constants."""

  def __init__(self, topology):
    self.laplacians = [layers.sparse_constant(l) for l in topology.rescaled_laplacians()]
    self.down = [layers.sparse_constant(d) for d in topology.D]
    self.up = [layers.sparse_constant(u) for u in topology.U]
    self.num_vertices = list(topology.num_vertices)
    self.num_steps = len(topology.D)


def _check_widths(name, widths, count):
  if len(widths) != count:
    raise InputError(f"config {name} has {len(widths)} entries but the hierarchy has {count} "
                     "steps; use a sampling file with matching factors")


class _UpsamplingDecoder(keras.layers.Layer):
  """Image feature [B, F] -> [B, V_0, C]: fc to the coarsest level, then S x (unpool, block).

  Subclasses give `_block(level, index, config)`, the layer applied after
  unpooling to `level` (index counts from the coarsest step).
  """

  def __init__(self, ops, config, widths_name, **kwargs):
    super().__init__(**kwargs)
    _check_widths(widths_name, getattr(config, widths_name), ops.num_steps)
    self.coarse_shape = (ops.num_vertices[-1], config.decoder_fc_channels)
    self.fc = keras.layers.Dense(int(np.prod(self.coarse_shape)), activation="relu", name="fc")
    self.steps = []
    for i, level in enumerate(reversed(range(ops.num_steps))):
      self.steps.append(layers.attach(
          self, layers.GraphResample(ops.up[level], name=f"unpool{level}"),
          self._block(ops, level, i, config)))

  def _block(self, ops, level, index, config):
    raise NotImplementedError

  def call(self, features):
    x = tf.reshape(self.fc(features), (-1,) + self.coarse_shape)
    for unpool, block in self.steps:
      x = block(unpool(x))
    return x


class NormalDecoder(_UpsamplingDecoder):
  """Image feature [B, F] -> [B, V_0, 3]: fc, S x (unpool, cheb, ELU), cheb 3 + ELU."""

  def __init__(self, ops, config, **kwargs):
    super().__init__(ops, config, "decoder_channels", **kwargs)
    self.out = layers.ChebConv(ops.laplacians[0], NUM_RGB, config.cheb_order, "elu", name="out")

  def _block(self, ops, level, index, config):
    return layers.ChebConv(ops.laplacians[level], config.decoder_channels[index],
                           config.cheb_order, "elu", name=f"cheb{level}")

  def call(self, features):
    return self.out(super().call(features))


class ResNetDecoder(_UpsamplingDecoder):
  """Image feature [B, F] -> [B, V_0, 3]: fc, S x (unpool, residual block)."""

  def __init__(self, ops, config, **kwargs):
    if config.resnet_decoder_channels[-1] != NUM_RGB:
      raise InputError("config resnet_decoder_channels must end with 3 (albedo)")
    super().__init__(ops, config, "resnet_decoder_channels", **kwargs)

  def _block(self, ops, level, index, config):
    return layers.ChebResBlock(ops.laplacians[level], config.resnet_decoder_channels[index],
                               config.cheb_order, name=f"block{level}")


class NormalRefiner(keras.layers.Layer):
  """U-Net-like refiner [B, V_0, 7] -> [B, V_0, 3] (the original's default).

  cheb (no activation); S x (pool, cheb, ELU); fc bottleneck; S x (unpool,
  optional skip concatenation, cheb, ELU); cheb 3 + ELU.
  """

  def __init__(self, ops, config, **kwargs):
    super().__init__(**kwargs)
    s = ops.num_steps
    widths = config.refiner_channels
    _check_widths("refiner_channels", widths, s)
    order = config.cheb_order
    self.skip_levels = tuple(config.refiner_skip_levels)
    self.first = layers.ChebConv(ops.laplacians[0], config.refiner_input_channels, order,
                                 name="in")
    self.down = [layers.attach(self, layers.GraphResample(ops.down[l], name=f"pool{l}"),
                               layers.ChebConv(ops.laplacians[l + 1], widths[l], order, "elu",
                                               name=f"enc{l + 1}")) for l in range(s)]
    self.coarse_shape = (ops.num_vertices[-1], widths[-1])
    self.fc_in = keras.layers.Dense(config.refiner_bottleneck, name="fc_in")
    self.fc_out = keras.layers.Dense(int(np.prod(self.coarse_shape)), activation="relu",
                                     name="fc_out")
    self.up = [(l, *layers.attach(self, layers.GraphResample(ops.up[l], name=f"unpool{l}"),
                                  layers.ChebConv(ops.laplacians[l], widths[l], order, "elu",
                                                  name=f"dec{l}")))
               for l in reversed(range(s))]
    self.out = layers.ChebConv(ops.laplacians[0], NUM_RGB, order, "elu", name="out")

  def call(self, x):
    x = self.first(x)
    encoded = {0: x}
    for l, (pool, conv) in enumerate(self.down):
      x = conv(pool(x))
      encoded[l + 1] = x
    flat = tf.reshape(x, [-1, int(np.prod(self.coarse_shape))])
    x = tf.reshape(self.fc_out(self.fc_in(flat)), (-1,) + self.coarse_shape)
    for level, unpool, conv in self.up:
      x = unpool(x)
      if level in self.skip_levels:
        x = tf.concat([x, encoded[level]], axis=-1)
      x = conv(x)
    return self.out(x)


class ResNetRefiner(keras.layers.Layer):
  """The paper's refiner [B, V_0, 7] -> [B, V_0, 3]: one pool, one unpool.

  block(w0) at level 0 -> pool -> 2 x block(w1) at level 1 -> unpool ->
  block(w0) -> block(3), all residual Chebyshev blocks.
  """

  def __init__(self, ops, config, **kwargs):
    super().__init__(**kwargs)
    w0, w1 = config.resnet_refiner_channels
    lap0, lap1, order = ops.laplacians[0], ops.laplacians[1], config.cheb_order
    self.stack = layers.attach(
        self,
        layers.ChebResBlock(lap0, w0, order, name="block0_in"),
        layers.GraphResample(ops.down[0], name="pool0"),
        layers.ChebResBlock(lap1, w1, order, name="block1_a"),
        layers.ChebResBlock(lap1, w1, order, name="block1_b"),
        layers.GraphResample(ops.up[0], name="unpool0"),
        layers.ChebResBlock(lap0, w0, order, name="block0_out"),
        layers.ChebResBlock(lap0, NUM_RGB, order, name="block0_rgb"))

  def call(self, x):
    for layer in self.stack:
      x = layer(x)
    return x


class TextureGCN(keras.layers.Layer):
  """Decoder + refiner + combine: the refined albedo [B, V, 3] in [0, 1].

  Args:
    topology: `shared.mesh.topology.Topology` of the face model.
    config: `GCNConfig` (arch "normal" or "resnet").
  """

  def __init__(self, topology, config, **kwargs):
    super().__init__(**kwargs)
    ops = _Operators(topology)
    if config.arch == "normal":
      self.decoder = NormalDecoder(ops, config, name="decoder")
      self.refiner = NormalRefiner(ops, config, name="refiner")
    elif config.arch == "resnet":
      self.decoder = ResNetDecoder(ops, config, name="decoder")
      self.refiner = ResNetRefiner(ops, config, name="refiner")
    else:
      raise InputError(f"unknown GCN architecture {config.arch!r}; use normal or resnet")
    self.combine = layers.ChebConv(ops.laplacians[0], NUM_RGB, config.cheb_order,
                                   name="combine")
    self.combine_inputs = config.combine_inputs

  def call(self, features, vertex_inputs):
    """features [B, F], vertex_inputs [B, V, C] -> albedo [B, V, 3] in [0, 1].

    With `combine_inputs` the combine convolution also sees the per-vertex
    inputs themselves: a direct, full-resolution path for detail.
    """
    parts = [self.decoder(features), self.refiner(vertex_inputs)]
    if self.combine_inputs:
      parts.append(vertex_inputs)
    return from_signed(tf.tanh(self.combine(tf.concat(parts, axis=-1))))

  def fc_kernels(self):
    """The fully connected weights (L2-regularised as in the original)."""
    return [v for v in self.trainable_variables if "fc" in v.path and "kernel" in v.path]


# ---------------------------------------------------------------------------
# Critic (--gan).


class Discriminator(keras.layers.Layer):
  """WGAN critic on [B, S, S, 3] images in [0, 1] -> [B] scores.

  As the original: a 1x1 conv, then 3x3 convs, a 2x max pooling after each
  conv but the last, then one VALID conv covering the remaining map (7x7
  at 224 px).  The original's
  batch normalisation is replaced by layer normalisation: the gradient
  penalty is per sample, which batch statistics would couple.
  """

  def __init__(self, config, **kwargs):
    super().__init__(**kwargs)
    channels = config.disc_channels
    leak = config.disc_leak
    body = [keras.layers.Conv2D(channels[0], 1, name="conv_in"),
            keras.layers.LeakyReLU(leak, name="act_in"),
            keras.layers.MaxPooling2D(2, name="pool_in")]
    for i, width in enumerate(channels[1:]):
      body += [keras.layers.Conv2D(width, 3, padding="same", name=f"conv{i}"),
               keras.layers.LayerNormalization(axis=(1, 2, 3), name=f"norm{i}"),
               keras.layers.LeakyReLU(leak, name=f"act{i}")]
      if i < len(channels) - 2:
        body.append(keras.layers.MaxPooling2D(2, name=f"pool{i}"))
    # A 2x pooling after each conv but the last: 224 -> 7 with the paper's six widths.
    final = config.image_size // 2 ** (len(channels) - 1)
    body.append(keras.layers.Conv2D(1, final, padding="valid", name="conv_out"))
    self.body = layers.attach(self, *body)

  def call(self, images):
    x = to_signed(images)
    for layer in self.body:
      x = layer(x)
    return tf.reduce_mean(x, axis=[1, 2, 3])


# ---------------------------------------------------------------------------
# Optional user-supplied face embedding (FaceNet-like).


