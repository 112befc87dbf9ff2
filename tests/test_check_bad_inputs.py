"""tools/check_bad_inputs.py judges a command's error form: exit status 2, one last
`error:` line, no traceback, nothing written.  Judged here on stand-in commands (no
TensorFlow); the real cases need a demo folder and run by hand (README, "Commands")."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def checker():
  spec = importlib.util.spec_from_file_location("check_bad_inputs",
                                                ROOT / "tools" / "check_bad_inputs.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture
def demo(tmp_path):
  """A stand-in demo folder: the names the fixtures read."""
  folder = tmp_path / "demo"
  (folder / "data" / "test").mkdir(parents=True)
  (folder / "data" / "test" / "strip.jpg").write_bytes(b"jpeg")
  (folder / "gcn_checkpoint").mkdir()
  (folder / "gcn_checkpoint" / "gcn.json").write_text("{}")
  return folder


def python(code):
  return ("-c", code)


@pytest.mark.parametrize("code, passed, said", [
    ("import sys; print('error: x: bad', file=sys.stderr); sys.exit(2)", True, "error: x: bad"),
    ("import sys; print('skipped: a: no face'); print('error: b: none usable'); sys.exit(2)",
     True, "error: b: none usable"),
    ("import sys; sys.stderr.write('files:   0%|   | 0/1 [00:00<?, ?file/s]\\rskipped: a: no face\\n'"
     "'error: b: none usable\\n'); sys.exit(2)", True, "error: b: none usable"),
    ("import sys; print('error: x: bad'); sys.exit(1)", False, "exit status 1"),
    ("import sys; sys.exit(2)", False, "no error line"),
    ("import sys; print('error: a'); print('error: b'); sys.exit(2)", False, "2 error lines"),
    ("import sys; print('loading...'); print('error: x'); sys.exit(2)", False, "other output"),
    ("raise ValueError('x')", False, "exit status 1"),
])
def test_judges_the_output(checker, demo, code, passed, said):
  ok, what, _ = checker.run_case(checker.Case("stand-in", python(code)), demo)
  assert ok is passed and said in what


def test_a_written_file_fails_the_case(checker, demo):
  code = ("import sys, pathlib; pathlib.Path(sys.argv[1], 'half.obj').write_text('v');"
          "print('error: x: bad'); sys.exit(2)")
  ok, what, _ = checker.run_case(checker.Case("writes", python(code) + ("{tmp}",)), demo)
  assert not ok and "wrote" in what and "half.obj" in what
  code = ("import sys, pathlib; pathlib.Path(sys.argv[1], 'gcn_checkpoint', 'gcn.json')"
          ".write_text('changed'); print('error: x: bad'); sys.exit(2)")
  ok, what, _ = checker.run_case(checker.Case("changes", python(code) + ("{demo}",)), demo)
  assert not ok and "gcn.json" in what


def test_cases_are_named_once_and_fill_in(checker, demo):
  names = [case.name for case in checker.CASES]
  assert len(names) == len(set(names))
  for case in checker.CASES:
    for part in case.argv:
      part.format(tmp="T", demo="D")   # only these two placeholders
  listed = subprocess.run([sys.executable, str(ROOT / "tools" / "check_bad_inputs.py"),
                           "--list"], capture_output=True, text=True, check=True)
  assert listed.stdout.splitlines() == names


def test_not_a_demo_folder_is_one_line(tmp_path):
  done = subprocess.run([sys.executable, str(ROOT / "tools" / "check_bad_inputs.py"),
                         "--demo", str(tmp_path)], capture_output=True, text=True)
  assert done.returncode == 2 and done.stdout == ""
  assert done.stderr.startswith(f"error: {tmp_path}: not a demo output folder")
  assert len(done.stderr.splitlines()) == 1
