#!/usr/bin/env python
"""Badly exposed photos: faces found with and without the equalised retry.

scikit-image's astronaut, its pixel values scaled by `--gains` and clipped to
8 bits (under 1: darker; over 1: over-exposed, the face saturating), goes
through BlazeFace and the mesh on the photo itself, on its
exposure-equalised copy (`shared.photo.exposure`), and through the whole
front end (`shared.photo.landmarks.detect_faces`, which takes the copy only
when the photo gave no face).  For each front-end face the mean distance of
its 68 points to those of the unscaled photo.  Then scikit-image's photos
without a human face through the front end, which must give none.  Prints
a table, then one JSON line.

    python bench/exposure.py [--gains 0.01 0.02 0.05 1 2 2.5 3 4 6]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (sets up quiet logging first)

NON_FACE_PHOTOS = ("chelsea", "cat", "horse", "moon", "coffee", "rocket", "hubble_deep_field",
                   "text", "coins", "clock", "brick", "grass", "gravel", "logo", "page")


def _parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--gains", type=float, nargs="+",
                      default=[0.01, 0.02, 0.05, 0.15, 1.0, 2.0, 2.5, 3.0, 4.0, 6.0],
                      help="factors on the astronaut's pixel values")
  return parser.parse_args(argv)


def run(args):
  import numpy as np
  import skimage.data
  from shared.io.image_io import sample_image
  from shared.photo import exposure, landmarks
  astronaut = skimage.data.astronaut()
  reference = landmarks.detect_faces(astronaut, cnn_fallback=False)[0].landmarks68
  rows, result = [], []
  for gain in args.gains:
    image = np.clip(astronaut.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    plain = sum(f is not None for f in landmarks._blazeface_faces(image, "blazeface"))
    equalised = sum(f is not None for f in landmarks._blazeface_faces(
        exposure.equalise_luminance(image), landmarks.EQUALISED_DETECTOR))
    faces = landmarks.detect_faces(image, cnn_fallback=False)
    distance = (float(np.linalg.norm(faces[0].landmarks68 - reference, axis=1).mean())
                if faces else None)
    saturated = float((image.max(-1) == 255).mean())
    rows.append([gain, f"{100 * saturated:.0f} %", plain, equalised, len(faces),
                 faces[0].detector if faces else "-",
                 "-" if distance is None else f"{distance:.2f}"])
    result.append({"gain": gain, "saturated": saturated, "photo": plain, "equalised": equalised,
                   "front_end": len(faces), "detector": faces[0].detector if faces else None,
                   "mean_px_to_unscaled": distance})
  common.print_table(["gain", "pixels at 255 (any channel)", "photo", "equalised copy", "front end",
                      "detector", "68-point px to x1"], rows)
  false_faces = {name: len(landmarks.detect_faces(sample_image(name),
                                                  cnn_fallback=False))
                 for name in NON_FACE_PHOTOS}
  print("faces in photos without a human face: "
        + ", ".join(f"{name} {count}" for name, count in false_faces.items()))
  common.print_json({"rows": result, "non_face_photos": false_faces})


def main(argv=None):
  return common.run_reporting_input_errors(run, _parse_args(argv))


if __name__ == "__main__":
  sys.exit(main())
