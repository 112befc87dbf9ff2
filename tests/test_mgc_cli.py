"""`main.py --model mgc`: test mode outputs, eval report, flag checks."""

import json

import numpy as np

from mgc_helpers import run_main


def test_cli_test_mode_writes_every_output(mgc_trained, mgc_dataset, tmp_path, capsys):
  ckpt, _ = mgc_trained
  out = tmp_path / "out"
  code, stdout, _ = run_main(["--model", "mgc", "--mode", "test", "--checkpoint", str(ckpt),
                              "--input", str(mgc_dataset / "heldout"), "--output", str(out)], capsys)
  assert code == 0 and "wrote 1 reconstruction" in stdout
  name = "id00002_000"
  for suffix in (".obj", "_coeffs.npz", "_lm2d.txt", "_lm3d.txt", "_overlay.png", "_depth.png",
                 "_poses.png"):
    assert (out / f"{name}{suffix}").exists(), suffix
  from shared.io.export import read_obj_colours
  vertices, faces, colours = read_obj_colours(out / f"{name}.obj")
  assert vertices.shape == (9409, 3) and colours.shape == (9409, 3) and faces.shape[0] == 18460
  lm2d = np.loadtxt(out / f"{name}_lm2d.txt")
  lm3d = np.loadtxt(out / f"{name}_lm3d.txt")
  assert lm2d.shape == (68, 2) and lm3d.shape == (68, 3)
  coeffs = np.load(out / f"{name}_coeffs.npz")
  assert coeffs["coefficients"].shape == (266,) and coeffs["identity"].shape == (100,)
  import cv2
  assert cv2.imread(str(out / f"{name}_overlay.png")).shape == (224, 448, 3)


def test_cli_test_mode_refuses_a_wrong_size_image(mgc_trained, tmp_path, capsys):
  import cv2
  ckpt, _ = mgc_trained
  bad = tmp_path / "big.png"
  cv2.imwrite(str(bad), np.zeros((300, 300, 3), np.uint8))
  code, _, stderr = run_main(["--model", "mgc", "--mode", "test", "--checkpoint", str(ckpt),
                              "--input", str(bad), "--input-kind", "aligned",
                              "--output", str(tmp_path / "o")], capsys)
  assert code == 2
  lines = [line for line in stderr.splitlines() if line.startswith("error:")]
  assert len(lines) == 1 and "image is 300x300" in lines[0]
  assert not (tmp_path / "o" / "big.obj").exists()


def test_cli_eval_prints_a_table_then_json(mgc_trained, mgc_dataset, capsys):
  ckpt, _ = mgc_trained
  code, stdout, _ = run_main(["--model", "mgc", "--mode", "eval", "--checkpoint", str(ckpt),
                              "--data", str(mgc_dataset), "--quiet", "--self-fit-steps", "5"],
                             capsys)
  assert code == 0
  metrics = json.loads(stdout.strip().splitlines()[-1])
  assert metrics["self_fit_steps"] == 5 and "+ self-fit: similarity / mean-face" in stdout
  for key in ("self_fit_rmse_sim_vs_mean_face", "self_fit_rmse_vs_mean_face",
              "self_fit_nme_percent"):
    assert np.isfinite(metrics[key]), key
  assert metrics["samples"] == 1 and metrics["views"] == 3
  for key in ("rmse_face_units", "rmse_face_mm", "nme_percent", "photometric", "rmse_face_sim_mm",
              "mean_face_rmse_face_sim_mm", "fit_rmse_face_mm", "fit_rmse_face_sim_mm",
              "identity_sim_vs_mean_identity", "expression_sim_vs_neutral"):
    assert np.isfinite(metrics[key]), key
  # A similarity fit has one more degree of freedom than a rigid one.
  assert metrics["rmse_face_sim_mm"] <= metrics["rmse_face_mm"] + 1e-9
  assert metrics["mean_face_rmse_face_sim_mm"] <= metrics["mean_face_rmse_face_mm"] + 1e-9
  from mgc_face.evaluate import LANDMARK_FIT
  assert metrics["fit_landmark_steps"] == LANDMARK_FIT.landmark_steps and "+ landmark fit" in stdout
  np.testing.assert_allclose(metrics["rmse_face_mm"], 100 * metrics["rmse_face_units"], rtol=1e-6)
  assert "68-landmark NME (%)" in stdout and "identity part / mean identity" in stdout
  # The per-|yaw| rows cover every view once, and the bins' NMEs average to the overall NME.
  bins = metrics["by_yaw"].values()
  assert sum(row["views"] for row in bins) == metrics["views"] and "|yaw| [" in stdout
  np.testing.assert_allclose(sum(row["views"] * row["nme_percent"] for row in bins) /
                             metrics["views"], metrics["nme_percent"], rtol=1e-6)
  # --fit-steps sets the landmark fit's length; 0 turns it off.
  code, stdout, _ = run_main(["--model", "mgc", "--mode", "eval", "--checkpoint", str(ckpt),
                              "--data", str(mgc_dataset), "--quiet", "--fit-steps", "0",
                              "--self-fit-steps", "0"], capsys)
  short = json.loads(stdout.strip().splitlines()[-1])
  assert code == 0 and short["fit_landmark_steps"] == 0 and "+ landmark fit" not in stdout
  assert "self_fit_steps" not in short and "+ self-fit" not in stdout
  assert short["rmse_face_mm"] == metrics["rmse_face_mm"]


def test_cli_needs_its_flags(capsys):
  code, _, stderr = run_main(["--model", "mgc", "--mode", "train"], capsys)
  assert code == 2 and "needs --data" in stderr


def test_cli_test_mode_keeps_both_files_with_one_stem(mgc_trained, mgc_dataset, tmp_path,
                                                      capsys):
  """face.png and face.jpg in one folder: both reconstructions are written (face_png.obj,
  face_jpg.obj); neither overwrites the other."""
  import cv2
  ckpt, _ = mgc_trained
  source = next(p for p in sorted((mgc_dataset / "heldout").iterdir()) if p.suffix == ".png")
  folder = tmp_path / "in"
  folder.mkdir()
  image = cv2.imread(str(source))
  cv2.imwrite(str(folder / "face.png"), image)
  cv2.imwrite(str(folder / "face.jpg"), image)
  out = tmp_path / "out"
  code, stdout, _ = run_main(["--model", "mgc", "--mode", "test", "--checkpoint", str(ckpt),
                              "--input", str(folder), "--output", str(out)], capsys)
  assert code == 0 and "wrote 2 reconstruction" in stdout
  assert (out / "face_png.obj").is_file() and (out / "face_jpg.obj").is_file()
  assert not (out / "face.obj").exists()
