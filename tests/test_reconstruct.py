"""Tests for shared.photo.reconstruct (photos in, 3D faces out) and the
eval-landmarks command in shared.eval.landmark_eval."""

import argparse
import json
import math
import shutil

import cv2
import numpy as np
import pytest
import skimage.data
import tensorflow as tf

from shared.photo import alignment

from shared.io import export

from shared.fit import fitter as fitting

from shared.eval import landmark_eval

from shared.photo import reconstruct
from shared.model import camera as camera_lib
from shared.errors import InputError
from photo_helpers import shaded_render

FIT = fitting.FitConfig(landmark_steps=60, photometric_steps=4)   # few steps: speed
BOX_SLACK = 0.15           # fitted landmarks may leave the detector box by this fraction
PER_FACE_SUFFIXES = (".obj", ".mtl", "_texture.png", "_coeffs.npz", "_lm2d.txt", "_lm3d.txt",
                     "_overlay.png", "_depth.png")
AFLW_SUBDIR = "eval/aflw2000_16"
AFLW_FOUND, AFLW_MISSED = "image00050", "image00475"   # HOG finds / misses (BlazeFace: both)
CAMERAMAN_FACE_CENTRE = (235, 160)   # pixels of skimage.data.camera(), read off the photo
CAMERAMAN_MIN_YAW = 30.0             # degrees; the fit gives about 56


@pytest.fixture(scope="module")
def run(tmp_path_factory, ict_model):
  """One run over a folder: the astronaut, the cameraman (8-bit grey, face turned about 55
  degrees to the image right, half hidden by his camera) and three bad inputs."""
  folder = tmp_path_factory.mktemp("photos")
  astronaut = skimage.data.astronaut()
  cv2.imwrite(str(folder / "astronaut.png"), astronaut[..., ::-1])
  cv2.imwrite(str(folder / "camera.png"), skimage.data.camera())
  (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 20)
  gray16 = np.tile(np.linspace(0, 65535, 320, dtype=np.uint16), (240, 1))
  cv2.imwrite(str(folder / "gray16.png"), gray16)
  cv2.imwrite(str(folder / "wall.png"), np.full((180, 260, 3), 140, np.uint8))
  out = tmp_path_factory.mktemp("out")
  lines = []
  summary = reconstruct.reconstruct_photos(folder, ict_model, out, fit_config=FIT,
                                           log=lines.append)
  return folder, out, summary, lines, astronaut


def test_astronaut_writes_every_output(run, ict_model):
  _, out, summary, _, _ = run
  entry = next(r for r in summary["results"] if r["image"].endswith("astronaut.png"))
  assert entry["status"] == "ok" and len(entry["faces"]) == 1
  face = entry["faces"][0]
  assert face["name"] == "astronaut_face0"
  for suffix in PER_FACE_SUFFIXES:
    path = out / f"astronaut_face0{suffix}"
    assert path.is_file() and path.stat().st_size > 0, path
  assert (out / "astronaut_overlay.png").is_file()
  assert sorted(face["files"].values()) == sorted(f"astronaut_face0{s}" for s in PER_FACE_SUFFIXES)
  vertices, faces, colours = export.read_obj_colours(out / "astronaut_face0.obj")
  assert vertices.shape == (ict_model.num_vertices, 3) and len(faces) == len(ict_model.faces)
  assert colours is not None and colours.min() >= 0 and colours.max() <= 1
  obj = (out / "astronaut_face0.obj").read_text()
  assert obj.startswith("mtllib astronaut_face0.mtl") and "\nvt " in obj and "/" in obj
  with np.load(out / "astronaut_face0_coeffs.npz") as data:
    assert str(data["format_kind"]) == reconstruct.COEFFS_KIND
    assert data["identity"].shape == (ict_model.num_id,)
    assert data["rotation"].shape == (3,) and data["landmarks2d"].shape == (68, 2)
  texture = cv2.imread(str(out / "astronaut_face0_texture.png"))
  assert texture.shape == (reconstruct.TEXTURE_SIZE, reconstruct.TEXTURE_SIZE, 3)
  # Depth is in the photo's frame (the overlay's size), like the overlay.
  assert cv2.imread(str(out / "astronaut_face0_depth.png")).shape == (512, 512, 3)


