"""Quiet by default: no TensorFlow, AutoGraph, checkpoint or OpenCV lines; verbose keeps them."""

import os
import subprocess
import sys
from pathlib import Path

from shared import quiet

ROOT = Path(__file__).resolve().parent.parent
NOISE = ("I0000", "W0000", "E0000", "WARNING:tensorflow", "AutoGraph", "absl", "[ERROR:",
         "[ WARN:", "Premature end of JPEG")

# Things that printed library lines before shared.quiet: importing TensorFlow
# (C++ log lines), AutoGraph failing to convert a function, a partial
# checkpoint restore, and OpenCV / libjpeg decoding corrupt files.
SCRIPT = r"""
import sys; sys.path.insert(0, %r)
from shared import quiet; quiet.setup()
import importlib.util, gc, numpy as np, cv2, tensorflow as tf
@tf.function
def f(x):
  importlib.util.find_spec("numpy")
  return x + 1
f(tf.constant(1))
ckpt = tf.train.Checkpoint(a=tf.Variable(1.0), b=tf.Variable(2.0))
path = ckpt.save(sys.argv[1] + "/ckpt")
tf.train.Checkpoint(a=tf.Variable(0.0)).restore(path)
del ckpt; gc.collect()
ok, jpg = cv2.imencode(".jpg", np.zeros((32, 32, 3), np.uint8))
open(sys.argv[1] + "/cut.jpg", "wb").write(jpg.tobytes()[:200])
open(sys.argv[1] + "/bad.png", "wb").write(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
from shared.io import image_io
for name in ("cut.jpg", "bad.png"):
  try:
    image_io.read_image(sys.argv[1] + "/" + name)
  except Exception as e:
    print("error:", e, file=sys.stderr)
print("done", file=sys.stderr)
""" % str(ROOT)


def test_library_lines_are_hidden(tmp_path):
  env = {k: v for k, v in os.environ.items()
         if k not in (quiet.VERBOSE_ENV, "TF_CPP_MIN_LOG_LEVEL")}
  out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  lines = out.stderr.splitlines()
  assert lines[-1] == "done"
  noisy = [line for line in lines if any(word in line for word in NOISE)]
  assert not noisy, noisy
  assert any("bad.png: cannot decode image" in line for line in lines)  # Ours stay.


def test_filter_drops_native_log_lines_only(capfd):
  with quiet._FilteredStderr():
    os.write(2, b"I0000 00:00:1796231469.921882    8087 port.cc:153] oneDNN custom ops\n"
                b"WARNING: All log messages before absl::InitializeLog() is called are written\n"
                b"a real problem\n"
                b"E0000 00:00:1.5 1 cuda_platform.cc:52] failed call to cuInit\n")
  assert capfd.readouterr().err == "a real problem\n"


def test_verbose_keeps_decoder_lines(monkeypatch, capfd):
  monkeypatch.setenv(quiet.VERBOSE_ENV, "1")
  with quiet.native_stderr_silenced():
    os.write(2, b"Premature end of JPEG file\n")
  assert capfd.readouterr().err == "Premature end of JPEG file\n"
  monkeypatch.setenv(quiet.VERBOSE_ENV, "0")
  with quiet.native_stderr_silenced():
    os.write(2, b"Premature end of JPEG file\n")
  assert capfd.readouterr().err == ""
