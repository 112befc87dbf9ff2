"""Times face detection + 68 landmarks and the 224 alignment per image.

Usage (from the repository root):
  python bench/detect.py [--folder DIR] [--threads 2] [--repeats 3] [--cnn-fallback]

Default folder: <data dir>/eval/aflw2000_16.  Models are loaded once before
timing (reported separately).  Each image is read once; detect and align are
timed `--repeats` times and the median kept.  Prints a table, then one JSON
line with the summary (last line of output).
"""

import argparse
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import EVAL_SUBDIR, add_photo_arguments, limit_threads  # noqa: E402

MS = 1000.0


def _parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  add_photo_arguments(parser)
  parser.add_argument("--cnn-fallback", action="store_true",
                      help="use dlib's CNN detector when HOG finds no face")
  return parser.parse_args(argv)


def _median_time(fn, repeats):
  """Returns `(last result, median seconds)` of `repeats` calls of `fn()`."""
  import numpy as np
  times, result = [], None
  for _ in range(repeats):
    start = time.perf_counter()
    result = fn()
    times.append(time.perf_counter() - start)
  return result, float(np.median(times))


def main(argv=None):
  args = _parse_args(argv)
  limit_threads(args.threads)
  import numpy as np
  from shared.io import paths
  from shared.photo.alignment import align_224
  from shared.errors import InputError, report
  from shared.io.image_io import read_image
  from shared.photo.landmarks import detect_faces, load_models
  try:
    folder = Path(args.folder) if args.folder else paths.data_file(EVAL_SUBDIR)
    if not folder.is_dir():
      raise InputError(f"{folder}: folder not found")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not images:
      raise InputError(f"{folder}: no .jpg/.png images")
    start = time.perf_counter()
    load_models(cnn=args.cnn_fallback)
    load_s = time.perf_counter() - start
    rows = []
    print(f"{'image':<16} {'size':>9} {'faces':>5} {'det':>4} {'detect ms':>9} {'align ms':>8}")
    for path in images:
      image = read_image(path)
      faces, det_s = _median_time(
          lambda: detect_faces(image, cnn_fallback=args.cnn_fallback), args.repeats)
      align_s = None
      if faces:
        _, align_s = _median_time(lambda: align_224(image, faces[0].landmarks68), args.repeats)
      rows.append({"image": path.name, "faces": len(faces), "detect_ms": det_s * MS,
                   "align_ms": None if align_s is None else align_s * MS,
                   "detector": faces[0].detector if faces else None})
      size = f"{image.shape[1]}x{image.shape[0]}"
      align_txt = "-" if align_s is None else f"{align_s * MS:.2f}"
      print(f"{path.name:<16} {size:>9} {len(faces):5d} {rows[-1]['detector'] or 'none':>4} "
            f"{det_s * MS:9.1f} {align_txt:>8}")
  except InputError as e:
    return report(e)
  found = [r for r in rows if r["faces"]]
  detect_ms = [r["detect_ms"] for r in rows]
  align_ms = [r["align_ms"] for r in found]
  summary = {
      "bench": "detect", "folder": str(folder), "images": len(rows), "detected": len(found),
      "threads": args.threads, "cnn_fallback": args.cnn_fallback, "repeats": args.repeats,
      "model_load_s": round(load_s, 3),
      "detect_ms_median": round(float(np.median(detect_ms)), 2),
      "detect_ms_mean": round(float(np.mean(detect_ms)), 2),
      "align_ms_median": round(float(np.median(align_ms)), 3) if align_ms else None,
  }
  print(f"{len(found)}/{len(rows)} images with a face; detect+landmarks median "
        f"{summary['detect_ms_median']} ms, mean {summary['detect_ms_mean']} ms; align median "
        f"{summary['align_ms_median']} ms; model load {summary['model_load_s']} s")
  print(json.dumps(summary))
  return 0


if __name__ == "__main__":
  sys.exit(main())
