#!/usr/bin/env python
"""Renders a synthetic multi-view face dataset in MGCNet's strip format, with ground truth.

    python tools/make_synthetic_dataset.py --output out/synth --identities 60 --views 3 --seed 0

Writes DIR/train.txt and DIR/test.txt (held-out identities), per sample a
672x224 strip (source1 | target | source2), a _skin strip, a _lm.txt file
(68 points per view, target first) and a _gt.npz (coefficients, vertices,
posed vertices and landmarks per view); target crops of the held-out
identities go to DIR/heldout/.  See mgc_face/synthetic.py and mgc_face/data.py.

Identity i of seed s is the same face in every set made with seed s,
whatever --identities says (the held-out ones are the last
--test-identities): sets that must not share faces need different seeds.
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.errors import InputError, report  # noqa: E402
from shared.io.paths import check_output_folder  # noqa: E402

DEFAULT_TEST_FRACTION = 0.2


def parse_args(argv=None):
  from mgc_face.synthetic import SyntheticConfig
  defaults = SyntheticConfig()
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--face-model", default=None, help="face model (default: ICT)")
  parser.add_argument("--output", required=True, help="dataset folder to write")
  parser.add_argument("--identities", type=int, default=60, help="identities in total")
  parser.add_argument("--test-identities", type=int, default=None,
                      help="held-out identities (default: 20%% of --identities, at least 1)")
  parser.add_argument("--views", type=int, default=3, help="views per identity (MGCNet: 3)")
  parser.add_argument("--seed", type=int, default=0,
                      help="identity i of a seed is the same face in every set made with it: "
                           "use different seeds for sets that must not share faces")
  parser.add_argument("--max-yaw", type=float, default=defaults.max_yaw,
                      help="views spread over +-this yaw (degrees)")
  parser.add_argument("--target-yaw", type=float, default=defaults.target_yaw,
                      help="the target view's |yaw| at most this (degrees)")
  parser.add_argument("--source-yaw-gap", type=float, default=defaults.source_yaw_gap,
                      help="each source view at least this far in yaw from the target (degrees)")
  parser.add_argument("--landmark-noise", type=float, default=defaults.landmark_noise,
                      help="std (pixels) of the noise added to the landmark files")
  parser.add_argument("--mono-fraction", type=float, default=defaults.mono_fraction,
                      help="chance per training identity of an extra monocular (flag 0) sample")
  parser.add_argument("--quiet", action="store_true", help="no progress bar")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  try:
    check_output_folder(args.output)
    from mgc_face import synthetic
    from shared.model.face_model import load_face_model
    model = load_face_model(args.face_model)
    test = args.test_identities
    if test is None:
      test = max(1, round(DEFAULT_TEST_FRACTION * args.identities))
    if not 0 <= args.target_yaw < args.target_yaw + args.source_yaw_gap <= args.max_yaw:
      raise InputError(f"--target-yaw {args.target_yaw:g} + --source-yaw-gap "
                       f"{args.source_yaw_gap:g} must stay within --max-yaw {args.max_yaw:g}")
    config = synthetic.SyntheticConfig(max_yaw=args.max_yaw, target_yaw=args.target_yaw,
                                       source_yaw_gap=args.source_yaw_gap,
                                       landmark_noise=args.landmark_noise,
                                       mono_fraction=args.mono_fraction)
    start = time.time()
    info = synthetic.generate(model, args.output, args.identities, test, args.seed, args.views,
                              config, progress=not args.quiet)
  except InputError as error:
    return report(error)
  print(f"wrote {info['train_samples']} training and {info['test_samples']} held-out samples "
        f"to {args.output} in {time.time() - start:.1f} s")
  return 0


if __name__ == "__main__":
  from shared import quiet
  quiet.setup()  # Before TensorFlow is imported; FACE3D_VERBOSE=1 keeps library logs.
  sys.exit(main())
