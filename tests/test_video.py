"""Videos: `shared.io.video_io` (frames in, a video out) and the photo pipeline on a video
(`shared.photo.reconstruct`, `main.py --mode test --input clip.mp4`)."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from mgc_helpers import run_main
from shared.errors import InputError
from shared.fit import fitter as fitting
from shared.io import video_io
from shared.photo import reconstruct

FIT = fitting.FitConfig(landmark_steps=40, photometric_steps=2)   # few steps: speed
FRAMES = 7
SIZE = 320
FPS = 10.0


def _frame(k):
  """Frame k of the test clip: a grey ramp whose level encodes k, and a square at x = 20 k."""
  frame = np.full((SIZE // 2, SIZE, 3), 30 * k, np.uint8)
  frame[40:80, 20 * k:20 * k + 40] = 255
  return frame


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
  path = tmp_path_factory.mktemp("video") / "clip.mp4"
  with video_io.video_writer(path, FPS, (SIZE, SIZE // 2)) as write:
    for k in range(FRAMES):
      write(_frame(k))
  return path


def test_written_video_reads_back_frame_by_frame(clip):
  info = video_io.video_info(clip)
  assert (info.frames, info.width, info.height) == (FRAMES, SIZE, SIZE // 2)
  assert info.fps == pytest.approx(FPS)
  frames = list(video_io.read_frames(clip))
  assert [k for k, _ in frames] == list(range(FRAMES))
  for k, frame in frames:      # lossy codec: levels within a few grey steps
    assert frame.shape == (SIZE // 2, SIZE, 3) and frame.dtype == np.uint8
    assert abs(float(np.median(frame[100:, :])) - 30 * k) < 6
    assert frame[60, 20 * k + 20].min() > 200


def test_frames_by_step_and_by_number(clip):
  assert [k for k, _ in video_io.read_frames(clip, step=3)] == [0, 3, 6]
  assert [k for k, _ in video_io.read_frames(clip, wanted=[5, 1])] == [1, 5]
  assert video_io.evenly_spaced(FRAMES, 3) == [0, 3, 6]
  assert video_io.evenly_spaced(0, 4) == [0]


PHONE_CLIPS = Path(__file__).resolve().parent / "data"


def _phone_frame(k):
  """Frame k of the phone clips (tests/data/make_phone_videos.py): grey 30 k and a white
  24 px square at column 8 + 12 k, upright in a 96 x 160 portrait frame."""
  frame = np.full((160, 96, 3), 30 * k, np.uint8)
  frame[16:40, 8 + 12 * k:32 + 12 * k] = 255
  return frame


@pytest.mark.parametrize("name", ["phone_h264.mp4", "phone_hevc.mp4",
                                  "phone_h264_rotated.mp4"])
def test_phone_codecs_and_rotation_tags_read_upright(name):
  # H.264 and HEVC, as phones record; the rotated clip is stored landscape (160 x 96) and
  # tagged to be shown as portrait, which OpenCV applies as FFmpeg's players do.
  path = PHONE_CLIPS / name
  info = video_io.video_info(path)
  assert (info.frames, info.width, info.height) == (5, 96, 160)
  frames = list(video_io.read_frames(path))
  assert [k for k, _ in frames] == list(range(5))
  for k, frame in frames:
    assert frame.shape == (160, 96, 3)
    assert np.abs(frame.astype(int) - _phone_frame(k)).max() <= 3    # lossy, not turned


def test_writer_resizes_frames_and_leaves_nothing_on_error(tmp_path):
  path = tmp_path / "out.mp4"
  with pytest.raises(RuntimeError):
    with video_io.video_writer(path, FPS, (64, 48)) as write:
      write(np.zeros((48, 64, 3), np.uint8))
      raise RuntimeError("stop")
  assert list(tmp_path.iterdir()) == []
  with video_io.video_writer(path, FPS, (64, 48)) as write:
    write(np.zeros((100, 100, 3), np.uint8))     # another size: resized to the video's
  _, frame = next(video_io.read_frames(path))
  assert frame.shape == (48, 64, 3)


def test_bad_videos_are_one_line(tmp_path):
  bad = tmp_path / "broken.mp4"
  bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video" * 10)
  with pytest.raises(InputError, match=r"broken\.mp4: cannot open video"):
    video_io.video_info(bad)
  with pytest.raises(InputError, match="cannot open video"):
    list(video_io.read_frames(tmp_path / "missing.mp4"))
  assert video_io.is_video_file("a/B.MP4") and not video_io.is_video_file("a/b.png")


def test_image_readers_name_a_video_as_such(clip):
  """Commands that read only images (GCN test, create_bin) say what the file is."""
  from shared.io.image_io import read_image
  with pytest.raises(InputError, match=r"clip\.mp4: a video, not an image"):
    read_image(clip)


@pytest.fixture(scope="module")
def astronaut_clip(tmp_path_factory):
  """Four frames: the astronaut turning in the image plane (0-24 degrees), then a blank frame."""
  path = tmp_path_factory.mktemp("video") / "turn.mp4"
  astronaut = skimage.data.astronaut()
  with video_io.video_writer(path, FPS, (512, 512)) as write:
    for k in range(4):
      turn = cv2.getRotationMatrix2D((256.0, 150.0), 8.0 * k, 1.0)
      write(cv2.warpAffine(astronaut, turn, (512, 512)))
    write(np.full((512, 512, 3), 128, np.uint8))
  return path


def test_photo_pipeline_reconstructs_each_frame_and_writes_an_overlay_video(
    astronaut_clip, tmp_path, ict_model):
  lines = []
  summary = reconstruct.reconstruct_photos(astronaut_clip, ict_model, tmp_path, fit_config=FIT,
                                           log=lines.append, frame_step=2, progress=False)
  entry = summary["results"][0]
  assert summary["images"] == summary["images_ok"] == 1 and summary["faces"] == 2
  assert [f["frame"] for f in entry["frames"]] == [0, 2, 4]
  assert [f["status"] for f in entry["frames"]] == ["ok", "ok", "no-face"]
  assert entry["video"] == {"fps": pytest.approx(FPS), "frame_step": 2, "frames_read": 3,
                            "smoothing_seconds": reconstruct.DEFAULT_SMOOTHING.sigma_seconds,
                            "frames_with_faces": 2, "overlay": "turn_overlay.mp4",
                            "tracks": "turn_tracks.npz", "tracks_plot": "turn_tracks.png",
                            "persons": 1}
  for k in (0, 2):
    assert (tmp_path / f"turn_f{k:05d}_face0.obj").is_file()
    assert (tmp_path / f"turn_f{k:05d}_overlay.png").is_file()
  assert not list(tmp_path.glob("turn_f00004*"))
  # The face turns with the frame: 16 degrees of roll between frames 0 and 2.
  rolls = [f["faces"][0]["pose_degrees"]["roll"] for f in entry["frames"][:2]]
  assert rolls[1] - rolls[0] == pytest.approx(16.0, abs=3.0)
  # The overlay video: one frame per frame read, the overlays', then the blank frame.
  video = list(video_io.read_frames(tmp_path / "turn_overlay.mp4"))
  assert len(video) == 3 and video[0][1].shape == (512, 512, 3)
  overlay = cv2.imread(str(tmp_path / "turn_f00002_overlay.png"))[..., ::-1].astype(np.float32)
  assert np.abs(video[1][1].astype(np.float32) - overlay).mean() < 6.0
  assert np.abs(video[2][1].astype(np.float32) - 128).mean() < 10.0   # two lossy encodes
  assert lines == [f"{astronaut_clip}: 3 frame(s), faces in 2 -> {tmp_path / 'turn'}_f*_face*, "
                   f"{tmp_path / 'turn_overlay.mp4'}, {tmp_path / 'turn_tracks.npz'}, "
                   f"{tmp_path / 'turn_tracks.png'}",
                   f"2 face(s) from 1/1 file(s) -> {tmp_path / 'summary.json'}"]
  assert json.loads((tmp_path / "summary.json").read_text())["faces"] == 2


def test_cli_video_input_and_its_errors(clip, tmp_path, capsys):
  """A video without a face: one 'skipped' line, exit status 1; a broken video, a bad
  --frame-step or --smoothing: one error line, exit status 2, nothing written."""
  out = tmp_path / "out"
  code, stdout, _ = run_main(["--mode", "test", "--input", str(clip), "--output", str(out),
                              "--fit-steps", "0", "--quiet"], capsys)
  assert code == 1 and f"skipped: {clip}: no face found in {FRAMES} frame(s)" in stdout
  assert len(list(video_io.read_frames(out / "clip_overlay.mp4"))) == FRAMES
  bad = tmp_path / "broken.mp4"
  bad.write_bytes(b"not a video" * 50)
  for args, message in (([str(bad)], "broken.mp4: cannot open video"),
                        ([str(clip), "--frame-step", "0"], "--frame-step 0: must be at least 1"),
                        ([str(clip), "--smoothing", "-1"], "--smoothing -1: must be 0 (none)"),
                        ([str(clip), "--smoothing", "nan"], "--smoothing nan: must be 0")):
    code, _, stderr = run_main(["--mode", "test", "--input", *args,
                                "--output", str(tmp_path / "o2")], capsys)
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and message in errors[0], stderr
    assert not (tmp_path / "o2").exists()


def test_folders_list_videos_but_not_overlay_videos(clip, tmp_path):
  import shutil
  shutil.copy(clip, tmp_path / "b.mp4")
  shutil.copy(clip, tmp_path / "b_overlay.mp4")      # a run's own outputs
  cv2.imwrite(str(tmp_path / "b_tracks.png"), np.zeros((8, 8, 3), np.uint8))
  cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
  (tmp_path / "notes.txt").write_text("x")
  assert [p.name for p in reconstruct.collect_inputs(tmp_path)] == ["a.png", "b.mp4"]
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(InputError, match="no images .* or videos"):
    reconstruct.collect_inputs(empty)
