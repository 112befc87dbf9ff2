"""Smoothing a video's face points over time: accuracy and jitter against the truth.

Each seed renders one random ICT identity as a clip (`--frames` frames at 25 fps, 448 px,
the `textured` scene of `bench/photo_synthetic.py`: the astronaut's skin, one natural
background and light).  The head turns smoothly: yaw `--max-yaw` times a sine of period
`--period` seconds, pitch 10 and roll 6 degrees on slower sines, and the expression glides
between random expressions drawn every 0.4 s.  The clip is coded as MPEG-4 and read back,
its faces are found once per frame, and each arm then smooths the largest face's points
over time (`shared.photo.tracking`, width `--sigmas` seconds; 0: each frame on its own)
and fits every frame as `main.py --mode test` does (`PhotoReconstructor`, default fit).

Scores of the fitted 68 landmarks in the photo, against the render's own (BFM
convention), each divided by the true box's sqrt(w h), in %, mean over frames and points:

- NME: the position error;
- motion error: |fitted - true| of the step from one frame to the next;
- jitter: |fitted - true| of the second difference (the acceleration), which is what a
  viewer sees as shaking;

and the whole 3D shape's similarity-aligned face-region RMSE over the mean face's (as in
`bench/same_person.py`), and the time the smoothing itself takes (tracking and the local
fits, without detection or fitting).  Prints a table (mean +- std over seeds), then one JSON line.

    python bench/video_smoothing.py [--seeds 0 1 2] [--frames 60] [--period 3]
        [--sigmas 0 0.08 0.12 0.16] [--degree 2] [--max-yaw 50] [--plot PNG]
"""

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (sets up quiet logging first)

FPS = 25.0
PITCH, PITCH_PERIOD = 10.0, 4.4      # degrees, seconds
ROLL, ROLL_PERIOD = 6.0, 3.6
EXPRESSION_EVERY = 0.4               # seconds between the expressions the face glides through
NOSE_TIP = 30                        # the plotted landmark (300-W order)


def _parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--frames", type=int, default=60)
  parser.add_argument("--period", type=float, default=3.0,
                      help="seconds of one full left-right turn")
  parser.add_argument("--max-yaw", type=float, default=50.0, help="degrees")
  parser.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 0.08, 0.12, 0.16],
                      help="smoothing widths to compare, seconds (0: none)")
  parser.add_argument("--plot", metavar="PNG",
                      help="also draw the first seed's fitted nose tip over time, each arm "
                           "against the truth")
  parser.add_argument("--degree", type=int, default=None,
                      help="local polynomial degree (default: SmoothingConfig's)")
  return parser.parse_args(argv)


def trajectory(synth, frames, seed, args):
  """`Coefficients` (numpy) of one identity moving smoothly over `frames` frames."""
  import numpy as np
  import tensorflow as tf
  from photo_synthetic import IDENTITY_STD, EXPRESSION_STD, ALBEDO_STD
  rng = np.random.default_rng(seed)
  t = np.arange(frames) / FPS
  phase = rng.uniform(0, 2 * np.pi, 3)
  rotation = np.radians(np.stack([
      PITCH * np.sin(2 * np.pi * t / PITCH_PERIOD + phase[0]),
      args.max_yaw * np.sin(2 * np.pi * t / args.period + phase[1]),
      ROLL * np.sin(2 * np.pi * t / ROLL_PERIOD + phase[2])], -1))
  zeros = synth.layout.zeros(frames)
  keys = rng.normal(0, EXPRESSION_STD, (int(t[-1] / EXPRESSION_EVERY) + 2,
                                        zeros.expression.shape[1]))
  u = t / EXPRESSION_EVERY
  k = np.floor(u).astype(int)
  ease = ((1 - np.cos(np.pi * (u - k))) / 2)[:, None]
  tile = lambda row: np.tile(row, (frames, 1))
  return zeros._replace(
      identity=tf.constant(tile(rng.normal(0, IDENTITY_STD, zeros.identity.shape[1])), tf.float32),
      albedo=tf.constant(tile(rng.normal(0, ALBEDO_STD, zeros.albedo.shape[1])), tf.float32),
      expression=tf.constant(keys[k] * (1 - ease) + keys[k + 1] * ease, tf.float32),
      rotation=tf.constant(rotation, tf.float32))


