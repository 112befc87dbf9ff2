#!/usr/bin/env python
"""Hair over the forehead: does test mode keep it out of the refined albedo? (issue 15, photos)

On held-out synthetic crops (a .bin of tools/create_bin.py from
tools/make_synthetic_dataset.py, whose _gt.npz files hold the true albedo) a
fringe of hair is painted over each forehead: strands of one of four hair
colours, from the top of the face down to a wavy edge just above the brows,
drawn per record from --seed.  Test mode (`gcn_face.infer.TestStep`) then
refines each crop four ways:

  clean   / fringe    the image without / with the painted fringe
  no mask / mask      `seen` None (as before session 33) / the unoccluded face region
                      of `shared.fit.skin.unoccluded_face` from the image and the
                      .bin's detector-like landmarks, as test mode computes it for
                      photos (the refiner does not read hidden vertices; their refined
                      change is filled from around them, `shared.mesh.inpaint`)

and prints the per-vertex albedo RMSE against the truth (the refined albedo,
after the confidence blend) over two vertex sets of the clean image's coarse
fit: `under`, the visible vertices that project inside the painted fringe, and
`visible`, all visible vertices.  The coarse albedo's RMSE is the reference
line.  The last line is JSON.

    python bench/gcn_occluders.py --checkpoint out/demo/gcn_checkpoint --data out/demo/test.bin
"""

import argparse
import sys
import time

import numpy as np

import common
from shared.fit.skin import EYE_CORNERS

HAIR_COLOURS = np.array([[0.25, 0.17, 0.10],    # brown
                         [0.70, 0.55, 0.30],    # blond
                         [0.08, 0.07, 0.06],    # black
                         [0.50, 0.25, 0.12]],   # auburn
                        np.float32)
STRAND_PIXELS = 2.5          # strand width (the smoothing of the per-column shade)
STRAND_SHADE = (0.6, 1.4)    # the strands' brightness range around the hair colour
EDGE_ABOVE_BROWS = 0.08      # the fringe's mean lower edge above the brows (x eye-corner distance)
EDGE_WAVE = (4.0, 7.0)       # its wave: amplitude and wavelength / (2 pi), pixels
BROWS = slice(17, 27)


def paint_fringe(rgb, alpha, landmarks, rng):
  """rgb [H, W, 3] with a fringe painted inside alpha above the brows; returns (image, fringe
  [H, W] bool)."""
  height, width = rgb.shape[:2]
  scale = np.linalg.norm(landmarks[EYE_CORNERS[0]] - landmarks[EYE_CORNERS[1]])
  x = np.arange(width)
  edge = (landmarks[BROWS, 1].min() - EDGE_ABOVE_BROWS * scale
          + EDGE_WAVE[0] * np.sin(x / EDGE_WAVE[1] + rng.uniform(0, 2 * np.pi)))
  fringe = (np.arange(height)[:, None] < edge[None, :]) & (alpha[..., 0] > 0.5)
  shade = rng.uniform(*STRAND_SHADE, width)
  kernel = np.exp(-0.5 * (np.arange(-8, 9) / STRAND_PIXELS) ** 2)
  shade = np.convolve(shade, kernel / kernel.sum(), mode="same")
  hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))][None, None, :] * shade[None, :, None]
  image = np.where(fringe[..., None], np.clip(hair, 0, 1), rgb).astype(np.float32)
  return image, fringe


