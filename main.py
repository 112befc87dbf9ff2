#!/usr/bin/env python
"""Command line for the face reconstruction toolkit.

    python main.py --model mgc --mode train --data DIR --checkpoint DIR
    python main.py --model mgc --mode test  --checkpoint DIR --input PATH --output DIR
    python main.py --model gcn --mode train --data FILE.bin --coarse-checkpoint DIR ...
    python main.py --mode eval-landmarks --data ../shared/eval/aflw2000_16

This file only parses flags and dispatches to `<model>_face.cli`.  Errors a
user can fix (`shared.errors.InputError`) print one line and exit with 2.
"""

import argparse
import importlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

MODELS = {"mgc": "mgc_face.cli", "gcn": "gcn_face.cli", "shared": "shared.cli"}
EXIT_INPUT_ERROR = 2


def common_parser(add_help=True):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=add_help,
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--model", choices=sorted(MODELS), default="mgc",
                      help="which model's job to run")
  parser.add_argument("--mode", required=add_help, help="train, test, eval, eval-landmarks, ...")
  parser.add_argument("--face-model", default=None,
                      help="face model: project .npz, ICT npz or FaceXModel/ folder, or "
                           "BFM_model_front.mat (default: FACE3D_FACE_MODEL, else the embedded "
                           "ICT-FaceKit light model)")
  parser.add_argument("--config", default="tiny", help="config preset: tiny or paper (both models), cpu_hour (MGC)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--verbose", action="store_true",
                      help="show TensorFlow's and other libraries' log lines (also "
                           "FACE3D_VERBOSE=1)")
  return parser


def load_mgc_regressor(checkpoint_dir, face_model):
  """The MGC regressor for shared-layer jobs that take a network (eval-landmarks)."""
  from mgc_face.infer import load_regressor
  return load_regressor(checkpoint_dir, face_model)


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  from shared import quiet
  quiet.setup(verbose_flag="--verbose" in argv)  # Before anything imports TensorFlow.
  from shared.errors import InputError
  pre, _ = common_parser(add_help=False).parse_known_args(argv)
  module_name = MODELS[pre.model]
  if pre.mode == "eval-landmarks":
    module_name = MODELS["shared"]
  parser = common_parser()
  cli = importlib.import_module(module_name)
  cli.add_arguments(parser)
  args = parser.parse_args(argv)
  try:
    if module_name == MODELS["shared"]:
      return cli.run(args, load_regressor=load_mgc_regressor) or 0
    return cli.run(args) or 0
  except InputError as error:
    print(f"error: {error}", file=sys.stderr)
    return EXIT_INPUT_ERROR
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
