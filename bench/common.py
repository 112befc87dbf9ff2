"""Helpers shared by the bench scripts: timing, tables, the final JSON line."""

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from shared import quiet  # noqa: E402

quiet.setup()  # Before any bench imports TensorFlow; FACE3D_VERBOSE=1 keeps library logs.


DEFAULT_THREADS = 2
DEFAULT_REPEATS = 3
EVAL_SUBDIR = "eval/aflw2000_16"  # In the data folder: the photo benches' default images.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def add_photo_arguments(parser):
  """--folder, --threads and --repeats of the benches that time photos."""
  parser.add_argument("--folder", help=f"images (default <data dir>/{EVAL_SUBDIR})")
  parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
  parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)


def limit_threads(threads):
  """Caps OpenMP/BLAS threads (call before numpy's libraries start) and OpenCV's."""
  for var in THREAD_VARIABLES:
    os.environ[var] = str(threads)
  import cv2
  cv2.setNumThreads(threads)


def time_call(fn, repeats, warmup=2):
  """Median seconds of `fn()` over `repeats` calls after `warmup` calls."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  times.sort()
  return times[len(times) // 2]


def time_interleaved(fns, repeats, warmup=2):
  """Times several callables round-robin, so load changes hit them alike.

  Args:
    fns: {name: callable}.
    repeats: timed rounds (after `warmup` untimed rounds).

  Returns:
    {name: {"min": s, "median": s, "cpu": s}}: wall seconds (min and median over
    rounds) and the minimum process CPU seconds (all threads), which depends
    less on other jobs than wall time does.
  """
  for _ in range(warmup):
    for fn in fns.values():
      fn()
  wall = {name: [] for name in fns}
  cpu = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start, start_cpu = time.perf_counter(), time.process_time()
      fn()
      wall[name].append(time.perf_counter() - start)
      cpu[name].append(time.process_time() - start_cpu)
  return {name: {"min": min(wall[name]), "median": sorted(wall[name])[len(wall[name]) // 2],
                 "cpu": min(cpu[name])} for name in fns}


def run_reporting_input_errors(run, args):
  """`run(args)`; an `InputError` (bad file or folder) becomes one `error:` line on stderr.
  Returns the exit status: 0, or 2 for bad input."""
  from shared.errors import InputError, report
  try:
    run(args)
  except InputError as error:
    return report(error)
  return 0


def load_average():
  """1-minute load average (other jobs on the machine inflate wall times)."""
  return round(os.getloadavg()[0], 2)


def print_table(headers, rows):
  """Prints rows (lists) under headers as an aligned text table."""
  cells = [headers] + [[str(c) for c in row] for row in rows]
  widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
  for k, row in enumerate(cells):
    print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    if k == 0:
      print("  ".join("-" * w for w in widths))


def print_json(result):
  """The last line of every bench: one JSON object, with the machine it ran on (`machine`)."""
  print(json.dumps({**machine(), **result}, sort_keys=True))


def machine():
  """The machine a bench ran on.  Its CPU model is there because trained models' figures can
  differ between CPU models (docs/mgc.md, "Session 17")."""
  from shared.render.rasterizer import cpu_model   # Standard library only at import.
  return {"cpus": os.cpu_count(), "cpu_model": cpu_model(), "python": sys.version.split()[0]}
