"""main.py turns user errors into one line on stderr and exit code 2.

Most cases call `main.main` in this process (starting Python and TensorFlow again costs
10-20 s a case on a slow 2-core machine); the unreadable photo runs `python main.py` as a
user does, for the real exit status."""

import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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


def test_output_path_in_the_way(tmp_path, monkeypatch, capsys):
  """An output folder that is a file, or lies under one, stops every command with one
  line before any work (it was a FileExistsError traceback after the work)."""
  monkeypatch.chdir(tmp_path)
  (tmp_path / "f").write_text("x")
  (tmp_path / "d").mkdir()
  cases = [
      (["--model", "mgc", "--mode", "test", "--checkpoint", "c", "--input", "in.png",
        "--output", "f"], "error: f: exists and is not a folder"),
      (["--model", "mgc", "--mode", "train", "--data", "d", "--checkpoint", "f/run"],
       "error: f/run: cannot make the folder: f is a file"),
      (["--model", "gcn", "--mode", "test", "--checkpoint", "c", "--input", "in.png",
        "--output", "f"], "error: f: exists and is not a folder"),
      (["--model", "gcn", "--mode", "train", "--data", "x.bin", "--coarse-checkpoint", "c",
        "--checkpoint", "f"], "error: f: exists and is not a folder"),
      (["--model", "gcn", "--mode", "eval", "--checkpoint", "c", "--data", "x.bin",
        "--output", "d"], "error: d: is a folder, not a file"),
      (["--model", "gcn", "--mode", "eval", "--checkpoint", "c", "--data", "x.bin",
        "--output", "f/report.json"], "error: f/report.json: cannot write it: f is a file"),
      (["--model", "shared", "--mode", "render", "--output", "f"],
       "error: f: exists and is not a folder"),
  ]
  for argv, message in cases:
    code, _, err = run_main_here(argv, capsys)
    lines = error_lines(err)
    assert code == 2 and lines == [message], (argv, err)
  assert (tmp_path / "f").read_text() == "x" and sorted(os.listdir(tmp_path)) == ["d", "f"]


def test_output_checks_create_nothing(tmp_path):
  from shared.errors import InputError
  from shared.io.paths import check_output_file, check_output_folder
  check_output_folder(tmp_path / "new" / "deeper")
  check_output_file(tmp_path / "new" / "report.json")
  assert os.listdir(tmp_path) == []
  (tmp_path / "f").write_text("x")
  for check, path in ((check_output_folder, tmp_path / "f"),
                      (check_output_folder, tmp_path / "f" / "a" / "b"),
                      (check_output_file, tmp_path / "f" / "r.json")):
    with pytest.raises(InputError, match="^" + re.escape(f"{path}: ")):
      check(path)


def test_os_error_is_one_line(tmp_path, monkeypatch, capsys):
  """An OSError that escapes a command (a full disk, say) is one line and exit status 2;
  --verbose shows the traceback."""
  import shared.cli

  def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", "out/gallery.png")

  monkeypatch.setattr(shared.cli, "run", full_disk)
  monkeypatch.setenv("FACE3D_VERBOSE", "0")   # --verbose sets it; restored after the test.
  code, _, err = run_main_here(["--model", "shared", "--mode", "render"], capsys)
  assert code == 2 and error_lines(err) == ["error: out/gallery.png: No space left on device"]
  with pytest.raises(OSError):
    run_main_here(["--model", "shared", "--mode", "render", "--verbose"], capsys)