def test_texture_weight_follows_the_angle_to_the_camera():
  """1 where a vertex faces the camera, 0 at grazing angles, linear in the cosine between."""
  low, high = reconstruct.TEXTURE_FACING
  weight = reconstruct.texture_weight([1.0, high, 0.5 * (low + high), 0.5 * low, -1.0])
  np.testing.assert_allclose(weight, [1.0, 1.0, 0.5, 0.0, 0.0], atol=1e-9)


def test_the_texture_takes_the_photo_where_trusted_and_its_tone_elsewhere():
  """On a path of 5 vertices: weight-1 vertices keep the photo, hidden ones get the fitted
  colour plus the photo's change carried harmonically, a half-trusted one the mean."""
  import scipy.sparse as sp
  rows = np.arange(4)
  path = sp.coo_matrix((np.ones(4), (rows, rows + 1)), shape=(5, 5))
  path = (path + path.T).tocsr()
  fitted = np.full((5, 3), 0.4)
  sampled = fitted + np.array([0.2, 0.1, 0.0])[None] * np.array([[1], [0], [0], [0], [0]])
  sampled[4] = fitted[4] + 0.1
  weight = np.array([1.0, 0.0, 0.5, 0.0, 1.0])
  out = reconstruct.blend_texture(fitted, sampled, weight, path)
  change = np.linspace(sampled[0] - fitted[0], sampled[4] - fitted[4], 5)   # harmonic on a path
  expected = fitted + change
  expected[[0, 4]] = sampled[[0, 4]]
  expected[2] = 0.5 * (sampled[2] + fitted[2] + change[2])
  np.testing.assert_allclose(out, expected, atol=1e-6)
  assert out.dtype == np.float32
  # Trusted everywhere: the photo itself; trusted nowhere: the fitted colours.
  np.testing.assert_allclose(reconstruct.blend_texture(fitted, sampled, np.ones(5), path),
                             sampled, atol=1e-6)
  np.testing.assert_allclose(reconstruct.blend_texture(fitted, sampled, np.zeros(5), path),
                             fitted, atol=1e-6)


def test_a_grey_photo_of_a_turned_face_gives_one_face_turned_to_its_side(run):
  _, out, summary, lines, _ = run
  entry = next(r for r in summary["results"] if r["image"].endswith("camera.png"))
  assert entry["status"] == "ok" and len(entry["faces"]) == 1
  face = entry["faces"][0]
  x0, y0, x1, y1 = face["box"]
  assert x0 <= CAMERAMAN_FACE_CENTRE[0] <= x1 and y0 <= CAMERAMAN_FACE_CENTRE[1] <= y1
  assert face["pose_degrees"]["yaw"] > CAMERAMAN_MIN_YAW     # turned to the image right
  assert any("camera.png: note: 8-bit grayscale" in line for line in lines)
  assert (out / "camera_face0.obj").is_file()


def test_landmarks_are_in_original_coordinates_inside_the_box(run):
  _, out, summary, _, astronaut = run
  face = summary["results"][0]["faces"][0]
  lm = np.loadtxt(out / "astronaut_face0_lm2d.txt")
  assert lm.shape == (68, 2)
  x0, y0, x1, y1 = face["box"]
  slack = BOX_SLACK * np.array([x1 - x0, y1 - y0])
  assert np.all(lm >= np.array([x0, y0]) - slack) and np.all(lm <= np.array([x1, y1]) + slack)
  with np.load(out / "astronaut_face0_coeffs.npz") as data:
    detector = data["detector_landmarks"]
  # Interior points close to the detector's (fitting worked, coordinates match).
  error = np.linalg.norm(lm[17:] - detector[17:], axis=1).mean()
  assert error < 0.05 * (x1 - x0), error
  lm3d = np.loadtxt(out / "astronaut_face0_lm3d.txt")
  assert lm3d.shape == (68, 3)
  pose = face["pose_degrees"]
  assert abs(pose["yaw"]) < 15 and abs(pose["roll"]) < 15, pose
  overlay = cv2.imread(str(out / "astronaut_face0_overlay.png"))
  assert overlay.shape == astronaut.shape


