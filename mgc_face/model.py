"""The MGC regressor: backbones, the coefficient head and the landmark head.

Network: image [B, 224, 224, 3] RGB in [0, 1] (no mean subtraction, as
MGCNet) -> optional resize to `config.input_size` -> backbone -> pooled
features [B, D] -> dense head -> coefficient vector [B, layout.size] in
MGCNet's order (identity | albedo | expression | pose 6 | SH 27).  The head is
zero-initialised, so an untrained regressor predicts the mean face at the
default pose under ambient light (like Deep3D's zero-initialised heads).

Backbones: "resnet50" (keras.applications ResNet-50, random init unless a
weights file is given: nothing is downloaded) and "small" (one stride-2
conv-GroupNorm-ReLU block per entry of `config.small_channels`, then global
average pooling), the CPU preset for CI and the demo.

The training objective (`Batch`, `Objective`) is `mgc_face.objective`.
"""

import keras
import tensorflow as tf

from shared.model.coeffs import CoeffLayout
from shared.render import image_sampling
from shared.errors import InputError

IMAGE_SIZE = 224
NUM_LANDMARKS = 68
CONV_KERNEL = 3
LANDMARK_HIDDEN = "landmark_hidden"   # Name of the landmark -> coefficient MLP layer.
HEATMAP_REDUCE = "heatmap_reduce"     # Name of the 1x1 conv before the heatmap conv (if any).


# ----------------------------------------------------------------------------- network

def small_encoder(config, inputs):
  """Conv-GroupNorm-ReLU blocks, each halving the resolution: the list of block outputs."""
  x = inputs
  maps = []
  for channels in config.small_channels:
    x = keras.layers.Conv2D(channels, CONV_KERNEL, strides=2, padding="same", use_bias=False)(x)
    x = keras.layers.ReLU()(normalisation(config, channels)(x))
    x = keras.layers.Conv2D(channels, CONV_KERNEL, padding="same", use_bias=False)(x)
    x = keras.layers.ReLU()(normalisation(config, channels)(x))
    maps.append(x)
  return maps


def normalisation(config, channels):
  """The small net's normalisation layer: GroupNorm (default) or BatchNorm."""
  if config.small_norm == "batch":
    return keras.layers.BatchNormalization()
  if config.small_norm != "group":
    raise InputError(f"unknown small_norm '{config.small_norm}'; choose group or batch")
  return keras.layers.GroupNormalization(min(config.small_groups, channels))


def small_backbone(config, inputs, maps=None):
  """The small encoder, then a dense embedding of its last map (plus a colour skip).

  The final feature map is small (4x4 at 112 px); it is flattened and
  projected by a dense layer rather than averaged, which keeps the spatial
  layout that pose and landmark regression need (measured: about 1.5x lower
  held-out landmark error than global pooling after 300 steps).  GroupNorm
  normalises every image's activations, which removes its overall brightness
  and colour, exactly what the lighting and albedo outputs need; so a coarse
  average-pooled copy of the input (7x7x3 at 112 px) is appended to the
  feature vector, where the linear head reads it directly (through the
  shared dense layer its information was lost to the landmark gradients).
  `maps`: the encoder's block outputs when already built.
  """
  maps = small_encoder(config, inputs) if maps is None else maps
  x = keras.layers.Flatten()(maps[-1])
  x = keras.layers.Dense(config.small_features, activation="relu")(x)
  if not config.small_colour_pool:
    return keras.layers.Identity(name="features")(x)
  colour = inputs[..., :3] if config.coord_channels else inputs
  colour = keras.layers.Flatten()(keras.layers.AveragePooling2D(config.small_colour_pool)(colour))
  return keras.layers.Concatenate(name="features")([x, colour])


class CoordChannels(keras.layers.Layer):
  """[B, H, W, C] -> [B, H, W, C + 2]: appends x and y in [-1, 1] (CoordConv)."""

  def call(self, inputs):
    shape = tf.shape(inputs)
    ys = tf.linspace(-1.0, 1.0, shape[1])
    xs = tf.linspace(-1.0, 1.0, shape[2])
    grid = tf.stack(tf.meshgrid(xs, ys), -1)[None]
    grid = tf.tile(tf.cast(grid, inputs.dtype), [shape[0], 1, 1, 1])
    return tf.concat([inputs, grid], -1)


