"""`--set NAME=VALUE` (shared/config_overrides.py): any config field from the command line."""

import json

import pytest

from gcn_face.config import get_config as gcn_config
from mgc_face.config import get_config as mgc_config
from mgc_helpers import run_main
from shared.config_overrides import apply_overrides
from shared.errors import InputError
from shared.fit.fitter import FitConfig


def test_values_are_read_as_the_fields_types():
  tiny = mgc_config("tiny")
  config = apply_overrides(tiny, [
      "landmark_warmup_steps=1200", "learning_rate=2e-4", "augment_flip=0",
      "landmark_head=false", "coord_channels=YES", "learning_rate_decay=constant",
      "small_channels=8, 16,32", "cascade_scales=24,12", "refine_blocks="])
  assert config.landmark_warmup_steps == 1200 and type(config.landmark_warmup_steps) is int
  assert config.learning_rate == 2e-4
  assert config.augment_flip == 0.0 and type(config.augment_flip) is float
  assert config.landmark_head is False and config.coord_channels is True
  assert config.learning_rate_decay == "constant"
  assert config.small_channels == (8, 16, 32)
  assert config.cascade_scales == (24.0, 12.0) and type(config.cascade_scales[0]) is float
  assert config.refine_blocks == ()
  # Everything else is the preset's; the preset itself is unchanged (frozen).
  assert config.replace(landmark_warmup_steps=tiny.landmark_warmup_steps,
                        learning_rate=tiny.learning_rate, augment_flip=tiny.augment_flip,
                        landmark_head=True, coord_channels=tiny.coord_channels,
                        learning_rate_decay=tiny.learning_rate_decay,
                        small_channels=tiny.small_channels, cascade_scales=tiny.cascade_scales,
                        refine_blocks=tiny.refine_blocks) == tiny
  assert tiny.landmark_warmup_steps == 1600


def test_describe_changes():
  from shared.config_overrides import describe_changes
  tiny = mgc_config("tiny")
  changed = apply_overrides(tiny, ["steps=10", "cascade_scales=8", "batch_size=2"])
  # In the dataclass's field order; batch_size=2 is tiny's own value.
  assert describe_changes(tiny, changed) == "cascade_scales=(8.0,), steps=10"
  assert describe_changes(tiny, tiny) == "none"
  assert describe_changes(tiny, tiny, None) is None


def test_later_items_win_and_no_items_is_the_same_config():
  tiny = mgc_config("tiny")
  assert apply_overrides(tiny, ["steps=10", "steps=20"]).steps == 20
  assert apply_overrides(tiny, None) is tiny and apply_overrides(tiny, []) is tiny
  assert apply_overrides(tiny, ["batch-size=3"]).batch_size == 3   # Dashes as in flags.


def test_other_configs():
  gcn = gcn_config("tiny")
  assert apply_overrides(gcn, ["steps_per_epoch=7"]).steps_per_epoch == 7
  assert apply_overrides(gcn.replace(steps_per_epoch=7), ["steps_per_epoch=None"]).steps_per_epoch is None
  assert apply_overrides(gcn, ["refiner_skip_levels=1,2,3"]).refiner_skip_levels == (1, 2, 3)
  assert apply_overrides(FitConfig(), ["landmark_steps=5"], fixed={}).landmark_steps == 5


@pytest.mark.parametrize("item, message", [
    ("steps", "--set steps: expected NAME=VALUE"),
    ("=3", "--set =3: expected NAME=VALUE"),
    ("stepz=3", "--set stepz=3: MGCConfig has no field 'stepz' (did you mean steps?)"),
    ("name=paper", "--set name=paper: 'name' is chosen with --config, not --set"),
    ("steps=1.5", "--set steps=1.5: 'steps' takes an integer (invalid literal"),
    ("learning_rate=fast", "--set learning_rate=fast: 'learning_rate' takes a number ("),
    ("landmark_head=maybe", "--set landmark_head=maybe: 'landmark_head' takes true or false"),
    ("small_channels=8,x", "--set small_channels=8,x: 'small_channels' takes a comma-separated"),
])
def test_bad_items_are_one_line_errors(item, message):
  with pytest.raises(InputError) as error:
    apply_overrides(mgc_config("tiny"), [item])
  assert str(error.value).startswith(message) and "\n" not in str(error.value)


def parse(model, argv):
  import main as main_module
  parser, _ = main_module.build_parser(model, "train")
  return parser.parse_args(["--mode", "train"] + argv)


def test_training_configs_take_set_and_flags_win(tmp_path):
  from gcn_face import cli as gcn_cli
  from mgc_face import cli as mgc_cli
  args = parse("mgc", ["--config", "tiny", "--data", "d", "--checkpoint", str(tmp_path / "m"),
                       "--set", "batch_size=5", "--batch-size", "3",
                       "--set", "landmark_warmup_steps=100", "--set", "w_landmark=0.5"])
  config = mgc_cli.training_config(args)
  assert (config.batch_size, config.landmark_warmup_steps, config.w_landmark) == (3, 100, 0.5)
  args = parse("gcn", ["--config", "tiny", "--data", "x.bin", "--coarse-checkpoint", "c",
                       "--checkpoint", str(tmp_path / "g"), "--set", "epochs=2",
                       "--set", "arch=resnet"])
  with pytest.raises(InputError, match="'arch' is chosen with --arch, not --set"):
    gcn_cli.training_config(args)
  args.set = ["epochs=2"]
  assert gcn_cli.training_config(args).epochs == 2


