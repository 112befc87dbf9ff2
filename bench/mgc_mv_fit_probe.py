#!/usr/bin/env python
"""Does MGCNet's multi-view loss carry shape?  A per-triplet fitting probe, no network.

    python bench/mgc_mv_fit_probe.py --data out/d96 [--data out/d96_s1 ...] --steps 150
    python bench/mgc_mv_fit_probe.py --data out/d96 [--data ...] --checkpoint CKPT

For every held-out triplet of each data set (test.txt), the coefficients of
its three views are fitted directly, with no network in the way:

1. the eval's landmark fit (`mgc_face.evaluate.LANDMARK_FIT`, 200 steps) and
   30 colour steps (albedo and light on the fitted geometry), from the mean
   face, per view, against the strips' 1 px-noise `_lm.txt` landmarks;
2. from that common start, `--steps` Adam steps on the training objective
   (`mgc_face.objective.Objective` with the `--config` preset's weights) over
   all views at once, once with the multi-view terms (view synthesis, depth,
   epipolar: they tie each view's depth to the other two images) and once
   without (`single-view`).

With `--checkpoint CKPT` the probe is the test-time self-supervised fit
(`mgc_face.self_fit`) with and without the multi-view terms: the start is
the regressor's prediction for each view, the landmark targets are the
network's own landmark-head points instead of the labels, and the weights,
steps and rate are `SelfFitConfig`'s (the preset is the checkpoint's); no
label enters either arm.

Each arm's fitted shapes are scored as `mgc_face.evaluate` scores the
regressor: face-region RMSE after similarity alignment, over the mean
face's, for the target view, the source views and all views; and the
68-landmark NME against the noise-free ground truth.  If the multi-view terms
carried shape that one image lacks, the multi-view arm would end lower on
the same triplets.  Each data set is one seed (its own held-out identities);
the JSON line keeps every (data set, arm) row.  Step sizes are the landmark
fit's (`FitConfig` scales, learning rate `--learning-rate`, decayed
exponentially to a tenth).
"""

import argparse
import time

from common import load_average, print_json, print_table  # noqa: F401 (sets sys.path)

import numpy as np
import tensorflow as tf

from mgc_face import data as data_lib
from mgc_face import evaluate as eval_lib
from mgc_face import objective as objective_lib
from mgc_face import synthetic
from mgc_face.config import get_config
from mgc_face.self_fit import SelfFitConfig, fit_objective, objective_config, step_scales
from shared.fit.fitter import Fitter, FitConfig
from shared.eval.metrics import PERCENT, nme_68
from shared.model.coeffs import CoeffLayout
from shared.model.face_model import load_face_model
from shared.render.face_image import FaceSynthesizer

START_FIT = FitConfig(landmark_steps=eval_lib.LANDMARK_FIT.landmark_steps, photometric_steps=30)
FINAL_LR_RATIO = 0.1
ARMS = ("multi-view", "single-view")
ROLES = ("target", "sources", "all")


def load_split(data_dir, split="test"):
  """(`objective.Batch` of all held-out triplets, [B] ground-truth model-space vertices [V, 3])."""
  records, landmarks, _ = data_lib.scan(data_dir, split)
  images = np.stack([data_lib.read_strip(r.image_path(data_dir)) for r in records])
  skins = np.stack([data_lib.read_strip(r.skin_path(data_dir), grayscale=True) for r in records])
  truth = [synthetic.read_ground_truth(r.gt_path(data_dir)) for r in records]
  batch = objective_lib.Batch(tf.constant(images, tf.float32), tf.constant(skins, tf.float32),
                              tf.constant(np.stack(landmarks), tf.float32),
                              tf.constant([float(r.flag) for r in records]))
  return batch, truth


