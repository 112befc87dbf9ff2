"""Tests for shared.eval.metrics: NME, yaw bins and the AFLW2000-3D reader."""

import numpy as np
import pytest
import scipy.io

from shared.eval import metrics
from shared.errors import InputError

AFLW_SUBDIR = "eval/aflw2000_16"
AFLW_COUNT = 16


def _box_landmarks():
  """68 points spanning x in [0, 10], y in [0, 40]: sqrt(w*h) = 20."""
  gt = np.zeros((68, 2))
  gt[:, 0] = np.linspace(0, 10, 68)
  gt[:, 1] = np.linspace(40, 0, 68)
  return gt


def test_nme_hand_computed():
  gt = _box_landmarks()
  pred = gt.copy()
  pred[:34] += [3.0, 4.0]                   # error 5 on half the points -> mean 2.5
  got = metrics.nme_68(pred[None], gt[None])
  np.testing.assert_allclose(got, [2.5 / 20.0])
  assert metrics.nme_68(pred, gt) == pytest.approx(0.125)   # [68, 2] input -> scalar


def test_nme_batches_and_normalises_per_image():
  gt = np.stack([_box_landmarks(), _box_landmarks() * 2])
  pred = gt + [0.0, 1.0]
  np.testing.assert_allclose(metrics.nme_68(pred, gt), [1 / 20, 1 / 40])


def test_nme_rejects_bad_shapes():
  with pytest.raises(ValueError):
    metrics.nme_68(np.zeros((1, 5, 2)), np.zeros((1, 5, 2)))
  with pytest.raises(ValueError):
    metrics.nme_68(np.zeros((2, 68, 2)), np.zeros((1, 68, 2)))


def test_yaw_bins():
  labels = metrics.yaw_bins([0, -29.9, 30, -59.9, 60, -90, 97])
  assert list(labels) == ["[0,30)", "[0,30)", "[30,60)", "[30,60)", "[60,90]", "[60,90]",
                          "[60,90]"]
  assert str(metrics.yaw_bins(-45.0)) == "[30,60)"


def test_aflw_reader_on_shared_folder(data_dir):
  folder = data_dir / AFLW_SUBDIR
  samples = metrics.load_aflw2000_folder(folder)
  assert len(samples) == AFLW_COUNT
  image_path, pt68, yaw = samples[0]
  assert image_path.name == "image00050.jpg" and pt68.shape == (68, 2)
  mat = scipy.io.loadmat(str(folder / "image00050.mat"))
  np.testing.assert_allclose(pt68, mat["pt3d_68"][:2].T + metrics.AFLW_PIXEL_OFFSET, atol=1e-4)
  assert yaw == pytest.approx(np.degrees(mat["Pose_Para"][0, 1]))
  yaws = np.array([s[2] for s in samples])
  assert np.all(np.abs(yaws) <= 100)


def test_aflw_reader_mat_without_keys(tmp_path):
  (tmp_path / "a.jpg").write_bytes(b"unused")
  scipy.io.savemat(str(tmp_path / "a.mat"), {"pt2d": np.zeros((2, 21))})
  with pytest.raises(InputError, match="a.mat.*pt3d_68"):
    metrics.load_aflw2000_folder(tmp_path)
  scipy.io.savemat(str(tmp_path / "a.mat"), {"pt3d_68": np.zeros((3, 68))})
  with pytest.raises(InputError, match="a.mat.*Pose_Para"):
    metrics.load_aflw2000_folder(tmp_path)
  scipy.io.savemat(str(tmp_path / "a.mat"), {"pt3d_68": np.zeros((3, 5)),
                                             "Pose_Para": np.zeros((1, 7))})
  with pytest.raises(InputError, match="shape"):
    metrics.load_aflw2000_folder(tmp_path)


def test_aflw_reader_bad_mat_and_empty_folder(tmp_path):
  with pytest.raises(InputError, match="no image"):
    metrics.load_aflw2000_folder(tmp_path)
  with pytest.raises(InputError, match="not found"):
    metrics.load_aflw2000_folder(tmp_path / "missing")
  (tmp_path / "b.png").write_bytes(b"unused")
  (tmp_path / "b.mat").write_bytes(b"garbage, not MATLAB")
  with pytest.raises(InputError, match="b.mat"):
    metrics.load_aflw2000_folder(tmp_path)
