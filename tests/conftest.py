"""Test set-up: quiet TensorFlow, import from the repo root, locate data.

Tests that need the data folder (AFLW2000 images, BFM topology) take the
`data_dir` fixture.  Without the folder they are skipped, with the folders
looked in as the reason; with `FACE3D_REQUIRE_DATA=1` (set by `.ci/run`) a
missing folder fails them instead, so CI never skips silently.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared import quiet  # noqa: E402

quiet.setup()  # As the command lines do: no library log lines (FACE3D_VERBOSE=1 for them).

import pytest  # noqa: E402


REQUIRE_DATA_ENV = "FACE3D_REQUIRE_DATA"
# Keras's `convert_to_numpy` calls np.array on TensorFlow variables, whose __array__ predates
# numpy 2's `copy` keyword; numpy warns from inside Keras when a model is saved.  Not ours to fix.
KERAS_NUMPY_COPY_WARNING = ("ignore:__array__ implementation doesn't accept a copy keyword"
                            ":DeprecationWarning")
# On Python 3.13, AutoGraph's gast passes its own keyword to the ast node constructors, which
# Python deprecates (for 3.15): about 22,000 lines per suite from TensorFlow's tracing.
GAST_KEYWORD_WARNING = "ignore::DeprecationWarning:gast.astn"


def pytest_configure(config):
  config.addinivalue_line("filterwarnings", KERAS_NUMPY_COPY_WARNING)
  config.addinivalue_line("filterwarnings", GAST_KEYWORD_WARNING)


@pytest.fixture(scope="session")
def data_dir():
  """The read-only data folder (FACE3D_DATA_DIR or ../shared); skips if absent.

  Fails instead of skipping when FACE3D_REQUIRE_DATA=1.
  """
  from shared.errors import InputError
  from shared.io.paths import find_data_dir
  try:
    return find_data_dir()
  except InputError as error:
    if os.environ.get(REQUIRE_DATA_ENV, "") not in ("", "0"):
      pytest.fail(f"{error} ({REQUIRE_DATA_ENV} is set)")
    pytest.skip(str(error))


@pytest.fixture(scope="session")
def ict_model():
  """The default ICT face model (session-cached)."""
  from shared.model.face_model import load_face_model
  return load_face_model()


@pytest.fixture(scope="session")
def script_json():
  """`run(script, *args)`: runs `python -c script args...` in its own process from the
  repository root and returns the JSON object of its last output line (asserting exit status
  0).  For tests that train the large presets: the memory goes back when the process ends."""
  import json
  import subprocess
  root = Path(__file__).resolve().parent.parent

  def run(script, *args, timeout=600):
    out = subprocess.run([sys.executable, "-c", script, *map(str, args)], cwd=root,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])
  return run


# MGC: a tiny synthetic dataset and a 2-step checkpoint, shared by the MGC test files.

@pytest.fixture(scope="session")
def mgc_dataset(tmp_path_factory, ict_model):
  """A synthetic MGC dataset: 2 training identities, 1 held out (tests/mgc_helpers.py)."""
  from mgc_face import synthetic
  root = tmp_path_factory.mktemp("mgc_synth")
  synthetic.generate(ict_model, root, identities=3, test_identities=1, seed=3, progress=False)
  return root


@pytest.fixture(scope="session")
def mgc_trained(mgc_dataset, tmp_path_factory, ict_model):
  """(checkpoint folder, result) after 2 single-view training steps of the test config."""
  from mgc_helpers import SINGLE_VIEW
  from mgc_face import train as train_lib
  ckpt = tmp_path_factory.mktemp("mgc_ckpt")
  result = train_lib.train(ict_model, SINGLE_VIEW, mgc_dataset, ckpt, steps=2, progress=False,
                           log=lambda message: None)
  return ckpt, result