def score(shapes, landmarks2d, truth, model):
  """{role: sim RMSE / mean face} and NME % for shapes [B * 3, V, 3], landmarks [B * 3, 68, 2]."""
  region = model.skin_mask > eval_lib.SKIN_REGION
  fitted, mean = np.zeros((len(truth), 3)), np.zeros((len(truth), 3))
  nme = []
  for b, gt in enumerate(truth):
    for v in range(3):
      fitted[b, v] = eval_lib.aligned_rmse(shapes[3 * b + v], gt["vertices"], region, True)
      mean[b, v] = eval_lib.aligned_rmse(model.mean_shape, gt["vertices"], region, True)
    nme.extend(PERCENT * nme_68(landmarks2d[3 * b:3 * b + 3], gt["landmarks2d"]))
  views = {"target": np.s_[:, :1], "sources": np.s_[:, 1:], "all": np.s_[:, :]}
  out = {role: eval_lib.ratio(fitted[sel].mean(), mean[sel].mean()) for role, sel in views.items()}
  out["nme_percent"] = float(np.mean(nme))
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", action="append", required=True,
                      help="synthetic data set (repeat: one seed each)")
  parser.add_argument("--config", default="tiny", help="MGC preset whose loss weights are used")
  parser.add_argument("--steps", type=int, default=None,
                      help="Adam steps per arm (default 150; with --checkpoint SelfFitConfig's)")
  parser.add_argument("--learning-rate", type=float, default=None)
  parser.add_argument("--w-multiview", type=float, default=None,
                      help="weight of the multi-view terms (default: the preset's)")
  parser.add_argument("--checkpoint", default=None,
                      help="start from this regressor and fit to its head's points, no labels")
  args = parser.parse_args()
  regressor = None
  if args.checkpoint:
    from mgc_face.infer import load_regressor
    regressor = load_regressor(args.checkpoint)
    self_fit = SelfFitConfig()
    config = objective_config(regressor.config, self_fit)
    default_steps, default_rate = self_fit.steps, self_fit.learning_rate
  else:
    config = get_config(args.config)
    default_steps, default_rate = 150, START_FIT.learning_rate
  args.steps = default_steps if args.steps is None else args.steps
  args.learning_rate = default_rate if args.learning_rate is None else args.learning_rate
  if args.w_multiview is not None:
    config = config.replace(w_multiview=args.w_multiview)

  model = load_face_model(None)
  layout = CoeffLayout.for_model(model)
  synth = FaceSynthesizer(model)
  objective = objective_lib.Objective(synth, config)
  fitter = Fitter(synth, START_FIT)
  scales = step_scales(layout, START_FIT)
  rows, results = [], {}
  for data_dir in args.data:
    batch, truth = load_split(data_dir)
    flat = objective_lib.flatten_views
    start_time = time.time()
    if regressor is not None:
      coeffs, head = regressor.head_landmarks(flat(batch.images))
      start_vector = layout.join(coeffs).numpy()
      points = head[0] if head is not None else synth(coeffs, render=False).landmarks2d
      batch = batch._replace(landmarks=tf.reshape(points, batch.landmarks.shape))
      candidates = {"start (the regressor)": (start_vector, {})}
    else:
      start = fitter.fit(flat(batch.images), flat(batch.landmarks),
                         skin=objective_lib.process_skin(flat(batch.skins)), render=False)
      start_vector = layout.join(start.coeffs).numpy()
      candidates = {"start (landmark + colour fit)": (start_vector, {})}
    for arm in ARMS:
      candidates[arm] = fit_objective(objective, layout, start_vector, batch, args.steps,
                                      args.learning_rate, FINAL_LR_RATIO, arm == "multi-view",
                                      scales)
    for name, (vector, terms) in candidates.items():
      coeffs = layout.split(tf.constant(vector))
      shapes = synth.decoder.shape(coeffs.identity, coeffs.expression).numpy()
      landmarks2d = synth(coeffs, render=False).landmarks2d.numpy()
      metrics = score(shapes, landmarks2d, truth, model)
      metrics["photometric_term"] = terms.get("photometric", float("nan"))
      results[f"{data_dir}|{name}"] = metrics
      rows.append([data_dir, name, f"{metrics['target']:.3f}", f"{metrics['sources']:.3f}",
                   f"{metrics['all']:.3f}", f"{metrics['nme_percent']:.2f}",
                   f"{metrics['photometric_term']:.4f}"])
    print(f"{data_dir}: {len(truth)} triplets, {time.time() - start_time:.0f} s", flush=True)
  print_table(["data", "arm", "target sim/mean", "sources", "all views", "NME %",
               "photometric"], rows)
  for arm in ARMS:
    for role in ROLES:
      values = [results[f"{d}|{arm}"][role] for d in args.data]
      results[f"{arm}|{role}|mean"] = float(np.mean(values))
      results[f"{arm}|{role}|std"] = float(np.std(values))
  diffs = [results[f"{d}|multi-view"]["target"] - results[f"{d}|single-view"]["target"]
           for d in args.data]
  results["paired_target_diff_mv_minus_sv"] = diffs
  print("paired target difference (multi-view - single-view): " +
        ", ".join(f"{d:+.4f}" for d in diffs))
  results.update(steps=args.steps, config=config.name, w_multiview=config.w_multiview,
                 checkpoint=args.checkpoint,
                 load_average=load_average())
  print_json(results)


if __name__ == "__main__":
  main()
