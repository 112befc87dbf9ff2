"""`import shared` turns TensorFlow's oneDNN kernels on unless TF_ENABLE_ONEDNN_OPTS is set."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = ("import shared, os; import tensorflow as tf; "
         "from tensorflow.python.util import _pywrap_util_port as port; "
         "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], port.IsMklEnabled())")


def probe(value):
  env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
  if value is not None:
    env["TF_ENABLE_ONEDNN_OPTS"] = value
  env["TF_CPP_MIN_LOG_LEVEL"] = "3"
  out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True,
                       text=True, check=True)
  return out.stdout.split()


@pytest.mark.parametrize("value, expected", [(None, ["1", "True"]), ("0", ["0", "False"])])
def test_onednn_on_by_default_and_the_user_setting_kept(value, expected):
  assert probe(value) == expected
