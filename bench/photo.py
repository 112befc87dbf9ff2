"""Times the photo pipeline per face: detection, alignment, regression, fitting.

Usage (from the repository root):
  python bench/photo.py [--folder DIR] [--threads 2] [--repeats 3]
                        [--checkpoint DIR | --no-regressor] [--batch 1]
                        [--landmarks dense|mesh68|dlib]

Default folder: <data dir>/eval/aflw2000_16 (the faces the detector finds
there).  "detect" is the whole front end: BlazeFace (two passes, one
mirrored) and the 468-point mesh (two passes) for `dense`/`mesh68`, dlib's
HOG and 68-point predictor for `dlib`.  Without `--checkpoint` the regressor is an UNTRAINED
`mgc_face` network with the `tiny` config (same cost as a trained one of
that config; its output is the mean face).  Fitting is timed with the
default `FitConfig` ("with fitting") and with 0 steps ("without fitting":
the closed-form pose and the final render), in batches of `--batch` faces,
after one warm-up batch that compiles.  Model loading and compiling are
reported separately.  Prints a table, then one JSON line (last line).
"""

import argparse
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import EVAL_SUBDIR, add_photo_arguments, limit_threads  # noqa: E402

MS = 1000.0
GOAL_WITH_FIT_MS = 600.0
GOAL_WITHOUT_FIT_MS = 150.0


def _parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  add_photo_arguments(parser)
  parser.add_argument("--checkpoint", help="trained MGC checkpoint folder")
  parser.add_argument("--no-regressor", action="store_true", help="time without a network")
  parser.add_argument("--batch", type=int, default=1, help="faces per fitting batch")
  parser.add_argument("--config", default="tiny", help="MGC config of the untrained regressor")
  parser.add_argument("--landmarks", default="dense",
                      choices=("dense", "mesh68", "dlib", "auto"),
                      help="landmark front end and the points the fit follows")
  return parser.parse_args(argv)


def _median(values):
  import numpy as np
  return float(np.median(values)) if len(values) else None


def main(argv=None):
  args = _parse_args(argv)
  limit_threads(args.threads)
  import numpy as np
  import tensorflow as tf
  tf.config.threading.set_intra_op_parallelism_threads(args.threads)
  tf.config.threading.set_inter_op_parallelism_threads(args.threads)
  from bench.common import print_json, print_table
  from shared.io import paths
  from shared.model.face_model import load_face_model
  from shared.fit.fitter import FitConfig
  from shared.io.image_io import read_image
  from shared.photo.landmarks import LANDMARK_MODES
  from shared.photo.landmarks import load_models
  from shared.photo.reconstruct import IMAGE_SUFFIXES, PhotoReconstructor

  folder = Path(args.folder) if args.folder else paths.data_file(EVAL_SUBDIR)
  files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
  start = time.perf_counter()
  face_model = load_face_model()
  load_models(cnn=False)
  regressor, regressor_name = None, "none"
  if args.checkpoint:
    from mgc_face.infer import load_regressor
    regressor, regressor_name = load_regressor(args.checkpoint, face_model), "checkpoint"
  elif not args.no_regressor:
    from mgc_face.config import get_config
    from mgc_face.infer import build_regressor
    regressor = build_regressor(face_model, get_config(args.config))
    regressor_name = f"untrained {args.config}"
  load_s = time.perf_counter() - start

  backend, fit_points = LANDMARK_MODES[args.landmarks]
  fit_on = PhotoReconstructor(face_model, regressor, FitConfig(), max_batch=args.batch,
                              backend=backend, fit_points=fit_points)
  fit_off = PhotoReconstructor(face_model, regressor, FitConfig().with_steps(0),
                               max_batch=args.batch, backend=backend, fit_points=fit_points)
  detect_ms, align_ms, jobs = [], [], []
  for path in files:
    image = read_image(path)
    for _ in range(args.repeats):
      fit_on.timings["detect"].clear()
      fit_on.timings["align"].clear()
      faces = fit_on.detect(image)
      detect_ms.append(fit_on.timings["detect"][0] * MS)
      align_ms.append(fit_on.timings["align"][0] * MS / max(len(faces), 1))
    jobs.extend(faces[:1])
  if not jobs:
    raise SystemExit(f"{folder}: no faces found")
  # Full batches only (dense and 68-point faces apart, as the pipeline fits them).
  batches = [inputs for chunk, *inputs in fit_on.padded_batches(jobs) if len(chunk) == args.batch]
  if not batches:
    raise SystemExit(f"{folder}: fewer than --batch {args.batch} faces of one kind")

  results = {}
  for label, pipeline in (("with fitting", fit_on), ("without fitting", fit_off)):
    start = time.perf_counter()
    crops, landmarks, dense = batches[0]
    pipeline.regress_and_fit(crops, landmarks, dense)     # compiles
    compile_s = time.perf_counter() - start
    for key in ("regress", "fit"):
      pipeline.timings[key].clear()
    for _ in range(args.repeats):
      for crops, landmarks, dense in batches:
        pipeline.regress_and_fit(crops, landmarks, dense)
    per_face = {k: _median(pipeline.timings[k]) / args.batch * MS
                if pipeline.timings[k] else 0.0 for k in ("regress", "fit")}
    results[label] = {"compile_s": compile_s, **per_face}

  detect, align = _median(detect_ms), _median(align_ms)
  rows, summary = [], {}
  for label, r in results.items():
    total = detect + align + r["regress"] + r["fit"]
    goal = GOAL_WITH_FIT_MS if label == "with fitting" else GOAL_WITHOUT_FIT_MS
    rows.append([label, f"{detect:.1f}", f"{align:.2f}", f"{r['regress']:.1f}",
                 f"{r['fit']:.1f}", f"{total:.1f}", f"{goal:.0f}", f"{r['compile_s']:.1f}"])
    key = label.replace(" ", "_")
    summary[key] = {"fit_ms": round(r["fit"], 2), "regress_ms": round(r["regress"], 2),
                    "total_ms": round(total, 2), "compile_s": round(r["compile_s"], 2),
                    "goal_ms": goal, "meets_goal": bool(total < goal)}
  config = FitConfig()
  print(f"{len(jobs)} faces from {len(files)} images in {folder}; regressor: {regressor_name}; "
        f"fitting {config.landmark_steps} landmark + {config.photometric_steps} photometric "
        f"steps, batches of {args.batch}; {args.threads} threads; load average "
        f"{os.getloadavg()[0]:.1f}")
  print_table(["per face (ms)", "detect", "align", "regress", "fit", "total", "goal",
               "compile (s)"], rows)
  print_json({"bench": "photo", "landmarks": args.landmarks, "faces": len(jobs), "images": len(files), "batch": args.batch,
              "threads": args.threads, "repeats": args.repeats, "regressor": regressor_name,
              "landmark_steps": config.landmark_steps,
              "photometric_steps": config.photometric_steps,
              "detect_ms": round(detect, 2), "align_ms": round(align, 3),
              "load_s": round(load_s, 2), "load_average": round(os.getloadavg()[0], 2),
              **summary})
  return 0


if __name__ == "__main__":
  sys.exit(main())
