"""An endless stream of fresh synthetic identities, rendered inside the input pipeline.

Instead of reading a fixed set of strips from disk, each sample is a new
random face (identity, expression, albedo and its detail, lighting, poses,
background) rendered by `mgc_face.synthetic.render_sample` with the same
distributions as `tools/make_synthetic_dataset.py`, and its detector-like
landmarks (1 px noise) as the landmark labels.  Training never sees the same
face twice.

Seed space.  A data set's identity i draws from
`numpy.random.default_rng([seed, i])` (two words).  Stream sample k of
stream seed s draws from `default_rng([STREAM_TAG, s, k])` (three words,
the first a fixed tag no data set seed uses by convention): NumPy's
SeedSequence hashes the whole entropy list, so the stream's generators are
different from every data set's, and the identity coefficients are
continuous draws, so a streamed face equal to a held-out one has
probability zero.  The held-out evaluation faces therefore stay disjoint
from the training stream.

The images are float in [0, 1] straight from the renderer (not the data
sets' JPEG q95 round trip).
"""

import numpy as np
import tensorflow as tf

from mgc_face import data as data_lib

STREAM_TAG = 0x53545245  # "STRE"; the first entropy word of every stream generator.


class SampleStream:
  """Python iterator of rendered samples (image, skin, noisy landmarks, flag)."""

  def __init__(self, face_model, seed=0, config=None, start=0):
    from mgc_face import synthetic
    self._synthetic = synthetic
    self.config = config or synthetic.SyntheticConfig()
    self.renderer = synthetic.ViewRenderer(face_model)
    self.seed = int(seed)
    self.count = int(start)

  def rng(self, k):
    return np.random.default_rng([STREAM_TAG, self.seed, k])

  def render(self, k):
    """Stream sample k as `mgc_face.synthetic.render_sample`'s dict (ground truth too)."""
    return self._synthetic.render_sample(self.renderer, self.rng(k), self.config)

  def sample(self, k):
    s = self.render(k)
    return (s["image"].astype(np.float32), s["skin"].astype(np.float32),
            s["noisy_landmarks"].astype(np.float32), np.float32(data_lib.FLAG_MULTIVIEW))

  def __iter__(self):
    while True:
      yield self.sample(self.count)
      self.count += 1


def make_stream_dataset(face_model, batch_size, seed=0, config=None, start=0):
  """tf.data pipeline of `mgc_face.objective.Batch` tuples from an endless stream
  (its first sample is stream sample `start`)."""
  from mgc_face.objective import Batch
  size, views = data_lib.VIEW_SIZE, data_lib.NUM_VIEWS
  stream = SampleStream(face_model, seed, config, start)
  signature = (tf.TensorSpec([views, size, size, 3], tf.float32),
               tf.TensorSpec([views, size, size, 1], tf.float32),
               tf.TensorSpec([views, data_lib.NUM_LANDMARKS, 2], tf.float32),
               tf.TensorSpec([], tf.float32))
  ds = tf.data.Dataset.from_generator(lambda: iter(stream), output_signature=signature)
  ds = ds.map(lambda i, s, l, f: Batch(i, s, l, f))
  ds = ds.batch(batch_size, drop_remainder=True)
  return ds.prefetch(2)