def run(args):
  import tensorflow as tf
  from gcn_face import infer
  from gcn_face.binfile import BinReader
  from gcn_face.evaluate import albedo_rmse, truth_albedo
  from shared.fit.skin import unoccluded_face
  from shared.model import camera as camera_lib
  pipeline = infer.load_pipeline(args.checkpoint, args.coarse_checkpoint, progress=False)
  reader = BinReader(args.data)
  reader.require_size(pipeline.config.image_size)
  if reader.landmarks is None:
    from shared.errors import fail
    fail(args.data, "no landmarks in this .bin (pack it with tools/create_bin.py)")
  truths = truth_albedo(reader, pipeline.stage.face_model.num_vertices)
  step = infer.TestStep(pipeline)
  rng = np.random.default_rng(args.seed)
  arms = [("clean", False), ("clean", True), ("fringe", False), ("fringe", True)]
  errors = {arm: {"under": [], "visible": []} for arm in arms}
  coarse_errors = {"under": [], "visible": []}
  hidden_fraction = []         # of the vertices under the fringe, on the painted image
  hidden_clean = []            # of the visible vertices, on the clean image
  start = time.perf_counter()
  count = len(reader) if args.limit is None else min(args.limit, len(reader))
  for i in range(count):
    if truths[i] is None:
      continue
    rgb, alpha = reader.image_alpha(i)
    landmarks = reader.landmarks[i]
    painted, fringe = paint_fringe(rgb, alpha, landmarks, rng)
    images = {"clean": rgb, "fringe": painted}
    regressed = pipeline.regress(tf.constant(rgb[None]), landmarks[None], tf.constant(alpha[None]))
    # The vertex sets, from the clean image's coarse fit (its albedo is every arm's coarse one).
    coarse = pipeline.coarse(tf.constant(rgb[None]), tf.constant(alpha[None]), regressed)
    visible = coarse.visibility.numpy()[0, :, 0] >= infer.HIDDEN_VISIBILITY
    points = camera_lib.project(coarse.synth.posed, pipeline.synthesizer.camera).numpy()[0]
    col = np.clip(np.round(points[:, 0] - 0.5).astype(int), 0, rgb.shape[1] - 1)
    row = np.clip(np.round(points[:, 1] - 0.5).astype(int), 0, rgb.shape[0] - 1)
    sets = {"under": visible & fringe[row, col], "visible": visible}
    for name, vertices in sets.items():
      coarse_errors[name].append(albedo_rmse(coarse.synth.albedo.numpy()[0], truths[i], vertices))
    for kind, masked in arms:
      image = images[kind]
      seen = None
      if masked:
        seen = unoccluded_face(image[None], landmarks[None])[0]
      out = step(tf.constant(image[None]), alpha, regressed, seen)
      if kind == "fringe" and masked:
        hidden_fraction.append(float(out["hidden"][sets["under"]].mean()))
      if kind == "clean" and masked:
        hidden_clean.append(float(out["hidden"][sets["visible"]].mean()))
      for name, vertices in sets.items():
        errors[(kind, masked)][name].append(albedo_rmse(out["refined_albedo"], truths[i],
                                                        vertices))
  if not coarse_errors["visible"]:
    from shared.errors import fail
    fail(args.data, "no record has a true albedo (_gt.npz of a synthetic dataset)")
  seconds = time.perf_counter() - start

  def label(arm):
    return f"{arm[0]}, {'mask' if arm[1] else 'no mask'}"

  rows = [["coarse (any)", f"{np.mean(coarse_errors['under']):.4f}",
           f"{np.mean(coarse_errors['visible']):.4f}"]]
  rows += [[label(arm), f"{np.mean(e['under']):.4f}", f"{np.mean(e['visible']):.4f}"]
           for arm, e in errors.items()]
  print(f"{len(coarse_errors['visible'])} crops of {args.data}; albedo RMSE against the truth")
  common.print_table(["refined albedo", "under the fringe", "all visible"], rows)
  print(f"vertices under the fringe that the mask hides: {np.mean(hidden_fraction):.3f}; "
        f"visible vertices it hides on the clean images: {np.mean(hidden_clean):.3f}")
  common.print_json({
      "bench": "gcn_occluders", "data": str(args.data), "checkpoint": str(args.checkpoint),
      "crops": len(coarse_errors["visible"]), "seed": args.seed, "seconds": round(seconds, 1),
      "coarse": {k: round(float(np.mean(v)), 5) for k, v in coarse_errors.items()},
      "refined": {label(arm): {k: round(float(np.mean(v)), 5) for k, v in e.items()}
                  for arm, e in errors.items()},
      "hidden_fraction_under_fringe": round(float(np.mean(hidden_fraction)), 4),
      "hidden_fraction_clean": round(float(np.mean(hidden_clean)), 4)})


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--checkpoint", required=True, help="GCN checkpoint folder")
  parser.add_argument("--data", required=True, help="held-out .bin of a synthetic dataset")
  parser.add_argument("--coarse-checkpoint", default=None)
  parser.add_argument("--seed", type=int, default=0, help="the fringes' colours and shapes")
  parser.add_argument("--limit", type=int, default=None, help="first N records only")
  return common.run_reporting_input_errors(run, parser.parse_args())


if __name__ == "__main__":
  sys.exit(main())
