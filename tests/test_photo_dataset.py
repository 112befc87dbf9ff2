"""Tests for mgc_face/photo_dataset.py and tools/make_photo_dataset.py: real photos and a video
packed into MGC strips, read back by the MGC data pipeline and trained on."""

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mgc_face import data as data_lib
from mgc_face import photo_dataset
from mgc_face.augment import FLIP_PERMUTATION
from shared.io import image_io
from shared.photo import alignment

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
import make_photo_dataset  # noqa: E402

SMALL = 360             # the astronaut's downscaled copy, pixels
TURN_DEGREES = 8.0      # the in-plane turn of another copy
VIDEO_FRAMES = 6
MAX_MEAN_PX = 3.0       # photo pixels (512 x 512): the same face read from two copies


def test_choose_sources_takes_the_nearest_view_on_each_side_at_least_the_gap_away():
  yaws = [-30.0, -10.0, 0.0, 10.0, 30.0, 2.0]
  sources = photo_dataset.choose_sources(yaws, min_gap=5.0)
  np.testing.assert_array_equal(sources[2], [1, 3])    # 0 deg: -10 below, 10 above (not 2)
  np.testing.assert_array_equal(sources[5], [1, 3])    # 2 deg: the same neighbours
  np.testing.assert_array_equal(sources[3], [5, 4])    # 10 deg: 2 below (8 away), 30 above
  np.testing.assert_array_equal(sources[1], [0, 2])
  assert sources[0][1] == 1 and sources[0][0] != 1     # no view below: the next nearest other
  assert sources[4][0] == 3 and sources[4][1] != 3
  np.testing.assert_array_equal(photo_dataset.choose_sources([0.0, 20.0], 5.0), [[1, 1], [0, 0]])
  close = photo_dataset.choose_sources([0.0, 1.0, 3.0], 5.0)   # none far enough: nearest two
  np.testing.assert_array_equal(close, [[1, 2], [0, 2], [1, 0]])
  with pytest.raises(ValueError):
    photo_dataset.choose_sources([0.0], 5.0)


def test_held_out_keeps_at_least_one_sequence_each_side():
  assert not photo_dataset.held_out(1, 0.5, 0).any()
  assert photo_dataset.held_out(5, 0.1, 0).sum() == 1          # rounds up to one
  assert photo_dataset.held_out(3, 0.9, 0).sum() == 2          # never all
  assert not photo_dataset.held_out(5, 0.0, 0).any()
  np.testing.assert_array_equal(photo_dataset.held_out(20, 0.25, 7),
                                photo_dataset.held_out(20, 0.25, 7))


def test_safe_names_have_no_white_space_and_are_unique():
  assert photo_dataset.safe_names(["h1 mirror", "a/b", "x", "X", "  ", "j.doe"]) == [
      "h1_mirror", "a_b", "x", "X_2", "sequence", "j.doe"]


