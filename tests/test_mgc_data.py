"""The strip format, landmark files, list files, tf.data pipeline and the synthetic generator."""

import hashlib
from pathlib import Path
import shutil

import cv2
import numpy as np
import pytest

from mgc_face import data as data_lib
from mgc_face import synthetic
from shared.model.camera import Camera, project
from shared.errors import InputError


def test_strip_split_and_join_round_trip():
  views = np.stack([np.full((224, 224, 1), v, np.float32) for v in (1.0, 2.0, 3.0)])
  strip = data_lib.join_strip(views)
  assert strip.shape == (224, 672, 1)
  # Strip layout is source1 | target | source2; views are target, source1, source2.
  assert strip[0, 0, 0] == 2.0 and strip[0, 300, 0] == 1.0 and strip[0, 500, 0] == 3.0
  np.testing.assert_array_equal(data_lib.split_strip(strip), views)


def test_landmark_file_round_trip_and_mgcnet_cam_layout(tmp_path):
  rng = np.random.default_rng(0)
  points = rng.uniform(0, 224, (3, 68, 2)).astype(np.float32)
  path = tmp_path / "a_lm.txt"
  data_lib.write_landmarks(path, points)
  np.testing.assert_allclose(data_lib.read_landmarks(path), points, atol=1e-3)
  # MGCNet _cam.txt: 3 lines of 9 intrinsics, then per view a header and 68 "x,y".
  lines = ["4700,0,112,0,4700,112,0,0,1"] * 3
  for view in points:
    lines.append("68")
    lines += [f"{x},{y}" for x, y in view]
  cam = tmp_path / "b_cam.txt"
  cam.write_text("\n".join(lines) + "\n")
  np.testing.assert_allclose(data_lib.read_landmarks(cam), points, atol=1e-3)


def test_bad_landmark_files_give_one_line_errors(tmp_path):
  with pytest.raises(InputError, match="landmark file not found"):
    data_lib.read_landmarks(tmp_path / "missing_lm.txt")
  short = tmp_path / "short_lm.txt"
  short.write_text("view target\n" + "1,2\n" * 67)
  with pytest.raises(InputError, match=r"short_lm.txt: expected 204 landmark lines .* found 67"):
    data_lib.read_landmarks(short)


def test_wrong_size_strip_is_refused(tmp_path):
  path = tmp_path / "bad.jpg"
  cv2.imwrite(str(path), np.zeros((224, 448, 3), np.uint8))
  with pytest.raises(InputError, match=r"bad.jpg: strip is 448x224, expected 672x224"):
    data_lib.read_strip(path)


def test_list_file_reports_bad_lines(tmp_path):
  path = tmp_path / "train.txt"
  path.write_text("2 a 000\n# comment\n\n7 b 001\n0 c\n0 d 002\n")
  records, problems = data_lib.read_list(path)
  assert records == [data_lib.Record(2, "a", "000"), data_lib.Record(0, "d", "002")]
  assert len(problems) == 2 and "train.txt:4" in problems[0] and "train.txt:5" in problems[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, ict_model):
  root = tmp_path_factory.mktemp("synth")
  config = synthetic.SyntheticConfig(mono_fraction=1.0)
  info = synthetic.generate(ict_model, root, identities=3, test_identities=1, seed=5,
                            config=config, progress=False)
  return root, info


def tree_digest(root):
  digest = hashlib.sha256()
  for path in sorted(p for p in root.rglob("*") if p.is_file()):
    digest.update(str(path.relative_to(root)).encode())
    digest.update(path.read_bytes())
  return digest.hexdigest()


