#!/usr/bin/env python
"""The README demo on the embedded default face model (ICT).

Steps (each a plain main.py/tools command, printed before it runs):
  1. render the face model in several poses and expressions.
"""

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def step(title, command):
  print(f"\n== {title}\n$ {shlex.join(command)}", flush=True)
  start = time.time()
  result = subprocess.run(command, cwd=ROOT)
  if result.returncode != 0:
    print(f"demo: step '{title}' failed (exit {result.returncode})", file=sys.stderr)
    sys.exit(result.returncode)
  print(f"   ({time.time() - start:.0f} s)", flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--output", default="out/demo")
  parser.add_argument("--face-model", default=None)
  args = parser.parse_args()
  out = Path(args.output)
  py = sys.executable
  model = ["--face-model", args.face_model] if args.face_model else []
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  start = time.time()
  step("render the face model", [py, "main.py", "--model", "shared", "--mode", "render",
                                 "--output", str(out / "gallery")] + model)
  print(f"\ndemo finished in {time.time() - start:.0f} s; results in {out}/")


if __name__ == "__main__":
  main()
