"""What the MGC test files share: the test config and a first batch (fixtures: conftest.py)."""

from mgc_face import config as config_lib
from mgc_face import data as data_lib

# No landmark-head warm-up (the step tests need the full objective), a small prior sample, and
# a landmark cascade trained on the 6 training views plus 2 fresh stream triplets, read by the
# coefficient layer (tiny's gated reader, 40,000 prior faces, has its own test in
# test_mgc_cascade.py).
TEST_CONFIG = config_lib.get_config("tiny").replace(batch_size=1, checkpoint_every=2,
                                                     summary_every=1, image_summary_every=2,
                                                     landmark_warmup_steps=0,
                                                     prior_init_samples=300,
                                                     data_stream=False,
                                                     cascade_stream_samples=2,
                                                     **config_lib.NO_READER)
# Checkpoint and resume tests train single-view: it compiles in about half the time.
SINGLE_VIEW = TEST_CONFIG.replace(multiview=False)


def first_batch(dataset, batch_size=1):
  ds, _ = data_lib.make_dataset(dataset, "train", batch_size, shuffle=False, repeat=False,
                                report=False)
  return next(iter(ds))


def run_main(argv, capsys):
  """main.main(argv) -> (exit code, stdout, stderr)."""
  import main as main_module
  code = main_module.main(argv)
  captured = capsys.readouterr()
  return code, captured.out, captured.err


def fit_head_points(network, images, target, variables, steps, learning_rate=1e-2):
  """Adam steps on `variables` moving the network's landmark points [B, 68, 2] towards
  `target`: (mean squared error before, after)."""
  import keras
  import tensorflow as tf
  optimizer = keras.optimizers.Adam(learning_rate)

  def loss():
    return tf.reduce_mean(tf.square(network(images, training=True)[2] - target))

  first = float(loss())
  for _ in range(steps):
    with tf.GradientTape() as tape:
      value = loss()
    grads = tape.gradient(value, variables)
    optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
  return first, float(loss())
