"""main.py turns user errors into one line on stderr and exit code 2.

Most cases call `main.main` in this process (starting Python and TensorFlow again costs
10-20 s a case on a slow 2-core machine); the unreadable photo runs `python main.py` as a
user does, for the real exit status."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from mgc_helpers import run_main as run_main_here

ROOT = Path(__file__).resolve().parent.parent


def run_main(*args, tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True,
                        text=True, env=env, cwd=tmp_path, timeout=300)


def error_lines(stderr):
  return [l for l in stderr.splitlines() if l.startswith(("error:", "Traceback"))]


def test_missing_face_model(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  code, _, err = run_main_here(["--model", "shared", "--mode", "render", "--face-model",
                                "missing.npz", "--output", str(tmp_path)], capsys)
  assert code == 2
  lines = error_lines(err)
  assert len(lines) == 1 and lines[0].startswith("error: missing.npz: face model not found")


def test_bad_mat_keys(tmp_path, monkeypatch, capsys):
  import scipy.io as sio
  sio.savemat(tmp_path / "m.mat", {"meanshape": [[0.0, 0.0, 0.0]]})
  monkeypatch.chdir(tmp_path)
  code, _, err = run_main_here(["--model", "shared", "--mode", "render", "--face-model",
                                "m.mat", "--output", str(tmp_path)], capsys)
  assert code == 2
  lines = error_lines(err)
  assert len(lines) == 1 and "m.mat: not a BFM_model_front.mat layout, missing keys" in lines[0]


def test_render_gallery(tmp_path, capsys):
  code, _, err = run_main_here(["--model", "shared", "--mode", "render", "--output",
                                str(tmp_path / "g")], capsys)
  assert code == 0, err
  import cv2
  img = cv2.imread(str(tmp_path / "g" / "gallery.png"))
  assert img.shape == (448, 224 * 6, 3)
  # Face pixels differ from the background in every pose.
  top = img[:224].reshape(224, 6, 224, 3).transpose(1, 0, 2, 3)
  assert all((np.abs(t.astype(int) - t[0, 0]).sum(-1) > 30).mean() > 0.2 for t in top)


def test_one_unreadable_photo_is_an_error_and_writes_nothing(tmp_path):
  """A single bad file (not a folder, where it would be skipped) gives one error line, exit 2,
  and no output folder."""
  bad = tmp_path / "fake.jpg"
  bad.write_text("not an image")
  out = tmp_path / "out"
  r = run_main("--mode", "test", "--input", str(bad), "--output", str(out), tmp_path=tmp_path)
  assert r.returncode == 2
  lines = error_lines(r.stderr)
  assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: cannot decode image"), r.stderr
  assert not out.exists()
