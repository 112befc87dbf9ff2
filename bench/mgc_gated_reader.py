#!/usr/bin/env python
"""Does a reader gated by yaw read more shape from the cascade's points? (issue 13, session 22)

The `cpu_hour` cascade's reader maps all its refined points (normalised) to
identity and expression with the prior map (`mgc_face/prior_init.py`).  One
linear map must read shape from points whose layout also moves with the
head's yaw.  This bench swaps in other readers on one checkpoint, the
cascade's stages unchanged, and scores each as `main.py --model mgc --mode
eval --self-fit-steps 0 --fit-steps 0` does (held-out similarity RMSE / mean
face, by yaw bin).  Readers: one map from `--samples` or 4000 prior faces, and
yaw-gated maps (`prior_init.yaw_gated_map`: one map per `step` degrees, each
fitted on the faces within `window` degrees) at the given noise (px).
Choose on a tuning set (`out/std/probe_s1`), not on the scored one.

    python bench/mgc_gated_reader.py --checkpoint CKPT --data out/std/probe_s1

Prints a table; the last line is JSON.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from shared import quiet  # noqa: E402
from common import run_reporting_input_errors  # noqa: E402

# (label, samples, yaw step, window, noise px): step 0 is one map.
READERS = (("one map, 4000 faces", 4000, 0.0, 0.0, 1.5),
           ("one map, 40000 faces", 40000, 0.0, 0.0, 1.5),
           ("gated 10 / 10", 40000, 10.0, 10.0, 1.5),
           ("gated 10 / 15", 40000, 10.0, 15.0, 1.5),
           ("gated 5 / 10", 40000, 5.0, 10.0, 1.5),
           ("gated 5 / 5", 40000, 5.0, 5.0, 1.5),
           ("gated 10 / 10, 1.0 px", 40000, 10.0, 10.0, 1.0),
           ("gated 10 / 10, 2.5 px", 40000, 10.0, 10.0, 2.5))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--checkpoint", required=True, help="MGC checkpoint with a cascade reader")
  parser.add_argument("--data", required=True, help="synthetic set to score (a tuning set)")
  parser.add_argument("--readers", type=int, nargs="*", default=None,
                      help="rows of READERS to run (default: all)")
  args = parser.parse_args()
  quiet.setup()
  return run_reporting_input_errors(run, args)


def run(args):
  """Scores each reader row on `args.data`; raises InputError for a bad checkpoint or data set."""
  from mgc_face import evaluate
  from mgc_face import infer
  from mgc_face import train
  from shared.errors import InputError
  regressor = infer.load_regressor(args.checkpoint)
  cascade = regressor.cascade
  if cascade is None or cascade.reader is None:
    raise InputError(f"{args.checkpoint}: no cascade reader")
  rows = []
  chosen = READERS if args.readers is None else [READERS[k] for k in args.readers]
  for label, samples, step, window, noise in chosen:
    start = time.time()
    config = regressor.config.replace(cascade_prior_noise=noise, cascade_reader_samples=samples,
                                      cascade_reader_yaw_step=step,
                                      cascade_reader_yaw_window=window)
    cascade.reader = train.cascade_reader(regressor, config, cascade.dense_vertices)
    metrics = evaluate.evaluate(regressor, args.data, progress=False, fit_config=None,
                                self_fit_config=None)
    if not rows:  # After the first row's inputs are known to be good.
      print(f"{'reader':<26} {'sim / mean':>10} {'NME %':>7}  by |yaw| [0,20) [20,40) [40,90]   s")
    bins = [b["rmse_sim_vs_mean_face"] for b in metrics["by_yaw"].values()]
    rows.append({"reader": label, "samples": samples, "yaw_step": step, "window": window,
                 "noise": noise, "rmse_sim_vs_mean_face": metrics["rmse_sim_vs_mean_face"],
                 "nme_percent": metrics["nme_percent"], "by_yaw": bins})
    print(f"{label:<26} {metrics['rmse_sim_vs_mean_face']:>10.4f} "
          f"{metrics['nme_percent']:>7.3f}  {'':>9}{bins[0]:.3f}  {bins[1]:.3f}  {bins[2]:.3f} "
          f"{time.time() - start:5.0f}", flush=True)
  print(json.dumps({"checkpoint": args.checkpoint, "data": args.data, "rows": rows}))


if __name__ == "__main__":
  sys.exit(main())
