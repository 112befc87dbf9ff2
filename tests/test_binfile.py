"""The .bin format (gcn_face.binfile) and tools/create_bin.py.

Exact round trips, the tf.data reader (shuffle, shard), and one clear line
for bad input: truncated file, wrong magic, headerless original format,
mixed image sizes, an image with neither alpha nor coefficients.
"""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from gcn_face import binfile
from shared.errors import InputError

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
import create_bin  # noqa: E402

SEED = 0
SIZE = 16
COUNT = 7


def random_rgba(rng, count=COUNT, size=SIZE):
  return [rng.integers(0, 256, (size, size, 4), dtype=np.uint8) for _ in range(count)]


def write_png(path, rgba):
  """RGBA (or RGB) uint8 -> file via OpenCV's BGR(A) order."""
  order = [2, 1, 0, 3] if rgba.shape[2] == 4 else [2, 1, 0]
  assert cv2.imwrite(str(path), rgba[..., order])


@pytest.fixture()
def rng():
  return np.random.default_rng(SEED)


def test_round_trip_is_exact_for_uint8_and_float32(tmp_path, rng):
  records = random_rgba(rng)
  names = [f"img{i}.png" for i in range(COUNT)]
  binfile.write_bin(tmp_path / "a.bin", records, names, {"skipped": [["bad.png", "why"]]})
  reader = binfile.BinReader(tmp_path / "a.bin")
  assert len(reader) == COUNT and reader.names == names
  assert reader.skipped == [("bad.png", "why")]
  for i, record in enumerate(records):
    assert reader[i].dtype == np.uint8
    np.testing.assert_array_equal(reader[i], record)
  reader.verify()
  floats = [rng.random((SIZE, SIZE, 4), dtype=np.float32) for _ in range(3)]
  binfile.write_bin(tmp_path / "f.bin", floats, ["a", "b", "c"])
  reader = binfile.BinReader(tmp_path / "f.bin")
  for i, record in enumerate(floats):
    np.testing.assert_array_equal(reader[i], record)
  image, alpha = reader.image_alpha(2)
  np.testing.assert_array_equal(image, floats[2][..., :3])
  np.testing.assert_array_equal(alpha, floats[2][..., 3:])
  with pytest.raises(IndexError):
    reader[3]


def test_header_layout_and_uint8_scaling(tmp_path, rng):
  records = random_rgba(rng, 2)
  binfile.write_bin(tmp_path / "a.bin", records, ["x", "y"])
  raw = (tmp_path / "a.bin").read_bytes()
  assert raw[:8] == binfile.MAGIC
  header = binfile.HEADER.unpack(raw[:binfile.HEADER_SIZE])
  assert header[1:7] == (binfile.VERSION, 1, 2, SIZE, SIZE, 4)
  np.testing.assert_array_equal(
      np.frombuffer(raw[64:64 + SIZE * SIZE * 4], np.uint8).reshape(SIZE, SIZE, 4), records[0])
  image, alpha = binfile.BinReader(tmp_path / "a.bin").image_alpha(1)
  np.testing.assert_allclose(image, records[1][..., :3] / 255.0, atol=1e-7)
  np.testing.assert_allclose(alpha, records[1][..., 3:] / 255.0, atol=1e-7)