def test_overlay_covers_the_face_and_not_the_background(run):
  _, out, summary, _, astronaut = run
  overlay = cv2.imread(str(out / "astronaut_face0_overlay.png"))[..., ::-1].astype(np.float32)
  changed = np.abs(overlay - astronaut.astype(np.float32)).sum(-1) > 30
  x0, y0, x1, y1 = (int(v) for v in summary["results"][0]["faces"][0]["box"])
  assert changed[y0:y1, x0:x1].mean() > 0.5          # the face is painted over
  assert changed[:, :100].mean() < 0.01               # the flag side is not
  assert changed[400:, 350:].mean() < 0.01            # nor the helmet


def test_bad_inputs_each_give_one_line_and_the_batch_continues(run):
  _, out, summary, lines, _ = run
  assert summary["images"] == 5 and summary["images_ok"] == 2 and summary["faces"] == 2
  status = {r["image"].rsplit("/", 1)[-1]: r["status"] for r in summary["results"]}
  assert status == {"astronaut.png": "ok", "broken.jpg": "error", "camera.png": "ok",
                    "gray16.png": "no-face", "wall.png": "no-face"}
  for name in ("broken.jpg", "gray16.png", "wall.png"):
    problems = [line for line in lines if name in line and line.startswith("skipped:")]
    assert len(problems) == 1, (name, lines)
    assert "\n" not in problems[0]
  assert any("gray16.png: note: 16-bit grayscale" in line for line in lines)
  assert any("cannot decode" in line for line in lines if "broken.jpg" in line)
  assert not list(out.glob("broken*")) and not list(out.glob("wall*"))


def test_summary_json_is_valid(run):
  _, out, summary, _, _ = run
  on_disk = json.loads((out / reconstruct.SUMMARY_FILE).read_text())
  assert on_disk == json.loads(json.dumps(summary))
  assert on_disk["format_kind"] == reconstruct.SUMMARY_KIND
  assert on_disk["format_version"] == reconstruct.SUMMARY_VERSION
  assert on_disk["mesh_model"] == "mediapipe"
  assert on_disk["fit"] == {"landmark_steps": 60, "photometric_steps": 4,
                            "changed": "landmark_steps=60, photometric_steps=4"}
  assert set(on_disk["seconds_per_stage"]) == {"read", "detect", "align", "regress", "fit",
                                               "write"}
  face = on_disk["results"][0]["faces"][0]
  assert set(face["pose_degrees"]) == {"yaw", "pitch", "roll"}
  assert len(face["box"]) == 4 and face["detector"] == "blazeface"


def test_a_rerun_into_the_input_folder_skips_its_own_outputs(run):
  folder, out, _, _, _ = run
  shutil.copy(out / "astronaut_face0_overlay.png", folder / "astronaut_face0_overlay.png")
  shutil.copy(out / "astronaut_overlay.png", folder / "astronaut_overlay.png")
  names = [p.name for p in reconstruct.collect_inputs(folder)]
  assert names == ["astronaut.png", "broken.jpg", "camera.png", "gray16.png", "wall.png"]


def test_two_photos_with_one_stem_keep_both_results(tmp_path, ict_model):
  """photo.png and photo.jpg in one folder: each gets its own files (photo_png_*,
  photo_jpg_*), neither overwrites the other."""
  folder = tmp_path / "in"
  folder.mkdir()
  astronaut = skimage.data.astronaut()[..., ::-1]
  cv2.imwrite(str(folder / "photo.png"), astronaut)
  cv2.imwrite(str(folder / "photo.jpg"), np.ascontiguousarray(astronaut[:, ::-1]))
  out = tmp_path / "out"
  summary = reconstruct.reconstruct_photos(folder, ict_model, out, fit_config=FIT.with_steps(0),
                                           log=lambda line: None)
  assert [len(r["faces"]) for r in summary["results"]] == [1, 1]
  overlays = [r["overlay"] for r in summary["results"]]
  assert overlays == ["photo_jpg_overlay.png", "photo_png_overlay.png"]
  assert not (out / "photo_face0.obj").exists()
  for stem in ("photo_jpg", "photo_png"):
    for suffix in PER_FACE_SUFFIXES:
      assert (out / f"{stem}_face0{suffix}").is_file()
  boxes = [r["faces"][0]["box"] for r in summary["results"]]
  width = astronaut.shape[1]
  assert abs(boxes[0][0] - (width - boxes[1][2])) < 0.1 * width   # the mirrored face's box


