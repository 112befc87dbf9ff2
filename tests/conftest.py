"""Test set-up: quiet TensorFlow, import from the repo root, locate data."""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def data_dir():
  """The read-only data folder (../shared or FACE3D_DATA_DIR); fails clearly if absent."""
  from shared.paths import find_data_dir
  return find_data_dir()


@pytest.fixture(scope="session")
def ict_model():
  """The default ICT face model (session-cached)."""
  from shared.face_model import load_face_model
  return load_face_model()