def test_truncated_file_is_refused(tmp_path, rng):
  binfile.write_bin(tmp_path / "a.bin", random_rgba(rng), [str(i) for i in range(COUNT)])
  raw = (tmp_path / "a.bin").read_bytes()
  for cut in (len(raw) - 1, len(raw) // 2, 40):
    (tmp_path / "t.bin").write_bytes(raw[:cut])
    with pytest.raises(InputError, match="truncated"):
      binfile.BinReader(tmp_path / "t.bin")


def test_wrong_magic_and_headerless_original_are_refused(tmp_path, rng):
  binfile.write_bin(tmp_path / "a.bin", random_rgba(rng, 2), ["x", "y"])
  raw = bytearray((tmp_path / "a.bin").read_bytes())
  raw[:8] = b"NOTABIN!"
  (tmp_path / "m.bin").write_bytes(bytes(raw))
  with pytest.raises(InputError, match="not a face3d .bin file"):
    binfile.BinReader(tmp_path / "m.bin")
  (tmp_path / "legacy.bin").write_bytes(np.zeros((224, 224, 4), np.float32).tobytes())
  with pytest.raises(InputError, match="headerless 3D-Face-GCNs"):
    binfile.BinReader(tmp_path / "legacy.bin")


def test_damaged_record_is_found_by_verify(tmp_path, rng):
  binfile.write_bin(tmp_path / "a.bin", random_rgba(rng, 3), ["x", "y", "z"])
  raw = bytearray((tmp_path / "a.bin").read_bytes())
  raw[binfile.HEADER_SIZE + SIZE * SIZE * 4 + 5] ^= 0xFF  # A byte of record 1.
  (tmp_path / "d.bin").write_bytes(bytes(raw))
  with pytest.raises(InputError, match=r"record 1 \(y\) is damaged"):
    binfile.BinReader(tmp_path / "d.bin").verify()


def test_dataset_shuffles_and_shards(tmp_path, rng):
  records = random_rgba(rng)
  binfile.write_bin(tmp_path / "a.bin", records, [str(i) for i in range(COUNT)])
  reader = binfile.BinReader(tmp_path / "a.bin")
  shards = []
  for worker in range(2):
    ds = reader.dataset(shuffle=True, seed=SEED, num_workers=2, worker_index=worker)
    items = list(ds.as_numpy_iterator())
    for item in items:
      np.testing.assert_allclose(item["image"], records[item["index"]][..., :3] / 255.0,
                                 atol=1e-7)
      assert item["alpha"].shape == (SIZE, SIZE, 1)
    shards.append(sorted(int(item["index"]) for item in items))
  assert shards == [[0, 2, 4, 6], [1, 3, 5]]
  order = [int(i) for i in reader.dataset(batch_size=COUNT, seed=SEED)
           .as_numpy_iterator().next()["index"]]
  assert sorted(order) == list(range(COUNT)) and order != list(range(COUNT))


def test_failed_write_leaves_nothing(tmp_path, rng):
  with pytest.raises(ValueError, match="does not match"):
    with binfile.BinWriter(tmp_path / "a.bin", SIZE, SIZE, 4) as writer:
      writer.append(random_rgba(rng, 1)[0], "ok")
      writer.append(np.zeros((SIZE, SIZE, 3), np.uint8), "bad")
  assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------
# tools/create_bin.py


def test_create_bin_packs_rgba_folder_and_lists_refused(tmp_path, rng, capsys):
  records = random_rgba(rng, 3)
  for i, record in enumerate(records):
    write_png(tmp_path / f"face{i}.png", record)
  write_png(tmp_path / "plain.png", records[0][..., :3])  # No alpha, no coefficients.
  (tmp_path / "broken.png").write_bytes(b"not an image")
  out = tmp_path / "out" / "faces.bin"
  assert create_bin.main(["--input", str(tmp_path), "--output", str(out)]) == 0
  reader = binfile.BinReader(out)
  assert reader.names == ["face0.png", "face1.png", "face2.png"]
  for i, record in enumerate(records):
    np.testing.assert_array_equal(reader[i], record)
  refused = dict(reader.skipped)
  assert "no alpha channel and no coefficients file" in refused["plain.png"]
  assert "cannot decode image" in refused["broken.png"]
  printed = capsys.readouterr().out
  assert printed.index("skipped 2 input(s)") < printed.index("plain.png: no alpha")


def test_create_bin_refuses_when_nothing_has_alpha(tmp_path, rng, capsys):
  write_png(tmp_path / "plain.png", random_rgba(rng, 1)[0][..., :3])
  out = tmp_path / "x.bin"
  assert create_bin.main(["--input", str(tmp_path), "--output", str(out)]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and err.count("\n") == 1
  assert "no alpha channel and no coefficients file" in err
  assert not out.exists()


def test_create_bin_mixed_sizes_error_then_resize(tmp_path, rng, capsys):
  write_png(tmp_path / "a.png", random_rgba(rng, 1, SIZE)[0])
  write_png(tmp_path / "b.png", random_rgba(rng, 1, SIZE * 2)[0])
  out = tmp_path / "out.bin"
  assert create_bin.main(["--input", str(tmp_path), "--output", str(out)]) == 2
  err = capsys.readouterr().err
  assert "mixed sizes: b.png is 32x32 but a.png is 16x16; pass --size" in err
  assert err.count("\n") == 1 and not out.exists()
  assert create_bin.main(["--input", str(tmp_path), "--output", str(out), "--size", "8",
                          "--dtype", "float32"]) == 0
  reader = binfile.BinReader(out)
  assert (reader.height, reader.width, reader.dtype) == (8, 8, np.float32)


def test_create_bin_reads_strip_datasets(tmp_path, rng):
  strips = rng.integers(0, 256, (2, SIZE, 3 * SIZE, 3), dtype=np.uint8)
  skins = np.zeros((2, SIZE, 3 * SIZE, 3), np.uint8)
  skins[:, 4:12, SIZE + 2:2 * SIZE - 2] = 255
  (tmp_path / "seq").mkdir()
  lines = []
  for i in range(2):
    write_png(tmp_path / "seq" / f"{i:04d}.png", strips[i])
    write_png(tmp_path / "seq" / f"{i:04d}_skin.png", skins[i])
    lines.append(f"1 seq {i:04d}")
  lines.append("1 seq 0009")  # Missing files: skipped with a reason.
  (tmp_path / "test.txt").write_text("\n".join(lines) + "\n")
  out = tmp_path / "t.bin"
  count, skipped = create_bin.pack(tmp_path, out, split="test")
  assert count == 2 and skipped[0][0] == "seq/0009" and "not found" in skipped[0][1]
  reader = binfile.BinReader(out)
  for i in range(2):
    np.testing.assert_array_equal(reader[i][..., :3], strips[i][:, SIZE:2 * SIZE])
    np.testing.assert_array_equal(reader[i][..., 3], skins[i][:, SIZE:2 * SIZE, 0])
  count, _ = create_bin.pack(tmp_path, out, split="test", all_views=True)
  reader = binfile.BinReader(out)
  assert count == 6 and reader.names[:3] == ["seq/0000", "seq/0000#0", "seq/0000#2"]
  np.testing.assert_array_equal(reader[1][..., :3], strips[0][:, :SIZE])
  np.testing.assert_array_equal(reader[2][..., :3], strips[0][:, 2 * SIZE:])


def test_create_bin_masks_from_coefficients(tmp_path, ict_model):
  """An RGB crop with a coefficients file gets the projected skin region as alpha."""
  from shared.model.coeffs import CoeffLayout
  layout = CoeffLayout.for_model(ict_model)
  size = 224
  write_png(tmp_path / "face.png", np.full((size, size, 3), 128, np.uint8))
  np.savez(tmp_path / "face_coeffs.npz", coeffs=np.zeros(layout.size, np.float32))
  count, skipped = create_bin.pack(tmp_path, tmp_path / "c.bin")
  assert count == 1 and not skipped
  alpha = binfile.BinReader(tmp_path / "c.bin")[0][..., 3]
  assert set(np.unique(alpha)) == {0, 255}
  # The frontal mean face's skin covers the image centre, not the corners.
  assert alpha[size // 2, size // 2] == 255 and alpha[0, 0] == 0
  assert 0.1 < (alpha > 0).mean() < 0.6


def test_create_bin_cli_one_line_for_missing_input(tmp_path):
  result = subprocess.run([sys.executable, str(REPO / "tools" / "create_bin.py"), "--input",
                           str(tmp_path / "nope"), "--output", str(tmp_path / "x.bin")],
                          capture_output=True, text=True)
  assert result.returncode == 2
  assert result.stderr.strip() == f"error: {tmp_path / 'nope'}: input folder not found"


def test_landmarks_round_trip_and_files_without_them_read_as_before(tmp_path, rng):
  """Per-record landmarks (or none) survive the trailer; a file without any has no
  'landmarks' key at all (the pre-landmark layout, version 1) and reads as before."""
  import json
  records = random_rgba(rng, 3)
  points = [rng.uniform(0, SIZE, (68, 2)), None, rng.uniform(0, SIZE, (68, 2))]
  path = tmp_path / "lm.bin"
  binfile.write_bin(path, records, ["a", "b", "c"], landmarks=points)
  reader = binfile.BinReader(path)
  np.testing.assert_allclose(reader.landmarks[0], points[0], atol=1e-3)
  np.testing.assert_allclose(reader.landmarks[2], points[2], atol=1e-3)
  assert np.isnan(reader.landmarks[1]).all()
  assert reader.has_landmarks([0, 2]) and not reader.has_landmarks()
  batch = next(iter(reader.dataset(3, shuffle=False)))
  np.testing.assert_allclose(batch["landmarks"].numpy()[2], points[2], atol=1e-3)
  plain = tmp_path / "plain.bin"
  binfile.write_bin(plain, records, ["a", "b", "c"])
  raw = plain.read_bytes()
  header = binfile.HEADER.unpack(raw[:binfile.HEADER_SIZE])
  assert header[1] == 1  # version unchanged
  assert "landmarks" not in json.loads(raw[-header[-1]:].decode())
  reader = binfile.BinReader(plain)
  assert reader.landmarks is None and not reader.has_landmarks()
  assert set(next(iter(reader.dataset(3, shuffle=False)))) == {"index", "image", "alpha"}


@pytest.mark.parametrize("bad", [[[1.0, 2.0]] * 3, "x", [[[1.0, 2.0]] * 67] * 3,
                                 [[[1.0, float("nan")]] * 68] * 3])
def test_damaged_landmarks_are_refused_with_one_line(tmp_path, rng, bad):
  path = tmp_path / "bad.bin"
  with binfile.BinWriter(path, SIZE, SIZE, 4) as writer:
    writer.metadata["landmarks"] = bad
    for i, record in enumerate(random_rgba(rng, 3)):
      writer.append(record, f"r{i}")
  with pytest.raises(InputError, match="damaged trailer") as error:
    binfile.BinReader(path)
  assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_create_bin_packs_each_views_landmarks_and_scales_them(tmp_path, rng):
  """_lm.txt (target, source1, source2) goes to records NAME, NAME#0 and NAME#2;
  a strip without the file gets none; --size scales the points with the image."""
  from shared.io.landmark_file import write_landmarks
  (tmp_path / "seq").mkdir()
  for i in range(2):
    write_png(tmp_path / "seq" / f"{i:04d}.png",
              rng.integers(0, 256, (SIZE, 3 * SIZE, 3), dtype=np.uint8))
    write_png(tmp_path / "seq" / f"{i:04d}_skin.png", np.full((SIZE, 3 * SIZE, 3), 255, np.uint8))
  views = rng.uniform(0, SIZE, (3, 68, 2)).astype(np.float32)
  write_landmarks(tmp_path / "seq" / "0000_lm.txt", views)
  (tmp_path / "test.txt").write_text("1 seq 0000\n1 seq 0001\n")
  out = tmp_path / "t.bin"
  create_bin.pack(tmp_path, out, split="test", all_views=True)
  reader = binfile.BinReader(out)
  assert reader.names[:3] == ["seq/0000", "seq/0000#0", "seq/0000#2"]
  for record, view in ((0, 0), (1, 1), (2, 2)):
    np.testing.assert_allclose(reader.landmarks[record], views[view], atol=2e-3)
  assert np.isnan(reader.landmarks[3:]).all()
  create_bin.pack(tmp_path, out, size=2 * SIZE, split="test")
  np.testing.assert_allclose(binfile.BinReader(out).landmarks[0], 2 * views[0], atol=4e-3)
