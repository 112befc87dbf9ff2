"""Small faces in large photos: what BlazeFace's tile pyramid finds, and its cost.

scikit-image's astronaut is pasted into grey 4:3 canvases, scaled so that her
face (about 106 px wide at 512 px) is `--faces` px wide, and searched by
`shared.photo.blazeface.detect` with the default tile pyramid and with its
first level only (what the detector did before session 26), then by the
whole photo front end (`shared.photo.landmarks.detect_faces`, which drops a
detection whose mesh says it is no face).  The astronaut upscaled to the
same sizes must stay one face.  Prints a table, then one JSON line.

    python bench/small_faces.py [--canvases 1024 2048 4000] [--faces 32 48 64 96 128]
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (sets up quiet logging first)

ASTRONAUT_FACE_PX = 106.0  # her face's width in the 512 px photo (BlazeFace's box)
BACKGROUND = 90            # grey level of the canvas


def _parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--canvases", type=int, nargs="+", default=[1024, 2048, 4000],
                      help="canvas widths (px; height 3/4 of it)")
  parser.add_argument("--faces", type=int, nargs="+", default=[32, 48, 64, 96, 128],
                      help="face widths (px)")
  return parser.parse_args(argv)


def _timed(function, *args):
  start = time.perf_counter()
  result = function(*args)
  return result, 1000.0 * (time.perf_counter() - start)


def main(argv=None):
  args = _parse_args(argv)
  import cv2
  import numpy as np
  import skimage.data
  from shared.photo import blazeface, landmarks
  astronaut = skimage.data.astronaut()
  pyramid = blazeface.DetectorConfig(turn_fallback=False)
  first_level = blazeface.DetectorConfig(turn_fallback=False, tile_smallest=10**9)
  blazeface.detect(astronaut)  # Load the model before timing.
  rows = []
  print(f"{'canvas':>7} {'face px':>8} {'pyramid':>8} {'ms':>6} {'1st level':>10} {'ms':>6} "
        f"{'front end':>10}")
  for width in args.canvases:
    for face in args.faces:
      side = int(round(512 * face / ASTRONAUT_FACE_PX))
      canvas = np.full((width * 3 // 4, width, 3), BACKGROUND, np.uint8)
      y0, x0 = int(0.6 * (canvas.shape[0] - side)), int(0.7 * (width - side))  # Off-centre.
      canvas[y0:y0 + side, x0:x0 + side] = cv2.resize(astronaut, (side, side),
                                                      interpolation=cv2.INTER_AREA)
      found, ms = _timed(blazeface.detect, canvas, pyramid)
      old, old_ms = _timed(blazeface.detect, canvas, first_level)
      faces = landmarks.detect_faces(canvas, cnn_fallback=False)
      rows.append({"canvas": width, "face_px": face, "pyramid": len(found), "pyramid_ms": ms,
                   "first_level": len(old), "first_level_ms": old_ms, "front_end": len(faces)})
      print(f"{width:>7} {face:>8} {len(found):>8} {ms:>6.0f} {len(old):>10} {old_ms:>6.0f} "
            f"{len(faces):>10}")
  upscaled = {}
  for width in args.canvases:
    big = cv2.resize(astronaut, (width, width), interpolation=cv2.INTER_CUBIC)
    upscaled[width] = len(landmarks.detect_faces(big, cnn_fallback=False))
  print("astronaut upscaled, faces from the front end: "
        + ", ".join(f"{w} px: {n}" for w, n in upscaled.items()))
  common.print_json({"rows": rows, "astronaut_upscaled_faces": upscaled})
  return 0


if __name__ == "__main__":
  sys.exit(main())
