"""Jobs on the shared layer alone: `--mode render` (a face model gallery) and
`--mode eval-landmarks` (68-point NME of the landmark detector on AFLW2000-3D
style data)."""

from pathlib import Path

from shared.errors import InputError

MODES = ("render", "eval-landmarks")


def add_arguments(parser):
  parser.add_argument("--output", default="out/gallery", help="output folder")
  parser.add_argument("--data", default=None, help="AFLW2000-3D style folder (eval-landmarks)")


def run(args):
  if args.mode == "render":
    from shared.face_model import load_face_model
    from shared.gallery import render_gallery
    model = load_face_model(args.face_model)
    path = Path(args.output) / "gallery.png"
    render_gallery(model, path)
    print(f"wrote {path} ({model.name}, {model.num_vertices} vertices, "
          f"{len(model.faces)} triangles)")
    return 0
  if args.mode == "eval-landmarks":
    if not args.data:
      raise InputError("--data: eval-landmarks needs an AFLW2000-3D style folder")
    from shared import landmark_eval
    return landmark_eval.main(args)
  raise InputError(f"--mode {args.mode}: not a mode of --model shared (choose from "
                   + ", ".join(MODES) + ")")
