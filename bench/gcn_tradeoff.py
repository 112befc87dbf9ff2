#!/usr/bin/env python
"""Render fit against albedo truth for a trained GCN: detail gain and lighting refit (issue 15).

For a GCN checkpoint and a held-out .bin of a synthetic dataset (its _gt.npz
files hold the true per-vertex albedo), prints per variant the mean over the
images of face-region L1, PSNR, SSIM (as `main.py --model gcn --mode eval`)
and the per-vertex albedo RMSE against the truth on the visible vertices, raw
and, as an extra column only, up to the per-channel global gain that best
fits the truth (`rmse_gain`).  Variants:

  coarse            the coarse albedo, the regressor's lighting (eval's coarse column)
  coarse_relit      the coarse albedo, SH lighting refitted by least squares to
                    the image on the visible vertices (the albedo held)
  refined_kK        coarse + K x (refined - coarse), the regressor's lighting
                    (K = 1 is eval's refined column unless the GCN was trained
                    with config.relight); K < 1 shrinks the GCN's correction
  refined_kK_relit  the same albedo with the least-squares lighting refit

The last line is JSON.

    python bench/gcn_tradeoff.py --checkpoint out/demo/gcn_checkpoint --data out/demo/test.bin
"""

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

GAINS = (1.0, 0.75, 0.5, 0.25)
COLUMNS = ("l1", "psnr", "ssim", "rmse", "rmse_gain")


def gain_rmse(albedo, truth, visible):
  """RMSE after the per-channel gain g = <a, t> / <a, a> fitted to the truth."""
  a, t = albedo[visible].astype(np.float64), truth[visible].astype(np.float64)
  gain = (a * t).sum(0) / np.maximum((a * a).sum(0), 1e-12)
  return float(np.sqrt(np.mean((a * gain - t) ** 2)))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--checkpoint", required=True, help="GCN checkpoint folder")
  parser.add_argument("--data", required=True, help="held-out .bin of a synthetic dataset")
  parser.add_argument("--coarse-checkpoint", default=None)
  args = parser.parse_args()
  import tensorflow as tf
  from bench.gcn_truth import fit_irradiance
  from gcn_face import evaluate
  from gcn_face.binfile import BinReader
  from gcn_face.infer import load_pipeline
  from shared.model import lighting
  pipeline = load_pipeline(args.checkpoint, coarse_checkpoint=args.coarse_checkpoint)
  reader = BinReader(args.data)
  truths = evaluate.truth_albedo(reader, pipeline.stage.face_model.num_vertices)
  names = ["coarse", "coarse_relit"] + [f"refined_k{k:g}{s}" for k in GAINS
                                        for s in ("", "_relit")]
  rows = {name: {c: [] for c in COLUMNS} for name in names}
  for i, truth in enumerate(truths):
    if truth is None:
      continue
    rgb, alpha = reader.image_alpha(i)
    image, alpha = tf.constant(rgb[None]), tf.constant(alpha[None])
    # The .bin's landmarks feed the coarse landmark refit (config.coarse_fit_steps).
    landmarks = None if reader.landmarks is None else reader.landmarks[i:i + 1]
    regressed = pipeline.regress(image, landmarks, alpha)
    c = pipeline.coarse(image, alpha, regressed)
    refined = pipeline.refine(c).albedo.numpy()[0]
    coarse = c.synth.albedo.numpy()[0]
    vis = c.visibility.numpy()[0]
    visible = vis[:, 0] > evaluate.VISIBLE_THRESHOLD
    weights = visible.astype(np.float64)
    colours = c.projected.numpy()[0].astype(np.float64)
    # The regressor's own lighting (with config.relight, c.coeffs holds the refit one).
    irradiance = lighting.irradiance(c.synth.normals, regressed[0].lighting).numpy()[0]
    face = (c.synth.render.mask * alpha).numpy()[0]
    albedos = {"coarse": coarse}
    albedos.update({f"refined_k{k:g}": np.clip(coarse + k * (refined - coarse), 0, 1)
                    for k in GAINS})
    for name, albedo in albedos.items():
      for suffix, irr in (("", irradiance),
                          ("_relit", fit_irradiance(albedo, colours, c.synth.normals, weights,
                                                    pipeline.config.relight_ridge))):
        lit = tf.constant((albedo * irr)[None].astype(np.float32))
        render = pipeline.synthesizer.render_attributes(c.synth.posed, lit).image
        render = tf.clip_by_value(render, 0.0, 1.0).numpy()[0]
        metrics = evaluate.masked_metrics(rgb, render, face)
        row = rows[name + suffix]
        for key in ("l1", "psnr", "ssim"):
          row[key].append(metrics[key])
        row["rmse"].append(evaluate.albedo_rmse(albedo, truth, vis))
        row["rmse_gain"].append(gain_rmse(albedo, truth, visible))
  summary = {name: {c: float(np.mean(v)) for c, v in row.items()} for name, row in rows.items()}
  print(f"{'variant':20s}" + "".join(f"{c:>11s}" for c in COLUMNS))
  for name in names:
    print(f"{name:20s}" + "".join(f"{summary[name][c]:11.4f}" for c in COLUMNS))
  print(json.dumps({"images": len(rows["coarse"]["l1"]), "variants": summary}))


if __name__ == "__main__":
  main()
