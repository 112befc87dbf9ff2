#!/usr/bin/env python
"""Two cheap changes at inference to a trained cascade, scored (issue 13, session 23).

On one checkpoint with a cascade reader, nothing retrained, each row is scored
as `main.py --model mgc --mode eval --self-fit-steps 0 --fit-steps 0` does
(held-out similarity RMSE / mean face, its identity and expression parts, by
yaw bin):

* `expression clipped`: the reader's expression coefficients clipped to the
  synthetic prior's range [0, `SyntheticConfig.expression_max`] (the linear
  reader can read negative ones, which the data never has);
* `expression zero`: the reader's expression set to neutral (what reading
  expression is worth);
* `shifted images, N px`: the network and cascade also run on the image
  translated by N px left, right, up and down (edges mirrored); the five
  sets of refined points, shifted back, are averaged before the reader.

Choose on a tuning set (`out/std/probe_s1`), not on the scored one.

    python bench/mgc_test_time.py --checkpoint CKPT --data out/std/probe_s1

Prints a table; the last line is JSON.
"""

import argparse
import json
import sys
import time

import numpy as np

from common import run_reporting_input_errors  # (path and quiet logs)

SHIFT_ROWS = (3, 6)   # px of the shifted-image rows


def shifted(images, dx, dy):
  """[N, H, W, 3] images with their content moved by (dx, dy) px, edges mirrored."""
  import tensorflow as tf
  pad = max(abs(dx), abs(dy))
  height, width = int(images.shape[1]), int(images.shape[2])
  padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="SYMMETRIC")
  return padded[:, pad - dy:pad - dy + height, pad - dx:pad - dx + width, :]


def patch(regressor, row):
  """Installs `row`'s change on the regressor's instance; returns nothing."""
  from mgc_face import synthetic
  kind, amount = row
  plain_read, plain_refine = type(regressor.cascade).read, type(regressor).refined_points
  layout = regressor.layout
  start = int(np.sum(layout.sizes[:2]))
  expression = slice(start, start + layout.num_exp)
  if kind in ("clip", "zero"):
    top = synthetic.SyntheticConfig().expression_max if kind == "clip" else 0.0

    def read(points, vectors, yaw=None):
      out = plain_read(regressor.cascade, points, vectors, yaw)
      out[:, expression] = np.clip(out[:, expression], 0.0, top)
      return out
    regressor.cascade.read = read
  if kind == "shift":
    def refined_points(images, head_points):
      runs = [plain_refine(regressor, images, head_points)]
      for dx, dy in ((amount, 0), (-amount, 0), (0, amount), (0, -amount)):
        moved = shifted(images, dx, dy)
        head = regressor._inference(int(moved.shape[0]))(moved)[2].numpy()
        runs.append(plain_refine(regressor, moved, head) - np.float32([dx, dy]))
      return np.mean(runs, 0).astype(np.float32)
    regressor.refined_points = refined_points


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--checkpoint", required=True, help="MGC checkpoint with a cascade reader")
  parser.add_argument("--data", required=True, help="synthetic set to score (a tuning set)")
  return run_reporting_input_errors(run, parser.parse_args())


def run(args):
  """Scores each row on `args.data`; raises InputError for a bad checkpoint or data set."""
  from mgc_face import evaluate
  from mgc_face import infer
  from shared.errors import InputError
  rows = [("as trained", (None, 0)), ("expression clipped", ("clip", 0)),
          ("expression zero", ("zero", 0))]
  rows += [(f"shifted images, {px} px", ("shift", px)) for px in SHIFT_ROWS]
  results = []
  for label, row in rows:
    began = time.time()
    regressor = infer.load_regressor(args.checkpoint)
    if regressor.cascade is None or regressor.cascade.reader is None:
      raise InputError(f"{args.checkpoint}: no cascade reader")
    patch(regressor, row)
    metrics = evaluate.evaluate(regressor, args.data, progress=False, fit_config=None,
                                self_fit_config=None)
    if not results:  # After the first row's inputs are known to be good.
      print(f"{'inference':<22} {'sim / mean':>10} {'id part':>8} {'exp part':>8} {'NME %':>6}"
            f"  [0,20) [20,40) [40,90]     s")
    bins = [b["rmse_sim_vs_mean_face"] for b in metrics["by_yaw"].values()]
    results.append({"inference": label, "by_yaw": bins, **{
        key: metrics[key] for key in ("rmse_sim_vs_mean_face", "identity_sim_vs_mean_identity",
                                      "expression_sim_vs_neutral", "nme_percent")}})
    print(f"{label:<22} {metrics['rmse_sim_vs_mean_face']:>10.4f} "
          f"{metrics['identity_sim_vs_mean_identity']:>8.3f} "
          f"{metrics['expression_sim_vs_neutral']:>8.3f} {metrics['nme_percent']:>6.3f}  "
          f"{bins[0]:.3f}  {bins[1]:.3f}  {bins[2]:.3f} {time.time() - began:5.0f}", flush=True)
  print(json.dumps({"checkpoint": args.checkpoint, "data": args.data, "rows": results}))


if __name__ == "__main__":
  sys.exit(main())
