"""One person in many images: the photo pipeline's shape with one identity per person
(`same_person`) against each image fitted on its own, on synthetic renders with known shape.

    python bench/same_person.py [--persons 12] [--frames 8] [--seeds 0 1 2] [--max-yaw 60]
                                [--scene textured] [--landmarks detected|truth]
                                [--checkpoint CKPT] [--set NAME=VALUE] [--arms own same]
                                [--expressions gaussian|sparse]

Each seed renders `--persons` random ICT identities (`bench/photo_synthetic.render_faces`,
none tuned on), each `--frames` times with its own expression, pose (|yaw| uniform up to
`--max-yaw`, pitch within 15 degrees) and scene.  Expressions: every blendshape weight
normal with std 0.3, negative ones included (`gaussian`), or up to 4 blendshapes of weight
0-0.7 as in MGC's synthetic training data (`sparse`).  Every image goes through the pipeline
(BlazeFace, MediaPipe's 468 points, the dense fit; default `FitConfig`) twice:

- own: each image's face fitted on its own (as `main.py --mode test` does);
- same person: `PhotoReconstructor.pool_identity_of` over the person's faces, then each
  image fitted with that identity held fixed (as `--same-person` does).

`--landmarks truth` replaces the detector by the render's true 68 points (and the dense fit
by the 68-point one): what the fit makes of perfect sparse landmarks.  `--set NAME=VALUE`
changes the photo fit (`FitConfig`).  Times are the fits' (detection excluded).

Scored per image against the truth, as `mgc_face.evaluate` scores shape (face region,
similarity-aligned RMSE, divided by the mean face's): the identity (the neutral face of the
fitted identity against the true one) and the whole shape (identity and expression).  Also
the identity's flicker: the RMS over vertices of the neutral face's standard deviation over
a person's images, after similarity alignment to their mean (mm; 0 with one identity).
Prints a table per seed and the paired difference, then one JSON line.
"""

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (sets up quiet logging first)


def _parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--persons", type=int, default=12)
  parser.add_argument("--frames", type=int, default=8, help="images per person")
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--max-yaw", type=float, default=60.0, help="largest |yaw|, degrees")
  parser.add_argument("--scene", default="textured", choices=("plain", "varied", "textured"))
  parser.add_argument("--arms", nargs="+", choices=("own", "same"), default=["own", "same"],
                      help="which fits to run (default both)")
  parser.add_argument("--landmarks", default="detected", choices=("detected", "truth"),
                      help="detected: BlazeFace and MediaPipe's 468 points, the dense fit (as "
                           "photos are); truth: the render's true 68 points, the 68-point fit")
  parser.add_argument("--expressions", default="gaussian", choices=("gaussian", "sparse"),
                      help="gaussian: every weight N(0, 0.3); sparse: up to 4 weights in "
                           "[0, 0.7], as MGC's synthetic data")
  parser.add_argument("--checkpoint", help="an MGC checkpoint whose regressor starts the fits "
                                           "(default: the posed mean face)")
  from shared.config_overrides import add_set_argument
  add_set_argument(parser, "the photo fit's FitConfig (shared/fit/fitter.py)", "shape_weight=3e-4")
  return parser.parse_args(argv)


def _shapes(decoder, identity, expression):
  import numpy as np
  return decoder.shape(np.asarray(identity, np.float32),
                       np.asarray(expression, np.float32)).numpy()


def _flicker(neutral, region, rigid_align):
  """RMS over the face region of the per-vertex std over images (model units), each
  neutral face similarity-aligned to their mean first."""
  import numpy as np
  mean = neutral.mean(0)
  aligned = np.stack([rigid_align(n[region], mean[region], with_scale=True) for n in neutral])
  return float(np.sqrt(np.mean(np.sum(aligned.var(0), -1))))


def _truth_job(image, landmarks):
  """A `FaceJob` of the rendered face's true 68 points (no detector; the 68-point fit)."""
  import numpy as np
  from shared.photo import alignment
  from shared.photo.landmarks import Face
  from shared.photo.reconstruct import FaceJob
  landmarks = np.asarray(landmarks, np.float32)
  box = np.r_[landmarks.min(0), landmarks.max(0)].astype(np.float32)
  return FaceJob(0, Face(box, landmarks, 1.0, "truth"), alignment.align_224(image, landmarks))


