#!/usr/bin/env python
"""Do more 2D points read more shape?  68 landmarks against MediaPipe's 468 (issue 13).

    python bench/mgc_dense_points.py --checkpoint CKPT --calibration-data out/s20/r400 \
        --data out/std/d96

The `cpu_hour` regressor reads identity and expression from 68 refined
landmarks and stops at about 0.74 of the mean face's error (docs/mgc.md).  A
diagnostic of whether denser 2D points are the lever, in two tables, both
scored on the held-out views of `--data` as `rmse_sim_vs_mean_face`:

1. `iid`: a ridge map (penalties 0.1 / 1 / 3) from normalised projected
   points with i.i.d. Gaussian pixel noise straight to the true identity and
   expression coefficients, fitted on the training views of
   `--calibration-data` (3D truth: how much shape the points carry, not a
   self-supervised route).  Point sets: the 68 landmarks, the 468 ICT
   vertices of MediaPipe's face mesh (`shared/correspondence/`), every 4th
   vertex.  The held-out points get the same noise.
2. `cascade`: a landmark cascade (`mgc_face.cascade.fit`, the checkpoint's
   scales, ridges and joint dimensions, no mirror) trained on the
   calibration views' 1 px-noise labels of each point set, started from the
   network's 68 head points (for 468, lifted by a ridge map fitted on the
   labels), applied to the held-out views; its points' RMSE against the true
   projections (px) and the shape read from them by the same kind of map as
   table 1 (the same three penalties), fitted on labels with `--read-noise`
   px of noise.

One JSON line at the end.  CPU: about 6.5 minutes for 1200 calibration views on
2 cores (the 468-point cascade takes most of it).
"""

import argparse

from common import load_average, print_json, print_table  # noqa: F401 (sets sys.path)

import numpy as np
import tensorflow as tf

from mgc_face import cascade as cascade_lib
from mgc_face import data as data_lib
from mgc_face import evaluate as eval_lib
from mgc_face import infer
from mgc_face import prior_init
from mgc_face import synthetic
from mgc_face.model import IMAGE_SIZE
from shared.fit.dense import load_correspondence
from shared.model import camera as camera_lib
from shared.model.decoder import FaceDecoder
from mgc_head_calibration import head_outputs, shape_ratio

IID_NOISE = (1.0, 2.0, 4.0)           # px
IID_RIDGES = (0.1, 1.0, 3.0)
LABEL_NOISE = 1.0                     # px, the detector stand-in's, as the data sets' labels.
LIFT_RIDGE = 1e-3                     # 68 head points -> 468 starting points.
VERTEX_STRIDE = 4
COMPONENTS = {"68": 30, "468": 60}    # Shape spaces: cpu_hour's; twice that for 468 (a probe).


def dense_views(data_dir, split, camera):
  """(images [N, 224, 224, 3], projected vertices [N, V, 2] px, true coefficient vectors
  [N, size], true model-space vertices [N, V, 3]) of every view of `split`."""
  records, _, _ = data_lib.scan(data_dir, split, report=False)
  images, points, coefficients, vertices = [], [], [], []
  for record in records:
    gt = synthetic.read_ground_truth(record.gt_path(data_dir))
    strip = data_lib.read_strip(record.image_path(data_dir))
    images.extend(strip)
    points.append(camera_lib.project(tf.constant(gt["posed"][:len(strip)]), camera).numpy())
    coefficients.extend(gt["coefficients"][:len(strip)])
    vertices.extend([gt["vertices"]] * len(strip))
  return (np.asarray(images, np.float32), np.concatenate(points),
          np.asarray(coefficients, np.float64), np.asarray(vertices))


def features(points):
  """[N, K, 2] px -> [N, 2K + 3]: centred shape in face-size units, centre, log size."""
  shapes, centre, size = cascade_lib._normalised(np.asarray(points, np.float64))
  return np.concatenate([shapes, centre[:, 0] / IMAGE_SIZE - 0.5,
                         np.log(size[:, 0] / IMAGE_SIZE)], 1)


