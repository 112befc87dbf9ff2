"""The endless stream of fresh identities (mgc_face/stream.py)."""

import numpy as np

from mgc_face import data as data_lib
from mgc_face import stream
from mgc_face import synthetic
from shared.model.coeffs import CoeffLayout


def test_stream_seed_space_is_disjoint_from_data_set_identities(ict_model):
  layout = CoeffLayout.for_model(ict_model)
  config = synthetic.SyntheticConfig()
  source = stream.SampleStream.__new__(stream.SampleStream)
  source.seed = 0
  streamed = np.stack([synthetic.sample_identity(source.rng(k), layout, config)[0]
                       for k in range(50)])
  held = np.stack([synthetic.sample_identity(np.random.default_rng([s, i]), layout, config)[0]
                   for s in range(3) for i in range(50)])
  distance = np.linalg.norm(streamed[:, None] - held[None], axis=-1)
  assert distance.min() > 1.0  # No streamed face is any data set's face.
  again = synthetic.sample_identity(source.rng(7), layout, config)[0]
  np.testing.assert_array_equal(again, streamed[7])  # Deterministic per (seed, k).


def test_stream_batches_fresh_faces_with_labels(ict_model):
  dataset = stream.make_stream_dataset(ict_model, batch_size=2, seed=3, start=5)
  first, second = [b for _, b in zip(range(2), dataset)]
  size = data_lib.VIEW_SIZE
  assert first.images.shape == (2, 3, size, size, 3)
  assert first.skins.shape == (2, 3, size, size, 1)
  assert first.landmarks.shape == (2, 3, data_lib.NUM_LANDMARKS, 2)
  np.testing.assert_array_equal(first.flags.numpy(), [2.0, 2.0])
  assert float(np.abs(first.images.numpy() - second.images.numpy()).mean()) > 0.01
  # Sample 5 of seed 3 is the batch's first; its labels are its landmarks plus 1 px noise.
  source = stream.SampleStream(ict_model, seed=3)
  sample = synthetic.render_sample(source.renderer, source.rng(5), source.config)
  np.testing.assert_allclose(first.landmarks.numpy()[0], sample["noisy_landmarks"], atol=1e-4)
  np.testing.assert_allclose(first.images.numpy()[0], sample["image"], atol=1e-5)


def test_training_on_the_stream_ignores_the_data_folder(tmp_path, ict_model):
  from mgc_face import config as config_lib
  from mgc_face import train as train_lib
  config = config_lib.get_config("tiny_stream").replace(
      batch_size=1, landmark_warmup_steps=1, prior_init_samples=300, multiview=False,
      checkpoint_every=2, cascade_stream_samples=3)
  assert config.data_stream
  lines = []
  result = train_lib.train(ict_model, config, tmp_path / "no_such_set", tmp_path / "ckpt", steps=2,
                           progress=False, log=lines.append)
  assert result["steps"] == 2 and result["skipped"] == 0
  assert any("a stream of fresh identities" in line for line in lines)
  # The landmark cascade trains on 3 fresh stream triplets after those the network read.
  assert any("landmark cascade: 9 views" in line for line in lines)
  from mgc_face import cascade as cascade_lib
  assert cascade_lib.load(tmp_path / "ckpt").step == 2


def test_sampled_expressions_are_sparse_non_negative_blendshape_weights():
  config = synthetic.SyntheticConfig()
  rng = np.random.default_rng(4)
  weights = np.stack([synthetic.sample_expression(rng, 53, config) for _ in range(400)])
  assert weights.min() == 0.0 and weights.max() <= config.expression_max
  active = (weights > 0).sum(-1)
  assert active.max() == config.max_active_expressions and active.min() == 0
  # sample_identity draws its expression the same way, between identity and albedo.
  layout = CoeffLayout(num_id=10, num_albedo=5, num_exp=53)
  identity, expression, _ = synthetic.sample_identity(np.random.default_rng(9), layout, config)
  again = np.random.default_rng(9)
  again.standard_normal(10)
  np.testing.assert_array_equal(expression, synthetic.sample_expression(again, 53, config))
