"""Jobs on the shared layer alone, and the command-line helpers every model's CLI uses.

Shared jobs (`python main.py --mode render|eval-landmarks`, with any `--model`):
`render` draws a face model gallery; `eval-landmarks` scores the 68-point
landmark detector (and optionally an MGC network) on AFLW2000-3D style data.

Helpers: `add_mode_groups` (each mode's flags in its own help group),
`need` and `positive` (flag checks with one-line errors).
"""

import argparse
from pathlib import Path

from shared.errors import InputError
from shared.io.paths import check_output_folder

MODES = ("render", "eval-landmarks")


# ----------------------------------------------------------------------------- helpers

class _Group:
  """An argument group that skips flags the parser already has.

  A flag several modes take (`--checkpoint`, `--data`) is added by each
  mode's adder; in a help listing several modes it appears once, under the
  first of them.
  """

  def __init__(self, group, seen):
    self._group, self._seen = group, seen
    self.repeated = []

  def add_argument(self, *names, **kwargs):
    if any(name in self._seen for name in names):
      if kwargs.get("help") is not argparse.SUPPRESS:
        self.repeated.append(names[0])
      return None
    self._seen.update(names)
    return self._group.add_argument(*names, **kwargs)


def add_mode_groups(parser, modes, adders, model):
  """Adds the flags of each of `modes` in an argument group of its own.

  Args:
    parser: the `argparse` parser.
    modes: the modes to add (one when a mode was given; all for `--help`).
    adders: {mode: function(group) adding that mode's flags}.
    model: the model's name, for the group titles.
  """
  seen = set()
  for mode in modes:
    group = _Group(parser.add_argument_group(f"--model {model} --mode {mode}"), seen)
    adders[mode](group)
    if group.repeated:
      group._group.description = f"also {', '.join(group.repeated)} (above)"


def need(args, *names):
  """InputError (one line) for the first of `names` that was not given."""
  for name in names:
    if getattr(args, name, None) in (None, ""):
      raise InputError(f"--mode {args.mode} needs --{name.replace('_', '-')}")


def positive(args, *names):
  """InputError (one line) for the first of `names` given below 1."""
  for name in names:
    value = getattr(args, name, None)
    if value is not None and value < 1:
      raise InputError(f"--{name.replace('_', '-')} {value}: must be at least 1")


# ----------------------------------------------------------------------------- shared jobs

def add_render(group):
  group.add_argument("--output", default="out/gallery", help="output folder for gallery.png")


def add_eval_landmarks(group):
  from shared.eval.landmark_eval import add_eval_arguments
  group.add_argument("--data", default=None, help="AFLW2000-3D style folder (required)")
  add_eval_arguments(group)


ADDERS = {"render": add_render, "eval-landmarks": add_eval_landmarks}


def add_arguments(parser, modes=MODES):
  add_mode_groups(parser, modes, ADDERS, "shared")


def run(args, load_regressor=None):
  """Runs a shared-layer job.

  Args:
    args: parsed flags.
    load_regressor: optional `checkpoint_dir, face_model -> regressor`, given
      by the top-level command line (shared/ never imports a model package).
  """
  if args.mode == "render":
    from shared.model.face_model import load_face_model
    from shared.render.gallery import render_gallery
    check_output_folder(args.output)
    model = load_face_model(args.face_model)
    path = Path(args.output) / "gallery.png"
    render_gallery(model, path)
    print(f"wrote {path} ({model.name}, {model.num_vertices} vertices, "
          f"{len(model.faces)} triangles)")
    return 0
  if args.mode == "eval-landmarks":
    need(args, "data")
    from shared.eval import landmark_eval
    return landmark_eval.main(args, load_regressor=load_regressor)
  raise InputError(f"--mode {args.mode}: not a shared mode (choose from {', '.join(MODES)})")
