"""The harmonic fill over a mesh (shared.mesh.inpaint)."""

import numpy as np
import scipy.sparse as sp

from shared.mesh.inpaint import harmonic_fill

GRID = 12


def path_adjacency(n):
  """A path 0 - 1 - ... - n-1, with the weights and self-loops an adjacency may carry."""
  rows = np.arange(n - 1)
  a = sp.coo_matrix((np.full(n - 1, 2.0), (rows, rows + 1)), shape=(n, n))
  return (a + a.T + sp.eye(n)).tocsr()


def grid_adjacency(size):
  """A size x size grid of vertices, triangulated (each square split by a diagonal)."""
  index = np.arange(size * size).reshape(size, size)
  edges = [(index[:, :-1], index[:, 1:]), (index[:-1], index[1:]), (index[:-1, :-1], index[1:, 1:])]
  i = np.concatenate([a.ravel() for a, _ in edges])
  j = np.concatenate([b.ravel() for _, b in edges])
  a = sp.coo_matrix((np.ones(len(i)), (i, j)), shape=(size * size,) * 2)
  return (a + a.T).tocsr()


def test_on_a_path_the_fill_is_the_straight_line_between_the_known_ends():
  n = 7
  values = np.zeros((n, 2))
  values[0], values[-1] = [0.0, 1.0], [0.6, -0.2]
  known = np.zeros(n, bool)
  known[[0, -1]] = True
  filled = harmonic_fill(values, known, path_adjacency(n))
  t = np.linspace(0, 1, n)[:, None]
  np.testing.assert_allclose(filled, (1 - t) * values[0] + t * values[-1], atol=1e-12)


def test_known_values_are_kept_and_each_filled_vertex_is_the_mean_of_its_neighbours():
  rng = np.random.default_rng(0)
  adjacency = grid_adjacency(GRID)
  values = rng.uniform(-1, 1, (GRID * GRID, 3))
  hole = np.zeros((GRID, GRID), bool)
  hole[3:9, 2:7] = True                                  # a patch the occluder hides
  known = ~hole.ravel()
  filled = harmonic_fill(values, known, adjacency)
  np.testing.assert_array_equal(filled[known], values[known])
  neighbours = adjacency.copy()
  neighbours.data[:] = 1.0
  mean = (neighbours @ filled) / np.asarray(neighbours.sum(1))
  np.testing.assert_allclose(filled[~known], mean[~known], atol=1e-10)
  # The maximum principle: nothing outside the range of the known values around it.
  assert filled[~known].min() >= values[known].min() and filled[~known].max() <= values[known].max()


def test_a_constant_stays_constant_and_a_part_cut_off_from_known_vertices_gets_zero():
  n = 6
  adjacency = sp.block_diag([path_adjacency(n), path_adjacency(3)]).tocsr()
  values = np.full((n + 3, 1), 0.25)
  known = np.zeros(n + 3, bool)
  known[[0, 4]] = True                                   # the second path has none
  filled = harmonic_fill(values, known, adjacency)
  np.testing.assert_allclose(filled[:n], 0.25, atol=1e-12)
  np.testing.assert_array_equal(filled[n:], 0.0)


def test_nothing_unknown_returns_the_values():
  values = np.arange(8.0).reshape(4, 2)
  np.testing.assert_array_equal(harmonic_fill(values, np.ones(4, bool), path_adjacency(4)), values)


def test_fill_change_keeps_the_values_and_carries_their_change_over_the_base():
  """Known vertices keep their values; the unknown ones get base + the change filled
  harmonically (on a path: the straight line of the change); a part with no known vertex
  keeps the base."""
  from shared.mesh.inpaint import fill_change
  n = 5
  base = np.linspace(0.0, 1.0, n)[:, None]
  values = base + np.array([[0.2], [9.0], [9.0], [9.0], [0.6]])
  known = np.array([True, False, False, False, True])
  out = fill_change(base, values, known, path_adjacency(n))
  np.testing.assert_allclose(out, base + np.linspace(0.2, 0.6, n)[:, None], atol=1e-12)
  cut = sp.block_diag([path_adjacency(3), path_adjacency(2)]).tocsr()
  out = fill_change(base, values, np.array([True, False, True, False, False]), cut)
  np.testing.assert_allclose(out[3:], base[3:], atol=1e-12)
