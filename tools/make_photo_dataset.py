#!/usr/bin/env python
"""Packs real photos and videos into an MGC strip dataset, to train on them.

    python tools/make_photo_dataset.py --input DIR --output DATASET [--test-fraction 0.1]
        [--frames-per-video 16] [--min-source-yaw-gap 5] [--seed 0] [--face-model PATH] [--quiet]

DIR/<sequence>/ holds one person's images from several views (or frames of one
clip; videos in it add their frames); a video directly in DIR is a sequence of its
own, a photo directly in DIR a monocular sample.  Every image goes through the photo
pipeline (largest face, 224 x 224 alignment, fit); see mgc_face/photo_dataset.py for
the triplets and files.  Then:

    python main.py --model mgc --mode train --data DATASET --checkpoint CKPT [--config paper]
    python tools/create_bin.py --input DATASET --output train.bin    # GCN training data

An image or video that cannot be read, or without a face, is skipped with one
`skipped: FILE: problem` line; when nothing usable is found, one `error:` line
follows (that problem, or a count of them), the exit status is 2 and nothing is written.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.errors import InputError, report  # noqa: E402
from shared.io.paths import check_output_folder  # noqa: E402



def parse_args(argv=None):
  from mgc_face.photo_dataset import PhotoDatasetConfig
  defaults = PhotoDatasetConfig()
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--input", required=True, help="folder of sequences, photos and videos")
  parser.add_argument("--output", required=True, help="dataset folder to write")
  parser.add_argument("--face-model", default=None, help="face model (default: ICT)")
  parser.add_argument("--test-fraction", type=float, default=defaults.test_fraction,
                      help="share of the sequences held out (test.txt and heldout/)")
  parser.add_argument("--frames-per-video", type=int, default=defaults.frames_per_video,
                      help="frames taken from each video, evenly spaced")
  parser.add_argument("--min-source-yaw-gap", type=float, default=defaults.min_source_yaw_gap,
                      help="degrees a source view should differ from its target in fitted yaw")
  parser.add_argument("--seed", type=int, default=0, help="seed of the held-out choice")
  parser.add_argument("--quiet", action="store_true", help="no progress bar")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  try:
    if not 0 <= args.test_fraction < 1:
      raise InputError(f"--test-fraction {args.test_fraction:g}: must be in [0, 1)")
    if args.frames_per_video < 1:
      raise InputError(f"--frames-per-video {args.frames_per_video}: must be at least 1")
    check_output_folder(args.output)
    from mgc_face import photo_dataset
    from shared.model.face_model import load_face_model
    config = photo_dataset.PhotoDatasetConfig(
        test_fraction=args.test_fraction, frames_per_video=args.frames_per_video,
        min_source_yaw_gap=args.min_source_yaw_gap)
    model = load_face_model(args.face_model)
    start = time.time()
    info = photo_dataset.build(model, args.input, args.output, config, args.seed,
                               progress=not args.quiet,
                               log=lambda line: print(line, file=sys.stderr))
  except InputError as error:
    return report(error)
  print(f"wrote {info['train_samples']} training and {info['test_samples']} held-out samples "
        f"({info['faces']} faces in {info['sequences']} sequences; {len(info['skipped'])} "
        f"skipped) to {args.output} in {time.time() - start:.1f} s")
  return 0


if __name__ == "__main__":
  from shared import quiet
  quiet.setup()  # Before TensorFlow is imported; FACE3D_VERBOSE=1 keeps library logs.
  sys.exit(main())
