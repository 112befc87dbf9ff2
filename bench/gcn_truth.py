#!/usr/bin/env python
"""How far can an image-driven texture refiner get towards the true albedo? (issue 15)

For held-out synthetic crops (a .bin from tools/create_bin.py on a dataset of
tools/make_synthetic_dataset.py, whose _gt.npz files hold the true albedo,
geometry and lighting) and a coarse MGC checkpoint, prints per-vertex albedo
RMSE against the truth on the visible vertices for:

  coarse            the coarse stage's albedo (what eval calls coarse)
  coarse_scaled     the same with the per-channel scale that best fits the truth
                    (the most any detail-free correction can give)
  delit_coarse      image colour / coarse irradiance on the coarse geometry: the
                    albedo that explains the image exactly under the coarse stage,
                    where an image-loss refiner converges
  delit_coarse_ls   the same with SH lighting refitted by least squares
  delit_true_ls     the true geometry and pose, SH refitted with the coarse albedo
  delit_true_exact  the true geometry, pose and irradiance: the floor set by the
                    image itself (resolution, JPEG, clipping)
  coarse_scaled_chroma  the best per-channel scale (uses the truth) divided by its
                    mean over the channels: its colour part alone, brightness kept
  chroma_grey_light the coarse albedo times the colour (not the brightness) the
                    least-squares lighting implies if the true light is grey: under
                    grey light L, each channel's fitted irradiance is (true / coarse
                    albedo of that channel) x L, so their ratios are the albedo's
                    colour error (no truth used)
  tone_*_prior      the coarse albedo times the per-channel tone a lighting prior
                    implies: the mean irradiance over the visible vertices of the
                    least-squares lighting divided by that of the prior (the zero
                    lighting, i.e. the data's mean, or the regressor's lighting)
  bandK_quarter     coarse + 0.25 x band K of (de-lit with least-squares lighting -
                    coarse), band 0 the finest (residual - one-level low-pass),
                    band K the K-level minus the (K+1)-level low-pass
(and the detail_/lowfix_/blend_/oracle_ rows described in docs/gcn.md)

and the mean distance (pixels) between the coarse and the true projections of
the visible vertices.  The last line is JSON.

With --fit-steps N > 0 the coarse coefficients are first refitted per image
to the noisy target-view landmarks the .bin carries (tools/create_bin.py packs
the dataset's `_lm.txt`: what a detector would give, not the truth) by the
GCN pipeline's own landmark refit (`GCNConfig.coarse_fit_steps` = N,
`TexturePipeline.regress`): every row then uses the refitted coarse stage.
The least-squares lighting rows use the pipeline's `refit_lighting`.

    python bench/gcn_truth.py --data out/demo/test.bin --coarse-checkpoint out/demo/mgc_checkpoint
    python bench/gcn_truth.py ... --fit-steps 30 [--fit-colour-steps 300]

--fit-colour-steps M adds the Fitter's colour stage (`GCNConfig.coarse_fit_colour_steps`):
the coarse albedo and lighting are then fitted to the image with the 3DMM albedo prior.
"""

import argparse
import collections
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from shared import quiet  # noqa: E402

quiet.setup()  # Before TensorFlow is imported; FACE3D_VERBOSE=1 keeps library logs.

import numpy as np  # noqa: E402

ROWS = ("coarse", "coarse_scaled", "coarse_scaled_chroma", "chroma_grey_light", "coarse_tone",
        "tone_ambient_prior", "tone_regressor_prior",
        "band0_quarter", "band1_quarter", "band2_quarter", "delit_coarse", "delit_coarse_ls",
        "detail_coarse_ls", "detail_coarse_ls_half", "lowfix_coarse_ls", "blend_coarse_ls", "delit_true_ls", "delit_true_exact",
        "detail_true_exact", "detail_true_exact_half", "lowfix_true_exact", "blend_true_exact", "oracle_lowpass", "oracle_blend")
LOWPASS_LEVELS = 2       # Mesh hierarchy levels the detail residual's low-pass goes down.
MIN_WEIGHT = 1e-6