def render_clip(face_model, synth, albedo, seed, args):
  """(frames uint8 [N, S, S, 3] as coded and read back, true 68 [N, 68, 2], truth
  `Coefficients`)."""
  import numpy as np
  from photo_synthetic import IMAGE_SIZE, render_coefficients, scene_backgrounds, scene_light
  from shared.io import video_io
  coeffs = trajectory(synth, args.frames, seed, args)
  rng = np.random.default_rng([seed, 1])
  light = np.tile(scene_light(rng, 1), (args.frames, 1))
  background = np.tile(scene_backgrounds(rng, 1, IMAGE_SIZE), (args.frames, 1, 1, 1))
  images, truth = render_coefficients(synth, coeffs, light, background, albedo)
  with tempfile.TemporaryDirectory() as scratch:
    path = Path(scratch) / "clip.mp4"
    with video_io.video_writer(path, FPS, (IMAGE_SIZE, IMAGE_SIZE)) as write:
      for image in images:
        write(image)
    coded = np.stack([frame for _, frame in video_io.read_frames(path)])
  return coded, truth, type(coeffs)(*[np.asarray(v) for v in coeffs])


def scores(fitted, truth, shapes, true_shapes, region, mean_face):
  """The bench's scores of the frames found (`fitted` {frame: [68, 2]}), module doc."""
  import numpy as np
  from mgc_face.evaluate import aligned_rmse
  from shared.eval import metrics
  keys = sorted(fitted)
  size = metrics.gt_box_size(truth[keys])
  nme = metrics.nme_68(np.stack([fitted[k] for k in keys]), truth[keys])
  motion, jitter = [], []
  for k in keys:
    if k + 1 in fitted:
      step = (fitted[k + 1] - fitted[k]) - (truth[k + 1] - truth[k])
      motion.append(np.linalg.norm(step, axis=-1).mean() / size[keys.index(k)])
    if k + 1 in fitted and k + 2 in fitted:
      second = ((fitted[k + 2] - 2 * fitted[k + 1] + fitted[k])
                - (truth[k + 2] - 2 * truth[k + 1] + truth[k]))
      jitter.append(np.linalg.norm(second, axis=-1).mean() / size[keys.index(k)])
  shape = (np.mean([aligned_rmse(shapes[k], true_shapes[k], region, True) for k in keys])
           / np.mean([aligned_rmse(mean_face, true_shapes[k], region, True) for k in keys]))
  mean = lambda v: 100.0 * float(np.mean(v)) if len(v) else None
  return {"found": len(keys), "nme": mean(nme), "motion": mean(motion), "jitter": mean(jitter),
          "shape_vs_mean_face": float(shape)}


def run_seed(seed, args, face_model, synth, albedo, pipe):
  import numpy as np
  from mgc_face.evaluate import SKIN_REGION
  from shared.photo import alignment, tracking
  from shared.photo.reconstruct import smoothing_config
  frames, truth, true_coeffs = render_clip(face_model, synth, albedo, seed, args)
  found = [pipe.find_faces(frame) for frame in frames]
  decoder = pipe.synthesizer.decoder
  true_shapes = decoder.shape(true_coeffs.identity, true_coeffs.expression).numpy()
  region = face_model.skin_mask > SKIN_REGION
  mean_face = np.asarray(face_model.mean_shape)
  rows, tracks_of = {}, {}
  for sigma in args.sigmas:
    config = smoothing_config(sigma)
    if args.degree is not None:
      config = dataclasses.replace(config, degree=args.degree)
    start = time.perf_counter()
    tracks = tracking.FaceTracks(config, FPS)
    for k, faces in enumerate(found):
      tracks.add(k, faces, frames[k])
    smoothed = [tracks.smoothed(k) for k in range(len(frames))]
    seconds = time.perf_counter() - start
    jobs = []
    for k, (frame, faces) in enumerate(zip(frames, smoothed)):
      if faces:
        jobs.append(pipe.align(frame, faces[:1])[0])
        jobs[-1].index = k
    records = pipe.reconstruct(jobs)
    fitted = {r["job"].index: alignment.transform_points(r["landmarks2d"], r["job"].aligned.inverse)
              for r in records}
    shapes = {r["job"].index: decoder.shape(r["coeffs"]["identity"][None],
                                            r["coeffs"]["expression"][None]).numpy()[0]
              for r in records}
    rows[sigma] = {**scores(fitted, truth, shapes, true_shapes, region, mean_face),
                   "smoothing_ms_per_frame": 1000.0 * seconds / len(frames)}
    tracks_of[sigma] = fitted
  return rows, (truth, tracks_of)


