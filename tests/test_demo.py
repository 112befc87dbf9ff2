"""tools/demo.py: an earlier run's output folder is set aside, never anything else.

Every `make demo` trains afresh: a checkpoint written by another version of a
preset does not resume (found in session 31: after the `tiny` head changed, a
second `make demo` stopped at "cannot resume"), and a GCN checkpoint trained
on an earlier MGC coarse stage would be stale.
"""

import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo():
  spec = importlib.util.spec_from_file_location("demo_tool", REPO / "tools" / "demo.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def earlier_run(folder, marker):
  (folder / "mgc_checkpoint").mkdir(parents=True)
  (folder / "mgc_checkpoint" / "meta.json").write_text(marker)
  (folder / "train.bin").write_bytes(b"x")


def test_earlier_run_is_moved_to_previous(demo, tmp_path):
  out = tmp_path / "demo"
  earlier_run(out, "first")
  assert demo.set_aside_earlier_run(out) == tmp_path / "demo.previous"
  assert not out.exists()
  assert (tmp_path / "demo.previous" / "mgc_checkpoint" / "meta.json").read_text() == "first"
  earlier_run(out, "second")   # The run after: the older previous one goes.
  demo.set_aside_earlier_run(out)
  assert (tmp_path / "demo.previous" / "mgc_checkpoint" / "meta.json").read_text() == "second"


def test_absent_or_empty_folder_is_left(demo, tmp_path):
  assert demo.set_aside_earlier_run(tmp_path / "demo") is None
  (tmp_path / "demo").mkdir()
  assert demo.set_aside_earlier_run(tmp_path / "demo") is None
  assert (tmp_path / "demo").is_dir() and not (tmp_path / "demo.previous").exists()


@pytest.mark.parametrize("where", ["demo", "demo.previous"])
def test_folder_with_other_files_is_refused_and_kept(demo, tmp_path, where):
  out = tmp_path / "demo"
  earlier_run(out, "run")
  (tmp_path / where).mkdir(exist_ok=True)
  (tmp_path / where / "thesis.tex").write_text("mine")
  with pytest.raises(ValueError, match=f"{where}: holds files the demo does not write"):
    demo.set_aside_earlier_run(out)
  assert (tmp_path / where / "thesis.tex").read_text() == "mine"
  assert (out / "mgc_checkpoint" / "meta.json").read_text() == "run"


def test_file_in_place_of_the_folder_is_refused(demo, tmp_path):
  (tmp_path / "demo").write_text("not a folder")
  with pytest.raises(ValueError, match="exists and is not a folder"):
    demo.set_aside_earlier_run(tmp_path / "demo")


def test_outputs_name_every_folder_the_demo_writes(demo):
  # The step commands write under out/<name>: each name must be in OUTPUTS, or a second run
  # would refuse the first run's folder.
  source = (REPO / "tools" / "demo.py").read_text()
  written = set(re.findall(r'out / "([^"]+)"', source))
  assert written and written <= set(demo.OUTPUTS)


def test_last_lines_name_the_pictures_that_exist(demo, tmp_path):
  (tmp_path / "gallery").mkdir()
  (tmp_path / "gallery" / "gallery.png").write_bytes(b"")
  (tmp_path / "gcn_eval").mkdir()
  for name in ("id00085_000_eval.png", "id00084_000_eval.png"):
    (tmp_path / "gcn_eval" / name).write_bytes(b"")
  lines = demo.picture_lines(tmp_path)
  assert len(lines) == 2   # nothing for the folders that are not there
  assert str(tmp_path / "gallery" / "gallery.png") in lines[0]
  assert str(tmp_path / "gcn_eval" / "id00084_000_eval.png") in lines[1]   # the first, sorted
  assert "2 like it" in lines[1] and "like it" not in lines[0]
