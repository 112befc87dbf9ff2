#!/usr/bin/env python
"""Fit a landmark cascade on one set's views and score it, stage by stage, on another's.

    python bench/mgc_cascade_probe.py --checkpoint CKPT --train-data DIR [--train-data DIR2]
        --test-data DIR [--ridge R] [--scales S1 S2 ...] [--components C] [--max-views N]
        (default: tiny's)

The selection study behind the `tiny` preset's cascade settings (docs/mgc.md,
"Session 13"): `mgc_face.cascade.fit` on the head's points of the training
views of every `--train-data` set (their `_lm.txt` labels as targets; at
most `--max-views` views per set), then on the held-out views of
`--test-data`, after each stage: the points' 68-point NME and mean distance
(px) to the noise-free projections, and the similarity-aligned face RMSE
over the mean face's of the coefficients the checkpoint's own coefficient
layer reads from them (as the eval's `rmse_sim_vs_mean_face`).  A last row
feeds that layer the 1 px-noise labels.  The checkpoint's own cascade, if
any, is not used.  Table, then one JSON line.
"""

import argparse
import sys

from common import (load_average, print_json, print_table,  # noqa: F401 (sets sys.path)
                    run_reporting_input_errors)

import numpy as np

from mgc_face import cascade as cascade_lib
from mgc_face import infer
from mgc_face.config import get_config
from mgc_head_calibration import SKIN_REGION, head_outputs, load_views, shape_ratio
from shared.eval.metrics import PERCENT, nme_68
from shared.model.decoder import FaceDecoder

TINY = get_config("tiny")   # Its cascade settings are the defaults.


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--checkpoint", required=True, help="MGC checkpoint with a landmark head")
  parser.add_argument("--train-data", required=True, action="append",
                      help="set whose train split the cascade is fitted on (repeatable)")
  parser.add_argument("--test-data", required=True, help="set whose held-out views are scored")
  parser.add_argument("--ridge", type=float, default=TINY.cascade_ridge)
  parser.add_argument("--scales", type=float, nargs="+", default=list(TINY.cascade_scales))
  parser.add_argument("--components", type=int, default=TINY.cascade_shape_components,
                      help="shape space of the points after each stage (0: none)")
  parser.add_argument("--joint-dims", type=int, default=TINY.cascade_joint_dims,
                      help="components per landmark of the joint regression (0: none)")
  parser.add_argument("--joint-ridge", type=float, default=TINY.cascade_joint_ridge)
  parser.add_argument("--max-views", type=int, default=0, help="views per training set (0: all)")
  return run_reporting_input_errors(run, parser.parse_args())


def run(args):
  regressor = infer.load_regressor(args.checkpoint)
  if not regressor.config.landmark_head:
    raise SystemExit(f"error: {args.checkpoint}: the network has no landmark head")
  model, layout = regressor.face_model, regressor.layout
  decoder = FaceDecoder(model)
  region = model.skin_mask > SKIN_REGION
  greys, starts, labels = [], [], []
  for folder in args.train_data:
    images, marks = load_views(folder, "train")[:2]
    if args.max_views:
      images, marks = images[:args.max_views], marks[:args.max_views]
    greys.append(cascade_lib.grey(images))
    starts.append(head_outputs(regressor, images)[1])
    labels.append(marks)
  greys, starts, labels = map(np.concatenate, (greys, starts, labels))
  cascade = cascade_lib.fit(greys, starts, labels, args.scales, args.ridge, args.components,
                            joint_dims=args.joint_dims, joint_ridge=args.joint_ridge)[0]
  test_images, test_labels, gt_points, truth, _ = load_views(args.test_data, "test")
  _, points, features = head_outputs(regressor, test_images)
  test_greys = cascade_lib.grey(test_images)
  rows, results = [], {"train_views": len(greys), "test_views": len(test_images), "stages": []}

  def score(name, p):
    vectors = regressor.coefficients_from_points(features, p).numpy()
    ratio = shape_ratio(decoder, layout, vectors, truth, region, model.mean_shape)
    nme = float(PERCENT * nme_68(p, gt_points).mean())
    distance = float(np.linalg.norm(p - gt_points, axis=-1).mean())
    rows.append([name, f"{nme:.2f}", f"{distance:.2f}", f"{ratio:.3f}"])
    return {"points": name, "nme_percent": nme, "px": distance, "sim_ratio": ratio}

  results["stages"].append(score("head", points))
  for stage, half in enumerate(args.scales):
    joint = None if cascade.joint is None else cascade.joint[stage:stage + 1]
    single = cascade_lib.Cascade(cascade.weights[stage:stage + 1], [half], args.ridge, 0,
                                 cascade.shape_mean, cascade.shape_basis, joint=joint)
    points = single.refine(None, points, grey_images=test_greys)
    results["stages"].append(score(f"+ stage {stage + 1} ({half:g} px)", points))
  results["labels"] = score("labels (1 px noise)", test_labels)
  print_table(["points", "NME %", "px to truth", "coefficient layer: sim RMSE / mean face"], rows)
  results["load_average"] = load_average()
  print_json(results)


if __name__ == "__main__":
  sys.exit(main())