def run(args):
  import numpy as np
  from photo_synthetic import photo_albedo, photo_synthesizer
  from shared.errors import InputError
  from shared.model.face_model import load_face_model
  from shared.photo import tracking
  from shared.photo.reconstruct import PhotoReconstructor
  if args.frames < 3:
    raise InputError("--frames: at least 3 (the jitter needs three frames in a row)")
  if min(args.sigmas) < 0 or args.period <= 0 or (args.degree or 0) < 0:
    raise InputError("--sigmas, --period, --degree: must not be negative (--period > 0)")
  face_model = load_face_model()
  synth = photo_synthesizer(face_model)
  albedo = photo_albedo(face_model)
  pipe = PhotoReconstructor(face_model)
  if args.plot:
    from shared.io.paths import check_output_folder
    check_output_folder(Path(args.plot).parent)
  per_seed, tracks = {}, None
  for seed in args.seeds:
    per_seed[seed], seed_tracks = run_seed(seed, args, face_model, synth, albedo, pipe)
    tracks = tracks or seed_tracks
  names = ("nme", "motion", "jitter", "shape_vs_mean_face")
  headers = ["sigma (s)", "found", "NME %", "motion %", "jitter %", "shape / mean face",
             "smoothing ms / frame"]
  table, result = [], {"bench": "video_smoothing", "frames": args.frames, "fps": FPS,
                       "period_s": args.period, "max_yaw": args.max_yaw,
                       "degree": args.degree if args.degree is not None else
                       tracking.SmoothingConfig().degree,
                       "seeds": args.seeds, "arms": {}}
  off = args.sigmas[0]
  for sigma in args.sigmas:
    rows = [per_seed[seed][sigma] for seed in args.seeds]
    arm = {"found": sum(r["found"] for r in rows),
           "smoothing_ms_per_frame": float(np.mean([r["smoothing_ms_per_frame"] for r in rows]))}
    cells = [f"{sigma:g}", f"{arm['found']}/{args.frames * len(args.seeds)}"]
    for name in names:
      values = np.array([r[name] for r in rows], np.float64)
      paired = values - np.array([per_seed[seed][off][name] for seed in args.seeds])
      arm[name] = {"mean": float(values.mean()), "std": float(values.std()),
                   "per_seed": values.tolist(), "minus_first_arm": paired.tolist()}
      cells.append(f"{values.mean():.3f} +- {values.std():.3f}")
    cells.append(f"{arm['smoothing_ms_per_frame']:.2f}")
    table.append(cells)
    result["arms"][f"{sigma:g}"] = arm
  common.print_table(headers, table)
  if args.plot:
    plot_tracks(args.plot, *tracks, args)
    result["plot"] = args.plot
  common.print_json(result)
  return 0


def plot_tracks(path, truth, fitted, args):
  """Draws the nose tip's x and y over the frames (`NOSE_TIP`), the truth and each arm's
  fitted track, one arm per colour, into the PNG `path` (atomic)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np
  from shared.io.fileio import atomic_path
  figure, axes = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
  for axis, (coordinate, name) in zip(axes, ((0, "x"), (1, "y"))):
    axis.plot(truth[:, NOSE_TIP, coordinate], color="black", lw=2.5, label="truth")
    for sigma, points in fitted.items():
      keys = sorted(points)
      axis.plot(keys, [points[k][NOSE_TIP, coordinate] for k in keys], lw=1.2,
                label="each frame on its own" if sigma == 0 else f"smoothed, {sigma:g} s")
    axis.set_ylabel(f"nose tip {name} (px)")
  axes[-1].set_xlabel(f"frame ({FPS:g} fps)")
  axes[0].legend(fontsize=8)
  axes[0].set_title(f"seed {args.seeds[0]}: head turning {args.max_yaw:g} degrees, "
                    f"{args.period:g} s a turn")
  figure.tight_layout()
  Path(path).parent.mkdir(parents=True, exist_ok=True)
  with atomic_path(path) as tmp:
    figure.savefig(tmp, dpi=100, format="png")
  plt.close(figure)


def main(argv=None):
  return common.run_reporting_input_errors(run, _parse_args(argv))


if __name__ == "__main__":
  sys.exit(main())
