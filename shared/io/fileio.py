"""Atomic file writing: never leave half a file behind."""

import contextlib
import os
import tempfile
from pathlib import Path


FILE_MODE = 0o666


def _umask():
  mask = os.umask(0)
  os.umask(mask)
  return mask


@contextlib.contextmanager
def atomic_path(path):
  """Yields a temporary path beside `path`; renames it over `path` on success.

  On an exception the temporary file is removed and `path` is untouched.
  The temporary name keeps the suffix so writers that infer the format from
  the extension (numpy, OpenCV, trimesh) still work.
  """
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix="." + path.stem + ".", suffix=".tmp" + path.suffix,
                             dir=path.parent)
  os.close(fd)
  try:
    yield Path(tmp)
    os.chmod(tmp, FILE_MODE & ~_umask())  # mkstemp creates 0600; use the usual mode.
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise


def write_bytes_atomic(path, data):
  """Writes `data` to `path` atomically."""
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())


def write_text_atomic(path, text):
  """Writes `text` (UTF-8) to `path` atomically."""
  write_bytes_atomic(path, text.encode("utf-8"))


def savez_atomic(path, **arrays):
  """`np.savez_compressed` to `path` atomically."""
  import numpy as np
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      np.savez_compressed(f, **arrays)
