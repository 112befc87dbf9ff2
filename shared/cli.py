"""Jobs on the shared layer alone: `--mode render` (a face model gallery) and
`--mode eval-landmarks` (68-point NME of the landmark detector on AFLW2000-3D
style data)."""

from pathlib import Path

from shared.errors import InputError

MODES = ("render", "eval-landmarks")


def add_arguments(parser):
  from shared.eval.landmark_eval import add_eval_arguments
  parser.add_argument("--output", default="out/gallery", help="output folder")
  parser.add_argument("--data", default=None, help="AFLW2000-3D style folder (eval-landmarks)")
  add_eval_arguments(parser)


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
    model = load_face_model(args.face_model)
    path = Path(args.output) / "gallery.png"
    render_gallery(model, path)
    print(f"wrote {path} ({model.name}, {model.num_vertices} vertices, "
          f"{len(model.faces)} triangles)")
    return 0
  if args.mode == "eval-landmarks":
    if not args.data:
      raise InputError("--data: eval-landmarks needs an AFLW2000-3D style folder")
    from shared.eval import landmark_eval
    return landmark_eval.main(args, load_regressor=load_regressor)
  raise InputError(f"--mode {args.mode}: not a mode of --model shared (choose from "
                   + ", ".join(MODES) + ")")
