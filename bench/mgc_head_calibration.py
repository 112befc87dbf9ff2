#!/usr/bin/env python
"""How much shape do the landmark head's points carry, and does a 2D calibration recover more?

    python bench/mgc_head_calibration.py --checkpoint CKPT --data out/d96 [--noise 4 1]

The tiny/cpu_hour regressors read shape from the landmark head's 68 points
through the prior map (`mgc_face.prior_init`: a ridge map from normalised
landmarks to identity, expression and pose, fitted on face-model samples with
`prior_init_noise` px of i.i.d. noise).  Session 4 found that the head's error
is structured (towards an average face), so the map reads less identity from
the head's points than from labels with more i.i.d. noise.  This probe scores,
on the held-out views of `--data` (3 views per identity, as `main.py --mode
eval` does):

- `network`: the regressor's own coefficients (the eval's figure);
- `prior(head)`: the prior map applied to the head's points;
- `prior(calibrated head)`: the same after a linear 2D calibration, a ridge
  map from the head's normalised points to the `_lm.txt` labels' (139 -> 139),
  fitted on the training views of `--data`.  It uses only the 2D landmark
  labels that training already uses, no 3D truth, so a preset could fold it
  into the coefficient layer and stay self-supervised;
- `prior(labels)`: the prior map on the 1 px-noise labels themselves (the
  ceiling of this route);
- `truth ridge(head)`, `truth ridge(labels)`: a ridge map from the head's
  (or the labels') normalised points straight to the true identity and
  expression coefficients of the calibration views (3D truth: a diagnostic of
  how much shape the points carry for any map, not a self-supervised route).

`--refined` reads the landmark cascade's refined points (and the eval's
coefficients) instead of the head's, for checkpoints that have a cascade.

`--calibration-data DIR` takes the calibration (training) views from another
set of the same face model (default: `--data`'s train split), e.g. one with
more identities.

Each row: the similarity-aligned face-region RMSE over the mean face's (as
`rmse_sim_vs_mean_face`) and the 68-point NME of the points the map reads.
One table per `--noise` (the prior map's assumed noise, px), then one JSON line.
"""

import argparse

from common import load_average, print_json, print_table  # noqa: F401 (sets sys.path)

import numpy as np
import tensorflow as tf

from mgc_face import data as data_lib
from mgc_face import evaluate as eval_lib
from mgc_face import infer
from mgc_face import model as model_lib
from mgc_face import prior_init
from mgc_face import synthetic
from shared.eval.metrics import PERCENT, nme_68
from shared.model.decoder import FaceDecoder

BATCH = 24
CALIBRATION_RIDGE = 1e-2
TRUTH_RIDGE = 0.1        # Best of 1e-3..1 for the head's points (session 12, docs/mgc.md).
SKIN_REGION = eval_lib.SKIN_REGION


def load_views(data_dir, split):
  """(images [N, 224, 224, 3], labels [N, 68, 2], gt points [N, 68, 2], truth vertices
  [N, V, 3], true coefficient vectors [N, size]) for every view of `split`."""
  records, landmarks, _ = data_lib.scan(data_dir, split, report=False)
  images, labels, points, vertices, coefficients = [], [], [], [], []
  for record, marks in zip(records, landmarks):
    strip = data_lib.read_strip(record.image_path(data_dir))
    images.extend(strip)
    labels.extend(marks)
    gt = synthetic.read_ground_truth(record.gt_path(data_dir))
    points.extend(gt["landmarks2d"][:len(strip)])
    vertices.extend([gt["vertices"]] * len(strip))
    coefficients.extend(gt["coefficients"][:len(strip)])
  return (np.asarray(images, np.float32), np.asarray(labels, np.float32), np.asarray(points),
          np.asarray(vertices), np.asarray(coefficients, np.float64))


def head_outputs(regressor, images, refined=False):
  """(coefficient vectors [N, size], head points [N, 68, 2], pooled features [N, D]).

  refined: the inference outputs (`mgc_face.infer.Regressor`): with a landmark cascade, its
  refined points and the coefficients read from them (the eval's); else the network's own.
  """
  vectors, points, features = [], [], []
  for k in range(0, len(images), BATCH):
    if refined:
      outputs = regressor.inference_outputs(images[k:k + BATCH])
    else:
      outputs = regressor.network(tf.constant(images[k:k + BATCH]), training=False)
    vectors.append(outputs[0].numpy())
    points.append(outputs[2].numpy())
    features.append(outputs[1].numpy())
  return np.concatenate(vectors), np.concatenate(points), np.concatenate(features)


def flip_averaged(regressor, images, points, refined=False):
  """The head's points averaged with those of the mirror image, mapped back (test-time flip)."""
  from mgc_face import augment
  mirrored = np.ascontiguousarray(images[:, :, ::-1])
  _, mirrored_points, _ = head_outputs(regressor, mirrored, refined)
  return 0.5 * (points + augment.mirror_points(mirrored_points, images.shape[2]))


def normalised(points):
  return model_lib.normalise_landmarks(tf.constant(points, tf.float32)).numpy().astype(np.float64)


