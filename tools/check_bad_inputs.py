#!/usr/bin/env python
"""Runs the command lines on bad input and checks the toolkit's error form.

    python tools/check_bad_inputs.py [--demo out/demo] [--only NAME ...] [--list]

Each case (`CASES`) runs one command in its own process, in a new temporary folder, and
passes when:
  - the exit status is 2 (`shared.errors.EXIT_INPUT_ERROR`);
  - the output's last line starts with `error: ` and no other line does; `skipped: ` lines
    may come before it (folders where some images could not be used, as in the test modes),
    and so may progress bars;
  - no line holds `Traceback`;
  - nothing was written: the temporary folder and the demo's folder hold the same files
    (names, sizes and modification times) before and after.
The trained checkpoints and data come from a `make demo` output folder (`--demo`), which
the checks leave as they found it.  Prints a table, then one JSON line.
"""

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from shared.errors import EXIT_INPUT_ERROR, report  # noqa: E402 (no TensorFlow)

ERROR_PREFIX = "error: "
SKIPPED_PREFIX = "skipped: "
PROGRESS_BAR = re.compile(r"\d+%\|")   # a tqdm bar's state (stderr, redrawn after "\r")
MAIN = ("main.py",)
MGC_TEST = MAIN + ("--model", "mgc", "--mode", "test")
GCN_TEST = MAIN + ("--model", "gcn", "--mode", "test")
PHOTO_SET = ("tools/make_photo_dataset.py",)
GCN_COPY = "{tmp}/gcn_checkpoint"   # a case's own copy of the demo's GCN checkpoint


@dataclasses.dataclass(frozen=True)
class Case:
  """One bad input: `name`, and the script and arguments after `python`, in which
  `{tmp}` is the case's temporary folder and `{demo}` the demo's output folder."""
  name: str
  argv: tuple


