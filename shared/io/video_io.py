"""Video files: reading frames and writing a video, through OpenCV's bundled FFmpeg.

Frames are `uint8 [H, W, 3]` RGB, numbered from 0 in decoding order.  Readers
raise `InputError` (one line) for a file that cannot be opened or holds no
frame; a damaged frame that does not decode is left out.  FFmpeg's own
complaints are hidden unless verbose (`shared.quiet.setup`: `OPENCV_FFMPEG_LOGLEVEL`).
"""

import contextlib
import dataclasses
from pathlib import Path

import numpy as np

from shared.errors import fail
from shared.io.fileio import atomic_path

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
WRITE_CODEC = "mp4v"         # MPEG-4 Part 2 in an .mp4: written by every OpenCV wheel
DEFAULT_FPS = 25.0           # when the file does not say


def is_video_file(path):
  """Whether `path`'s suffix is one of `VIDEO_SUFFIXES` (any case)."""
  return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """What the container says: frames (0 when unknown), frames per second, width, height."""
  frames: int
  fps: float
  width: int
  height: int


@contextlib.contextmanager
def _capture(path):
  """An open `cv2.VideoCapture` of `path`, released afterwards (InputError if it won't open)."""
  import cv2
  from shared import quiet
  with quiet.native_stderr_silenced():   # FFmpeg prints its own complaints.
    capture = cv2.VideoCapture(str(path))
  try:
    if not capture.isOpened():
      fail(path, "cannot open video")
    yield capture
  finally:
    capture.release()


def video_info(path):
  """`VideoInfo` of the video at `path`.

  Raises:
    InputError: the file cannot be opened as a video.
  """
  import cv2
  with _capture(path) as capture:
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    return VideoInfo(frames=max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0),
                     fps=fps if np.isfinite(fps) and fps > 0 else DEFAULT_FPS,
                     width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                     height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))


def evenly_spaced(total, count):
  """`count` frame numbers spread evenly over `total` frames (fewer when they coincide),
  sorted."""
  return sorted(set(np.linspace(0, max(total - 1, 0), count).round().astype(int).tolist()))


def read_frames(path, wanted=None, step=1):
  """Yields `(frame number, uint8 RGB [H, W, 3])` in order.

  Args:
    path: the video file.
    wanted: frame numbers to return (None: every `step`-th frame, from frame 0).
    step: with `wanted` None, the distance between returned frames (>= 1).

  Raises:
    InputError: the file cannot be opened, or not one frame could be decoded.
  """
  import cv2
  wanted = None if wanted is None else set(int(k) for k in wanted)
  returned, index = 0, 0
  with _capture(path) as capture:
    while (wanted is None or returned < len(wanted)) and capture.grab():
      if (index in wanted) if wanted is not None else index % step == 0:
        ok, bgr = capture.retrieve()
        if ok:
          returned += 1
          yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
      index += 1
  if not returned:
    fail(path, "no frame could be read from the video")


@contextlib.contextmanager
def video_writer(path, fps, size):
  """Yields `write(frame)` for `uint8 [H, W, 3]` RGB frames of `size` (width, height); the
  video appears at `path` (`.mp4`, codec `WRITE_CODEC`) only once complete (atomic: on an
  exception nothing is left)."""
  import cv2
  with atomic_path(path) as tmp:
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*WRITE_CODEC), float(fps),
                             (int(size[0]), int(size[1])))
    if not writer.isOpened():
      fail(path, f"cannot write a video here (OpenCV's {WRITE_CODEC} writer did not open)")
    try:
      def write(frame):
        frame = np.asarray(frame)
        if frame.shape[1::-1] != tuple(size):
          frame = cv2.resize(frame, tuple(int(s) for s in size), interpolation=cv2.INTER_AREA)
        writer.write(cv2.cvtColor(np.ascontiguousarray(frame, np.uint8), cv2.COLOR_RGB2BGR))
      yield write
    finally:
      writer.release()