def _photo_folder(root):
  """The astronaut as one sequence (original, mirrored, smaller, turned), a video of her,
  the cameraman alone, and two files that must be skipped."""
  astronaut = image_io.sample_image("astronaut")
  folder = root / "photos"
  (folder / "astro").mkdir(parents=True)
  image_io.write_png(folder / "astro" / "a0.png", astronaut)
  image_io.write_png(folder / "astro" / "a1 mirror.png", astronaut[:, ::-1])
  image_io.write_png(folder / "astro" / "a2.png",
                     cv2.resize(astronaut, (SMALL, SMALL), interpolation=cv2.INTER_AREA))
  turn = cv2.getRotationMatrix2D((256.0, 256.0), TURN_DEGREES, 1.0)
  image_io.write_png(folder / "astro" / "a3.png",
                     cv2.warpAffine(astronaut, turn, (512, 512), borderMode=cv2.BORDER_REFLECT))
  (folder / "astro" / "notes.txt").write_text("not an image")
  (folder / "astro" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
  image_io.write_png(folder / "rocket.png", image_io.sample_image("rocket"))
  image_io.write_png(folder / "cameraman.png", image_io.sample_image("camera"))
  video = cv2.VideoWriter(str(folder / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                          (512, 512))
  for k in range(VIDEO_FRAMES):
    shift = np.float32([[1, 0, 2 * k], [0, 1, 0]])
    video.write(cv2.warpAffine(astronaut, shift, (512, 512),
                               borderMode=cv2.BORDER_REFLECT)[..., ::-1])
  video.release()
  return folder


BUILD_SCRIPT = """
import json, sys
from pathlib import Path
from shared import quiet
quiet.setup()
from mgc_face import photo_dataset
from shared.model.face_model import load_face_model
folder, output = sys.argv[1:3]
lines = []
config = photo_dataset.PhotoDatasetConfig(test_fraction=0.3, frames_per_video=3)
info = photo_dataset.build(load_face_model(), Path(folder), Path(output), config, seed=1,
                           progress=False, log=lines.append)
print(json.dumps({"info": info, "lines": lines}))
"""


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory, script_json):
  """(dataset folder, its dataset.json, the skipped lines): `photo_dataset.build` run on
  `_photo_folder` in its own process (the photo pipeline's memory goes back when it ends)."""
  root = tmp_path_factory.mktemp("photo_set")
  report = script_json(BUILD_SCRIPT, _photo_folder(root), root / "dataset")
  info = json.loads((root / "dataset" / "dataset.json").read_text())
  assert info == report["info"]
  return root / "dataset", info, report["lines"]


def _in_photo(root, record):
  """{source label: the view's 68 landmarks mapped back to its photo's pixels}."""
  landmarks = data_lib.read_landmarks(record.landmark_path(root))
  views = json.loads((root / record.subfolder / f"{record.frame_id}_src.json").read_text())
  return {view["source"]: alignment.transform_points(
      points, cv2.invertAffineTransform(np.array(view["matrix"])))
      for view, points in zip(views["views"], landmarks)}


def test_photo_set_lists_every_face_and_skips_the_rest(photo_set):
  root, info, lines = photo_set
  train, _ = data_lib.read_list(root / "train.txt")
  test, _ = data_lib.read_list(root / "test.txt")
  records = train + test
  by_sequence = {}
  for record in records:
    by_sequence.setdefault(record.subfolder, []).append(record)
  assert sorted(by_sequence) == ["astro", "cameraman", "clip"]
  assert [r.flag for r in by_sequence["astro"]] == [data_lib.FLAG_MULTIVIEW] * 4
  assert [r.flag for r in by_sequence["clip"]] == [data_lib.FLAG_MULTIVIEW] * 3
  assert [(r.flag, r.frame_id) for r in by_sequence["cameraman"]] == [(data_lib.FLAG_MONO, "mono")]
  assert info["faces"] == 8 and info["sequences"] == 3 and info["test_sequences"] == 1
  assert len(test) == info["test_samples"] >= 1
  assert len({r.subfolder for r in test}) == 1
  assert sorted(p.name for p in (root / "heldout").iterdir()) == sorted(
      f"{r.subfolder}_{r.frame_id}.png" for r in test)
  skipped = sorted(line.split(": ")[1].split("/")[-1] for line in lines)
  assert skipped == ["broken.jpg", "rocket.png"] and len(info["skipped"]) == 2
  assert all(line.startswith("skipped: ") for line in lines)
  good, _, problems = data_lib.scan(root, "train", report=False)
  assert len(good) == len(train) and not problems
  sources = json.loads((root / "astro" / "000_src.json").read_text())["views"]
  assert [v["name"] for v in sources] == list(data_lib.VIEW_NAMES)
  assert sources[0]["source"] == "astro/a0.png"
  clip = json.loads((root / "clip" / "000_src.json").read_text())["views"]
  assert {v["source"] for v in clip} == {f"clip.avi#{k}" for k in (0, 2, 5)}   # 3 frames of 6


def test_photo_set_landmarks_agree_across_copies_of_one_photo(photo_set):
  """The 68 points of each copy (mirrored, smaller, turned), mapped back through its stored
  alignment matrix and undone, land where the original's do: the crops, matrices and
  landmark files fit together."""
  root, _, _ = photo_set
  points = {}
  for record in (data_lib.Record(2, "astro", f"{k:03d}") for k in range(4)):
    points.update(_in_photo(root, record))
  original = points["astro/a0.png"]
  mirrored = points["astro/a1 mirror.png"][list(FLIP_PERMUTATION)] * [-1, 1] + [512, 0]
  smaller = points["astro/a2.png"] * (512 / SMALL)
  back = cv2.invertAffineTransform(cv2.getRotationMatrix2D((256.0, 256.0), TURN_DEGREES, 1.0))
  turned = alignment.transform_points(points["astro/a3.png"], back)
  for copy in (mirrored, smaller, turned):
    assert np.linalg.norm(copy - original, axis=1).mean() < MAX_MEAN_PX


def test_photo_set_skin_strip_covers_the_face_not_the_background(photo_set):
  root, _, _ = photo_set
  record = data_lib.Record(2, "astro", "000")
  skin = data_lib.read_skin_target(record.skin_path(root))[..., 0]
  landmarks = data_lib.read_landmarks(record.landmark_path(root))[0]
  nose = np.round(landmarks[30]).astype(int)
  cheek = np.round(landmarks[[2, 14]].mean(0) * 0.5 + landmarks[30] * 0.5).astype(int)
  assert skin[nose[1], nose[0]] > 0.9 and skin[cheek[1], cheek[0]] > 0.9
  assert skin[:12, :12].max() < 0.1 and skin[:, :12].mean() < 0.05   # corner and left edge
  assert 0.15 < (skin > 0.5).mean() < 0.7


TRAIN_SCRIPT = """
import json, sys
sys.path.insert(0, "tests")
from shared import quiet
quiet.setup()
from mgc_helpers import TEST_CONFIG
from mgc_face import train as train_lib
from shared.model.face_model import load_face_model
dataset, checkpoint = sys.argv[1:3]
result = train_lib.train(load_face_model(), TEST_CONFIG, dataset, checkpoint, steps=1,
                         progress=False, log=lambda message: None)
print(json.dumps({"steps": result["steps"], "skipped": result["skipped"],
                  "terms": {k: float(v) for k, v in result["terms"].items()}}))
"""


def test_photo_set_trains_an_mgc_step(photo_set, tmp_path, script_json):
  """The test config (tiny, multi-view) trains a step on the photo set and fits its landmark
  cascade on the photo views; in its own process, as the fixture."""
  root, _, _ = photo_set
  report = script_json(TRAIN_SCRIPT, root, tmp_path / "ckpt")
  assert report["steps"] == 1 and report["skipped"] == 0
  assert {"landmark", "photometric"} <= set(report["terms"])
  assert all(np.isfinite(v) for v in report["terms"].values())
  assert (tmp_path / "ckpt" / "cascade.npz").exists()


def test_make_photo_dataset_cli_reports_bad_input_in_one_line(tmp_path, capsys):
  empty = tmp_path / "empty"
  empty.mkdir()
  (empty / "broken.jpg").write_bytes(b"not an image")
  cases = [(["--input", str(tmp_path / "missing")], "input folder not found"),
           (["--input", str(empty)], "broken.jpg: cannot decode image"),
           (["--input", str(empty), "--test-fraction", "1"], "--test-fraction 1: must be in")]
  for args, message in cases:
    assert make_photo_dataset.main(args + ["--output", str(tmp_path / "out"), "--quiet"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines()
              if not line.startswith("skipped: ")]
    assert len(errors) == 1 and errors[0].startswith("error: ") and message in errors[0]
  assert not (tmp_path / "out").exists()
