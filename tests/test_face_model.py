"""Face model loaders (project npz, ICT npz and folder, BFM .mat) and decoding."""

import json

import numpy as np
import pytest
import scipy.io as sio
import trimesh

from shared.model import face_model as fm
from shared.errors import InputError
from shared.io.paths import EMBEDDED_FACE_MODEL as ICT_NPZ  # Needs no data folder.

BFM_DIR = "face_models/bfm_front_topology"


def test_ict_npz_units_centre_and_albedo(ict_model):
  raw = np.load(ICT_NPZ)
  m = ict_model
  assert (m.num_vertices, m.num_id, m.num_exp, m.num_albedo) == (9409, 100, 53, 80)
  np.testing.assert_allclose(m.mean_shape.mean(0), 0, atol=1e-4)
  # cm -> decimetres: extents shrink by 10.
  np.testing.assert_allclose(np.ptp(m.mean_shape, 0), np.ptp(raw["mean_shape"], 0) / 10,
                             rtol=1e-5)
  np.testing.assert_array_equal(m.faces, raw["faces"])
  assert 0.2 < m.skin_mask.mean() < 0.9 and m.skin_mask[m.landmarks68[30]] == 1
  # Synthetic albedo is deterministic.
  again = fm.load_face_model(ICT_NPZ)
  np.testing.assert_array_equal(again.albedo_basis, m.albedo_basis)


def test_decoder_matches_numpy(ict_model):
  rng = np.random.default_rng(0)
  ident = rng.standard_normal((2, ict_model.num_id)).astype(np.float32)
  expr = rng.standard_normal((2, ict_model.num_exp)).astype(np.float32)
  dec = ict_model.decoder()
  got = dec.shape(ident, expr).numpy()
  for b in range(2):
    np.testing.assert_allclose(got[b], ict_model.shape_numpy(ident[b], expr[b]), atol=1e-4)


def test_project_npz_round_trip(ict_model, tmp_path):
  path = tmp_path / "model.npz"
  ict_model.save(path)
  back = fm.load_face_model(path)
  for field in fm.NPZ_FIELDS + ("uv",):
    np.testing.assert_array_equal(getattr(back, field), getattr(ict_model, field))
  assert back.source_hash == ict_model.source_hash


def test_project_npz_wrong_version(ict_model, tmp_path):
  path = tmp_path / "model.npz"
  ict_model.save(path)
  data = dict(np.load(path))
  data["format_version"] = np.array(99)
  np.savez(path, **data)
  with pytest.raises(InputError, match="model.npz: face model format version 99"):
    fm.load_face_model(path)


def test_ict_npz_with_mismatched_basis(tmp_path):
  raw = dict(np.load(ICT_NPZ))
  raw["id_basis"] = raw["id_basis"][:, :100]
  np.savez(tmp_path / "bad.npz", **raw)
  with pytest.raises(InputError, match=r"bad.npz: id_basis has shape \(100, 100, 3\)"):
    fm.load_face_model(tmp_path / "bad.npz")


def test_missing_and_unknown_files(tmp_path):
  with pytest.raises(InputError, match="nope.npz: face model not found.*ICT-FaceKit"):
    fm.load_face_model(tmp_path / "nope.npz")
  (tmp_path / "junk.npz").write_bytes(b"not a zip")
  with pytest.raises(InputError, match="junk.npz: not a readable .npz"):
    fm.load_face_model(tmp_path / "junk.npz")
  (tmp_path / "m.ply").write_text("ply")
  with pytest.raises(InputError, match="unknown face model format"):
    fm.load_face_model(tmp_path / "m.ply")


def make_bfm_mat(data_dir, path, num_id=8, num_exp=6, num_tex=5, drop=()):
  """A BFM_model_front.mat built from the real topology with synthetic bases."""
  info = sio.loadmat(data_dir / BFM_DIR / "facemodel_info.mat")
  mean = trimesh.load(data_dir / BFM_DIR / "Deep3D_mean.obj", process=False).vertices
  v = len(mean)
  rng = np.random.default_rng(0)
  mat = {
      "meanshape": (mean * fm.MM_TO_UNITS).reshape(1, -1).astype(np.float32),
      "idBase": rng.normal(0, 1e-3, (3 * v, num_id)).astype(np.float32),
      "exBase": rng.normal(0, 1e-3, (3 * v, num_exp)).astype(np.float32),
      "texBase": rng.normal(0, 5.0, (3 * v, num_tex)).astype(np.float32),
      "meantex": rng.uniform(100, 200, (1, 3 * v)).astype(np.float32),
      "tri": info["tri"], "keypoints": info["keypoints"], "point_buf": info["point_buf"],
      "skinmask": info["skinmask"],
  }
  for key in drop:
    del mat[key]
  sio.savemat(path, mat)
  return mat, info


