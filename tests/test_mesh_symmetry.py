"""Mirror symmetry of a mesh (shared/mesh/symmetry.py) and the mirror-closed dense point set
built on it (shared.fit.dense.symmetric_correspondence)."""

import numpy as np
import pytest

from shared.mesh import symmetry


def symmetric_cloud(seed, half=40):
  """[2 half + 4, 3] points symmetric about x = 1.5 (4 on the plane) and the expected twin."""
  rng = np.random.default_rng(seed)
  left = rng.uniform(-1, 1, (half, 3)) + [-1.0, 0.0, 0.0]          # x < 1.5
  right = left * [-1, 1, 1] + [3.0, 0.0, 0.0]                        # reflected about 1.5
  middle = np.column_stack([np.full(4, 1.5), rng.uniform(-1, 1, (4, 2))])
  points = np.concatenate([left, right, middle])
  order = rng.permutation(len(points))
  twin = np.concatenate([np.arange(half, 2 * half), np.arange(half), 2 * half + np.arange(4)])
  inverse = np.argsort(order)
  return points[order], inverse[twin[order]]


def test_mirror_permutation_pairs_each_vertex_with_its_reflection():
  points, expected = symmetric_cloud(0)
  twin = symmetry.mirror_permutation(points)
  np.testing.assert_array_equal(twin, expected)
  np.testing.assert_array_equal(twin[twin], np.arange(len(points)))
  reflected = points * [-1, 1, 1] + [3.0, 0.0, 0.0]
  np.testing.assert_allclose(points[twin], reflected, atol=1e-12)


def test_an_asymmetric_mesh_is_refused():
  points, _ = symmetric_cloud(1)
  points[0, 1] += 0.5
  with pytest.raises(ValueError, match="not mirror-symmetric"):
    symmetry.mirror_permutation(points)


def test_symmetric_subset_is_closed_under_the_mirror():
  points, _ = symmetric_cloud(2)
  twin = symmetry.mirror_permutation(points)
  chosen = np.array([0, 3, 5, 8, 13, 21, 34])
  subset, flip = symmetry.symmetric_subset(points, chosen, twin)
  left = chosen[points[chosen, 0] <= points[:, 0].mean()]
  assert set(left) <= set(subset) and set(twin[subset]) == set(subset)
  np.testing.assert_array_equal(subset[flip], twin[subset])
  np.testing.assert_array_equal(flip[flip], np.arange(len(subset)))


def test_the_ict_dense_set_is_mirror_closed(ict_model):
  from shared.fit.dense import load_correspondence, symmetric_correspondence
  vertices, flip = symmetric_correspondence(ict_model)
  mesh = np.asarray(ict_model.mean_shape).reshape(-1, 3)
  centre = mesh[:, 0].mean()
  np.testing.assert_allclose(mesh[vertices[flip], 0], 2 * centre - mesh[vertices, 0], atol=1e-3)
  np.testing.assert_allclose(mesh[vertices[flip], 1:], mesh[vertices, 1:], atol=1e-3)
  mediapipe = load_correspondence(ict_model)[0]
  on_left = mediapipe[mesh[mediapipe, 0] <= centre]
  assert set(on_left) <= set(vertices) and 400 < len(vertices) < 2 * len(mediapipe)
