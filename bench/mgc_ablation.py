#!/usr/bin/env python
"""Ablation: does multi-view geometry consistency lower the 3D error?

    python bench/mgc_ablation.py --out out/mgc_ablation [--data DIR] [--steps 800]
        [--identities 160] [--seeds 0] [--config tiny]
    python bench/mgc_ablation.py --fit --out out/mgc_ablation [--fit-samples 4] [--fit-steps 200]

Regressor ablation (default): trains the same preset twice per seed, with the
same data, seed and number of steps: once with all losses (multi-view on)
and once with the single-view losses only (`--no-multiview`).  Both are
evaluated on the held-out identities of the synthetic set (see
`mgc_face.evaluate`).  When --data does not exist, a synthetic set is
generated there first.

Fitting probe (`--fit`): no network.  The coefficients of each view of
held-out triplets are optimised directly (Adam, from the mean face) with the
same objective, with and without the multi-view terms, for the same number
of steps; it measures whether the multi-view terms carry geometric
information, independently of how fast a regressor learns to use it.

Checkpoints go to OUT/<arm>_seed<S>/; a run that already reached --steps is
only re-evaluated, so an interrupted ablation resumes.  Prints a table, then
the results as one JSON object on the last line (also written to
OUT/ablation.json).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from shared import quiet  # noqa: E402

quiet.setup()  # Before TensorFlow is imported; FACE3D_VERBOSE=1 keeps library logs.

import numpy as np  # noqa: E402

ARMS = (("multiview", True), ("single_view", False))
DEFAULT_TEST_FRACTION = 0.1
REPORTED = ("rmse_face_mm", "mean_face_rmse_face_mm", "rmse_face_sim_mm", "mean_face_rmse_face_sim_mm",
            "rmse_all_mm", "nme_percent", "photometric")


def run_arm(face_model, config, data, out, seed, steps, multiview):
  from mgc_face import checkpoint as checkpoint_lib
  from mgc_face import evaluate, infer, train as train_lib
  ckpt = out / f"{'multiview' if multiview else 'single_view'}_seed{seed}"
  meta = checkpoint_lib.read_meta(ckpt)
  started = time.time()
  if meta is None or meta["step"] < steps:
    train_lib.train(face_model, config, data, ckpt, steps, multiview=multiview, seed=seed,
                    progress=True)
  train_seconds = time.time() - started
  regressor = infer.load_regressor(ckpt, face_model)
  metrics = evaluate.evaluate(regressor, data, progress=False)
  metrics["train_seconds_this_run"] = train_seconds
  return metrics


def fit_probe(face_model, config, data, samples, steps, learning_rate, multiview):
  """Fits per-view coefficients of `samples` held-out triplets; returns metrics."""
  import tensorflow as tf
  from mgc_face import data as data_lib
  from mgc_face import synthetic
  from mgc_face.evaluate import aligned_rmse
  from mgc_face.objective import Batch, Objective
  from shared.model.coeffs import CoeffLayout
  from shared.render.face_image import FaceSynthesizer
  from tqdm import tqdm
  records, landmarks, _ = data_lib.scan(data, "test")
  records, landmarks = records[:samples], landmarks[:samples]
  images = np.stack([data_lib.read_strip(r.image_path(data)) for r in records])
  skins = np.stack([data_lib.read_strip(r.skin_path(data), grayscale=True) for r in records])
  batch = Batch(tf.constant(images), tf.constant(skins), tf.constant(np.stack(landmarks)),
                tf.constant([float(r.flag) for r in records]))
  synth = FaceSynthesizer(face_model)
  objective = Objective(synth, config)
  layout = CoeffLayout.for_model(face_model)
  vector = tf.Variable(tf.zeros([3 * len(records), layout.size]))
  optimizer = __import__("keras").optimizers.Adam(learning_rate)

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      total, terms, _ = objective(layout.split(vector), batch, multiview)
    optimizer.apply_gradients([(tape.gradient(total, vector), vector)])
    return terms

  for _ in tqdm(range(steps), desc=f"fit ({'multi' if multiview else 'single'}-view)"):
    terms = step()
  coeffs = layout.split(vector)
  shapes = synth.decoder.shape(coeffs.identity, coeffs.expression).numpy()
  region = face_model.skin_mask > 0.5
  rmse, mean_face = [], []
  for k, record in enumerate(records):
    truth = synthetic.read_ground_truth(record.gt_path(data))["vertices"]
    rmse += [aligned_rmse(shapes[3 * k + v], truth, region) for v in range(3)]
    mean_face.append(aligned_rmse(face_model.mean_shape, truth, region))
  mm = face_model.mm_per_unit
  return {"rmse_face_mm": float(np.mean(rmse)) * mm, "mean_face_rmse_face_mm":
          float(np.mean(mean_face)) * mm, "landmark": float(terms["landmark"]),
          "photometric": float(terms["photometric"])}


def main_fit(args, face_model, config, data, out):
  results = {arm: fit_probe(face_model, config, data, args.fit_samples, args.fit_steps,
                            args.fit_learning_rate, multiview) for arm, multiview in ARMS}
  summary = {"probe": "fit", "config": config.name, "steps": args.fit_steps,
             "samples": args.fit_samples, "learning_rate": args.fit_learning_rate,
             "rmse_ratio_multiview_over_single": results["multiview"]["rmse_face_mm"] /
             results["single_view"]["rmse_face_mm"], **results}
  print(f"{'fitting probe':34}{'multi-view':>12}{'single-view':>13}")
  for key in ("rmse_face_mm", "mean_face_rmse_face_mm", "landmark", "photometric"):
    print(f"{key:34}{results['multiview'][key]:>12.3f}{results['single_view'][key]:>13.3f}")
  print(f"{'RMSE ratio (multi / single)':34}{summary['rmse_ratio_multiview_over_single']:>12.3f}")
  from shared.io.fileio import write_text_atomic
  write_text_atomic(out / "fit_probe.json", json.dumps(summary, indent=2) + "\n")
  print(json.dumps(summary))
  return 0


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--face-model", default=None)
  parser.add_argument("--data", default=None, help="synthetic set (default: OUT/data)")
  parser.add_argument("--out", default="out/mgc_ablation")
  parser.add_argument("--identities", type=int, default=160, help="when generating --data")
  parser.add_argument("--data-seed", type=int, default=100, help="when generating --data")
  parser.add_argument("--steps", type=int, default=None, help="steps per run (default: preset)")
  parser.add_argument("--seeds", type=int, nargs="+", default=[0])
  parser.add_argument("--config", default="tiny")
  parser.add_argument("--fit", action="store_true", help="run the fitting probe instead")
  parser.add_argument("--fit-samples", type=int, default=4, help="held-out triplets to fit")
  parser.add_argument("--fit-steps", type=int, default=200)
  parser.add_argument("--fit-learning-rate", type=float, default=0.01)
  args = parser.parse_args(argv)
  from mgc_face import synthetic
  from mgc_face.config import get_config
  from shared.errors import InputError, report
  from shared.model.face_model import load_face_model
  out = Path(args.out)
  data = Path(args.data) if args.data else out / "data"
  try:
    face_model = load_face_model(args.face_model)
    config = get_config(args.config)
    steps = args.steps or config.steps
    if config.landmark_head and steps <= config.landmark_warmup_steps:
      raise InputError(f"--steps {steps}: the '{config.name}' preset trains only its landmark "
                       f"head for the first {config.landmark_warmup_steps} steps, so the arms "
                       "would not differ; use more steps")
    if not (data / "train.txt").exists():
      test = max(1, round(DEFAULT_TEST_FRACTION * args.identities))
      synthetic.generate(face_model, data, args.identities, test, args.data_seed)
    if args.fit:
      out.mkdir(parents=True, exist_ok=True)
      return main_fit(args, face_model, config, data, out)
    results = {}
    for seed in args.seeds:
      for arm, multiview in ARMS:
        results[f"{arm}_seed{seed}"] = run_arm(face_model, config, data, out, seed, steps,
                                               multiview)
  except InputError as error:
    return report(error)
  summary = {"config": config.name, "steps": steps, "seeds": args.seeds, "data": str(data)}
  for arm, _ in ARMS:
    for key in REPORTED:
      values = [results[f"{arm}_seed{s}"][key] for s in args.seeds]
      summary[f"{arm}_{key}"] = float(np.mean(values))
  summary["rmse_ratio_multiview_over_single"] = (summary["multiview_rmse_face_mm"] /
                                                 summary["single_view_rmse_face_mm"])
  summary["sim_rmse_ratio_multiview_over_single"] = (summary["multiview_rmse_face_sim_mm"] /
                                                     summary["single_view_rmse_face_sim_mm"])
  summary["runs"] = results
  print(f"{'':34}{'multi-view':>12}{'single-view':>13}")
  for key in REPORTED:
    print(f"{key:34}{summary['multiview_' + key]:>12.3f}{summary['single_view_' + key]:>13.3f}")
  print(f"{'RMSE ratio (multi / single)':34}{summary['rmse_ratio_multiview_over_single']:>12.3f}")
  print(f"{'similarity RMSE ratio':34}{summary['sim_rmse_ratio_multiview_over_single']:>12.3f}")
  out.mkdir(parents=True, exist_ok=True)
  from shared.io.fileio import write_text_atomic
  write_text_atomic(out / "ablation.json", json.dumps(summary, indent=2) + "\n")
  print(json.dumps(summary))
  return 0


if __name__ == "__main__":
  sys.exit(main())