def test_bfm_mat_loader_real_topology(tmp_path, data_dir):
  mat, info = make_bfm_mat(data_dir, tmp_path / "BFM_model_front.mat")
  m = fm.load_face_model(tmp_path / "BFM_model_front.mat")
  assert m.num_vertices == 35709 and len(m.faces) == 70789
  np.testing.assert_array_equal(m.faces, info["tri"].astype(np.int64) - 1)  # 1-based -> 0-based
  assert m.faces.min() == 0 and m.faces.max() == 35708
  np.testing.assert_array_equal(m.landmarks68, info["keypoints"].ravel().astype(int) - 1)
  np.testing.assert_array_equal(m.skin_mask, (info["skinmask"].ravel() > 0).astype(np.float32))
  # Bases are [3V, K] interleaved x, y, z per vertex.
  np.testing.assert_allclose(m.id_basis[3, 10], mat["idBase"][30:33, 3], rtol=1e-6)
  np.testing.assert_allclose(m.mean_albedo[7], mat["meantex"][0, 21:24] / 255.0, rtol=1e-6)
  mean = mat["meanshape"].reshape(-1, 3)
  np.testing.assert_allclose(m.mean_shape, mean - mean.mean(0), atol=1e-5)
  assert m.uv is None and m.num_albedo == 5


def test_bfm_mat_missing_keys(tmp_path, data_dir):
  make_bfm_mat(data_dir, tmp_path / "bad.mat", drop=("exBase", "tri"))
  with pytest.raises(InputError, match="bad.mat: not a BFM_model_front.mat layout, missing "
                                       "keys: exBase, tri"):
    fm.load_face_model(tmp_path / "bad.mat")


def write_obj(path, vertices, faces, uv=None):
  lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
  if uv is not None:
    lines += [f"vt {u:.6f} {v:.6f}" for u, v in uv]
    lines += ["f " + " ".join(f"{i + 1}/{i + 1}" for i in face) for face in faces]
  else:
    lines += ["f " + " ".join(str(i + 1) for i in face) for face in faces]
  path.write_text("\n".join(lines) + "\n")


def test_ict_folder_matches_npz(tmp_path):
  """A FaceXModel/ folder written from the npz reads back as the same model."""
  raw = np.load(ICT_NPZ)
  folder = tmp_path / "FaceXModel"
  folder.mkdir()
  mean = raw["mean_shape"].astype(np.float64)
  names = [str(n) for n in raw["exp_names"][:3]]
  quads = raw["faces"][:4]  # Also include a quad to check fan triangulation.
  faces = [list(f) for f in raw["faces"]] + [[int(quads[0, 0]), int(quads[0, 1]),
                                              int(quads[0, 2]), int(quads[1, 2])]]
  write_obj(folder / "generic_neutral_mesh.obj", mean, faces, raw["uv"])
  for k in range(2):
    write_obj(folder / f"identity{k:03d}.obj", mean + raw["id_basis"][k], raw["faces"])
  for k, name in enumerate(names):
    write_obj(folder / f"{name}.obj", mean + raw["exp_basis"][k], raw["faces"])
  (folder / "vertex_indices.json").write_text(json.dumps(
      {"expressions": names, "idx_to_landmark_verts": raw["landmarks68"].tolist()}))
  m = fm.load_face_model(folder)
  assert (m.num_id, m.num_exp) == (2, 3) and len(m.faces) == len(raw["faces"]) + 2
  np.testing.assert_allclose(m.id_basis[1] * m.id_std[1],
                             raw["id_basis"][1].astype(np.float32) * 0.1, atol=1e-6)
  np.testing.assert_allclose(m.exp_basis[2] * m.exp_std[2],
                             raw["exp_basis"][2].astype(np.float32) * 0.1, atol=1e-6)
  np.testing.assert_allclose(m.uv, raw["uv"], atol=1e-6)
  (folder / "identity000.obj").unlink()
  (folder / "identity001.obj").unlink()
  with pytest.raises(InputError, match="FaceXModel: no identity###.obj files found"):
    fm.load_face_model(folder)


def test_synthetic_albedo_is_smooth_and_ordered():
  from shared.model.albedo import smooth_vertex_functions
  sphere = trimesh.creation.icosphere(subdivisions=3)
  funcs = smooth_vertex_functions(len(sphere.vertices), sphere.faces, 5)
  np.testing.assert_allclose(funcs[0], funcs[0].mean(), atol=1e-5)  # Constant first.
  # Dirichlet energy grows with frequency.
  edges = sphere.edges_unique
  energy = [np.sum((f[edges[:, 0]] - f[edges[:, 1]]) ** 2) / np.sum(f ** 2) for f in funcs]
  assert all(a <= b + 1e-6 for a, b in zip(energy, energy[1:]))
