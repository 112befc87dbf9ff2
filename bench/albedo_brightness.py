#!/usr/bin/env python
"""How much of a face's albedo brightness can one image tell? (issue 15)

A brighter albedo under dimmer light renders the same picture, so an image
tells the albedo's brightness only through the priors: how much faces'
albedo and scenes' light vary.  This bench measures that on a synthetic
dataset (tools/make_synthetic_dataset.py, whose _gt.npz files hold the true
per-vertex albedo).  Per target view it takes the true brightness, the mean
albedo over the face model's skin-region vertices (all channels), and
statistics of the image's skin pixels (mean RGB, and the 10/50/90th
percentiles per channel).  It fits ridge regressions from those statistics
to the true brightness on the training identities and scores them on the
held-out ones (ridge weight by cross-validation on the training views),
against the constant estimate (the training mean).  The
regressions stand in for any estimator that reads the image's brightness:
if they barely beat the constant, no refiner can remove the brightness part
of the albedo error (docs/gcn.md, "Session 27").  Prints a table, then one
JSON line.

    python bench/albedo_brightness.py --data out/s27/b400
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (sets up quiet logging first)

PERCENTILES = (10, 50, 90)
RIDGES = (0.0, 1e-3, 1e-2, 1e-1)   # Ridge weight per sample, on standardised features.
SKIN_THRESHOLD = 0.5
FOLDS = 5                          # Cross-validation folds that pick the ridge weight.


def _parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", required=True,
                      help="synthetic dataset folder (train.txt and test.txt, _gt.npz files)")
  return parser.parse_args(argv)


def brightness_rows(root, split, skin_vertices):
  """(true brightness [N], image statistics [N, 12]) of the split's target views."""
  import numpy as np
  from mgc_face import data
  from shared.errors import InputError
  records, _, _ = data.scan(root, split)
  truth, stats = [], []
  for record in records:
    path = record.gt_path(root)
    if not path.is_file():
      raise InputError(f"{path}: no ground truth (not a synthetic dataset?)")
    with np.load(path, allow_pickle=False) as gt:
      if "albedo" not in gt.files:
        raise InputError(f"{path}: no per-vertex albedo in the ground truth")
      truth.append(float(gt["albedo"][skin_vertices].mean()))
    image = data.read_strip_target(record.image_path(root))
    skin = data.read_skin_target(record.skin_path(root))[..., 0] > SKIN_THRESHOLD
    pixels = image[skin]
    stats.append(np.concatenate([pixels.mean(0),
                                 np.percentile(pixels, PERCENTILES, axis=0).ravel()]))
  return np.array(truth), np.array(stats)


def ridge_rmse(x_train, y_train, x_test, y_test, ridge):
  """Held-out RMSE of a ridge regression (intercept free) on standardised features."""
  import numpy as np
  mean, std = x_train.mean(0), x_train.std(0) + 1e-12
  design = np.c_[np.ones(len(x_train)), (x_train - mean) / std]
  test = np.c_[np.ones(len(x_test)), (x_test - mean) / std]
  penalty = ridge * len(design) * np.eye(design.shape[1])
  penalty[0, 0] = 0.0
  coef = np.linalg.solve(design.T @ design + penalty, design.T @ y_train)
  return float(np.sqrt(np.mean((test @ coef - y_test) ** 2)))


def cross_validated_rmse(x, y, ridge):
  """RMSE of `ridge_rmse` over `FOLDS` folds of the training views (picks the ridge weight
  without looking at the held-out identities)."""
  import numpy as np
  folds = np.arange(len(y)) % FOLDS
  errors = [ridge_rmse(x[folds != k], y[folds != k], x[folds == k], y[folds == k], ridge) ** 2
            for k in range(FOLDS)]
  return float(np.sqrt(np.mean(errors)))


def run(args):
  import numpy as np
  from shared.model.face_model import load_face_model
  skin_vertices = load_face_model().skin_mask > SKIN_THRESHOLD
  y_train, x_train = brightness_rows(args.data, "train", skin_vertices)
  y_test, x_test = brightness_rows(args.data, "test", skin_vertices)
  constant = float(np.sqrt(np.mean((y_test - y_train.mean()) ** 2)))
  features = {"grey mean": lambda x: x[:, :3].mean(1, keepdims=True),
              "RGB mean": lambda x: x[:, :3],
              "RGB mean + percentiles": lambda x: x}
  rows, result = [["constant (training mean)", "-", f"{constant:.4f}", "0.0 %"]], {}
  for name, pick in features.items():
    ridge = min(RIDGES, key=lambda r: cross_validated_rmse(pick(x_train), y_train, r))
    score = ridge_rmse(pick(x_train), y_train, pick(x_test), y_test, ridge)
    rows.append([name, ridge, f"{score:.4f}", f"{100 * (score / constant - 1):+.1f} %"])
    result[name] = {"rmse": score, "ridge": ridge}
  print(f"true brightness: training mean {y_train.mean():.4f}, held-out std {y_test.std():.4f} "
        f"({len(y_train)} training, {len(y_test)} held-out views)")
  common.print_table(["estimate of the brightness", "ridge", "held-out RMSE", "vs constant"], rows)
  common.print_json({"train": len(y_train), "test": len(y_test), "truth_std": float(y_test.std()),
                     "constant_rmse": constant, "estimators": result})


def main(argv=None):
  return common.run_reporting_input_errors(run, _parse_args(argv))


if __name__ == "__main__":
  sys.exit(main())