def test_generator_layout_and_ground_truth(dataset, ict_model):
  root, info = dataset
  assert info["train_samples"] == 4 and info["test_samples"] == 1   # 2 triplets + 2 monocular.
  records, problems = data_lib.read_list(root / "train.txt")
  assert not problems and sorted(r.flag for r in records) == [0, 0, 2, 2]
  test_records, _ = data_lib.read_list(root / "test.txt")
  assert [r.subfolder for r in test_records] == ["id00002"]
  assert (root / "heldout" / "id00002_000.png").exists()
  record = test_records[0]
  strip = data_lib.read_strip(record.image_path(root))
  skin = data_lib.read_strip(record.skin_path(root), grayscale=True)
  assert strip.shape == (3, 224, 224, 3) and skin.shape == (3, 224, 224, 1)
  target = data_lib.read_strip_target(record.image_path(root))
  np.testing.assert_array_equal(target, strip[0])
  assert data_lib.read_skin_target(record.skin_path(root)).shape == (224, 224, 1)
  gt = synthetic.read_ground_truth(record.gt_path(root))
  assert str(gt["source_hash"]) == ict_model.source_hash
  assert gt["posed"].shape == (3, ict_model.num_vertices, 3)
  # Landmarks are the projections of the posed landmark vertices.
  posed_lm = gt["posed"][:, ict_model.landmarks68]
  np.testing.assert_allclose(project(posed_lm, Camera()).numpy(), gt["landmarks2d"], atol=1e-2)
  noisy = data_lib.read_landmarks(record.landmark_path(root))
  assert 0.2 < np.abs(noisy - gt["landmarks2d"]).mean() < 2.0
  # Views differ in yaw within +-60 degrees; the target is between the sources.
  yaws = np.degrees(gt["coefficients"][:, -33 + 1])   # rotation = [-33:-30]: pitch, yaw, roll.
  assert np.all(np.abs(yaws) <= 60.0) and yaws[1] < yaws[0] < yaws[2]
  # The face is drawn where the skin mask says, and the views are distinct.
  assert skin[0].mean() > 0.1
  assert np.abs(strip[0] - strip[1]).mean() > 0.05


def test_generator_is_deterministic_for_a_seed(tmp_path, ict_model):
  config = synthetic.SyntheticConfig()
  a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
  for root, seed in ((a, 9), (b, 9), (c, 10)):
    synthetic.generate(ict_model, root, identities=2, test_identities=1, seed=seed, config=config,
                       progress=False)
  assert tree_digest(a) == tree_digest(b)
  assert tree_digest(a) != tree_digest(c)


def test_pipeline_skips_bad_records_and_batches_statically(dataset, tmp_path, capsys):
  root, _ = dataset
  bad = tmp_path / "bad"
  shutil.copytree(root, bad)
  records, _ = data_lib.read_list(bad / "train.txt")
  triplets = [r for r in records if r.flag == 2]
  # One strip of the wrong size and one missing landmark file.
  cv2.imwrite(str(triplets[0].image_path(bad)), np.zeros((224, 600, 3), np.uint8))
  (triplets[1].landmark_path(bad)).unlink()
  ds, count = data_lib.make_dataset(bad, "train", batch_size=2, shuffle=False, repeat=False)
  err = capsys.readouterr().err
  assert count == 2
  assert "strip is 600x224, expected 672x224" in err and "landmark file not found" in err
  batches = list(ds)
  assert len(batches) == 1
  batch = batches[0]
  assert batch.images.shape == (2, 3, 224, 224, 3) and batch.skins.shape == (2, 3, 224, 224, 1)
  assert batch.landmarks.shape == (2, 3, 68, 2)
  np.testing.assert_array_equal(batch.flags.numpy(), [0.0, 0.0])
  strip = data_lib.read_strip(records[1].image_path(bad))
  np.testing.assert_allclose(batch.images[0].numpy(), strip, atol=1e-6)


def test_pipeline_with_no_usable_record_is_an_input_error(tmp_path):
  (tmp_path / "train.txt").write_text("2 nothing 000\n")
  with pytest.raises(InputError, match="no usable records"):
    data_lib.make_dataset(tmp_path, "train", batch_size=1)


def test_ambiguous_view_setting_spreads_the_sources():
  """A frontal target with sources far to each side (the multi-view probe's setting)."""
  config = synthetic.SyntheticConfig(target_yaw=0.0, source_yaw_gap=45.0, max_yaw=80.0)
  rng = np.random.default_rng(0)
  yaws = np.degrees(np.stack([synthetic.sample_poses(rng, config)[0][:, 1] for _ in range(200)]))
  assert np.all(yaws[:, 0] == 0.0)
  assert np.all(yaws[:, 1] <= -45.0) and np.all(yaws[:, 2] >= 45.0)
  assert np.all(np.abs(yaws) <= 80.0)


def test_dataset_tool_refuses_sources_beyond_the_yaw_range(tmp_path, capsys):
  import importlib.util
  spec = importlib.util.spec_from_file_location(
      "make_synthetic_dataset", Path(__file__).resolve().parent.parent / "tools" /
      "make_synthetic_dataset.py")
  tool = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tool)
  out = tmp_path / "never"
  code = tool.main(["--output", str(out), "--target-yaw", "30", "--source-yaw-gap", "40",
                    "--quiet"])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(err) == 1 and err[0].startswith("error: --target-yaw 30")
  assert not out.exists()
