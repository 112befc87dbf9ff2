"""The photo pipeline on a video: time per frame by stage, and how well the fitted roll
follows a known turn.

scikit-image's astronaut, turned in the image plane by `--turn` degrees times a sine over
the clip and zoomed by up to 20 %, is written as an MPEG-4 clip of `--frames` 512 x 512
frames (`shared.io.video_io.video_writer`), then reconstructed as `main.py --mode test
--input CLIP` does (`shared.photo.reconstruct.reconstruct_photos`, every `--frame-step`-th
frame, default fit).  The fitted roll of each frame minus the turn applied to it is the
tracking error (its mean, the astronaut's own roll, is taken out).  Prints a table, then
one JSON line.

    python bench/video.py [--frames 60] [--turn 45] [--frame-step 1] [--smoothing S]
        [--no-frame-files] [--output DIR]
"""

import argparse
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (sets up quiet logging first)

SIZE = 512                 # frame side, px (the astronaut's)
FPS = 25.0
TURN_CENTRE = (256.0, 150.0)   # px: about her face, so it stays in the frame as it turns
ZOOM = 0.2                 # the zoom's amplitude (relative scale)
ZOOM_PERIOD = 15.0         # frames per radian of the zoom's sine


def _parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--frames", type=int, default=60)
  parser.add_argument("--turn", type=float, default=45.0, help="largest turn, degrees")
  parser.add_argument("--frame-step", type=int, default=1)
  parser.add_argument("--smoothing", type=float, default=None, metavar="SECONDS",
                      help="width of the points' smoothing over time (default: the "
                           "pipeline's; 0: each frame on its own)")
  parser.add_argument("--no-frame-files", action="store_true",
                      help="write only the overlay video and the tracks file, not each "
                           "frame's files")
  parser.add_argument("--output", help="output folder (default: a temporary one)")
  return parser.parse_args(argv)


def turn_degrees(frame, frames, turn):
  """The in-plane turn of frame `frame` (counter-clockwise > 0): one sine period per clip."""
  return turn * math.sin(2.0 * math.pi * frame / frames)


def write_clip(path, frames, turn):
  import cv2
  import skimage.data
  from shared.io import video_io
  astronaut = skimage.data.astronaut()
  with video_io.video_writer(path, FPS, (SIZE, SIZE)) as write:
    for k in range(frames):
      scale = 1.0 + ZOOM * math.sin(k / ZOOM_PERIOD)
      matrix = cv2.getRotationMatrix2D(TURN_CENTRE, turn_degrees(k, frames, turn), scale)
      write(cv2.warpAffine(astronaut, matrix, (SIZE, SIZE)))


def run(args):
  import numpy as np
  from shared.errors import InputError
  from shared.model.face_model import load_face_model
  from shared.photo.reconstruct import reconstruct_photos, smoothing_config
  smoothing = smoothing_config(args.smoothing)
  if args.frames < 1 or args.frame_step < 1:
    raise InputError("--frames and --frame-step: must be at least 1")
  if args.output:
    from shared.io.paths import check_output_folder
    check_output_folder(args.output)
  with tempfile.TemporaryDirectory() as scratch:
    clip = Path(scratch) / "turn.mp4"
    write_clip(clip, args.frames, args.turn)
    output = Path(args.output) if args.output else Path(scratch) / "out"
    summary = reconstruct_photos(clip, load_face_model(), output, log=lambda line: None,
                                 frame_step=args.frame_step, progress=False,
                                 smoothing=smoothing, frame_files=not args.no_frame_files)
  entry = summary["results"][0]
  frames = entry["frames"]
  found = [f for f in frames if f["faces"]]
  error = np.array([f["faces"][0]["pose_degrees"]["roll"]
                    - turn_degrees(f["frame"], args.frames, args.turn) for f in found])
  error -= error.mean() if len(error) else 0.0
  stages = {k: 1000.0 * v / max(len(frames), 1) for k, v in summary["seconds_per_stage"].items()}
  per_frame = 1000.0 * summary["seconds"] / max(len(frames), 1)
  common.print_table(["frames read", "with a face", "ms per frame"] + [f"{k} ms" for k in stages]
                     + ["roll error RMS deg", "max deg"],
                     [[len(frames), len(found), f"{per_frame:.0f}"]
                      + [f"{v:.1f}" for v in stages.values()]
                      + [f"{math.sqrt(np.mean(error ** 2)):.2f}" if len(error) else "-",
                         f"{np.abs(error).max():.2f}" if len(error) else "-"]])
  common.print_json({"bench": "video", "frames": args.frames, "turn_degrees": args.turn,
                     "frame_step": args.frame_step, "frames_read": len(frames),
                     "smoothing_seconds": smoothing.sigma_seconds,
                     "frame_files": not args.no_frame_files,
                     "frames_with_faces": len(found), "ms_per_frame": round(per_frame, 1),
                     "ms_per_frame_by_stage": {k: round(v, 1) for k, v in stages.items()},
                     "roll_error_rms_degrees": round(float(math.sqrt(np.mean(error ** 2))), 3)
                     if len(error) else None,
                     "roll_error_max_degrees": round(float(np.abs(error).max()), 3)
                     if len(error) else None,
                     "load_average": common.load_average()})


def main(argv=None):
  return common.run_reporting_input_errors(run, _parse_args(argv))


if __name__ == "__main__":
  sys.exit(main())