def fit_irradiance(albedo, colours, normals, weights, ridge):
  """Irradiance [V, 3] of the SH lighting refitted by least squares with the albedo held:
  `gcn_face.model.refit_lighting` (what `GCNConfig.relight` runs) on one image.

  Args:
    albedo, colours: [V, 3] numpy; normals: [1, V, 3] tensor; weights: [V] numpy.
  """
  import tensorflow as tf
  from gcn_face.model import refit_lighting
  from shared.model import lighting
  as_batch = lambda x: tf.constant(np.asarray(x, np.float32)[None])  # noqa: E731
  sh = refit_lighting(as_batch(albedo), normals, as_batch(colours),
                      as_batch(np.asarray(weights)[:, None]), ridge)
  return lighting.irradiance(normals, sh).numpy()[0].astype(np.float64)


def lowpass(values, weights, down, up):
  """Weighted mesh low-pass: U..U D..D (w x) / U..U D..D w on [V, C] (w: [V])."""
  num, den = values * weights[:, None], weights[:, None]
  for matrix in down:
    num, den = matrix @ num, matrix @ den
  for matrix in reversed(up):
    num, den = matrix @ num, matrix @ den
  return num / np.maximum(den, MIN_WEIGHT)


def with_detail(coarse_albedo, estimate, weights, down, up, gain=1.0):
  """coarse + gain x high-pass(estimate - coarse) on the weighted vertices, coarse elsewhere.

  What a refiner that adds only detail to the coarse albedo (its low
  frequencies held) can reach from `estimate` (a de-lit image colour).
  """
  residual = (estimate - coarse_albedo) * weights[:, None]
  detail = residual - lowpass(residual, weights, down, up) * weights[:, None]
  return np.clip(coarse_albedo + gain * detail, 0.0, 1.0)


def with_low(coarse_albedo, estimate, weights, down, up):
  """coarse + low-pass(estimate - coarse): the estimate's low frequencies, the coarse detail."""
  residual = (estimate - coarse_albedo) * weights[:, None]
  return np.clip(coarse_albedo + lowpass(residual, weights, down, up) * weights[:, None], 0, 1)


