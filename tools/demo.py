#!/usr/bin/env python
"""The README demo on the embedded default face model (ICT), end to end.

Each step is a plain command, printed before it runs.  The steps run in this
one Python process (each command's `main(argv)`), which saves TensorFlow's
start-up per step (about 4-5 s each on 2 cores); the printed commands do the
same job on their own:
  1. render the face model in several poses and expressions;
  2. generate a small synthetic multi-view dataset with ground truth;
  3. train the MGC regressor (tiny preset), test it on held-out crops, evaluate;
  4. pack crops into .bin files, train the GCN refiner on the MGC coarse stage, test, evaluate;
  5. reconstruct a real photo (scikit-image's astronaut): detect, align, regress, fit.
"""

import argparse
import importlib.util
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from shared.errors import report  # noqa: E402 (no TensorFlow: before quiet.setup)
IDENTITIES = 96          # Synthetic identities in all.
TEST_IDENTITIES = 12     # Held out for testing and evaluation.
# Steps of the eval's test-time self-supervised fit.  The eval's default is 300, about a minute
# on 2 cores for the 36 held-out views; the demo skips it (0) to stay inside its 6 minutes
# (docs/demo.md): `main.py --model mgc --mode eval` without --self-fit-steps runs it.
SELF_FIT_STEPS = 0
# What the demo writes in its output folder.  An earlier run's folder holding only these is
# moved to `<output>.previous` (an older one there is removed) before a run: every run trains
# afresh, since a checkpoint of another version of a preset does not resume, and a GCN trained
# on an earlier MGC coarse stage would be stale.
OUTPUTS = ("gallery", "data", "mgc_checkpoint", "mgc_test", "train.bin", "test.bin",
           "gcn_checkpoint", "gcn_test", "gcn_eval", "photo")
PREVIOUS_SUFFIX = ".previous"
# The pictures the last lines point to: (folder in the output, file pattern, what it shows).
PICTURES = (("gallery", "gallery.png", "the face model in six poses, and their depth"),
            ("mgc_test", "*_overlay.png",
             "MGC on a held-out face: input | its render and 68 points"),
            ("mgc_test", "*_poses.png", "its shape from five sides"),
            ("gcn_eval", "*_eval.png", "GCN: input | coarse | refined | truth, albedos below"),
            ("photo", "astronaut_overlay.png", "a real photo, fitted"),
            ("photo", "*_texture.png", "its UV texture, used by the .obj beside it"))