def soft_argmax(logits, image_size=IMAGE_SIZE):
  """Spatial soft-argmax: expected cell centre of each channel's softmax.

  Args:
    logits: [B, H, W, K] heatmap logits on a grid covering the image.
    image_size: side of the image the grid covers (pixels).

  Returns:
    [B, K, 2] (x, y) in that image's continuous pixels (pixel centres at
    +0.5), so cell (i, j) has centre ((j + 0.5) s, (i + 0.5) s), s = size / W.
  """
  shape = tf.shape(logits)
  height, width, count = shape[1], shape[2], shape[3]
  flat = tf.reshape(tf.transpose(logits, [0, 3, 1, 2]), [shape[0], count, height * width])
  probs = tf.reshape(tf.nn.softmax(flat, -1), [shape[0], count, height, width])
  cell_x = tf.cast(image_size, logits.dtype) / tf.cast(width, logits.dtype)
  cell_y = tf.cast(image_size, logits.dtype) / tf.cast(height, logits.dtype)
  xs = (tf.cast(tf.range(width), logits.dtype) + 0.5) * cell_x
  ys = (tf.cast(tf.range(height), logits.dtype) + 0.5) * cell_y
  x = tf.einsum("bkhw,w->bk", probs, xs)
  y = tf.einsum("bkhw,h->bk", probs, ys)
  return tf.stack([x, y], -1)


class SoftArgmax(keras.layers.Layer):
  """Keras wrapper of `soft_argmax` (landmarks in the 224-px input's pixels)."""

  def __init__(self, image_size=IMAGE_SIZE, **kwargs):
    super().__init__(**kwargs)
    self.image_size = image_size

  def call(self, logits):
    return soft_argmax(logits, self.image_size)

  def get_config(self):
    return {**super().get_config(), "image_size": self.image_size}


def normalise_landmarks(points, image_size=IMAGE_SIZE):
  """[B, K, 2] pixels -> [B, 2K + 3]: shape (centred, unit RMS radius) | centre | log size.

  Position (centre / size - 0.5) and size (log of the RMS radius over the
  image size) are separated from the shape, so the coefficient head sees
  the face's shape in the same units at every distance and position.
  """
  centre = tf.reduce_mean(points, axis=1, keepdims=True)
  centred = points - centre
  radius = tf.sqrt(tf.reduce_mean(tf.reduce_sum(tf.square(centred), -1), -1) + 1e-6)
  shape = tf.reshape(centred / radius[:, None, None], [-1, points.shape[1] * 2])
  size = float(image_size)
  return tf.concat([shape, centre[:, 0] / size - 0.5, tf.math.log(radius / size)[:, None]], -1)


class LandmarkFeatures(keras.layers.Layer):
  """Keras wrapper of `normalise_landmarks` (no gradient into the heatmaps).

  The landmark head is trained by its own landmark loss; the objective's
  gradients reach the backbone through the pooled features only.
  """

  def call(self, points):
    return normalise_landmarks(tf.stop_gradient(points))


def landmark_head(config, maps):
  """Heatmaps at block `config.heatmap_block` (deeper maps upsampled and added) -> [B, 68, 2]."""
  level = config.heatmap_block
  size = maps[level].shape[1]
  x = maps[level]
  for deeper in maps[level + 1:]:
    up = keras.layers.Resizing(size, size, interpolation="bilinear")(deeper)
    x = keras.layers.Concatenate()([x, up])
  if config.heatmap_reduce:   # 1x1 conv first: the 3x3 conv reads fewer channels.
    x = keras.layers.Conv2D(config.heatmap_reduce, 1, use_bias=False, name=HEATMAP_REDUCE)(x)
    x = keras.layers.ReLU()(normalisation(config, config.heatmap_reduce)(x))
  x = keras.layers.Conv2D(config.heatmap_channels, CONV_KERNEL, padding="same", use_bias=False)(x)
  x = keras.layers.ReLU()(normalisation(config, config.heatmap_channels)(x))
  logits = keras.layers.Conv2D(NUM_LANDMARKS, 1, name="heatmaps")(x)
  if not config.refine_blocks:
    return SoftArgmax(IMAGE_SIZE, name="landmarks")(logits), logits
  coarse = SoftArgmax(IMAGE_SIZE)(logits)
  channels = sum(int(maps[k].shape[-1]) for k in config.refine_blocks)
  refine = LandmarkRefinement(config.refine_patch, config.refine_spacing, config.refine_hidden,
                              channels, name="refinement")
  return keras.layers.Identity(name="landmarks")(
      refine(coarse, [maps[k] for k in config.refine_blocks])), logits


