#!/usr/bin/env python
"""Gives an MGC checkpoint's landmark cascade the reader of a preset, without retraining.

    python tools/refit_cascade_reader.py --checkpoint CKPT [--config cpu_hour]

The cascade's reader (`mgc_face.train.cascade_reader`: the prior map from the
refined points to identity and expression) is fitted on the face model's
prior alone, no image or label, so it can be replaced on a trained cascade
when the preset's reader changes: a `cpu_hour` checkpoint of session 21 (one
map) gets session 22's (one map per 10 degrees of yaw) in about a minute, and
its stages and network stay as they are; `--config tiny` gives a `tiny` checkpoint of
session 34 or earlier the reader `tiny` has since session 35 (the same cascade.npz, array
for array, as training it now writes).  CKPT/meta.json's config takes the
preset's reader fields; cascade.npz and meta.json are rewritten atomically.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.errors import InputError, report  # noqa: E402

READER_FIELDS = ("cascade_prior_noise", "cascade_reader_yaw_step", "cascade_reader_yaw_window",
                 "cascade_reader_samples", "prior_init_ridge")


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--checkpoint", required=True, help="MGC checkpoint folder with a cascade")
  parser.add_argument("--config", default="cpu_hour", help="preset whose reader to use")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  try:
    from mgc_face import checkpoint as checkpoint_lib
    from mgc_face import config as config_lib
    from mgc_face import infer
    from mgc_face import train
    from shared.io.fileio import write_text_atomic
    preset = config_lib.get_config(args.config)
    if not preset.cascade_prior_noise:
      raise InputError(f"preset '{args.config}' has no cascade reader (cascade_prior_noise 0)")
    ckpt = Path(args.checkpoint)
    meta = checkpoint_lib.read_meta(ckpt)
    if meta is None:
      raise InputError(f"{ckpt}: no {checkpoint_lib.META_FILE} (not an MGC checkpoint)")
    start = time.time()
    regressor = infer.load_regressor(ckpt)
    cascade = regressor.cascade
    if cascade is None:
      raise InputError(f"{ckpt}: no landmark cascade for its step {regressor.steps}")
    fields = {name: getattr(preset, name) for name in READER_FIELDS}
    cascade.reader = train.cascade_reader(regressor, regressor.config.replace(**fields),
                                          cascade.dense_vertices)
    cascade.save(ckpt)
    meta["config"].update(fields)
    write_text_atomic(ckpt / checkpoint_lib.META_FILE, json.dumps(meta, indent=2) + "\n")
  except InputError as error:
    return report(error)
  maps = cascade.reader[0].shape[0] if cascade.gated else 1
  print(f"{ckpt}: the cascade's reader is now '{args.config}''s ({maps} map"
        f"{'s' if maps > 1 else ''}, {cascade.points} points) in {time.time() - start:.1f} s")
  return 0


if __name__ == "__main__":
  from shared import quiet
  quiet.setup()  # Before TensorFlow is imported; FACE3D_VERBOSE=1 keeps library logs.
  sys.exit(main())