def run_seed(args, seed, face_model, pipe):
  import numpy as np
  from photo_synthetic import render_faces
  from mgc_face.evaluate import aligned_rmse, rigid_align, SKIN_REGION
  count = args.persons * args.frames
  images, true_landmarks, _, truth = render_faces(face_model, count, seed, max_yaw=args.max_yaw,
                                     spread="uniform", scene=args.scene,
                                     frames_per_identity=args.frames, coefficients=True,
                                     expressions=args.expressions)
  decoder = pipe.synthesizer.decoder
  region = face_model.skin_mask > SKIN_REGION
  zero_exp = np.zeros_like(truth.expression)
  true_full = _shapes(decoder, truth.identity, truth.expression)
  true_neutral = _shapes(decoder, truth.identity, zero_exp)
  mean_face = np.asarray(face_model.mean_shape)
  arms = {arm: {} for arm in args.arms}
  seconds = {arm: 0.0 for arm in args.arms}
  for person in range(args.persons):
    frames = range(person * args.frames, (person + 1) * args.frames)
    jobs = {}
    for k in frames:
      job = (_truth_job(images[k], true_landmarks[k]) if args.landmarks == "truth"
             else pipe.largest_of(pipe.drop_weak(pipe.detect(images[k]))[0])[0])
      if job is not None:
        jobs[k] = job
    numbered = [dataclasses.replace(job, index=n) for n, job in enumerate(jobs.values())]
    for arm in arms:
      start = time.perf_counter()
      pipe.fixed_identity, pipe.largest_only = None, False
      if arm == "same":
        pipe.pool_identity_of(numbered)
      records = pipe.reconstruct(numbered) if numbered else []
      seconds[arm] += time.perf_counter() - start
      for k, record in zip(jobs, records):
        c = record["coeffs"]
        arms[arm][k] = (c["identity"], c["expression"])
  pipe.fixed_identity, pipe.largest_only = None, False
  rows = {}
  for arm, fitted in arms.items():
    keys = sorted(fitted)
    ident = np.stack([fitted[k][0] for k in keys])
    expr = np.stack([fitted[k][1] for k in keys])
    full = _shapes(decoder, ident, expr)
    neutral = _shapes(decoder, ident, np.zeros_like(expr))
    ratio = lambda shapes, truths: float(
        np.mean([aligned_rmse(s, t, region, True) for s, t in zip(shapes, truths)])
        / np.mean([aligned_rmse(mean_face, t, region, True) for t in truths]))
    flicker = [_flicker(neutral[[i for i, k in enumerate(keys) if k // args.frames == p]],
                        region, rigid_align)
               for p in range(args.persons)
               if sum(k // args.frames == p for k in keys) > 1]
    rows[arm] = {"found": len(keys),
                 "identity_vs_mean_face": ratio(neutral, true_neutral[keys]),
                 "shape_vs_mean_face": ratio(full, true_full[keys]),
                 # None where no person had two images with a face found
                 "flicker_mm": (float(np.mean(flicker)) * face_model.mm_per_unit
                                if flicker else None),
                 "ms_per_image": 1000.0 * seconds[arm] / max(len(keys), 1)}
  return rows


def run(args):
  import numpy as np
  from shared.errors import InputError
  from shared.model.face_model import load_face_model
  from shared.photo.reconstruct import PhotoReconstructor
  if args.persons < 1 or args.frames < 2:
    raise InputError("--persons must be at least 1 and --frames at least 2")
  face_model = load_face_model()
  regressor = None
  if args.checkpoint:
    from mgc_face.infer import load_regressor
    regressor = load_regressor(args.checkpoint, face_model)
  from shared.config_overrides import apply_overrides
  from shared.fit.fitter import FitConfig
  pipe = PhotoReconstructor(face_model, regressor, apply_overrides(FitConfig(), args.set, fixed={}))
  per_seed = {seed: run_seed(args, seed, face_model, pipe) for seed in args.seeds}
  metrics = ("identity_vs_mean_face", "shape_vs_mean_face", "flicker_mm", "ms_per_image")
  table = []
  for seed, rows in per_seed.items():
    for arm in args.arms:
      table.append([seed, arm, rows[arm]["found"]]
                   + ["-" if rows[arm][m] is None else f"{rows[arm][m]:.4f}" for m in metrics])
  common.print_table(["seed", "arm", "found"] + list(metrics), table)
  summary = {}
  for m in metrics if len(args.arms) == 2 else ():
    own = np.array([rows["own"][m] for rows in per_seed.values()], np.float64)
    same = np.array([rows["same"][m] for rows in per_seed.values()], np.float64)
    if np.isnan(own).any() or np.isnan(same).any():
      continue
    summary[m] = {"own_mean": float(own.mean()), "own_std": float(own.std()),
                  "same_mean": float(same.mean()), "same_std": float(same.std()),
                  "paired_difference": [round(float(d), 4) for d in same - own]}
    print(f"{m}: own {own.mean():.4f} +- {own.std():.4f}, same person {same.mean():.4f} +- "
          f"{same.std():.4f}; paired same - own per seed "
          + ", ".join(f"{d:+.4f}" for d in same - own))
  common.print_json({"bench": "same_person", "persons": args.persons, "frames": args.frames,
                     "seeds": args.seeds, "max_yaw": args.max_yaw, "scene": args.scene,
                     "checkpoint": args.checkpoint, "set": args.set or [],
                     "landmarks": args.landmarks, "expressions": args.expressions,
                     "per_seed": {str(k): v for k, v in per_seed.items()}, "summary": summary,
                     "load_average": common.load_average()})


def main(argv=None):
  return common.run_reporting_input_errors(run, _parse_args(argv))


if __name__ == "__main__":
  sys.exit(main())