def bilinear_sample(feature_map, points, image_size=IMAGE_SIZE):
  """Features at continuous pixel positions: [B, h, w, C], [B, N, 2] -> [B, N, C].

  The map's cell (i, j) has its centre at ((j + 0.5) s, (i + 0.5) s) pixels,
  s = image_size / w (as `soft_argmax`); positions outside are clamped to
  the border cells (`shared.render.image_sampling.sample_bilinear` in cell
  units), non-finite ones read cell (0, 0).
  """
  cell = tf.cast(image_size, points.dtype) / tf.cast(tf.shape(feature_map)[2], points.dtype)
  cells = points / cell
  # A non-finite point samples cell 0 (a valid index; its NaN still reaches the loss through
  # the caller's points, so the trainer's guard skips the step instead of a gather failing).
  cells = tf.where(tf.math.is_finite(cells), cells, tf.fill(tf.shape(cells),
                                                            image_sampling.PIXEL_CENTER))
  return image_sampling.sample_bilinear(feature_map, cells)[0]


class LandmarkRefinement(keras.layers.Layer):
  """Local refinement of the soft-argmax points from fine feature maps.

  For each landmark, the maps of `config.refine_blocks` are sampled
  bilinearly on a `refine_patch` x `refine_patch` grid of spacing
  `refine_spacing` pixels (224-px input) around its coarse point; a small
  MLP shared by all landmarks (with a learned per-landmark embedding added to
  its first layer) predicts an offset in pixels, zero at the start (last
  layer zero-initialised), added to the coarse point.  The landmark loss on
  the refined points also reaches the heatmaps through the coarse points (as
  it did without refinement).
  """

  def __init__(self, patch, spacing, hidden, channels, **kwargs):
    super().__init__(**kwargs)
    self.patch, self.spacing, self.hidden, self.channels = patch, spacing, hidden, channels
    steps = [(k - (patch - 1) / 2.0) * spacing for k in range(patch)]
    self.offsets = [[x, y] for y in steps for x in steps]            # [P*P, 2], row-major
    inputs = patch * patch * channels
    self.kernel = self.add_weight(shape=(inputs, hidden), initializer="glorot_uniform",
                                  name="kernel")
    self.embedding = self.add_weight(shape=(NUM_LANDMARKS, hidden), initializer="zeros",
                                     name="landmark_embedding")
    self.out_kernel = self.add_weight(shape=(hidden, 2), initializer="zeros", name="out_kernel")
    self.out_bias = self.add_weight(shape=(NUM_LANDMARKS, 2), initializer="zeros", name="out_bias")

  def call(self, points, maps):
    batch = tf.shape(points)[0]
    offsets = tf.constant(self.offsets, points.dtype)
    taps = tf.reshape(points[:, :, None, :] + offsets, [batch, -1, 2])   # [B, 68 P*P, 2]
    x = tf.concat([bilinear_sample(m, taps) for m in maps], -1)        # [B, 68 P*P, C]
    x = tf.reshape(x, [batch, NUM_LANDMARKS, -1])                      # [B, 68, P*P*C]
    hidden = tf.nn.relu(tf.einsum("bki,ih->bkh", x, self.kernel) + self.embedding)
    offset = tf.einsum("bkh,ho->bko", hidden, self.out_kernel) + self.out_bias
    return points + offset * self.spacing

  def get_config(self):
    return {**super().get_config(), "patch": self.patch, "spacing": self.spacing,
            "hidden": self.hidden, "channels": self.channels}


def heatmap_cross_entropy(logits, points, sigma, image_size=IMAGE_SIZE):
  """Cross-entropy of the heatmaps' softmax against Gaussians at `points`.

  Args:
    logits: [B, H, W, K] heatmap logits on a grid covering the image.
    points: [B, K, 2] target (x, y) in the image's pixels.
    sigma: Gaussian std in grid cells.
    image_size: side of the image (pixels).

  Returns:
    [B] mean over the K landmarks of -sum_cells target * log softmax(logits)
    (nats).  Unlike the soft-argmax distance it pulls probability towards the
    target everywhere on the grid, which trains a fresh head much faster.
  """
  shape = tf.shape(logits)
  height, width = shape[1], shape[2]
  cell = tf.cast(image_size, logits.dtype) / tf.cast(width, logits.dtype)
  xs = (tf.cast(tf.range(width), logits.dtype) + 0.5) * cell
  ys = (tf.cast(tf.range(height), logits.dtype) + 0.5) * cell
  scale = 2.0 * tf.square(sigma * cell)
  dx = tf.square(xs[None, None, :] - points[..., 0:1]) / scale          # [B, K, W]
  dy = tf.square(ys[None, None, :] - points[..., 1:2]) / scale          # [B, K, H]
  log_target = -(dy[..., :, None] + dx[..., None, :])                   # [B, K, H, W]
  flat = lambda x: tf.reshape(x, [shape[0], shape[3], height * width])  # noqa: E731
  target = tf.nn.softmax(flat(log_target), -1)
  log_probs = tf.nn.log_softmax(flat(tf.transpose(logits, [0, 3, 1, 2])), -1)
  return tf.reduce_mean(-tf.reduce_sum(target * log_probs, -1), -1)


