"""Export: OBJ/PLY/PNG round trips and atomic writes."""

import cv2
import numpy as np
import pytest
import trimesh

from shared.io import export
from shared.io.fileio import atomic_path


def test_obj_round_trip(tmp_path):
  rng = np.random.default_rng(0)
  v, c = rng.normal(size=(30, 3)), rng.uniform(size=(30, 3))
  f = rng.integers(0, 30, (40, 3))
  export.write_obj(tmp_path / "m.obj", v, f, c)
  v2, f2, c2 = export.read_obj_colours(tmp_path / "m.obj")
  np.testing.assert_allclose(v2, v, atol=1e-6)
  np.testing.assert_allclose(c2, c, atol=1e-6)
  np.testing.assert_array_equal(f2, f)


def test_ply_round_trip(tmp_path):
  mesh = trimesh.creation.icosphere(subdivisions=1)
  colours = np.linspace(0, 1, len(mesh.vertices) * 3).reshape(-1, 3)
  export.write_ply(tmp_path / "m.ply", mesh.vertices, mesh.faces, colours)
  back = trimesh.load(tmp_path / "m.ply", process=False)
  np.testing.assert_allclose(back.vertices, mesh.vertices, atol=1e-6)
  np.testing.assert_array_equal(back.faces, mesh.faces)
  np.testing.assert_array_equal(back.visual.vertex_colors[:, :3], export.to_uint8(colours))


def test_png_round_trip_rgb_order(tmp_path):
  img = np.zeros((4, 5, 3), np.uint8)
  img[..., 0] = 200  # Red.
  export.write_png(tmp_path / "a.png", img)
  back = cv2.imread(str(tmp_path / "a.png"))[..., ::-1]
  np.testing.assert_array_equal(back, img)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
  target = tmp_path / "out.txt"
  target.write_text("old")
  with pytest.raises(RuntimeError):
    with atomic_path(target) as tmp:
      tmp.write_text("half")
      raise RuntimeError("interrupted")
  assert target.read_text() == "old"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