def test_a_gcn_resume_refuses_a_changed_network():
  """The MGC trainer refuses a checkpoint of another network when it restores
  (test_mgc_checkpoint.py); the GCN trainer's resume check does so too, before the
  face-model and hierarchy checks (so no pipeline is needed here)."""
  from gcn_face import checkpoint as checkpoint_lib
  config = gcn_config("tiny")
  meta = {"config": json.loads(config.to_json())}
  checkpoint_lib.check_same_network(config, apply_overrides(config, ["epochs=2"]), "g")
  with pytest.raises(InputError, match=r"^g: the checkpoint's network differs from this "
                                       r"run's in decoder_fc_channels \(checkpoint 32, now 64\); "
                                       r"use a new --checkpoint folder$"):
    checkpoint_lib.check_resumable(meta, apply_overrides(config, ["decoder_fc_channels=64"]),
                                   None, "g")


def test_a_training_run_records_its_set_fields(mgc_dataset, tmp_path, capsys):
  """`main.py --model mgc --mode train --set ...` builds the run with the changed fields and
  writes them in the checkpoint's meta.json, which a resume, test and eval read back.  (0
  steps: the network is built and saved without tracing a training step, to keep the test
  worker's memory down; the steps themselves read only the config.)"""
  ckpt = tmp_path / "ckpt"
  code, out, err = run_main(
      ["--model", "mgc", "--mode", "train", "--config", "tiny", "--data", str(mgc_dataset),
       "--checkpoint", str(ckpt), "--steps", "0", "--no-multiview", "--quiet",
       "--set", "batch_size=1", "--set", "landmark_warmup_steps=0",
       "--set", "prior_init_samples=300", "--set", "cascade_scales="], capsys)
  assert code == 0, err
  assert out.splitlines()[0] == ("config tiny, changed by --set: cascade_scales=(), "
                                 "landmark_warmup_steps=0, prior_init_samples=300, "
                                 "batch_size=1"), out
  assert json.loads(out.strip().splitlines()[-1])["steps"] == 0
  saved = json.loads((ckpt / "meta.json").read_text())["config"]
  assert (saved["name"], saved["batch_size"], saved["landmark_warmup_steps"],
          saved["prior_init_samples"], saved["cascade_scales"]) == ("tiny", 1, 0, 300, [])
  assert not (ckpt / "cascade.npz").exists()   # cascade_scales= : no landmark cascade.
  code, _, err = run_main(
      ["--model", "mgc", "--mode", "train", "--config", "tiny", "--data", str(mgc_dataset),
       "--checkpoint", str(ckpt), "--steps", "0", "--set", "heatmap_reduce=0"], capsys)
  assert code == 2 and err.strip().endswith("heatmap_reduce (checkpoint 64, now 0); use a new "
                                            "--checkpoint folder"), err


def test_the_photo_fit_takes_set_and_fit_steps_wins():
  """`--set` on the photo modes (test on photos, eval-landmarks) changes FitConfig."""
  import argparse
  from shared.eval.landmark_eval import add_photo_arguments, fit_config_from_args
  parser = argparse.ArgumentParser()
  add_photo_arguments(parser)
  lines = []
  config = fit_config_from_args(parser.parse_args(
      ["--set", "shape_weight=1e-2", "--set", "landmark_steps=100"]), log=lines.append)
  assert config == FitConfig(shape_weight=1e-2, landmark_steps=100)
  assert lines == ["config FitConfig, changed by --set: landmark_steps=100, shape_weight=0.01"]
  config = fit_config_from_args(parser.parse_args(["--set", "landmark_steps=100",
                                                   "--fit-steps", "0"]))
  assert config.steps == 0 and config.landmark_steps == 0
  assert fit_config_from_args(parser.parse_args([])) == FitConfig()
  with pytest.raises(InputError, match="FitConfig has no field 'shape_weigth' "
                                       r"\(did you mean shape_weight\?\)"):
    fit_config_from_args(parser.parse_args(["--set", "shape_weigth=1"]))


def test_set_on_aligned_crops_is_refused(mgc_trained, mgc_dataset, tmp_path, capsys):
  ckpt, _ = mgc_trained
  code, _, err = run_main(["--model", "mgc", "--mode", "test", "--checkpoint", str(ckpt),
                           "--input", str(mgc_dataset / "heldout"), "--output",
                           str(tmp_path / "o"), "--set", "shape_weight=1"], capsys)
  errors = [line for line in err.splitlines() if line.startswith("error:")]
  assert code == 2 and len(errors) == 1 and "aligned crops are not fitted" in errors[0]
  assert not (tmp_path / "o").exists()