def resnet50_backbone(config, inputs, weights=None):
  """keras.applications ResNet-50 without top, average-pooled (2048 features)."""
  net = keras.applications.ResNet50(include_top=False, weights=None, pooling="avg",
                                    input_shape=(config.input_size, config.input_size, 3))
  if weights:
    try:
      net.load_weights(weights)
    except Exception as error:  # noqa: BLE001 - any load failure is a bad file.
      raise InputError(f"{weights}: cannot load ResNet-50 weights ({error})".splitlines()[0])
  return net(inputs)


BACKBONES = {"small": small_backbone, "resnet50": resnet50_backbone}


def build_network(config, layout, backbone_weights=None):
  """Keras model: images [B, 224, 224, 3] -> (coefficients [B, size], features [B, D]).

  With `config.landmark_head` the model has two more outputs, the head's
  landmarks [B, 68, 2] (pixels of the 224-px input) and its heatmap logits
  [B, h, w, 68], and the coefficient
  layer reads their normalised coordinates (and an MLP of them) beside the
  features.
  """
  if config.backbone not in BACKBONES:
    raise InputError(f"unknown backbone '{config.backbone}'; choose one of: "
                     + ", ".join(sorted(BACKBONES)))
  images = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="images")
  x = images
  if config.input_size != IMAGE_SIZE:
    x = keras.layers.Resizing(config.input_size, config.input_size, interpolation="bilinear")(x)
  if config.backbone == "resnet50":
    features = resnet50_backbone(config, x, backbone_weights)
  else:
    if backbone_weights:
      raise InputError("--backbone-weights applies to the resnet50 backbone only")
    if config.coord_channels:
      x = CoordChannels()(x)
    maps = small_encoder(config, x)
    features = small_backbone(config, x, maps)
  outputs = []
  head_input = features
  if config.landmark_head:
    if config.backbone != "small":
      raise InputError("the landmark head needs the small backbone")
    points, logits = landmark_head(config, maps)
    shape = LandmarkFeatures()(points)
    parts = [features, shape]
    if config.landmark_hidden:
      parts.append(keras.layers.Dense(config.landmark_hidden, activation="relu",
                                      name=LANDMARK_HIDDEN)(shape))
    head_input = keras.layers.Concatenate()(parts)
    outputs = [points, logits]
  coefficients = keras.layers.Dense(layout.size, kernel_initializer="zeros",
                                    bias_initializer="zeros", name="coefficients")(head_input)
  return keras.Model(images, [coefficients, features] + outputs, name=f"mgc_{config.backbone}")


class Regressor:
  """Image -> coefficients regressor for one face model.

  Attributes:
    network: the Keras model.  face_model, config, layout.
    feature_size: D, the length of the pooled backbone features.
  """

  def __init__(self, network, face_model, config):
    self.network = network
    self.face_model = face_model
    self.config = config
    self.layout = CoeffLayout.for_model(face_model)
    self.feature_size = int(network.outputs[1].shape[-1])

  def __call__(self, images, training=False):
    """images [B, 224, 224, 3] float32 in [0, 1] -> (`Coefficients`, features [B, D])."""
    vector, features = self.network(images, training=training)[:2]
    return self.layout.split(vector), features

  def head_landmarks(self, images, training=False):
    """(`Coefficients`, None or the landmark head's (points [B, 68, 2], logits [B, h, w, 68]))
    from one forward pass."""
    outputs = self.network(images, training=training)
    head = tuple(outputs[2:4]) if len(outputs) > 2 else None
    return self.layout.split(outputs[0]), head

  def coefficients_from_points(self, features, points):
    """The coefficient layer fed with other landmark points than the head's.

    Args:
      features: [B, D] the network's pooled features.
      points: [B, 68, 2] landmark points, pixels of the 224-px input.

    Returns:
      [B, size] coefficient vectors.
    """
    return self.coefficients_from_shape(
        features, normalise_landmarks(tf.convert_to_tensor(points, tf.float32)))

  def coefficients_from_shape(self, features, shape):
    """As `coefficients_from_points`, from points already normalised: shape [B, 139]
    (`normalise_landmarks`)."""
    shape = tf.convert_to_tensor(shape, tf.float32)
    parts = [tf.convert_to_tensor(features, tf.float32), shape]
    if self.config.landmark_hidden:
      parts.append(self.network.get_layer(LANDMARK_HIDDEN)(shape))
    return self.network.get_layer("coefficients")(tf.concat(parts, -1))


def build_regressor(face_model, config, backbone_weights=None):
  """An untrained `Regressor` (zero head: mean face, default pose)."""
  layout = CoeffLayout.for_model(face_model)
  return Regressor(build_network(config, layout, backbone_weights), face_model, config)
