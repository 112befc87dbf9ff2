#!/usr/bin/env python
"""False faces in large photos: BlazeFace's detections and the mesh model's votes.

scikit-image's sample photos, upscaled by `--scales` (bicubic; 4x makes most of
them 1500-5600 px, so they are also searched in tiles), and any photos in
`--folder` at their own size, go through BlazeFace.  Each detection is listed
with its score, the mesh model's face probability in the detector's ROI and in
the ROI of its own points (`shared.photo.landmarks.mesh_passes`) and whether
the front end keeps it (`landmarks.is_mesh_face`: a detection scoring under
`MESH_CONFIDENT_SCORE` needs both passes).  Only the astronaut and the
cameraman hold a face; every kept detection elsewhere is a false face.
Prints a table, then one JSON line.

    python bench/false_faces.py [--scales 1 4] [--folder DIR]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (sets up quiet logging first)

PHOTOS_WITH_A_FACE = ("astronaut", "camera")
PHOTOS_WITHOUT = ("chelsea", "cat", "horse", "moon", "coffee", "rocket", "hubble_deep_field",
                  "text", "coins", "clock", "brick", "grass", "gravel", "logo", "page",
                  "colorwheel", "retina", "immunohistochemistry", "cell")
MAX_PIXELS = 40_000_000     # upscaled copies larger than this are left out


def _parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--scales", type=int, nargs="+", default=[1, 4],
                      help="upscaling factors of scikit-image's photos")
  parser.add_argument("--folder", help="also these photos (a folder), at their own size")
  args = parser.parse_args(argv)
  if min(args.scales) < 1:
    parser.error("--scales: each factor must be 1 or more")
  return args


def _inputs(args):
  """(name, has a face or None when unknown, uint8 [H, W, 3] RGB) to probe."""
  import cv2
  from shared.io.image_io import list_images, read_image, sample_image
  for name in PHOTOS_WITH_A_FACE + PHOTOS_WITHOUT:
    image = sample_image(name)
    for scale in args.scales:
      if image.shape[0] * image.shape[1] * scale * scale > MAX_PIXELS:
        continue
      big = image if scale == 1 else cv2.resize(
          image, (image.shape[1] * scale, image.shape[0] * scale), interpolation=cv2.INTER_CUBIC)
      yield f"{name} x{scale}", name in PHOTOS_WITH_A_FACE, big
  if args.folder:
    for path in list_images(args.folder):
      yield path.name, None, read_image(path)


def run(args):
  from shared.errors import fail
  from shared.photo import blazeface, landmarks
  if args.folder and not Path(args.folder).is_dir():
    fail(args.folder, "not a folder")
  rows, result = [], []
  false_faces = 0
  for name, has_face, image in _inputs(args):
    detections = []
    for d in blazeface.detect(image):
      _, probabilities = landmarks.mesh_passes(image, d.box, d.keypoints[0], d.keypoints[1])
      kept = landmarks.is_mesh_face(probabilities, d.score >= landmarks.MESH_CONFIDENT_SCORE)
      side = float(max(d.box[2] - d.box[0], d.box[3] - d.box[1]))
      detections.append({"score": round(float(d.score), 3), "side_px": round(side),
                         "mesh": [round(float(p), 3) for p in probabilities], "kept": kept})
    kept = sum(d["kept"] for d in detections)
    if has_face is False:
      false_faces += kept
    size = f"{image.shape[1]}x{image.shape[0]}"
    listed = "; ".join(f"{d['score']:.2f} ({'/'.join(f'{p:.3f}' for p in d['mesh'])})"
                       f"{' kept' if d['kept'] else ''}" for d in detections) or "-"
    rows.append([name, size, {True: "yes", False: "no", None: "?"}[has_face], kept, listed])
    result.append({"image": name, "size": size, "face": has_face, "kept": kept,
                   "detections": detections})
  common.print_table(["photo", "size", "a face", "faces kept",
                      "detections: score (mesh probability per pass)"], rows)
  print(f"false faces kept: {false_faces}")
  common.print_json({"bench": "false_faces", "scales": args.scales,
                     "confident_score": landmarks.MESH_CONFIDENT_SCORE,
                     "false_faces": false_faces, "rows": result})


def main(argv=None):
  return common.run_reporting_input_errors(run, _parse_args(argv))


if __name__ == "__main__":
  sys.exit(main())
