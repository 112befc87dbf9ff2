#!/usr/bin/env python
"""Data-parallel scaling: training images/s with 1 worker versus 2 workers (tf.distribute).

    python bench/scaling.py [--steps 12] [--batch-size 2] [--data DIR] [--model mgc]

Trains the tiny MGC preset (`main.py --model mgc --mode train --config tiny`)
on a small synthetic dataset (made with tools/make_synthetic_dataset.py
unless --data is given), at the same GLOBAL batch size:

1. one worker, `--strategy default`;
2. two workers on 127.0.0.1 (free ports), `--strategy multiworker` with
   TF_CONFIG, each reading its half of every batch;
3. on a machine with a GPU, also one GPU (`--strategy mirrored`,
   CUDA_VISIBLE_DEVICES=0).

Images/s is what the trainer reports (3 views per triplet, the first,
traced step excluded).  Each worker gets cpus/workers intra-op threads, so
the two workers share the machine's cores rather than oversubscribe them.
On a 2-core machine the two workers compete for the same two cores, so the
ratio measures the distribution overhead, not a speed-up; on separate
machines each worker brings its own cores.  A table, the ratio, then one
JSON line.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_json, print_table  # noqa: E402
from shared.train.distribute import free_ports, local_cluster_config  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RUN_LIMIT_S = 1200


def make_data(path, identities):
  subprocess.run([sys.executable, REPO / "tools" / "make_synthetic_dataset.py", "--output",
                  path, "--identities", str(identities), "--test-identities", "1", "--quiet"],
                 check=True, cwd=REPO, stdout=subprocess.DEVNULL)


def train_command(args, checkpoint, strategy):
  return [sys.executable, str(REPO / "main.py"), "--model", "mgc", "--mode", "train", "--config",
          "tiny", "--strategy", strategy, "--data", str(args.data), "--checkpoint",
          str(checkpoint), "--steps", str(args.steps), "--batch-size", str(args.batch_size),
          "--quiet"]


def result_of(text, what):
  for line in reversed(text.splitlines()):
    if line.startswith("{"):
      return json.loads(line)
  raise SystemExit(f"{what}: no result line; last output:\n" + "\n".join(text.splitlines()[-15:]))


def run_workers(args, workdir, count, strategy, extra_env=None):
  """Runs `count` training processes; returns (chief's result, wall seconds)."""
  ports = free_ports(count) if strategy == "multiworker" else []
  threads = max(1, (os.cpu_count() or 1) // count)
  checkpoint = workdir / f"ckpt-{strategy}-{count}"
  shutil.rmtree(checkpoint, ignore_errors=True)
  procs = []
  start = time.perf_counter()
  for rank in range(count):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_NUM_INTRAOP_THREADS=str(threads),
               **(extra_env or {}))
    env.pop("TF_CONFIG", None)
    if ports:
      env["TF_CONFIG"] = local_cluster_config(ports, rank)
    log = open(workdir / f"{strategy}-{count}-{rank}.log", "w+")
    procs.append((subprocess.Popen(train_command(args, checkpoint, strategy), cwd=REPO, env=env,
                                   stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True), log))
  results = []
  for rank, (proc, log) in enumerate(procs):
    try:
      proc.wait(timeout=RUN_LIMIT_S)
    except subprocess.TimeoutExpired:
      for other, _ in procs:
        other.kill()
      raise SystemExit(f"{strategy} x{count}: worker {rank} ran over {RUN_LIMIT_S} s")
    log.seek(0)
    text = log.read()
    if proc.returncode != 0:
      raise SystemExit(f"{strategy} x{count}: worker {rank} exited {proc.returncode}:\n"
                       + "\n".join(text.splitlines()[-15:]))
    results.append(result_of(text, f"{strategy} x{count} worker {rank}"))
  wall = time.perf_counter() - start
  return results[0], wall


def has_gpu():
  code = ("import tensorflow as tf, sys; "
          "sys.exit(0 if tf.config.list_physical_devices('GPU') else 1)")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL).returncode == 0


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=12, help="training steps per run")
  parser.add_argument("--batch-size", type=int, default=2,
                      help="global batch (triplets per step); a multiple of 2")
  parser.add_argument("--data", default=None, help="MGC dataset folder (default: synthetic)")
  parser.add_argument("--identities", type=int, default=9, help="synthetic identities")
  parser.add_argument("--skip-gpu", action="store_true", help="no 1-GPU run even with a GPU")
  args = parser.parse_args(argv)
  if args.batch_size % 2:
    raise SystemExit("--batch-size must be even (it is split over 2 workers)")
  workdir = Path(tempfile.mkdtemp(prefix="face3d-scaling-"))
  try:
    if args.data is None:
      args.data = workdir / "data"
      make_data(args.data, args.identities)
    rows, out = [], {"steps": args.steps, "global_batch": args.batch_size}
    one, wall_one = run_workers(args, workdir, 1, "default")
    two, wall_two = run_workers(args, workdir, 2, "multiworker")
    ratio = two["images_per_second"] / one["images_per_second"]
    rows.append(["1 worker (default)", f"{one['images_per_second']:.2f}", f"{wall_one:.0f}"])
    rows.append(["2 workers (multiworker)", f"{two['images_per_second']:.2f}", f"{wall_two:.0f}"])
    out.update(one_worker_images_per_second=round(one["images_per_second"], 3),
               two_workers_images_per_second=round(two["images_per_second"], 3),
               ratio_two_over_one=round(ratio, 3))
    if not args.skip_gpu and has_gpu():
      gpu, wall_gpu = run_workers(args, workdir, 1, "mirrored", {"CUDA_VISIBLE_DEVICES": "0"})
      rows.append(["1 GPU (mirrored)", f"{gpu['images_per_second']:.2f}", f"{wall_gpu:.0f}"])
      out["one_gpu_images_per_second"] = round(gpu["images_per_second"], 3)
    print_table(["run", "images/s", "wall s (incl. start-up)"], rows)
    print(f"ratio 2 workers / 1 worker: {ratio:.2f} (global batch {args.batch_size}, "
          f"{os.cpu_count()} CPU cores shared by all workers)")
    print_json(out)
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