def rms_px(points, truth):
  return float(np.sqrt(((points - truth) ** 2).sum(-1).mean()))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--checkpoint", required=True, help="MGC checkpoint with a landmark head")
  parser.add_argument("--calibration-data", required=True, help="set whose train split fits")
  parser.add_argument("--data", required=True, help="set whose test split scores")
  parser.add_argument("--read-noise", type=float, default=2.0)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  rng = np.random.default_rng(args.seed)
  regressor = infer.load_regressor(args.checkpoint)
  model, layout, config = regressor.face_model, regressor.layout, regressor.config
  camera = camera_lib.Camera()
  train_images, train_points, train_coefficients, _ = dense_views(args.calibration_data,
                                                                  "train", camera)
  test_images, test_points, _, truth = dense_views(args.data, "test", camera)
  decoder, region = FaceDecoder(model), model.skin_mask > eval_lib.SKIN_REGION
  columns = prior_init.supervised_columns(layout, ("identity", "expression"))

  def read(points, train_labels, penalty):
    weights, bias = prior_init.ridge(features(train_labels), train_coefficients[:, columns],
                                     penalty)
    vectors = np.zeros((len(points), layout.size))
    vectors[:, columns] = features(points) @ weights + bias
    return shape_ratio(decoder, layout, vectors, truth, region, model.mean_shape)

  def noisy(points, sigma):
    return points + rng.normal(0.0, sigma, points.shape)

  sets = {"68": np.asarray(model.landmarks68),
          "468": load_correspondence(model)[0],
          f"every {VERTEX_STRIDE}th vertex": np.arange(0, train_points.shape[1], VERTEX_STRIDE)}
  results = {"calibration_views": len(train_images), "test_views": len(test_images), "iid": {}}
  rows = []
  for name, index in sets.items():
    for sigma in IID_NOISE:
      labels, held_out = noisy(train_points[:, index], sigma), noisy(test_points[:, index], sigma)
      ratios = [read(held_out, labels, penalty) for penalty in IID_RIDGES]
      results["iid"][f"{name}, {sigma:g} px"] = ratios
      rows.append([name, len(index), f"{sigma:g}"] + [f"{r:.3f}" for r in ratios])
  print_table(["points", "count", "noise px"] + [f"ridge {p:g}" for p in IID_RIDGES], rows)

  heads = [head_outputs(regressor, images)[1] for images in (train_images, test_images)]
  greys = [cascade_lib.grey(images) for images in (train_images, test_images)]
  results["cascade"] = {}
  rows = []
  landmarks = sets["68"]
  for name in ("68", "468"):
    index = sets[name]
    labels = noisy(train_points[:, index], LABEL_NOISE)
    starts = heads
    if name != "68":
      anchors = noisy(train_points[:, landmarks], LABEL_NOISE)
      lift = cascade_lib.fit_lift(anchors, labels, LIFT_RIDGE)
      starts = [cascade_lib.lifted(head, lift)[:, len(landmarks):] for head in heads]
    cascade, _ = cascade_lib.fit(greys[0], starts[0], labels, config.cascade_scales,
                                 config.cascade_ridge, COMPONENTS[name],
                                 joint_dims=config.cascade_joint_dims,
                                 joint_ridge=config.cascade_joint_ridge)
    refined = cascade.refine(test_images, starts[1], greys[1])
    read_labels = noisy(train_points[:, index], args.read_noise)
    entry = {"start_px": rms_px(starts[1], test_points[:, index]),
             "refined_px": rms_px(refined, test_points[:, index]),
             "sim_ratio": [read(refined, read_labels, penalty) for penalty in IID_RIDGES],
             "components": COMPONENTS[name]}
    results["cascade"][name] = entry
    rows.append([name, COMPONENTS[name], f"{entry['start_px']:.2f}",
                 f"{entry['refined_px']:.2f}"] + [f"{r:.3f}" for r in entry["sim_ratio"]])
  print(f"Read from the refined points by maps fitted on {args.read_noise:g} px-noise labels:")
  print_table(["cascade points", "shape space", "start px", "refined px"]
              + [f"ridge {p:g}" for p in IID_RIDGES], rows)
  results["checkpoint_step"] = int(regressor.steps)
  results["load_average"] = load_average()
  print_json(results)


if __name__ == "__main__":
  main()
