"""The kernel build: cached, safe with concurrent builders, clear without a compiler."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ("import sys; sys.path.insert(0, %r); import shared.rasterizer as r; "
         "print(r.library_path()); r.load()" % str(ROOT))


def _env(cache, **extra):
  env = dict(os.environ, FACE3D_CACHE_DIR=str(cache), TF_CPP_MIN_LOG_LEVEL="2")
  env.update(extra)
  return env


def test_two_processes_build_once_and_both_load(tmp_path):
  procs = [subprocess.Popen([sys.executable, "-c", BUILD], env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for _ in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  assert all(p.returncode == 0 for p in procs), outs
  paths = {o[0].strip().splitlines()[-1] for o in outs}
  assert len(paths) == 1
  libs = list(tmp_path.rglob("*.so"))
  assert [p.name for p in libs] == ["rasterizer_op.so"]  # No stray temporary files.
  builds = sum("building the tensorflow-graphics CPU kernel" in o[1] for o in outs)
  assert builds == 1


def test_missing_compiler_is_one_clear_line(tmp_path):
  code = ("import sys; sys.path.insert(0, %r)\n"
          "from shared.errors import InputError\nimport shared.rasterizer as r\n"
          "try:\n  r.library_path()\nexcept InputError as e:\n  print('ERR', e)\n" % str(ROOT))
  out = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path, CXX="no-such-g++"),
                       capture_output=True, text=True, timeout=300)
  lines = [line for line in out.stdout.splitlines() if line.startswith("ERR")]
  assert len(lines) == 1 and "no C++ compiler 'no-such-g++' found" in lines[0]
