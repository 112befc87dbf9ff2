"""The GCN trainer under the shared loop policy: automatic resume, non-finite steps skipped.

Uses the toy face of tests/test_gcn_pipeline.py (a sphere cap, 64 px).
"""

import json

import numpy as np
import pytest
import tensorflow as tf

from gcn_face import binfile
from gcn_face import checkpoint as checkpoint_lib
from gcn_face import infer
from gcn_face import train as train_lib
from shared.errors import InputError
from test_gcn_pipeline import NUM_IMAGES, TOY, toy  # noqa: F401  (toy: a fixture)


@pytest.fixture(scope="module")
def toy_bin(toy, tmp_path_factory):  # noqa: F811
  _, _, _, images, alpha, _ = toy
  path = tmp_path_factory.mktemp("gcn_train") / "toy.bin"
  records = np.concatenate([images.numpy(), alpha.numpy()], -1)
  binfile.write_bin(path, [np.round(r * 255).astype(np.uint8) for r in records],
                    [f"{i}.png" for i in range(NUM_IMAGES)])
  return path


def pipeline_of(toy):  # noqa: F811
  _, topology, stage, *_ = toy
  return infer.TexturePipeline(stage, topology, TOY)


def test_a_second_run_resumes_from_the_folder(toy, toy_bin, tmp_path):  # noqa: F811
  ckpt = tmp_path / "ckpt"
  first = train_lib.train(pipeline_of(toy), TOY, toy_bin, ckpt, "coarse-dir", steps=3,
                          log=lambda m: None, progress=False)
  assert first.steps == 3 and first.checkpoint.endswith("ckpt-3")
  messages = []
  second = train_lib.train(pipeline_of(toy), TOY, toy_bin, ckpt, "coarse-dir", steps=5,
                           log=messages.append, progress=False)
  assert second.steps == 5 and second.checkpoint.endswith("ckpt-5")
  assert any("resumed from" in m and "at step 3" in m for m in messages), messages
  reader = tf.train.load_checkpoint(second.checkpoint)
  assert reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 5
  assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 5
  meta = json.loads((ckpt / checkpoint_lib.META_FILE).read_text())
  assert meta["step"] == 5 and meta["format_version"] == checkpoint_lib.META_VERSION
  assert list((ckpt / "logs").glob("events.out.tfevents.*"))
  # Another architecture cannot resume this folder: one line, nothing written.
  with pytest.raises(InputError, match="holds a 'tiny' \\(normal\\) checkpoint") as error:
    train_lib.train(pipeline_of(toy), TOY.replace(arch="resnet"), toy_bin, ckpt, "coarse-dir",
                    steps=6, log=lambda m: None, progress=False)
  assert "\n" not in str(error.value)
  assert tf.train.latest_checkpoint(str(ckpt)).endswith("ckpt-5")


def test_old_gcn_json_is_read(toy, tmp_path):  # noqa: F811
  """gcn.json of the previous format ("version"): still a valid checkpoint description."""
  (tmp_path / "gcn.json").write_text(json.dumps({
      "kind": checkpoint_lib.META_KIND, "version": 1, "step": 4,
      "config": json.loads(TOY.to_json())}))
  meta, config = checkpoint_lib.read_meta(tmp_path)
  assert meta["step"] == 4 and config == TOY


def test_a_non_finite_step_changes_neither_generator_nor_critic(toy):  # noqa: F811
  _, _, _, images, alpha, _ = toy
  messages = []
  trainer = train_lib.Trainer(pipeline_of(toy), TOY.replace(critic_steps=1), gan=True,
                              log=messages.append)
  watched = trainer.watched_weights() + list(trainer.optimizer.variables) + list(
      trainer.critic_optimizer.variables)
  before = [v.numpy().copy() for v in watched]
  bad = images[:2].numpy()
  bad[0, 10, 10, 0] = np.nan
  terms, applied, _ = trainer.train_step(tf.constant(bad), alpha[:2], epoch=0)
  assert not applied and not np.isfinite(terms["total"])
  for old, new in zip(before, watched):
    np.testing.assert_array_equal(old, new.numpy())
  assert int(trainer.skipped.numpy()) == 1 and int(trainer.step.numpy()) == 1
  assert any("non-finite loss or gradient; update skipped" in m for m in messages)
  terms, applied, _ = trainer.train_step(images[:2], alpha[:2], epoch=0)
  assert applied and np.isfinite(terms["total"])
  assert int(trainer.optimizer.iterations.numpy()) == 1
  assert int(trainer.critic_optimizer.iterations.numpy()) == 1


def test_training_with_the_coarse_fit_uses_the_bins_landmarks(toy, tmp_path):  # noqa: F811
  """coarse_fit_steps: records with landmarks are refitted in the training step, the others
  keep the regressor's coefficients, and one warning line says how many lack them."""
  from shared.model.coeffs import CoeffLayout
  from shared.render.face_image import FaceSynthesizer
  from test_gcn_pipeline import CAMERA
  face_model, _, _, images, alpha, truth = toy
  synth = FaceSynthesizer(face_model, CAMERA)
  target = synth(CoeffLayout.for_model(face_model).split(truth[None]),
                 render=False).landmarks2d.numpy()[0]
  records = np.concatenate([images.numpy(), alpha.numpy()], -1)
  path = tmp_path / "lm.bin"
  binfile.write_bin(path, [np.round(r * 255).astype(np.uint8) for r in records],
                    [f"{i}.png" for i in range(NUM_IMAGES)],
                    landmarks=[target if i % 2 == 0 else None for i in range(NUM_IMAGES)])
  config = TOY.replace(coarse_fit_steps=5)
  _, topology, stage, *_ = toy
  messages = []
  result = train_lib.train(infer.TexturePipeline(stage, topology, config), config, path,
                           tmp_path / "ckpt", "coarse-dir", steps=2, log=messages.append,
                           progress=False)
  assert result.steps == 2 and np.isfinite(result.terms["total"])
  warnings = [m for m in messages if m.startswith("warning:")]
  assert len(warnings) == 1 and f"{NUM_IMAGES // 2} of {NUM_IMAGES} records" in warnings[0]
