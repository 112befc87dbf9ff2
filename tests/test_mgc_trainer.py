"""The MGC trainer's steps: the NaN guard through the shared loop, learning, warm-up, and one
step of the `paper` preset (ResNet-50).

The loop policy itself (resume, abort, checkpoints) is tested on a toy model in
tests/test_train_loop.py; checkpoints of a real run in tests/test_mgc_checkpoint.py.
"""

import json

import numpy as np
import pytest

from mgc_face import train as train_lib
from mgc_helpers import SINGLE_VIEW, TEST_CONFIG, first_batch


@pytest.fixture(scope="module")
def trainer(ict_model, tmp_path_factory):
  """A multi-view trainer shared by the step tests (compiling one costs ~20 s)."""
  messages = []
  trainer = train_lib.Trainer(ict_model, TEST_CONFIG, tmp_path_factory.mktemp("mgc_trainer"),
                              log=messages.append)
  trainer.messages = messages
  return trainer


def test_nan_step_is_skipped_and_keeps_weights(mgc_dataset, trainer):
  batch = first_batch(mgc_dataset)
  iterations = int(trainer.optimizer.iterations.numpy())
  step, skipped = int(trainer.step.numpy()), int(trainer.skipped.numpy())
  before = [v.numpy().copy() for v in trainer.regressor.network.weights]
  optimizer_before = [v.numpy().copy() for v in trainer.optimizer.variables]
  bad = batch._replace(images=batch.images * np.float32("nan"))
  terms, applied, _ = trainer.train_step(bad)
  assert not applied and not np.isfinite(terms["total"])
  assert int(trainer.optimizer.iterations.numpy()) == iterations
  for old, new in zip(before, trainer.regressor.network.weights):
    np.testing.assert_array_equal(old, new.numpy())
  for old, new in zip(optimizer_before, trainer.optimizer.variables):
    np.testing.assert_array_equal(old, new.numpy())
  assert any("non-finite" in m and "skipped" in m for m in trainer.messages)
  assert int(trainer.skipped.numpy()) == skipped + 1 and int(trainer.step.numpy()) == step + 1
  # A good step afterwards is applied.
  _, applied, _ = trainer.train_step(batch)
  assert applied and int(trainer.optimizer.iterations.numpy()) == iterations + 1


def test_short_training_lowers_the_loss(mgc_dataset, trainer):
  batch = first_batch(mgc_dataset)
  first, _, _ = trainer.train_step(batch)
  for _ in range(12):
    last, applied, _ = trainer.train_step(batch)
    assert applied
  assert last["total"] < 0.7 * first["total"], (first["total"], last["total"])
  assert last["landmark"] < first["landmark"]


def test_landmark_warmup_steps_train_the_head_only(mgc_dataset, ict_model, tmp_path):
  config = SINGLE_VIEW.replace(landmark_warmup_steps=1)
  trainer = train_lib.Trainer(ict_model, config, tmp_path, log=lambda m: None)
  batch = first_batch(mgc_dataset)
  head_kernel = trainer.regressor.network.get_layer("heatmaps").kernel.numpy().copy()
  coefficient_kernel = trainer.regressor.network.get_layer("coefficients").kernel.numpy().copy()
  terms, applied, _ = trainer.train_step(batch)
  assert applied and set(terms) == {"landmark_head", "heatmap", "total"}
  assert not np.allclose(trainer.regressor.network.get_layer("heatmaps").kernel.numpy(),
                         head_kernel)
  # The coefficient layer has no gradient from the head's terms (stop_gradient).
  np.testing.assert_array_equal(
      trainer.regressor.network.get_layer("coefficients").kernel.numpy(), coefficient_kernel)
  terms, applied, _ = trainer.train_step(batch)
  assert applied and {"landmark", "photometric", "landmark_head"} <= set(terms)


PAPER_SCRIPT = """
import json, sys
from shared import quiet
quiet.setup()
from mgc_face import train as train_lib
from mgc_face.config import get_config
from shared.model.face_model import load_face_model
dataset, checkpoint = sys.argv[1:3]
result = train_lib.train(load_face_model(), get_config("paper").replace(batch_size=1), dataset,
                         checkpoint, steps=1, progress=False, log=lambda message: None)
print(json.dumps({"steps": result["steps"], "skipped": result["skipped"],
                  "terms": {k: float(v) for k, v in result["terms"].items()}}))
"""


def test_paper_preset_trains_a_step(mgc_dataset, tmp_path, script_json):
  """The `paper` preset (MGCNet's ResNet-50 at 224 px, multi-view, all the paper's loss terms)
  trains one step from scratch on CPU and writes a checkpoint of it: the preset a GPU user
  starts from stays runnable (the other tests train smaller configs; the ResNet-50's inference
  graph is tested in tests/test_mgc_freeze.py).  In its own process, whose 2 GB go back when
  it ends."""
  report = script_json(PAPER_SCRIPT, mgc_dataset, tmp_path)
  assert report["steps"] == 1 and report["skipped"] == 0
  assert all(np.isfinite(v) for v in report["terms"].values())
  assert {"photometric", "landmark", "mv_pixel", "mv_depth", "mv_epipolar"} <= set(report["terms"])
  meta = json.loads((tmp_path / "meta.json").read_text())
  assert meta["step"] == 1 and meta["config"]["backbone"] == "resnet50"
  assert meta["config"]["input_size"] == 224
