"""SH lighting against Deng et al.'s formulas; vertex normals against trimesh."""

import math

import numpy as np
import trimesh

from shared.mesh import normals_tf as geometry

from shared.model import lighting


def numpy_sh(n):
  x, y, z = n[:, 0], n[:, 1], n[:, 2]
  a0, a1, a2 = math.pi, 2 * math.pi / math.sqrt(3), 2 * math.pi / math.sqrt(8)
  c0, c1 = 1 / math.sqrt(4 * math.pi), math.sqrt(3) / math.sqrt(4 * math.pi)
  c2 = 3 * math.sqrt(5) / math.sqrt(12 * math.pi)
  return np.stack([np.full_like(x, a0 * c0), -a1 * c1 * y, a1 * c1 * z, -a1 * c1 * x,
                   a2 * c2 * x * y, -a2 * c2 * y * z,
                   a2 * c2 * 0.5 / math.sqrt(3) * (3 * z ** 2 - 1), -a2 * c2 * x * z,
                   a2 * c2 * 0.5 * (x ** 2 - y ** 2)], axis=1)


def test_sh_irradiance_matches_reference():
  rng = np.random.default_rng(0)
  n = rng.standard_normal((20, 3))
  n /= np.linalg.norm(n, axis=1, keepdims=True)
  sh = rng.normal(0, 0.3, (1, 27)).astype(np.float32)
  got = lighting.irradiance(n[None].astype(np.float32), sh).numpy()[0]
  gamma = sh.reshape(3, 9) + np.array([0.8] + [0] * 8)
  np.testing.assert_allclose(got, numpy_sh(n) @ gamma.T, rtol=1e-5, atol=1e-5)


def test_zero_lighting_is_uniform_ambient():
  n = np.array([[[0, 0, 1], [1, 0, 0], [0, -1, 0]]], np.float32)
  got = lighting.shade(np.ones((1, 3, 3), np.float32), n, np.zeros((1, 27), np.float32))
  np.testing.assert_allclose(got.numpy(), 0.8 * math.pi / math.sqrt(4 * math.pi), rtol=1e-6)


def test_vertex_normals_match_trimesh():
  mesh = trimesh.creation.icosphere(subdivisions=2)
  mesh.vertices[:, 0] *= 1.7  # Not a sphere: normals differ from positions.
  rings = geometry.vertex_face_rings(mesh.faces, len(mesh.vertices))
  assert rings.shape[1] == 6
  got = geometry.vertex_normals(mesh.vertices[None].astype(np.float32),
                                mesh.faces.astype(np.int32), rings).numpy()[0]
  # Area-weighted face-normal sums, from trimesh's own face adjacency table.
  ref = np.zeros_like(mesh.vertices)
  np.add.at(ref, mesh.faces.ravel(), np.repeat(mesh.face_normals * mesh.area_faces[:, None], 3, 0))
  ref /= np.linalg.norm(ref, axis=1, keepdims=True)
  np.testing.assert_allclose(got, ref, atol=1e-5)