def delit(colours, irradiance):
  from gcn_face.model import MIN_IRRADIANCE
  return np.clip(colours / np.maximum(irradiance, MIN_IRRADIANCE), 0.0, 1.0)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", required=True, help="held-out .bin of a synthetic dataset")
  parser.add_argument("--coarse-checkpoint", required=True)
  parser.add_argument("--fit-steps", type=int, default=0,
                      help="landmark-fit steps after the regressor (0: none)")
  parser.add_argument("--fit-colour-steps", type=int, default=0,
                      help="colour-fit steps (albedo, lighting) after the landmark fit")
  args = parser.parse_args()
  import tensorflow as tf
  from gcn_face import coarse as coarse_lib, evaluate, model as model_lib
  from gcn_face.binfile import BinReader
  from shared.render.image_sampling import sample_bilinear
  from gcn_face.config import get_config
  from gcn_face.infer import build_pipeline
  from shared.model import camera as camera_lib
  from shared.model import lighting
  from shared.model.coeffs import CoeffLayout
  config = get_config("tiny").replace(coarse_fit_steps=args.fit_steps,
                                      coarse_fit_colour_steps=args.fit_colour_steps)
  pipeline = build_pipeline(coarse_lib.load_coarse_stage(args.coarse_checkpoint), config)
  model = pipeline.stage.face_model
  decoder, camera = model.decoder(), pipeline.synthesizer.camera
  layout = CoeffLayout.for_model(model)
  reader = BinReader(args.data)
  truths = evaluate.truth_albedo(reader, model.num_vertices)
  source = Path(reader.metadata["source"])
  fits = args.fit_steps > 0 or args.fit_colour_steps > 0
  if fits and not reader.has_landmarks():
    print(f"error: {args.data}: --fit-steps needs the records' landmarks; re-create it with "
          "tools/create_bin.py", file=sys.stderr)
    sys.exit(2)
  surface = collections.namedtuple("Surface", "posed normals")
  topo = pipeline.topology
  down, up = topo.D[:LOWPASS_LEVELS], topo.U[:LOWPASS_LEVELS]
  rows, shifts, regress_seconds = {name: [] for name in ROWS}, [], []
  for i, truth in enumerate(truths):
    if truth is None:
      continue
    if evaluate.VIEW_SEPARATOR in reader.names[i]:
      continue  # Target views only: the true posed vertices of view 0.
    rgb, alpha = reader.image_alpha(i)
    image, alpha = tf.constant(rgb[None]), tf.constant(alpha[None])
    landmarks = reader.landmarks[i:i + 1] if fits else None
    started = time.perf_counter()
    regressed = pipeline.regress(image, landmarks, alpha)
    regress_seconds.append(time.perf_counter() - started)
    c = pipeline.coarse(image, alpha, regressed=regressed)
    with np.load(source / (reader.names[i] + evaluate.TRUTH_SUFFIX)) as gt:
      gt = {k: gt[k] for k in ("posed", "vertices", "coefficients")}
    vis = c.visibility.numpy()[0]
    weights = (vis[:, 0] > evaluate.VISIBLE_THRESHOLD).astype(np.float64)
    coarse_albedo = c.synth.albedo.numpy()[0].astype(np.float64)
    colours = c.projected.numpy()[0].astype(np.float64)
    seen = weights > 0
    scale = (truth[seen] * coarse_albedo[seen]).sum(0) / (coarse_albedo[seen] ** 2).sum(0)
    # The regressor's (or the fit's) lighting; c.coeffs holds the relit one.
    irradiance = lighting.irradiance(c.synth.normals, regressed[0].lighting).numpy()[0]
    rows["coarse"].append(evaluate.albedo_rmse(coarse_albedo, truth, vis))
    rows["coarse_scaled"].append(evaluate.albedo_rmse(coarse_albedo * scale, truth, vis))
    rows["delit_coarse"].append(evaluate.albedo_rmse(delit(colours, irradiance), truth, vis))
    ls = fit_irradiance(coarse_albedo, colours, c.synth.normals, weights, config.relight_ridge)
    delit_ls = delit(colours, ls)
    rows["delit_coarse_ls"].append(evaluate.albedo_rmse(delit_ls, truth, vis))
    rows["coarse_scaled_chroma"].append(evaluate.albedo_rmse(
        np.clip(coarse_albedo * scale / scale.mean(), 0, 1), truth, vis))
    light_colour = ls[seen].mean(0)
    rows["chroma_grey_light"].append(evaluate.albedo_rmse(
        np.clip(coarse_albedo * light_colour / light_colour.mean(), 0, 1), truth, vis))
    tone = (delit_ls[seen]).mean(0) / np.maximum(coarse_albedo[seen].mean(0), MIN_WEIGHT)
    rows["coarse_tone"].append(evaluate.albedo_rmse(np.clip(coarse_albedo * tone, 0, 1), truth,
                                                    vis))
    for name, prior in (("tone_ambient_prior", np.ones_like(irradiance) * lighting.irradiance(
        c.synth.normals, tf.zeros_like(regressed[0].lighting)).numpy()[0]),
                        ("tone_regressor_prior", irradiance)):
      gain = ls[seen].mean(0) / np.maximum(prior[seen].mean(0), MIN_WEIGHT)
      rows[name].append(evaluate.albedo_rmse(np.clip(coarse_albedo * gain, 0, 1), truth, vis))
    smooth = [(delit_ls - coarse_albedo) * weights[:, None]]
    smooth += [lowpass(smooth[0], weights, topo.D[:k], topo.U[:k]) * weights[:, None]
               for k in (1, 2, 3)]
    for k in range(3):
      rows[f"band{k}_quarter"].append(evaluate.albedo_rmse(
          np.clip(coarse_albedo + 0.25 * (smooth[k] - smooth[k + 1]), 0, 1), truth, vis))
    for name, gain in (("detail_coarse_ls", 1.0), ("detail_coarse_ls_half", 0.5)):
      rows[name].append(evaluate.albedo_rmse(
          with_detail(coarse_albedo, delit_ls, weights, down, up, gain), truth, vis))
    rows["lowfix_coarse_ls"].append(evaluate.albedo_rmse(
        with_low(coarse_albedo, delit_ls, weights, down, up), truth, vis))
    rows["blend_coarse_ls"].append(evaluate.albedo_rmse(0.5 * (coarse_albedo + delit_ls), truth,
                                                        vis))
    # The true surface: its own visibility, colours and normals.
    posed = tf.constant(gt["posed"][:1])
    normals = decoder.normals(posed)
    render = pipeline.synthesizer.render_attributes(posed, tf.ones_like(posed))
    points = camera_lib.project(posed, camera)
    true_vis = model_lib.vertex_visibility(surface(posed, normals), points, render, alpha,
                                           camera, config).numpy()[0]
    true_weights = (true_vis[:, 0] > evaluate.VISIBLE_THRESHOLD).astype(np.float64)
    true_colours = sample_bilinear(image, points)[0].numpy()[0].astype(np.float64)
    ls = fit_irradiance(coarse_albedo, true_colours, normals, true_weights, config.relight_ridge)
    rows["delit_true_ls"].append(evaluate.albedo_rmse(delit(true_colours, ls), truth, true_vis))
    sh = layout.split(tf.constant(gt["coefficients"][:1])).lighting   # Head-frame lighting.
    exact = lighting.irradiance(decoder.normals(tf.constant(gt["vertices"][None])), sh)
    delit_exact = delit(true_colours, exact.numpy()[0])
    rows["delit_true_exact"].append(evaluate.albedo_rmse(delit_exact, truth, true_vis))
    # Oracles (use the truth; bounds, not estimates): the coarse albedo with the true low
    # frequencies, and the best per-image blend of coarse and the exact de-lit colour.
    low_truth = lowpass(truth, weights, down, up)
    rows["oracle_lowpass"].append(evaluate.albedo_rmse(
        np.clip(coarse_albedo - lowpass(coarse_albedo, weights, down, up) + low_truth, 0, 1),
        truth, vis))
    rows["oracle_blend"].append(min(evaluate.albedo_rmse(
        t * delit_exact + (1 - t) * coarse_albedo, truth, true_vis) for t in np.linspace(0, 1, 11)))
    for name, gain in (("detail_true_exact", 1.0), ("detail_true_exact_half", 0.5)):
      rows[name].append(evaluate.albedo_rmse(
          with_detail(coarse_albedo, delit_exact, true_weights, down, up, gain), truth, true_vis))
    rows["lowfix_true_exact"].append(evaluate.albedo_rmse(
        with_low(coarse_albedo, delit_exact, true_weights, down, up), truth, true_vis))
    rows["blend_true_exact"].append(evaluate.albedo_rmse(0.5 * (coarse_albedo + delit_exact),
                                                         truth, true_vis))
    coarse_points = camera_lib.project(c.synth.posed, camera).numpy()[0]
    shifts.append(float(np.linalg.norm(coarse_points - points.numpy()[0], axis=1)[seen].mean()))
  if not shifts:
    print(f"error: {args.data}: no target-view record with a true albedo", file=sys.stderr)
    sys.exit(2)
  summary = {name: float(np.mean(values)) for name, values in rows.items()}
  print(f"{'estimate':24s}{'albedo RMSE':>12s}")
  for name in ROWS:
    print(f"{name:24s}{summary[name]:12.4f}")
  print(f"coarse registration error: {np.mean(shifts):.1f} px mean over {len(shifts)} images "
        f"(per image {min(shifts):.1f}-{max(shifts):.1f})")
  warm = regress_seconds[1:] or regress_seconds   # The first call traces and compiles.
  print(f"regressor + fit: {np.mean(warm):.2f} s per image (batch 1, after the first)")
  print(json.dumps({"fit_steps": args.fit_steps, "fit_colour_steps": args.fit_colour_steps,
                    "images": len(shifts), "albedo_rmse": summary,
                    "regress_seconds_per_image": float(np.mean(warm)),
                    "registration_px": float(np.mean(shifts))}))


if __name__ == "__main__":
  main()
