"""MGC checkpoint folders: round trip, meta.json, interrupt and resume, refusals."""

import dataclasses
import json

import numpy as np
import pytest

from mgc_face import checkpoint as checkpoint_lib
from mgc_face import infer
from mgc_face import train as train_lib
from mgc_helpers import SINGLE_VIEW
from shared.errors import InputError


def test_checkpoint_round_trip_and_metadata(mgc_trained, ict_model):
  ckpt, result = mgc_trained
  assert result["steps"] == 2 and result["skipped"] == 0
  meta = json.loads((ckpt / "meta.json").read_text())
  assert meta["kind"] == checkpoint_lib.META_KIND
  assert meta["face_model_hash"] == ict_model.source_hash
  assert meta["format_version"] == checkpoint_lib.META_VERSION and meta["step"] == 2
  assert meta["config_name"] == "tiny" and not meta["multiview"]
  assert meta["layout"] == {"num_id": 100, "num_albedo": 80, "num_exp": 53, "size": 266}
  assert list((ckpt / "logs").glob("events.out.tfevents.*"))
  regressor = infer.load_regressor(ckpt, ict_model)
  assert regressor.cascade is not None and regressor.cascade.step == 2
  regressor.cascade = None   # The network's weights alone (the cascade: test_mgc_cascade.py).
  trainer = train_lib.Trainer(ict_model, SINGLE_VIEW, ckpt, log=lambda m: None)
  assert trainer.restore() == 2
  images = np.random.default_rng(1).uniform(size=(1, 224, 224, 3)).astype(np.float32)
  expected = trainer.regressor.network(images, training=False)[0].numpy()
  got = regressor.layout.join(regressor(images)[0]).numpy()
  # The frozen graph's fused oneDNN convolutions round differently: float32 precision of
  # the largest coefficient (about 20), which sums terms of that size into each output.
  np.testing.assert_allclose(got, expected, atol=1e-5 * np.abs(expected).max())
  assert np.abs(got).max() > 0   # Trained: no longer the zero head.


def test_interrupt_saves_and_resume_continues(mgc_trained, mgc_dataset, ict_model, tmp_path,
                                              monkeypatch):
  import shutil
  ckpt, _ = mgc_trained
  copy = tmp_path / "ckpt"
  shutil.copytree(ckpt, copy)
  original = train_lib.Trainer.train_step
  calls = []

  def interrupted(self, batch):
    calls.append(1)
    if len(calls) == 2:
      raise KeyboardInterrupt
    return original(self, batch)

  monkeypatch.setattr(train_lib.Trainer, "train_step", interrupted)
  messages = []
  with pytest.raises(KeyboardInterrupt):
    train_lib.train(ict_model, SINGLE_VIEW, mgc_dataset, copy, steps=5, progress=False,
                    log=messages.append)
  assert any("resumed" in m and "step 2" in m for m in messages)
  assert any("interrupted at step 3" in m for m in messages)
  assert json.loads((copy / "meta.json").read_text())["step"] == 3
  monkeypatch.setattr(train_lib.Trainer, "train_step", original)
  messages.clear()
  result = train_lib.train(ict_model, SINGLE_VIEW, mgc_dataset, copy, steps=4, progress=False,
                           log=messages.append)
  assert result["steps"] == 4
  assert any("resumed" in m and "step 3" in m for m in messages)
  assert json.loads((copy / "meta.json").read_text())["step"] == 4


def test_checkpoint_of_another_face_model_is_refused(mgc_trained, ict_model, mgc_dataset):
  ckpt, _ = mgc_trained
  other = dataclasses.replace(ict_model, source_hash="0123456789abcdef", name="other model")
  with pytest.raises(InputError, match="trained with face model") as error:
    infer.load_regressor(ckpt, other)
  assert "\n" not in str(error.value)
  trainer = train_lib.Trainer(other, SINGLE_VIEW, ckpt, log=lambda m: None)
  with pytest.raises(InputError, match="trained with face model"):
    trainer.restore()


def test_missing_checkpoint_is_an_input_error(tmp_path, ict_model):
  with pytest.raises(InputError, match="no checkpoint"):
    infer.load_regressor(tmp_path, ict_model)
  with pytest.raises(InputError, match="not found"):
    infer.load_regressor(tmp_path / "nope", ict_model)


def test_meta_json_of_the_previous_format_is_read(mgc_trained, ict_model, tmp_path):
  """meta.json written before the shared writer (key "steps"): still loads."""
  import shutil
  ckpt, _ = mgc_trained
  old = tmp_path / "old"
  shutil.copytree(ckpt, old)
  meta = json.loads((old / "meta.json").read_text())
  meta["steps"] = meta.pop("step")
  (old / "meta.json").write_text(json.dumps(meta))
  assert checkpoint_lib.read_meta(old)["step"] == 2
  assert infer.load_regressor(old, ict_model).steps == 2


def test_resume_takes_the_preset_for_fields_newer_than_the_checkpoint(mgc_trained, tmp_path):
  """A checkpoint written before a config field existed resumes with the preset's value for
  it (e.g. the landmark cascade of session 13); its own values stay for the others."""
  import shutil
  import main as main_module
  from mgc_face import cli
  from mgc_face.config import MGCConfig, get_config
  ckpt = tmp_path / "ckpt"
  shutil.copytree(mgc_trained[0], ckpt)
  meta = json.loads((ckpt / "meta.json").read_text())
  del meta["config"]["cascade_scales"]
  del meta["config"]["heatmap_reduce"]
  meta["config"]["cascade_ridge"] = 30.0
  (ckpt / "meta.json").write_text(json.dumps(meta))
  parser, _ = main_module.build_parser("mgc", "train")
  args = parser.parse_args(["--mode", "train", "--config", "tiny", "--data", "d",
                            "--checkpoint", str(ckpt)])
  config = cli.training_config(args)
  assert config.cascade_scales == get_config("tiny").cascade_scales
  assert config.cascade_ridge == 30.0 and config.batch_size == SINGLE_VIEW.batch_size
  # A network field newer than the checkpoint keeps the default its network was built with
  # (session 31: `tiny`'s checkpoints from before heatmap_reduce did not resume).
  assert config.heatmap_reduce == MGCConfig().heatmap_reduce != get_config("tiny").heatmap_reduce


def test_checkpoint_of_another_network_is_refused_naming_the_field(mgc_trained, ict_model):
  ckpt, _ = mgc_trained
  other = SINGLE_VIEW.replace(heatmap_reduce=0)
  trainer = train_lib.Trainer(ict_model, other, ckpt, log=lambda m: None)
  with pytest.raises(InputError, match=r"heatmap_reduce \(checkpoint 64, now 0\)") as error:
    trainer.restore()
  assert "--config" not in str(error.value)   # Same preset name: only a new folder helps.