CASES = (
    # Missing or foreign files and folders.
    Case("missing checkpoint", MGC_TEST + ("--checkpoint", "{tmp}/none", "--input",
                                           "{tmp}/photo.png", "--output", "{tmp}/out")),
    Case("corrupt jpg, MGC test", MGC_TEST + ("--checkpoint", "{demo}/mgc_checkpoint",
                                              "--input", "{tmp}/corrupt.jpg", "--output",
                                              "{tmp}/out")),
    Case("corrupt jpg, GCN test", GCN_TEST + ("--checkpoint", "{demo}/gcn_checkpoint",
                                              "--input", "{tmp}/corrupt.jpg", "--output",
                                              "{tmp}/out")),
    Case("corrupt jpg, GCN test --keep-occluders",
         GCN_TEST + ("--checkpoint", "{demo}/gcn_checkpoint", "--input", "{tmp}/corrupt.jpg",
                     "--output", "{tmp}/out", "--keep-occluders")),
    Case("missing dataset folder", MAIN + ("--model", "mgc", "--mode", "train", "--data",
                                           "{tmp}/none", "--checkpoint", "{tmp}/ckpt")),
    Case("dataset without train.txt", MAIN + ("--model", "mgc", "--mode", "train", "--data",
                                              "{tmp}/empty", "--checkpoint", "{tmp}/ckpt")),
    Case("--config huge", MAIN + ("--model", "mgc", "--mode", "train", "--config", "huge",
                                  "--data", "{demo}/data", "--checkpoint", "{tmp}/ckpt")),
    Case("output folder under a file", MGC_TEST + ("--checkpoint", "{demo}/mgc_checkpoint",
                                                   "--input", "{tmp}/photo.png", "--output",
                                                   "{tmp}/file/out")),
    Case("--keep-occluders given to eval",
         MAIN + ("--model", "gcn", "--mode", "eval", "--checkpoint", "{demo}/gcn_checkpoint",
                 "--data", "{demo}/test.bin", "--keep-occluders")),
    Case("demo output holding a foreign file", ("tools/demo.py", "--output", "{tmp}/foreign")),
    Case("create_bin --size 0", ("tools/create_bin.py", "--input", "{demo}/data", "--output",
                                 "{tmp}/out.bin", "--size", "0")),
    # The photo dataset tool.
    Case("photo set: missing folder", PHOTO_SET + ("--input", "{tmp}/none", "--output",
                                                   "{tmp}/set")),
    Case("photo set: no usable image", PHOTO_SET + ("--input", "{tmp}/noface", "--output",
                                                    "{tmp}/set")),
    Case("photo set: output under a file", PHOTO_SET + ("--input", "{tmp}/photos", "--output",
                                                        "{tmp}/file/set")),
    Case("photo set: --test-fraction 2", PHOTO_SET + ("--input", "{tmp}/photos", "--output",
                                                      "{tmp}/set", "--test-fraction", "2")),
    # --set NAME=VALUE.
    Case("--set unknown field", MAIN + ("--model", "mgc", "--mode", "train", "--data",
                                        "{demo}/data", "--checkpoint", "{tmp}/ckpt", "--set",
                                        "no_such_field=1")),
    Case("--set value of the wrong type", MAIN + ("--model", "mgc", "--mode", "train", "--data",
                                                  "{demo}/data", "--checkpoint", "{tmp}/ckpt",
                                                  "--set", "steps=many")),
    Case("GCN resume that changes the network",
         MAIN + ("--model", "gcn", "--mode", "train", "--data", "{demo}/train.bin",
                 "--coarse-checkpoint", "{demo}/mgc_checkpoint", "--checkpoint", GCN_COPY,
                 "--resume", "--arch", "resnet")),
    Case("photo fit --set unknown field", MGC_TEST + ("--input", "{tmp}/photo.png", "--output",
                                                      "{tmp}/out", "--set", "no_such_field=1")),
    Case("photo fit --set mistyped", MGC_TEST + ("--input", "{tmp}/photo.png", "--output",
                                                 "{tmp}/out", "--set", "shape_weight=big")),
    # Videos.
    Case("broken video", MGC_TEST + ("--input", "{tmp}/broken.mp4", "--output", "{tmp}/out")),
    Case("--frame-step 0", MGC_TEST + ("--input", "{tmp}/photo.png", "--output", "{tmp}/out",
                                       "--frame-step", "0")),
    Case("video given to the GCN test", GCN_TEST + ("--checkpoint", "{demo}/gcn_checkpoint",
                                                    "--input", "{tmp}/broken.mp4", "--output",
                                                    "{tmp}/out")),
    Case("bench/video.py --frames 0", ("bench/video.py", "--frames", "0", "--output",
                                       "{tmp}/out")),
    Case("--smoothing -1", MGC_TEST + ("--input", "{tmp}/photo.png", "--output", "{tmp}/out",
                                       "--smoothing", "-1")),
    Case("--smoothing nan", MGC_TEST + ("--input", "{tmp}/photo.png", "--output", "{tmp}/out",
                                        "--smoothing", "nan")),
    Case("bench/video_smoothing.py --frames 2", ("bench/video_smoothing.py", "--frames", "2")),
    # One person in many images.
    Case("--same-person on aligned crops", MGC_TEST + ("--checkpoint", "{demo}/mgc_checkpoint",
                                                       "--input", "{tmp}/strips", "--output",
                                                       "{tmp}/out", "--same-person")),
    Case("--same-person on a broken video", MGC_TEST + ("--input", "{tmp}/broken.mp4",
                                                        "--output", "{tmp}/out",
                                                        "--same-person")),
    Case("bench/same_person.py --frames 1", ("bench/same_person.py", "--frames", "1")),
    # The mesh model.
    Case("unknown --mesh-model, test", MGC_TEST + ("--input", "{tmp}/photo.png", "--output",
                                                   "{tmp}/out", "--mesh-model", "none")),
    Case("unknown --mesh-model, eval-landmarks",
         MAIN + ("--mode", "eval-landmarks", "--data", "{tmp}/photos", "--mesh-model", "none")),
)


