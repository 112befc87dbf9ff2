"""UV texture maps (shared/render/texture.py) against a numpy splat of the same triangles."""

import numpy as np
import pytest

from shared.render import texture

# Two triangles in UV space with red, green, blue and white corners.
UV = np.array([[0.1, 0.2], [0.9, 0.3], [0.3, 0.85], [0.95, 0.95]], np.float32)
FACES = np.array([[0, 1, 2], [1, 3, 2]], np.int32)
COLOURS = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], np.float32)
BACKGROUND = 0.25
EDGE = 1e-3  # Texel centres this close (in barycentric weight) to an edge may go either way.


def numpy_splat(uv, faces, colours, size, background):
  """Per texel centre ((col + 0.5) / size, 1 - (row + 0.5) / size): barycentric colour.

  Returns (image [size, size, C], near an edge [size, size]).
  """
  centres = (np.arange(size) + 0.5) / size
  u, v = np.meshgrid(centres, 1.0 - centres)
  points = np.stack([u.ravel(), v.ravel()], 1)
  image = np.full((size * size, colours.shape[1]), background, np.float64)
  near_edge = np.zeros(size * size, bool)
  for face in faces:
    a, b, c = uv[face].astype(np.float64)
    local = np.linalg.solve(np.stack([b - a, c - a], 1), (points - a).T).T
    weights = np.stack([1 - local.sum(1), local[:, 0], local[:, 1]], 1)
    inside = (weights >= 0).all(1)
    image[inside] = weights[inside] @ colours[face]
    near_edge |= np.abs(weights).min(1) < EDGE
  return image.reshape(size, size, -1), near_edge.reshape(size, size)


@pytest.mark.parametrize("size", [16, 48])
def test_uv_splat_matches_numpy(size):
  got = texture.uv_texture_map(UV, FACES, COLOURS, size=size, background=BACKGROUND)
  want, near_edge = numpy_splat(UV, FACES, COLOURS, size, BACKGROUND)
  assert got.shape == (size, size, 3) and got.dtype == np.float32
  np.testing.assert_allclose(got[~near_edge], want[~near_edge], atol=1e-5)
  assert (~near_edge).mean() > 0.95
  # v is up: the top row (v near 1) is background left of the white corner at u = 0.95.
  np.testing.assert_allclose(got[0, 0], BACKGROUND)
  # The texel nearest the red corner (u 0.1, v 0.2) is mostly red.
  row, col = int((1 - 0.2) * size) - 1, int(0.1 * size) + 1
  assert got[row, col, 0] > 0.7


def test_uv_map_of_the_face_model_covers_its_uv_layout(ict_model):
  size = 64
  colours = ict_model.mean_albedo  # [V, 3]
  got = texture.uv_texture_map(ict_model.uv, ict_model.faces, colours, size=size)
  covered = (got.sum(-1) > 0)
  assert 0.2 < covered.mean() < 1.0
  # Every covered texel's colour lies within the vertex colours' range.
  assert got[covered].min() >= colours.min() - 1e-5 and got.max() <= colours.max() + 1e-5