def test_missing_input_is_an_input_error(tmp_path, ict_model):
  with pytest.raises(InputError, match="not found"):
    reconstruct.collect_inputs(tmp_path / "nope.jpg")
  with pytest.raises(InputError, match="no images"):
    reconstruct.collect_inputs(tmp_path)


def test_pose_in_the_photo_adds_the_alignment_roll():
  """A face rolled by the alignment: orthographic projections must agree."""
  rotation = np.radians([10.0, 25.0, 5.0])
  angle = math.radians(30.0)   # crop -> photo: rotate the image by 30 degrees (y down)
  inverse = np.array([[2 * math.cos(angle), -2 * math.sin(angle), 50.0],
                      [2 * math.sin(angle), 2 * math.cos(angle), 80.0]])
  pose = reconstruct.crop_pose_to_photo(rotation, inverse)
  points = np.random.default_rng(0).normal(size=(20, 3))

  def image_xy(angles, pts):   # orthographic camera: image x right, y down
    r = camera_lib.rotation_matrix(tf.constant(angles[None], tf.float64)).numpy()[0]
    p = pts @ r.T
    return np.stack([p[:, 0], -p[:, 1]], -1)

  in_photo = alignment.transform_points(image_xy(rotation, points), inverse)
  photo_angles = np.radians([pose["pitch"], pose["yaw"], pose["roll"]])
  direct = image_xy(photo_angles, points) * 2
  in_photo -= in_photo.mean(0)
  direct -= direct.mean(0)
  np.testing.assert_allclose(in_photo, direct, atol=1e-6)
  assert pose["roll"] == pytest.approx(5.0 - 30.0, abs=1e-6)


@pytest.fixture(scope="module")
def two_aflw(tmp_path_factory, data_dir):
  folder = tmp_path_factory.mktemp("aflw2")
  for stem in (AFLW_FOUND, AFLW_MISSED):
    for suffix in (".jpg", ".mat"):
      shutil.copy(data_dir / AFLW_SUBDIR / f"{stem}{suffix}", folder / f"{stem}{suffix}")
  return folder


def test_eval_landmarks_prints_a_table_then_one_json_line(two_aflw, capsys):
  parser = argparse.ArgumentParser()
  parser.add_argument("--data")
  parser.add_argument("--face-model", default=None)
  landmark_eval.add_eval_arguments(parser)
  args = parser.parse_args(["--data", str(two_aflw), "--fit-steps", "64", "--landmarks", "dlib"])
  assert landmark_eval.main(args) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  result = json.loads(lines[-1])
  assert result["images"] == 2 and result["detected"] == 1
  assert result["failures"] == [f"{AFLW_MISSED}.jpg"]
  assert result["network"] == landmark_eval.NO_CHECKPOINT
  assert result["fit_steps"] == {"landmark": 56, "photometric": 8}   # 200:30 split
  for method in ("detector", "fitted"):
    assert 0 < result[method]["nme_percent"] < 6, result[method]
    assert set(result[method]["bins"]) == {"[0,30)", "[30,60)", "[60,90]"}
  table = "\n".join(lines[:-1])
  assert "detector raw" in table and "fitted model" in table
  assert "network alone" in table and landmark_eval.NO_CHECKPOINT in table


def test_eval_landmarks_dense_finds_the_profile_too(two_aflw, capsys):
  parser = argparse.ArgumentParser()
  parser.add_argument("--data")
  parser.add_argument("--face-model", default=None)
  landmark_eval.add_eval_arguments(parser)
  args = parser.parse_args(["--data", str(two_aflw), "--fit-steps", "64",   # dense default
                            "--set", "shape_weight=2e-3"])
  assert landmark_eval.main(args) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  result = json.loads(lines[-1])
  assert result["detected"] == 2 and result["failures"] == []
  assert 0 < result["fitted"]["nme_percent"] < 10, result["fitted"]
  assert lines[0] == "config FitConfig, changed by --set: shape_weight=0.002"
  assert result["fit_config_changed"] == "landmark_steps=56, photometric_steps=8, shape_weight=0.002"


