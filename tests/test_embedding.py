"""shared.train.embedding: SavedModel and Keras face embedders, standardisation, bad files."""

import numpy as np
import pytest
import tensorflow as tf

from shared.train import embedding
from shared.errors import InputError

RNG = np.random.default_rng(0)
WEIGHTS = RNG.normal(size=(3, 4)).astype(np.float32)


class _MeanColour(tf.Module):
  """Embedding = (mean colour of the standardised image) @ W, at a fixed 32 px input."""

  def __init__(self):
    super().__init__()
    self.w = tf.Variable(WEIGHTS)

  @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)])
  def embed(self, images):
    return {"embedding": tf.reduce_mean(images, axis=[1, 2]) @ self.w}


def _reference(images):
  """The numpy embedding of constant-colour images (resizing keeps the colour)."""
  standardised = (images * 255.0 - 127.5) / 128.0
  return standardised.mean(axis=(1, 2)) @ WEIGHTS


def test_saved_model_signature_sets_the_size_and_values_match_numpy(tmp_path):
  module = _MeanColour()
  tf.saved_model.save(module, str(tmp_path / "embed"), signatures={"serving_default": module.embed})
  embed = embedding.FaceEmbedder(tmp_path / "embed", size=160)
  assert embed.size == (32, 32) and embed.output_size == 4
  colours = RNG.uniform(size=(2, 1, 1, 3)).astype(np.float32)
  images = np.tile(colours, (1, 50, 50, 1))
  np.testing.assert_allclose(embed(tf.constant(images)).numpy(), _reference(images), rtol=1e-5,
                             atol=1e-5)


def test_keras_file_without_a_fixed_size_uses_the_given_size(tmp_path):
  import keras
  inputs = keras.Input((None, None, 3))
  pooled = keras.layers.GlobalAveragePooling2D()(inputs)
  keras.Model(inputs, keras.layers.Dense(5)(pooled)).save(tmp_path / "embed.keras")
  embed = embedding.FaceEmbedder(tmp_path / "embed.keras", size=24)
  assert embed.size == (24, 24) and embed.output_size == 5
  assert embed(tf.zeros([3, 64, 64, 3])).shape == (3, 5)


def test_bad_embedding_files_are_one_line_errors(tmp_path):
  with pytest.raises(InputError, match="embedding model not found"):
    embedding.FaceEmbedder(tmp_path / "missing")
  (tmp_path / "junk.keras").write_bytes(b"junk")
  with pytest.raises(InputError, match="cannot load the embedding model") as error:
    embedding.FaceEmbedder(tmp_path / "junk.keras")
  assert "\n" not in str(error.value)
  import keras
  inputs = keras.Input((8, 8, 3))
  keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs)).save(tmp_path / "map.keras")
  with pytest.raises(InputError, match="expected \\[batch, D\\]"):
    embedding.FaceEmbedder(tmp_path / "map.keras")
