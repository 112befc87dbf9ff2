"""MGC bad input through main.py: exit 2, one `error:` line, no traceback, nothing lost."""

import dataclasses
import json
import shutil

import cv2
import numpy as np
import pytest
import tensorflow as tf

import main as main_module
from mgc_face import data as data_lib
from mgc_face import objective as objective_lib
from test_mgc_data import tree_digest as digest

SAVED_STEPS = 2
MAX_BAD_STEPS = 2


@pytest.fixture(scope="module")
def dataset(mgc_dataset):
  """The dataset of conftest.py (2 training triplets)."""
  return mgc_dataset


@pytest.fixture(scope="module")
def checkpoint(mgc_trained):
  """A 2-step single-view checkpoint (conftest.py)."""
  return mgc_trained[0]


def run_main(argv, capsys):
  code = main_module.main(argv)
  captured = capsys.readouterr()
  errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
  assert "Traceback" not in captured.err + captured.out
  return code, errors, captured.err


def network_weights(ckpt):
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(ckpt)))
  names = sorted(n for n in reader.get_variable_to_shape_map() if n.startswith("network/"))
  return {n: reader.get_tensor(n) for n in names}


def test_train_on_a_wrong_size_strip_and_a_missing_landmark_file(dataset, checkpoint, tmp_path,
                                                                 capsys):
  bad = tmp_path / "data"
  shutil.copytree(dataset, bad)
  records, _ = data_lib.read_list(bad / "train.txt")
  assert len(records) == 2
  cv2.imwrite(str(records[0].image_path(bad)), np.zeros((224, 448, 3), np.uint8))
  records[1].landmark_path(bad).unlink()
  ckpt = tmp_path / "ckpt"
  shutil.copytree(checkpoint, ckpt)
  before = digest(ckpt)
  code, errors, err = run_main(["--model", "mgc", "--mode", "train", "--data", str(bad),
                                "--checkpoint", str(ckpt), "--steps", "4", "--quiet"], capsys)
  assert code == 2 and len(errors) == 1 and "no usable records" in errors[0], err
  assert "strip is 448x224, expected 672x224" in err and "landmark file not found" in err
  assert digest(ckpt) == before


def test_nan_losses_skip_steps_then_stop_keeping_the_last_good_checkpoint(
    dataset, checkpoint, tmp_path, capsys, monkeypatch):
  ckpt = tmp_path / "ckpt"
  shutil.copytree(checkpoint, ckpt)
  good = network_weights(ckpt)
  # Resuming trains with the checkpoint's own config: give it a limit of 2 bad steps.
  meta = json.loads((ckpt / "meta.json").read_text())
  meta["config"]["max_consecutive_bad_steps"] = MAX_BAD_STEPS
  meta["config"]["landmark_warmup_steps"] = 0  # The objective runs from the first step.
  (ckpt / "meta.json").write_text(json.dumps(meta))
  original = objective_lib.Objective.__call__

  def poisoned(self, coeffs, batch, multiview=True, head=None):
    total, terms, visuals = original(self, coeffs, batch, multiview, head)
    return total * np.float32("nan"), terms, visuals

  monkeypatch.setattr(objective_lib.Objective, "__call__", poisoned)
  code, errors, err = run_main(["--model", "mgc", "--mode", "train", "--data", str(dataset),
                                "--checkpoint", str(ckpt), "--steps", "6", "--no-multiview",
                                "--quiet"], capsys)
  assert code == 2 and len(errors) == 1, err
  assert f"{MAX_BAD_STEPS} non-finite steps in a row" in errors[0] and "last good checkpoint kept" in errors[0]
  assert "step 3: non-finite loss or gradient; update skipped" in err
  assert tf.train.latest_checkpoint(str(ckpt)).endswith(f"ckpt-{SAVED_STEPS}")
  after = network_weights(ckpt)
  assert after.keys() == good.keys()
  for name in good:
    np.testing.assert_array_equal(after[name], good[name])


def test_checkpoint_of_another_face_model(dataset, checkpoint, ict_model, tmp_path, capsys):
  other = tmp_path / "other_model.npz"
  dataclasses.replace(ict_model, source_hash="0123456789abcdef", name="other model").save(other)
  ckpt = tmp_path / "ckpt"
  shutil.copytree(checkpoint, ckpt)
  before = digest(ckpt)
  out = tmp_path / "out"
  for argv in (["--mode", "test", "--input", str(dataset / "heldout"), "--output", str(out)],
               ["--mode", "eval", "--data", str(dataset)],
               ["--mode", "train", "--data", str(dataset), "--steps", "4"]):
    code, errors, err = run_main(["--model", "mgc", "--checkpoint", str(ckpt), "--face-model",
                                  str(other), "--quiet"] + argv, capsys)
    assert code == 2 and len(errors) == 1 and "trained with face model" in errors[0], (argv, err)
  assert not out.exists() or not any(out.iterdir())
  assert digest(ckpt) == before
