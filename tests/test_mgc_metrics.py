"""MGC evaluation metrics: rigid and similarity-aligned RMSE."""

import numpy as np


def test_procrustes_rmse_removes_rigid_motion():
  from mgc_face.evaluate import aligned_rmse
  from scipy.spatial.transform import Rotation
  rng = np.random.default_rng(4)
  truth = rng.normal(size=(500, 3))
  moved = truth @ Rotation.from_euler("xyz", [20, -50, 10], degrees=True).as_matrix().T + 3.0
  assert aligned_rmse(moved, truth) < 1e-9
  noise = rng.normal(0, 0.01, truth.shape)
  np.testing.assert_allclose(aligned_rmse(moved + noise, truth), np.sqrt((noise ** 2).sum(1).mean()),
                             rtol=0.05)
  region = np.zeros(500, bool)
  region[:100] = True
  assert aligned_rmse(moved, truth, region) < 1e-9


def test_similarity_rmse_also_removes_one_scale():
  from mgc_face.evaluate import aligned_rmse
  from scipy.spatial.transform import Rotation
  rng = np.random.default_rng(5)
  truth = rng.normal(size=(400, 3))
  moved = 0.9 * truth @ Rotation.from_euler("xyz", [-10, 35, 5], degrees=True).as_matrix().T - 2.0
  assert aligned_rmse(moved, truth, with_scale=True) < 1e-9
  # Rigid alignment keeps the 10 % size error: sqrt(mean |0.1 x|^2) for centred points.
  centred = truth - truth.mean(0)
  np.testing.assert_allclose(aligned_rmse(moved, truth),
                             0.1 * np.sqrt((centred ** 2).sum(1).mean()), rtol=1e-3)
  # A mirror is not a rotation: the fitted transform stays proper.
  mirrored = truth * np.array([-1.0, 1.0, 1.0])
  assert aligned_rmse(mirrored, truth, with_scale=True) > 0.1