def denormalised(features, count=68):
  """Inverse of `normalise_landmarks`: [N, 139] -> [N, 68, 2] pixels."""
  size = float(model_lib.IMAGE_SIZE)
  shape = features[:, :2 * count].reshape(-1, count, 2)
  centre = (features[:, 2 * count:2 * count + 2] + 0.5) * size
  radius = np.exp(features[:, -1]) * size
  return shape * radius[:, None, None] + centre[:, None]


def shape_ratio(decoder, layout, vectors, truth, region, mean_shape):
  """Mean similarity-aligned face RMSE of the decoded shapes over the mean face's."""
  coeffs = layout.split(tf.constant(vectors, tf.float32))
  shapes = decoder.shape(coeffs.identity, coeffs.expression).numpy()
  ours = [eval_lib.aligned_rmse(s, t, region, True) for s, t in zip(shapes, truth)]
  mean = [eval_lib.aligned_rmse(mean_shape, t, region, True) for t in truth]
  return eval_lib.ratio(float(np.mean(ours)), float(np.mean(mean)))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--checkpoint", required=True, help="MGC checkpoint with a landmark head")
  parser.add_argument("--data", required=True, help="data set: train.txt calibrates, test.txt scores")
  parser.add_argument("--calibration-data", default=None,
                      help="calibration views' set (its train split; default: --data)")
  parser.add_argument("--noise", type=float, nargs="+", default=None,
                      help="prior-map noise levels (px; default: the checkpoint's preset)")
  parser.add_argument("--refined", action="store_true",
                      help="read the landmark cascade's refined points (the eval's) instead of "
                           "the head's")
  args = parser.parse_args()
  regressor = infer.load_regressor(args.checkpoint)
  config, model, layout = regressor.config, regressor.face_model, regressor.layout
  if not config.landmark_head:
    raise SystemExit(f"error: {args.checkpoint}: the network has no landmark head")
  decoder = FaceDecoder(model)
  region = model.skin_mask > SKIN_REGION
  train_images, train_labels, _, _, train_coefficients = load_views(
      args.calibration_data or args.data, "train")
  test_images, test_labels, gt_points, truth, _ = load_views(args.data, "test")
  if args.refined and regressor.cascade is None:
    raise SystemExit(f"error: {args.checkpoint}: --refined needs a checkpoint with a cascade")
  _, train_head, _ = head_outputs(regressor, train_images, args.refined)
  test_vectors, test_head, _ = head_outputs(regressor, test_images, args.refined)
  weights, bias = prior_init.ridge(normalised(train_head), normalised(train_labels),
                                   CALIBRATION_RIDGE)
  calibrated = normalised(test_head) @ weights + bias
  flipped = flip_averaged(regressor, test_images, test_head, args.refined)
  inputs = {"head": normalised(test_head), "calibrated head": calibrated,
            "flip-averaged head": normalised(flipped), "labels": normalised(test_labels)}
  nme = {"head": nme_68(test_head, gt_points), "calibrated head": nme_68(denormalised(calibrated),
                                                                          gt_points),
         "flip-averaged head": nme_68(flipped, gt_points), "labels": nme_68(test_labels, gt_points)}
  results = {"network": {"sim_ratio": shape_ratio(decoder, layout, test_vectors, truth, region,
                                                  model.mean_shape),
                         "nme_percent": float(PERCENT * nme["head"].mean())},
             "train_views": len(train_images), "test_views": len(test_images),
             "checkpoint_step": int(regressor.steps)}
  rows = [["network (eval's figure)", "", f"{results['network']['sim_ratio']:.3f}",
           f"{results['network']['nme_percent']:.2f}"]]
  for noise in args.noise or [config.prior_init_noise]:
    prior_w, prior_b = prior_init.prior_map(model, config.replace(prior_init_noise=noise))
    for name, features in inputs.items():
      vectors = features @ prior_w + prior_b
      ratio = shape_ratio(decoder, layout, vectors, truth, region, model.mean_shape)
      key = f"prior({name}), {noise:g} px"
      results[key] = {"sim_ratio": ratio, "nme_percent": float(PERCENT * nme[name].mean())}
      rows.append([f"prior({name})", f"{noise:g}", f"{ratio:.3f}",
                   f"{PERCENT * nme[name].mean():.2f}"])
  shape_columns = prior_init.supervised_columns(layout, ("identity", "expression"))
  for name, train_points, test_points in (("head", train_head, test_head),
                                          ("labels", train_labels, test_labels)):
    weights, bias = prior_init.ridge(normalised(train_points),
                                     train_coefficients[:, shape_columns], TRUTH_RIDGE)
    vectors = np.zeros((len(test_points), layout.size))
    vectors[:, shape_columns] = normalised(test_points) @ weights + bias
    ratio = shape_ratio(decoder, layout, vectors, truth, region, model.mean_shape)
    results[f"truth ridge({name})"] = {"sim_ratio": ratio}
    rows.append([f"truth ridge({name})", "-", f"{ratio:.3f}", f"{PERCENT * nme[name].mean():.2f}"])
  print_table(["coefficients from", "map noise px", "sim RMSE / mean face", "NME % of its points"],
              rows)
  results["load_average"] = load_average()
  print_json(results)


if __name__ == "__main__":
  main()
