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

and the mean distance (pixels) between the coarse and the true projections of
the visible vertices.  The last line is JSON.

With --fit-steps N > 0 the coarse coefficients are first refitted per image
(`shared.fit.fitter.Fitter`, landmark stage only, N steps, starting from the
regressor's prediction) to the noisy target-view landmarks of the dataset's
`_lm.txt` (what a detector would give, not the truth): every row then uses the
refitted coarse stage.

    python bench/gcn_truth.py --data out/demo/test.bin --coarse-checkpoint out/demo/mgc_checkpoint
    python bench/gcn_truth.py ... --fit-steps 30
"""

import argparse
import collections
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

LS_RIDGE = 1e-3          # Tikhonov weight of the least-squares SH fit.
LANDMARK_SUFFIX = "_lm.txt"  # Noisy detector-like landmarks, target view first.
ROWS = ("coarse", "coarse_scaled", "coarse_tone", "delit_coarse", "delit_coarse_ls",
        "detail_coarse_ls", "detail_coarse_ls_half", "lowfix_coarse_ls", "blend_coarse_ls", "delit_true_ls", "delit_true_exact",
        "detail_true_exact", "detail_true_exact_half", "lowfix_true_exact", "blend_true_exact", "oracle_lowpass", "oracle_blend")
LOWPASS_LEVELS = 2       # Mesh hierarchy levels the detail residual's low-pass goes down.
MIN_WEIGHT = 1e-6


def fit_irradiance(albedo, colours, basis, weights):
  """Per-channel least-squares SH: colours ~ albedo * (basis @ g); returns irradiance [V, 3]."""
  out = np.zeros_like(albedo)
  for ch in range(3):
    x = albedo[:, ch:ch + 1] * basis
    gram = (x * weights[:, None]).T @ x + LS_RIDGE * np.eye(basis.shape[1])
    out[:, ch] = basis @ np.linalg.solve(gram, (x * weights[:, None]).T @ colours[:, ch])
  return out


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
  args = parser.parse_args()
  import tensorflow as tf
  from gcn_face import coarse as coarse_lib, evaluate, model as model_lib
  from gcn_face.binfile import BinReader
  from shared.render.image_sampling import sample_bilinear
  from gcn_face.config import get_config
  from gcn_face.infer import build_pipeline
  from mgc_face.data import read_landmarks
  from shared.model import camera as camera_lib
  from shared.fit import fitter as fitting
  from shared.model import lighting
  from shared.fit.fitter import FitConfig
  from shared.model.coeffs import CoeffLayout
  config = get_config("tiny")
  pipeline = build_pipeline(coarse_lib.load_coarse_stage(args.coarse_checkpoint), config)
  model = pipeline.stage.face_model
  decoder, camera = model.decoder(), pipeline.synthesizer.camera
  layout = CoeffLayout.for_model(model)
  reader = BinReader(args.data)
  truths = evaluate.truth_albedo(reader, model.num_vertices)
  source = Path(reader.metadata["source"])
  fitter = fitting.Fitter(pipeline.synthesizer,
                           FitConfig(landmark_steps=args.fit_steps, photometric_steps=0))
  surface = collections.namedtuple("Surface", "posed normals")
  topo = pipeline.topology
  down, up = topo.D[:LOWPASS_LEVELS], topo.U[:LOWPASS_LEVELS]
  rows, shifts = {name: [] for name in ROWS}, []
  for i, truth in enumerate(truths):
    if truth is None:
      continue
    if evaluate.VIEW_SEPARATOR in reader.names[i]:
      continue  # Target views only: the true posed vertices of view 0.
    rgb, alpha = reader.image_alpha(i)
    image, alpha = tf.constant(rgb[None]), tf.constant(alpha[None])
    regressed = None
    if args.fit_steps > 0:
      coeffs, features = pipeline.regress(image)
      target = read_landmarks(source / (reader.names[i] + LANDMARK_SUFFIX))[:1]
      coeffs = fitter.fit(image, target, init=coeffs).coeffs
      regressed = (coeffs, features)
    c = pipeline.coarse(image, alpha, regressed=regressed)
    with np.load(source / (reader.names[i] + evaluate.TRUTH_SUFFIX)) as gt:
      gt = {k: gt[k] for k in ("posed", "vertices", "coefficients")}
    vis = c.visibility.numpy()[0]
    weights = (vis[:, 0] > evaluate.VISIBLE_THRESHOLD).astype(np.float64)
    coarse_albedo = c.synth.albedo.numpy()[0].astype(np.float64)
    colours = c.projected.numpy()[0].astype(np.float64)
    seen = weights > 0
    scale = (truth[seen] * coarse_albedo[seen]).sum(0) / (coarse_albedo[seen] ** 2).sum(0)
    irradiance = lighting.irradiance(c.synth.normals, c.coeffs.lighting).numpy()[0]
    basis = lighting.sh_basis(c.synth.normals).numpy()[0].astype(np.float64)
    rows["coarse"].append(evaluate.albedo_rmse(coarse_albedo, truth, vis))
    rows["coarse_scaled"].append(evaluate.albedo_rmse(coarse_albedo * scale, truth, vis))
    rows["delit_coarse"].append(evaluate.albedo_rmse(delit(colours, irradiance), truth, vis))
    ls = fit_irradiance(coarse_albedo, colours, basis, weights)
    delit_ls = delit(colours, ls)
    rows["delit_coarse_ls"].append(evaluate.albedo_rmse(delit_ls, truth, vis))
    tone = (delit_ls[seen]).mean(0) / np.maximum(coarse_albedo[seen].mean(0), MIN_WEIGHT)
    rows["coarse_tone"].append(evaluate.albedo_rmse(np.clip(coarse_albedo * tone, 0, 1), truth,
                                                    vis))
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
    ls = fit_irradiance(coarse_albedo, true_colours, lighting.sh_basis(normals).numpy()[0],
                        true_weights)
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
  print(json.dumps({"fit_steps": args.fit_steps, "images": len(shifts), "albedo_rmse": summary,
                    "registration_px": float(np.mean(shifts))}))


if __name__ == "__main__":
  main()
