"""Quiet output by default: no library log lines that are not for the user.

Every entry point (main.py, tools/*.py, bench/*.py, `python -m
shared.render.rasterizer`) calls `setup()` before anything imports TensorFlow.  It
hides:

- TensorFlow's C++ log lines (`I0000 ...`, `W0000 ...`, `E0000 ...` and
  absl's `WARNING: All log messages before absl::InitializeLog()`): with
  `TF_CPP_MIN_LOG_LEVEL=3` for the lines logged after start-up, and, for
  those written while `import tensorflow` runs (absl logs them before
  TensorFlow reads that variable), by filtering file descriptor 2 during
  that import only; any other line written then is passed through;
- TensorFlow's and absl's Python warnings (`WARNING:tensorflow`, AutoGraph's
  "could not transform") by setting their loggers to ERROR;
- OpenCV's own `[ERROR:0@...]` lines (the project reports unreadable images
  itself, see `shared.io.image_io`).

Progress bars (tqdm) and the project's own prints are untouched.
`FACE3D_VERBOSE=1` (or `--verbose` on main.py and tools/demo.py, which set
it for their subprocesses) brings every library line back.
"""

import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile

VERBOSE_ENV = "FACE3D_VERBOSE"
QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",   # C++ logs after start-up: fatal only.
    "AUTOGRAPH_VERBOSITY": "0",
    "OPENCV_LOG_LEVEL": "SILENT",
    # FFmpeg's own lines inside OpenCV (damaged video frames; read when the first video
    # is opened): AV_LOG_QUIET.
    "OPENCV_FFMPEG_LOGLEVEL": "-8",
}
# Lines dropped from what `import tensorflow` writes to fd 2.
# (absl's prefix: severity, MMDD, time, thread id, file:line]; the second line
# of TensorFlow's CPU-feature message.)
NATIVE_LOG_LINE = re.compile(r"^([IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\]|"
                             r"WARNING: All log messages before absl::InitializeLog|"
                             r"To enable the following instructions: .* rebuild TensorFlow)")
QUIET_MODULE = "tensorflow"
OPENCV_SILENT = 0  # cv2.utils.logging.LOG_LEVEL_SILENT (not exposed by every build)
PYTHON_LOGGERS = ("tensorflow", "absl", "h5py", "keras")


def verbose():
  """True when library logs are wanted (`FACE3D_VERBOSE` set and not 0)."""
  return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def setup(verbose_flag=False):
  """Silences library logs unless `verbose_flag` or `FACE3D_VERBOSE` is set.

  Call before TensorFlow is imported.  `verbose_flag=True` also sets
  `FACE3D_VERBOSE=1` so that subprocesses are verbose too.
  """
  if verbose_flag:
    os.environ[VERBOSE_ENV] = "1"
  if verbose():
    return
  for name, value in QUIET_ENV.items():
    os.environ.setdefault(name, value)
  if QUIET_MODULE in sys.modules:
    _quiet_python_loggers()
  elif not any(isinstance(f, _QuietImportFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _QuietImportFinder())
  quiet_opencv()


def quiet_opencv():
  """Stops OpenCV printing its own error lines (unless verbose)."""
  if verbose():
    return
  try:
    import cv2
    cv2.setLogLevel(OPENCV_SILENT)
  except (ImportError, AttributeError):
    pass


def _quiet_python_loggers():
  import logging
  for name in PYTHON_LOGGERS:
    logging.getLogger(name).setLevel(logging.ERROR)
  tf = sys.modules.get(QUIET_MODULE)
  if tf is not None and hasattr(tf, "autograph"):
    tf.autograph.set_verbosity(0)


def native_stderr_silenced():
  """Context: drops what native code writes to fd 2 meanwhile (unless verbose).

  For decoders that print their own warnings (libjpeg's "Premature end of
  JPEG file"); the project reports unreadable files itself.
  """
  return _FilteredStderr(keep=lambda line: verbose())


class _FilteredStderr:
  """Context: fd 2 goes to a temporary file; on exit, the kept lines go back.

  By default every line except native log lines (`NATIVE_LOG_LINE`) is kept.
  """

  def __init__(self, keep=None):
    self._keep = keep or (lambda line: not NATIVE_LOG_LINE.match(line))

  def __enter__(self):
    sys.stderr.flush()
    self._saved = os.dup(2)
    self._file = tempfile.TemporaryFile(mode="w+b")
    os.dup2(self._file.fileno(), 2)
    return self

  def __exit__(self, *exc):
    try:
      sys.stderr.flush()
    finally:
      os.dup2(self._saved, 2)
      os.close(self._saved)
    self._file.seek(0)
    text = self._file.read().decode(errors="replace")
    self._file.close()
    kept = [line for line in text.splitlines(keepends=True) if self._keep(line)]
    if kept:
      sys.stderr.write("".join(kept))
      sys.stderr.flush()
    return False


class _QuietLoader(importlib.abc.Loader):
  """Wraps TensorFlow's loader: runs its top-level import with fd 2 filtered."""

  def __init__(self, inner):
    self._inner = inner

  def create_module(self, spec):
    return self._inner.create_module(spec)

  def exec_module(self, module):
    for finder in [f for f in sys.meta_path if isinstance(f, _QuietImportFinder)]:
      sys.meta_path.remove(finder)  # Imported once per process; the hook's job is done.
    with _FilteredStderr():
      self._inner.exec_module(module)
    _quiet_python_loggers()

  def __getattr__(self, name):
    return getattr(self._inner, name)


class _QuietImportFinder(importlib.abc.MetaPathFinder):
  """Finds `tensorflow` with the normal finders and wraps its loader."""

  def find_spec(self, name, path=None, target=None):
    if name != QUIET_MODULE:
      return None
    spec = importlib.machinery.PathFinder.find_spec(name, path)
    if spec is not None and spec.loader is not None:
      spec.loader = _QuietLoader(spec.loader)
    return spec


def log_line(message):
  """Prints one line of ours on stderr, leaving a running tqdm progress bar intact."""
  from tqdm import tqdm
  tqdm.write(message, file=sys.stderr)
