#!/usr/bin/env python
"""Command line for the face reconstruction toolkit.

    python main.py --model mgc --mode train --data DIR --checkpoint DIR
    python main.py --model mgc --mode test  --checkpoint DIR --input PATH --output DIR
    python main.py --model gcn --mode train --data FILE.bin --coarse-checkpoint DIR ...
    python main.py --mode eval-landmarks --data ../shared/eval/aflw2000_16

This file only parses flags and dispatches to `<model>_face.cli` (or
`shared.cli` for the shared modes, with any --model).  Help: `--help` lists
the models and their modes; `--model M --help` every flag of M's modes;
`--model M --mode X --help` only what mode X takes.  Errors a user can fix
(`shared.errors.InputError`, and bad flags) print one line and exit with 2.
"""

import argparse
import importlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from shared.errors import EXIT_INPUT_ERROR  # noqa: E402 (no TensorFlow: before quiet.setup)

MODELS = {"mgc": "mgc_face.cli", "gcn": "gcn_face.cli", "shared": "shared.cli"}
# Each model's own modes; the shared ones run with any --model.
MODEL_MODES = {"mgc": ("train", "test", "eval"), "gcn": ("train", "test", "eval"), "shared": ()}
SHARED_MODES = ("render", "eval-landmarks")
MODES = ("train", "test", "eval") + SHARED_MODES
DEFAULT_MODEL = "mgc"


class Parser(argparse.ArgumentParser):
  """argparse with the toolkit's error form: one line `error: ...`, exit status 2."""

  def error(self, message):
    self.exit(EXIT_INPUT_ERROR, f"error: {message} (see --help)\n")


def modes_epilog():
  lines = [f"  --model {m}: {', '.join(MODEL_MODES[m] + SHARED_MODES)}" for m in ("mgc", "gcn")]
  lines.append(f"  --model shared: {', '.join(SHARED_MODES)}")
  return ("modes of each model:\n" + "\n".join(lines) +
          "\n\nflags of one mode: main.py --model M --mode X --help; of all of a model's "
          "modes: main.py --model M --help")


def common_parser(add_help=True):
  parser = Parser(description=__doc__.splitlines()[0], add_help=add_help, epilog=modes_epilog(),
                  formatter_class=Formatter)
  parser.add_argument("--model", choices=sorted(MODELS), default=None,
                      help=f"which model's job to run (default: {DEFAULT_MODEL})")
  parser.add_argument("--mode", choices=MODES, required=add_help,
                      help="the job (see the list below)")
  parser.add_argument("--face-model", default=None,
                      help="face model: project .npz, ICT npz or FaceXModel/ folder, or "
                           "BFM_model_front.mat (default: FACE3D_FACE_MODEL, else the embedded "
                           "ICT-FaceKit light model)")
  parser.add_argument("--config", default="tiny",
                      help="config preset: tiny or paper (both models), tiny_stream or cpu_hour (MGC)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--verbose", action="store_true",
                      help="show TensorFlow's and other libraries' log lines (also "
                           "FACE3D_VERBOSE=1)")
  return parser


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
  """Defaults in the help (except None and False), and the epilog's lines kept as written."""

  def _get_help_string(self, action):
    if action.default in (None, False):
      return action.help
    return super()._get_help_string(action)


def load_mgc_regressor(checkpoint_dir, face_model):
  """The MGC regressor for shared-layer jobs that take a network (eval-landmarks)."""
  from mgc_face.infer import load_regressor
  return load_regressor(checkpoint_dir, face_model)


def build_parser(model, mode):
  """The full parser for `--model model` and `mode` (None: all of the model's modes).

  Returns (parser, the cli module that runs `mode`).
  """
  parser = common_parser()
  if mode in SHARED_MODES or (model == "shared" and mode is None):
    cli = importlib.import_module(MODELS["shared"])
    cli.add_arguments(parser, [mode] if mode else SHARED_MODES)
    return parser, cli
  cli = importlib.import_module(MODELS[model])
  cli.add_arguments(parser, [mode] if mode else MODEL_MODES[model])
  return parser, cli


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  from shared import quiet
  quiet.setup(verbose_flag="--verbose" in argv)  # Before anything imports TensorFlow.
  from shared.errors import InputError, report
  pre, _ = common_parser(add_help=False).parse_known_args(argv)
  asks_help = any(a in ("-h", "--help") for a in argv)
  if asks_help and pre.model is None and pre.mode is None:
    common_parser().parse_args(["--help"])  # The models and their modes; exits.
  model = pre.model or DEFAULT_MODEL
  if pre.mode is not None and pre.mode not in MODEL_MODES[model] + SHARED_MODES:
    common_parser().error(f"argument --mode: '{pre.mode}' is not a mode of --model {model} "
                          f"(choose from {', '.join(MODEL_MODES[model] + SHARED_MODES)})")
  parser, cli = build_parser(model, pre.mode)
  args = parser.parse_args(argv)
  args.model = model
  try:
    if cli.__name__ == MODELS["shared"]:
      return cli.run(args, load_regressor=load_mgc_regressor) or 0
    return cli.run(args) or 0
  except InputError as error:
    return report(error)
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    return 130
  except OSError as error:   # A full disk, a permission, a file in the way: one line.
    if quiet.verbose():   # --verbose or FACE3D_VERBOSE: the traceback.
      raise
    return report(f"{error.filename or 'output'}: {error.strerror or error}")


if __name__ == "__main__":
  sys.exit(main())