def write_fixtures(tmp, demo, case):
  """The inputs the cases read, in `tmp`: a photo, a folder of photos, a folder with no
  face, a corrupt JPEG, a broken video, a regular file, an empty folder, a demo folder
  holding a foreign file, a folder of the demo's strips, and a copy of its GCN checkpoint
  (23 MB) for the `case` that names one."""
  from skimage import data
  from shared.io.image_io import write_png

  write_png(tmp / "photo.png", data.astronaut())
  (tmp / "photos").mkdir()
  write_png(tmp / "photos" / "astronaut.png", data.astronaut())
  (tmp / "noface").mkdir()
  write_png(tmp / "noface" / "grey.png", np.full((240, 320, 3), 128, np.uint8))
  (tmp / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
  (tmp / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 1000)
  (tmp / "file").write_text("a file, not a folder\n")
  (tmp / "empty").mkdir()
  (tmp / "foreign").mkdir()
  (tmp / "foreign" / "notes.txt").write_text("someone else's file\n")
  (tmp / "strips").mkdir()
  for strip in sorted((demo / "data").rglob("*.jpg"))[:2]:
    shutil.copy(strip, tmp / "strips" / strip.name)
  if any(part.startswith(GCN_COPY) for part in case.argv):
    shutil.copytree(demo / "gcn_checkpoint", tmp / "gcn_checkpoint")


def snapshot(*folders):
  """{path: (size, mtime in ns)} of every file under `folders`."""
  state = {}
  for folder in folders:
    for path in Path(folder).rglob("*"):
      stat = path.stat()
      state[str(path)] = (stat.st_size if path.is_file() else -1, stat.st_mtime_ns)
  return state


def run_case(case, demo):
  """(passed, what went wrong or the error line, seconds) of one case."""
  with tempfile.TemporaryDirectory(prefix="bad_input_") as name:
    tmp = Path(name)
    write_fixtures(tmp, demo, case)
    argv = [part.format(tmp=tmp, demo=demo) for part in case.argv]
    before = snapshot(tmp, demo)
    start = time.time()
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "FACE3D_VERBOSE": ""})
    seconds = time.time() - start
    after = snapshot(tmp, demo)
  lines = [piece for line in (done.stdout + done.stderr).splitlines()
           for piece in line.split("\r") if piece.strip() and not PROGRESS_BAR.search(piece)]
  errors = [line for line in lines if line.startswith(ERROR_PREFIX)]
  others = [line for line in lines if not line.startswith((ERROR_PREFIX, SKIPPED_PREFIX))]
  problems = []
  if done.returncode != EXIT_INPUT_ERROR:
    problems.append(f"exit status {done.returncode}")
  if len(errors) != 1 or not lines or lines[-1] != errors[0]:
    problems.append(f"{len(errors)} error lines, not last" if errors else "no error line")
  if others:
    problems.append(f"other output: {others[0][:80]!r}")
  if any("Traceback" in line for line in lines):
    problems.append("a traceback")
  changed = sorted(set(before.items()) ^ set(after.items()))
  if changed:
    problems.append(f"wrote {changed[0][0]}")
  return not problems, "; ".join(problems) or errors[0], seconds


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--demo", default="out/demo",
                      help="a `make demo` output folder (its checkpoints, data and .bin files)")
  parser.add_argument("--only", nargs="+", metavar="NAME",
                      help="run only the cases whose names contain one of these")
  parser.add_argument("--list", action="store_true", help="list the cases and stop")
  args = parser.parse_args(argv)
  cases = [case for case in CASES
           if not args.only or any(part in case.name for part in args.only)]
  if args.list:
    print("\n".join(case.name for case in cases))
    return 0
  demo = Path(args.demo).resolve()
  missing = [part for part in ("mgc_checkpoint", "gcn_checkpoint", "data", "train.bin",
                               "test.bin") if not (demo / part).exists()]
  if missing:
    return report(f"{args.demo}: not a demo output folder (no {', '.join(missing)}; "
                  "run make demo)")
  results = []
  print(f"{'case':42s} {'ok':3s} {'s':>5s}  error line, or what went wrong")
  for case in cases:
    passed, said, seconds = run_case(case, demo)
    results.append({"case": case.name, "passed": passed, "said": said})
    print(f"{case.name:42s} {'yes' if passed else 'NO':3s} {seconds:5.1f}  {said[:110]}",
          flush=True)
  failed = [result["case"] for result in results if not result["passed"]]
  print(json.dumps({"cases": len(results), "passed": len(results) - len(failed),
                    "failed": failed}))
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
