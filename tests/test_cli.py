"""main.py's flags: --mode choices, per-mode help groups, one-line flag errors, flag names."""

import pytest

import main as main_module

# Flags only one mode takes: its help lists them, the other modes' help does not.
OWN_FLAGS = {
    ("mgc", "train"): ["--embedding-model", "--strategy", "--no-multiview", "--w-landmark",
                       "--backbone-weights"],
    ("mgc", "test"): ["--input-kind", "--cnn-fallback", "--landmarks", "--input"],
    ("mgc", "eval"): ["--split"],
    ("gcn", "train"): ["--gan", "--arch", "--strategy", "--learning-rate"],
    ("gcn", "test"): ["--input"],
    ("gcn", "eval"): ["--pictures"],
    ("shared", "render"): ["--output"],
    ("shared", "eval-landmarks"): ["--data", "--cnn-fallback"],
}


def help_text(argv, capsys):
  with pytest.raises(SystemExit) as done:
    main_module.main(argv + ["--help"])
  assert done.value.code == 0
  return capsys.readouterr().out


def one_line_error(argv, capsys):
  with pytest.raises(SystemExit) as done:
    main_module.main(argv)
  err = capsys.readouterr().err
  assert done.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
  return err


def test_a_bad_mode_is_one_line_listing_the_modes(capsys):
  err = one_line_error(["--mode", "tran"], capsys)
  assert "invalid choice: 'tran'" in err
  for mode in main_module.MODES:
    assert f"'{mode}'" in err
  err = one_line_error(["--model", "shared", "--mode", "train"], capsys)
  assert "not a mode of --model shared" in err and "render, eval-landmarks" in err
  assert "required: --mode" in one_line_error(["--model", "gcn"], capsys)


@pytest.mark.parametrize("model,mode", sorted(OWN_FLAGS))
def test_each_mode_help_lists_its_own_flags_only(model, mode, capsys):
  text = help_text(["--model", model, "--mode", mode], capsys)
  assert f"--model {model} --mode {mode}:" in text
  for flag in OWN_FLAGS[(model, mode)]:
    assert flag in text, flag
  others = {flag for (m, other), flags in OWN_FLAGS.items() if m == model and other != mode
            for flag in flags} - set(OWN_FLAGS[(model, mode)])
  for flag in others:
    assert f"  {flag} " not in text and f"  {flag}\n" not in text, (flag, text)
  for flag in ("--face-model", "--config", "--seed", "--verbose"):  # The common flags.
    assert flag in text


def test_model_help_lists_all_of_its_modes_and_plain_help_every_model(capsys):
  text = help_text(["--model", "gcn"], capsys)
  for mode in ("train", "test", "eval"):
    assert f"--model gcn --mode {mode}:" in text
  assert "--gan" in text and "--pictures" in text
  text = help_text([], capsys)
  assert "--model mgc: train, test, eval, render, eval-landmarks" in text
  assert "--model gcn: train, test, eval, render, eval-landmarks" in text
  assert "--model shared: render, eval-landmarks" in text
  assert "--model M --mode X --help" in text


def test_a_flag_of_another_mode_is_refused_in_one_line(capsys):
  err = one_line_error(["--model", "gcn", "--mode", "test", "--gan"], capsys)
  assert "unrecognized arguments: --gan" in err


def test_one_embedding_model_flag_and_the_old_names_still_parse(capsys):
  for model in ("mgc", "gcn"):
    parser, _ = main_module.build_parser(model, "train")
    args = parser.parse_args(["--model", model, "--mode", "train", "--embedding-model", "e"])
    assert args.embedding_model == "e"
  parser, _ = main_module.build_parser("mgc", "train")
  old = parser.parse_args(["--mode", "train", "--identity-model", "old.keras"])
  assert old.embedding_model == "old.keras"
  assert "--identity-model" not in help_text(["--model", "mgc", "--mode", "train"], capsys)
  parser, _ = main_module.build_parser("gcn", "train")
  assert parser.parse_args(["--mode", "train", "--resume"]).resume  # Accepted, a no-op.
  assert "--resume" not in help_text(["--model", "gcn", "--mode", "train"], capsys)


def test_need_and_positive_are_one_line_input_errors():
  from argparse import Namespace
  from shared.cli import need, positive
  from shared.errors import InputError
  with pytest.raises(InputError, match="--mode train needs --coarse-checkpoint"):
    need(Namespace(mode="train", data="x", coarse_checkpoint=None), "data", "coarse_checkpoint")
  with pytest.raises(InputError, match="--batch-size 0: must be at least 1"):
    positive(Namespace(batch_size=0, steps=None), "steps", "batch_size")
  need(Namespace(mode="eval", data="x"), "data")
  positive(Namespace(limit=None), "limit")
