"""Tests for shared.photo.landmarks (dlib backend; the MediaPipe backend is in
test_blazeface.py) and shared.eval.landmark_eval."""

import sys

import cv2
import numpy as np
import pytest
import skimage.data

from shared.eval import landmark_eval

from shared.photo import landmarks

from shared.eval import metrics
from shared.errors import InputError
from shared.io.image_io import read_image

AFLW_SUBDIR = "eval/aflw2000_16"
BOX_SLACK = 0.15          # landmarks may leave the detector box by this fraction (jaw)
ASTRONAUT_FACE_CENTRE = (222.0, 128.0)   # roughly, in the 512 x 512 image
UPSCALE = 4


@pytest.fixture(scope="module")
def astronaut():
  return skimage.data.astronaut()


@pytest.fixture(scope="module")
def astronaut_faces(astronaut):
  return landmarks.detect_faces(astronaut, backend="dlib")


def test_astronaut_has_one_face_with_landmarks_in_its_box(astronaut_faces):
  assert len(astronaut_faces) == 1
  face = astronaut_faces[0]
  assert face.box.shape == (4,) and face.landmarks68.shape == (68, 2)
  assert face.landmarks68.dtype == np.float32 and face.detector == "hog"
  x0, y0, x1, y1 = face.box
  assert x0 <= ASTRONAUT_FACE_CENTRE[0] <= x1 and y0 <= ASTRONAUT_FACE_CENTRE[1] <= y1
  slack = BOX_SLACK * np.array([x1 - x0, y1 - y0])
  lm = face.landmarks68
  assert np.all(lm >= face.box[:2] - slack) and np.all(lm <= face.box[2:] + slack)
  centre = lm.mean(0)
  assert x0 <= centre[0] <= x1 and y0 <= centre[1] <= y1


def test_landmarks_are_dlib_pixels_plus_half(astronaut, astronaut_faces):
  import dlib
  face = astronaut_faces[0]
  x0, y0, x1, y1 = (int(v) for v in face.box)
  shape = landmarks._shape_predictor()(astronaut, dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
  raw = np.array([[p.x, p.y] for p in shape.parts()], np.float32)
  np.testing.assert_array_equal(face.landmarks68, raw + 0.5)


def test_big_image_is_downscaled_and_mapped_back(astronaut, astronaut_faces):
  big = cv2.resize(astronaut, (512 * UPSCALE, 512 * UPSCALE), interpolation=cv2.INTER_LINEAR)
  faces = landmarks.detect_faces(big, max_side=landmarks.DETECT_MAX_SIDE, backend="dlib")
  assert faces    # at 1024 px HOG also fires weakly elsewhere; the largest is the face
  small = astronaut_faces[0]
  face_size = small.size
  err = np.abs(faces[0].landmarks68 / UPSCALE - small.landmarks68)
  assert err.mean() < 0.02 * face_size and err.max() < 0.06 * face_size


@pytest.mark.parametrize("value", [0, 255])
def test_blank_image_has_no_face(value):
  assert landmarks.detect_faces(np.full((300, 400, 3), value, np.uint8), cnn_fallback=False) == []
  # The CNN fallback is slow (seconds per 0.1 MP on 2 cores): a small blank image.
  assert landmarks.detect_faces(np.full((90, 120, 3), value, np.uint8), cnn_fallback=True) == []


def test_rejects_non_rgb_uint8():
  with pytest.raises(ValueError):
    landmarks.detect_faces(np.zeros((10, 10), np.uint8))
  with pytest.raises(ValueError):
    landmarks.detect_faces(np.zeros((10, 10, 3), np.float32))


def test_missing_models_package_gives_install_hint(monkeypatch):
  monkeypatch.setattr(landmarks.importlib.util, "find_spec", lambda name: None)
  with pytest.raises(InputError, match="pip install"):
    landmarks.model_path(landmarks.LANDMARK_MODEL_FILE)


def test_missing_dlib_gives_install_hint(monkeypatch):
  monkeypatch.setitem(sys.modules, "dlib", None)
  with pytest.raises(InputError, match="pip install"):
    landmarks._import_dlib()


def test_evaluate_detector_on_aflw2000_16(data_dir):
  folder = data_dir / AFLW_SUBDIR
  result = landmark_eval.evaluate_detector(folder, cnn_fallback=False, backend="dlib")
  assert result["images"] == 16
  assert result["detected"] >= 12
  assert result["nme_percent"] < 5.0
  assert result["bins"]["[0,30)"]["detected"] == result["bins"]["[0,30)"]["images"]
  table = landmark_eval.format_table(result)
  assert "image00050.jpg" in table and "all" in table


def test_cnn_fallback_finds_a_turned_face(data_dir):
  # image04331 (yaw 45 deg): HOG finds nothing, the CNN fallback does.
  # max_side 300 keeps the slow CNN to ~2 s on 2 cores.
  folder = data_dir / AFLW_SUBDIR
  gt, _ = metrics.read_aflw2000_mat(folder / "image04331.mat")
  image = read_image(folder / "image04331.jpg")
  assert landmarks.detect_faces(image, max_side=300, cnn_fallback=False, backend="dlib") == []
  faces = landmarks.detect_faces(image, max_side=300, cnn_fallback=True, backend="dlib")
  assert len(faces) == 1 and faces[0].detector == "cnn"
  assert metrics.nme_68(faces[0].landmarks68, gt) < 0.10
