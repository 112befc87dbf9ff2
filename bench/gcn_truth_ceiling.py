#!/usr/bin/env python
"""The refiner told the answer: how close to the true albedo can the GCN get? (issue 15)

The supervised ceiling of the texture refiner, as `bench/mgc_probe.py` gives
the MGC network's: the `tiny` GCN is trained on a synthetic training `.bin`
with `truth_albedo_weight` W (an L1 term to each record's true per-vertex
albedo, read from the data set's `_gt.npz` files, on top of the preset's own
losses), and evaluated on held-out crops with `main.py --model gcn --mode
eval`'s metrics.  Each weight trains once, checkpointed and evaluated at each
`--steps` count in turn (a later count resumes the earlier run, so the data
order restarts at each count; the learning-rate schedule does not).

    python bench/gcn_truth_ceiling.py --data out/demo/train.bin --test-data out/demo/test.bin \\
        --coarse-checkpoint out/demo/mgc_checkpoint --weights 0 30 --steps 120 600 \\
        --output /tmp/ceiling

One table row per weight and step count (L1, SSIM and albedo RMSE of the
refined texture against the coarse one), then one JSON line.
"""

import argparse
import sys
from pathlib import Path

from common import (load_average, print_json, print_table,  # noqa: F401 (sets sys.path)
                    run_reporting_input_errors)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data", required=True, help="training .bin (synthetic, with truth)")
  parser.add_argument("--test-data", required=True, help="held-out .bin")
  parser.add_argument("--coarse-checkpoint", required=True, help="MGC checkpoint")
  parser.add_argument("--output", required=True, help="folder for one checkpoint per weight")
  parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 30.0])
  parser.add_argument("--steps", type=int, nargs="+", default=[120])
  parser.add_argument("--learning-rate", type=float, default=None,
                      help="default: the preset's")
  parser.add_argument("--config", default="tiny")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()

  return run_reporting_input_errors(run, args)


def run(args):
  """Trains and scores every weight and step count; prints the table and the JSON line."""
  from gcn_face import coarse, evaluate, infer, train
  from gcn_face.binfile import BinReader
  from gcn_face.config import get_config
  config = get_config(args.config)
  if args.learning_rate is not None:
    config = config.replace(learning_rate=args.learning_rate)
  stage = coarse.load_coarse_stage(args.coarse_checkpoint)
  train.read_truth(BinReader(args.test_data), stage.face_model.num_vertices)  # Scored on it.
  metrics = ("l1", "ssim", evaluate.ALBEDO_METRIC)
  results, rows = [], []
  for weight in args.weights:
    run_config = config.replace(truth_albedo_weight=weight)
    folder = Path(args.output) / f"w{weight:g}"
    pipeline = infer.build_pipeline(stage, run_config)
    for steps in sorted(args.steps):
      trained = train.train(pipeline, run_config, args.data, folder, args.coarse_checkpoint,
                            steps=steps, seed=args.seed, log=lambda _: None, progress=False)
      scored = evaluate.evaluate(pipeline, args.test_data)
      row = {"weight": weight, "steps": steps, "train_s": round(trained.seconds, 1)}
      for metric in metrics:
        before, after = scored["coarse"][metric], scored["refined"][metric]
        row[metric] = {"coarse": before, "refined": after, "change": after / before - 1}
      results.append(row)
      rows.append([f"{weight:g}", str(steps), f"{row['train_s']:.0f}"] + [
          f"{row[m]['coarse']:.4f} -> {row[m]['refined']:.4f} ({100 * row[m]['change']:+.1f} %)"
          for m in metrics])
  print_table(["truth weight", "steps", "train s", "L1", "SSIM", "albedo RMSE"], rows)
  print_json({"config": config.name, "learning_rate": config.learning_rate, "seed": args.seed,
              "runs": results, "load_average": load_average()})


if __name__ == "__main__":
  sys.exit(main())