def entry_point(script):
  """The `main(argv)` function of the script `script` (a path relative to the repository)."""
  path = ROOT / script
  spec = importlib.util.spec_from_file_location(f"demo_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.main


def picture_lines(out):
  """Lines naming the first file of each `PICTURES` entry found under `out`, and how many."""
  lines = []
  for folder, pattern, what in PICTURES:
    found = sorted((Path(out) / folder).glob(pattern))
    if found:
      more = f"; {len(found)} like it" if len(found) > 1 else ""
      lines.append(f"  {found[0]}  ({what}{more})")
  return lines


def step(title, command):
  """Prints `command` ([python, script, args...]) and runs the script's `main(args)` here."""
  print(f"\n== {title}\n$ {shlex.join(command)}", flush=True)
  start = time.time()
  try:
    code = entry_point(command[1])(command[2:]) or 0
  except SystemExit as stop:  # argparse and explicit exits inside a step.
    code = stop.code if isinstance(stop.code, int) else 1
  if code != 0:
    print(f"demo: step '{title}' failed (exit {code})", file=sys.stderr)
    sys.exit(code)
  print(f"   ({time.time() - start:.0f} s)", flush=True)


def save_astronaut(path):
  from shared.io import image_io
  path.parent.mkdir(parents=True, exist_ok=True)
  image_io.write_png(path, image_io.sample_image("astronaut"))


def demo_folder_problem(folder):
  """Why `folder` cannot be set aside as an earlier demo's output (None: it can, or is absent)."""
  if not folder.exists():
    return None
  if not folder.is_dir():
    return "exists and is not a folder"
  others = sorted({p.name for p in folder.iterdir()} - set(OUTPUTS))
  if others:
    return (f"holds files the demo does not write ({', '.join(others[:3])}"
            f"{', ...' if len(others) > 3 else ''}); choose another --output")
  return None


def set_aside_earlier_run(out):
  """Moves an earlier demo's output folder `out` to `<out>.previous`; returns it (or None).

  Raises ValueError("<folder>: <problem>") when `out` or `<out>.previous` holds anything the
  demo does not write.
  """
  problem = demo_folder_problem(out)
  if problem:
    raise ValueError(f"{out}: {problem}")
  if not out.exists() or not any(out.iterdir()):
    return None
  previous = out.with_name(out.name + PREVIOUS_SUFFIX)
  problem = demo_folder_problem(previous)
  if problem:
    raise ValueError(f"{previous}: {problem}")
  if previous.is_symlink():
    previous.unlink()
  elif previous.exists():
    shutil.rmtree(previous)
  out.rename(previous)
  return previous


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--output", default="out/demo")
  parser.add_argument("--face-model", default=None)
  parser.add_argument("--verbose", action="store_true",
                      help="show TensorFlow's and other libraries' log lines")
  args = parser.parse_args()
  out = Path(args.output)
  py = sys.executable
  model = ["--face-model", args.face_model] if args.face_model else []
  if args.verbose:  # Read by every step (see shared/quiet.py).
    os.environ["FACE3D_VERBOSE"] = "1"
  os.chdir(ROOT)  # The commands' relative paths are the repository's.
  try:
    previous = set_aside_earlier_run(out)
  except (ValueError, OSError) as error:
    return report(error)
  if previous is not None:
    print(f"the earlier demo's results are now in {previous}/; this run starts afresh")
  from shared import quiet
  quiet.setup()  # Before TensorFlow is imported.
  start = time.time()
  data, mgc, gcn = out / "data", out / "mgc_checkpoint", out / "gcn_checkpoint"
  step("render the face model", [py, "main.py", "--model", "shared", "--mode", "render",
                                 "--output", str(out / "gallery")] + model)
  step("synthetic multi-view dataset", [py, "tools/make_synthetic_dataset.py", "--output",
                                        str(data), "--identities", str(IDENTITIES),
                                        "--test-identities", str(TEST_IDENTITIES), "--seed", "0"]
       + model)
  step("train MGC (tiny)", [py, "main.py", "--model", "mgc", "--mode", "train", "--config", "tiny",
                            "--data", str(data), "--checkpoint", str(mgc)] + model)
  step("test MGC on held-out crops", [py, "main.py", "--model", "mgc", "--mode", "test",
                                      "--checkpoint", str(mgc), "--input", str(data / "heldout"),
                                      "--output", str(out / "mgc_test")] + model)
  step("evaluate MGC on held-out identities", [py, "main.py", "--model", "mgc", "--mode", "eval",
                                               "--checkpoint", str(mgc), "--data", str(data),
                                               "--self-fit-steps", str(SELF_FIT_STEPS)]
       + model)
  step("pack training crops (all views) into a .bin",
       [py, "tools/create_bin.py", "--input", str(data), "--all-views", "--output",
        str(out / "train.bin")] + model)
  step("pack held-out crops into a .bin",
       [py, "tools/create_bin.py", "--input", str(data), "--split", "test", "--output",
        str(out / "test.bin")] + model)
  step("train GCN (tiny)", [py, "main.py", "--model", "gcn", "--mode", "train", "--config", "tiny",
                            "--data", str(out / "train.bin"), "--coarse-checkpoint", str(mgc),
                            "--checkpoint", str(gcn)] + model)
  step("test GCN on held-out crops", [py, "main.py", "--model", "gcn", "--mode", "test",
                                      "--checkpoint", str(gcn), "--coarse-checkpoint", str(mgc),
                                      "--input", str(out / "test.bin"),
                                      "--output", str(out / "gcn_test")] + model)
  step("evaluate GCN (coarse vs refined)", [py, "main.py", "--model", "gcn", "--mode", "eval",
                                            "--checkpoint", str(gcn), "--coarse-checkpoint",
                                            str(mgc), "--data", str(out / "test.bin"),
                                            "--pictures", str(out / "gcn_eval")] + model)
  photo = out / "photo" / "astronaut.png"
  save_astronaut(photo)
  step("reconstruct a real photo", [py, "main.py", "--model", "mgc", "--mode", "test",
                                    "--checkpoint", str(mgc), "--input", str(photo),
                                    "--output", str(out / "photo")] + model)
  print(f"\ndemo finished in {time.time() - start:.0f} s; results in {out}/")
  lines = picture_lines(out)
  if lines:
    print("pictures to look at:\n" + "\n".join(lines))
  return 0


if __name__ == "__main__":
  sys.exit(main())
