"""Writes the phone-style test clips in tests/data (used by tests/test_video.py).

Phones record H.264 or HEVC, and a portrait video is usually stored landscape with a
display-rotation tag.  OpenCV's wheel can read these but not write them, so the clips are
made once with PyAV (libx264, libx265) and the FFmpeg binary of imageio-ffmpeg, which are
not dependencies of the toolkit:

    pip install --target /tmp/avlib av imageio-ffmpeg
    PYTHONPATH=/tmp/avlib python tests/data/make_phone_videos.py

Each clip holds `FRAMES` frames of `phone_frame(k)` (tests/test_video.py has the same
pattern): a grey level 30 k and a white square whose column moves with k, upright in a
portrait frame of `WIDTH` x `HEIGHT` px.
"""

import subprocess
import tempfile
from pathlib import Path

import numpy as np

FRAMES = 5
WIDTH, HEIGHT = 96, 160     # px, as displayed (portrait)
SQUARE = 24                 # px, the square's side
HERE = Path(__file__).resolve().parent


def phone_frame(k):
  """Frame k, uint8 RGB [HEIGHT, WIDTH, 3], upright."""
  frame = np.full((HEIGHT, WIDTH, 3), 30 * k, np.uint8)
  frame[16:16 + SQUARE, 8 + 12 * k:8 + 12 * k + SQUARE] = 255
  return frame


def _encode(path, codec, frames):
  import av
  with av.open(str(path), "w") as container:
    stream = container.add_stream(codec, rate=10)
    stream.height, stream.width = frames[0].shape[:2]
    stream.pix_fmt = "yuv420p"
    stream.options = {"crf": "12"}
    for frame in frames:
      container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
    container.mux(stream.encode())


def main():
  import imageio_ffmpeg
  frames = [phone_frame(k) for k in range(FRAMES)]
  _encode(HERE / "phone_h264.mp4", "libx264", frames)
  _encode(HERE / "phone_hevc.mp4", "libx265", frames)
  # Stored turned a quarter clockwise (landscape), tagged to be shown turned back.
  stored = [np.ascontiguousarray(np.rot90(f, k=-1)) for f in frames]
  with tempfile.TemporaryDirectory() as scratch:
    raw = Path(scratch) / "stored.mp4"
    _encode(raw, "libx264", stored)
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y",
                    "-display_rotation", "90", "-i", str(raw), "-c", "copy",
                    str(HERE / "phone_h264_rotated.mp4")], check=True)


if __name__ == "__main__":
  main()