def test_weak_hog_detections_are_ignored_with_a_note(tmp_path, ict_model, monkeypatch):
  from shared.photo.landmarks import Face
  image_path = tmp_path / "patch.png"
  cv2.imwrite(str(image_path), np.full((120, 120, 3), 90, np.uint8))
  landmarks = np.random.default_rng(0).uniform(30, 90, (68, 2)).astype(np.float32)
  weak = Face(box=np.array([20, 20, 100, 100], np.float32), landmarks68=landmarks,
              score=reconstruct.MIN_HOG_SCORE / 2, detector="hog")
  monkeypatch.setattr(reconstruct, "detect_faces", lambda image, **kw: [weak])
  pipeline = reconstruct.PhotoReconstructor(ict_model, fit_config=FIT)
  lines = []
  entry = pipeline.process_image(image_path, tmp_path, lines.append)
  assert entry["status"] == "no-face"
  assert entry["weak_detections"] == [{"box": [20.0, 20.0, 100.0, 100.0],
                                       "score": round(reconstruct.MIN_HOG_SCORE / 2, 4)}]
  assert len(lines) == 2 and "weak detection" in lines[0] and "no face found" in lines[1]


def test_two_faces_of_different_pose_give_two_reconstructions(tmp_path, ict_model,
                                                             monkeypatch):
  """A composite of two synthetic faces (frontal, and turned 45 degrees then
  mirrored) runs without the data folder and gives two faces, whose fitted
  yaws differ by about the rendered difference.  With the detector's most faces set
  to 2, the photo reaches it and says so."""
  left = shaded_render(ict_model, 0.0, 1)
  right = np.ascontiguousarray(shaded_render(ict_model, 45.0, 2)[:, ::-1])
  cv2.imwrite(str(tmp_path / "pair.png"), np.concatenate([left, right], 1)[..., ::-1])
  out = tmp_path / "out"
  monkeypatch.setattr(reconstruct, "MAX_FACES", 2)
  lines = []
  summary = reconstruct.reconstruct_photos(tmp_path / "pair.png", ict_model, out, fit_config=FIT,
                                           log=lines.append)
  assert lines[0] == (f"{tmp_path / 'pair.png'}: note: 2 faces found, the detector's most "
                      "(the most confident are kept; blazeface.DetectorConfig.max_faces)")
  assert summary["results"][0]["faces_capped"] == 2
  faces = summary["results"][0]["faces"]
  assert len(faces) == 2
  for face in faces:
    for suffix in (".obj", "_overlay.png", "_depth.png", "_lm2d.txt"):
      assert (out / f"{face['name']}{suffix}").is_file()
  by_x = sorted(faces, key=lambda f: f["box"][0])
  assert by_x[0]["box"][2] <= 330 and by_x[1]["box"][0] >= 310      # one face per half
  yaws = [f["pose_degrees"]["yaw"] for f in by_x]
  assert abs(yaws[0]) < 12 and 30 < abs(yaws[1]) < 60


def test_a_truncated_jpeg_gets_a_note_and_a_whole_one_none(tmp_path):
  """The note names the file and says what is wrong; a complete JPEG (even with trailing
  padding) and a PNG get none."""
  from skimage import data
  whole = tmp_path / "whole.jpg"
  cv2.imwrite(str(whole), data.astronaut()[..., ::-1])
  padded = tmp_path / "padded.jpg"
  padded.write_bytes(whole.read_bytes() + b"\x00\x00\n")
  cut = tmp_path / "cut.jpg"
  cut.write_bytes(whole.read_bytes()[:5000])
  png = tmp_path / "whole.png"
  cv2.imwrite(str(png), data.astronaut()[..., ::-1])
  assert reconstruct._format_note(whole) is None
  assert reconstruct._format_note(padded) is None
  assert reconstruct._format_note(png) is None
  note = reconstruct._format_note(cut)
  assert note.startswith(f"{cut}: note: truncated JPEG") and "\n" not in note
