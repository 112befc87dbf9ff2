"""Bad input never crashes: random and mutated bytes for every user-facing loader.

Each loader a user can point at a file gets (a) random bytes and (b) a valid
file of its kind with a few bytes flipped, inserted, deleted or the file cut
short.  It must load or raise `InputError` with a one-line message; anything
else (a traceback) fails, and so does any line a library prints to the
process's stderr itself (checked at the file-descriptor level with `capfd`).

Hypothesis runs derandomized (the same cases on every run) with a fixed
number of examples per loader, so CI is reproducible and the file takes
well under a minute.  Each test prints its number of cases (`pytest -s`).
"""

import json
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io as sio
import trimesh
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import InputError
from shared.io.paths import EMBEDDED_FACE_MODEL

EXAMPLES = 60   # Per loader and kind of input (random bytes, mutated file).
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])
RANDOM_BYTES = st.binary(min_size=0, max_size=2048)
ICT_MODES_KEPT = 2   # The fuzzed ICT npz keeps 2 identity and 2 expression modes (small).


def _mutate(data, original):
  """Draws a few edits of `original` (bytes): flip, insert, delete, truncate."""
  out = bytearray(original)
  for _ in range(data.draw(st.integers(1, 6), label="edits")):
    if not out:
      break
    op = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]), label="op")
    pos = data.draw(st.integers(0, len(out) - 1), label="pos")
    if op == "flip":
      out[pos] ^= data.draw(st.integers(1, 255), label="xor")
    elif op == "insert":
      out[pos:pos] = data.draw(st.binary(min_size=1, max_size=16), label="bytes")
    elif op == "delete":
      del out[pos:pos + data.draw(st.integers(1, 16), label="length")]
    else:
      del out[pos:]
  return bytes(out)


def _check(loader, content, name, capfd):
  """Writes `content` to a file called `name` and runs `loader(path)`."""
  with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / name
    path.write_bytes(content)
    try:
      loader(path)
    except InputError as error:
      message = str(error)
      assert message and "\n" not in message, repr(message)
  err = capfd.readouterr().err
  assert err == "", f"a library printed its own lines: {err[:500]!r}"


# --------------------------------------------------------------------------- valid samples


def _image_bytes(suffix):
  rgb = (np.random.default_rng(0).random((24, 32, 3)) * 255).astype(np.uint8)
  ok, encoded = cv2.imencode(suffix, rgb)
  assert ok
  return encoded.tobytes()


def _strip_bytes():
  strip = (np.random.default_rng(1).random((224, 672, 3)) * 255).astype(np.uint8)
  return cv2.imencode(".jpg", strip)[1].tobytes()


def _landmark_bytes():
  from mgc_face import data as data_lib
  points = np.random.default_rng(2).random((3, 68, 2)) * 224
  return data_lib.format_landmarks(points).encode()


def _npz_bytes(arrays):
  with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "x.npz"
    np.savez_compressed(path, **arrays)
    return path.read_bytes()


@pytest.fixture(scope="module")
def small_ict_npz():
  """The embedded ICT npz with few modes (same layout, a tenth of the size)."""
  with np.load(EMBEDDED_FACE_MODEL) as data:
    arrays = {k: data[k] for k in data.files}
  for key in ("id_basis", "exp_basis", "exp_names"):
    arrays[key] = arrays[key][:ICT_MODES_KEPT]
  return _npz_bytes(arrays)


@pytest.fixture(scope="module")
def project_npz(small_ict_npz):
  from shared.model.face_model import load_face_model
  with tempfile.TemporaryDirectory() as folder:
    ict = Path(folder) / "ict.npz"
    ict.write_bytes(small_ict_npz)
    model = load_face_model(ict)
    out = Path(folder) / "model.npz"
    model.save(out)
    return out.read_bytes()


@pytest.fixture(scope="module")
def bfm_mat():
  """A BFM_model_front.mat layout on a small sphere (loads as a face model)."""
  sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.9)
  v = len(sphere.vertices)
  rng = np.random.default_rng(3)
  mat = {"meanshape": np.asarray(sphere.vertices, np.float32).reshape(1, -1),
         "idBase": rng.normal(0, 1e-3, (3 * v, 3)).astype(np.float32),
         "exBase": rng.normal(0, 1e-3, (3 * v, 2)).astype(np.float32),
         "texBase": rng.normal(0, 5.0, (3 * v, 2)).astype(np.float32),
         "meantex": rng.uniform(100, 200, (1, 3 * v)).astype(np.float32),
         "tri": np.asarray(sphere.faces, np.int32) + 1,
         "keypoints": np.arange(1, 69, dtype=np.int32)[None]}
  with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "BFM_model_front.mat"
    sio.savemat(path, mat)
    return path.read_bytes()


@pytest.fixture(scope="module")
def sampling_npz():
  from shared.mesh import topology
  sphere = trimesh.creation.icosphere(subdivisions=2)
  topo = topology.build_topology(np.asarray(sphere.vertices, np.float32),
                                 np.asarray(sphere.faces, np.int32), (4,), source_hash="abc",
                                 progress=False)
  with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "sampling.npz"
    topology.save_topology(path, topo, "abc", (4,))
    return path.read_bytes()


@pytest.fixture(scope="module")
def bin_file():
  from gcn_face.binfile import write_bin
  rng = np.random.default_rng(4)
  records = (rng.random((2, 8, 8, 4)) * 255).astype(np.uint8)
  with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "x.bin"
    write_bin(path, records, ["a", "b"])
    return path.read_bytes()


# --------------------------------------------------------------------------- loaders


def load_images(path):
  from shared.io import image_io
  image_io.read_image(path)
  image_io.read_image_rgba(path)


def load_video(path):
  from shared.io import video_io
  video_io.video_info(path)
  for _ in video_io.read_frames(path):
    pass


def _video_bytes():
  from shared.io import video_io
  rng = np.random.default_rng(5)
  with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "clip.mp4"
    with video_io.video_writer(path, 10.0, (32, 24)) as write:
      for _ in range(3):
        write((rng.random((24, 32, 3)) * 255).astype(np.uint8))
    return path.read_bytes()


def load_face_model(path):
  from shared.model.face_model import load_face_model as load
  load(path)


def load_sampling(path):
  from shared.mesh.topology import load_topology
  load_topology(path)


def load_bin(path):
  from gcn_face.binfile import BinReader
  reader = BinReader(path)
  reader.verify()
  for i in range(len(reader)):
    reader.image_alpha(i)


def load_mgc_inputs(path):
  """An MGC strip / test-mode image, as the training data and test mode read it."""
  from mgc_face import data as data_lib
  from mgc_face import infer
  for loader in (data_lib.read_strip, data_lib.read_skin_target, infer.load_input_image):
    try:
      loader(path)
    except InputError as error:
      assert "\n" not in str(error)


def load_mgc_text(path):
  from mgc_face import data as data_lib
  data_lib.read_landmarks(path)
  data_lib.read_list(path)


def load_checkpoint_meta(path):
  """`path` is the metadata file; its folder is the checkpoint folder."""
  from gcn_face import checkpoint as gcn_checkpoint
  from mgc_face import checkpoint as mgc_checkpoint
  if path.name == "meta.json":
    mgc_checkpoint.read_meta(path.parent)
  else:
    gcn_checkpoint.read_meta(path.parent)


def _mgc_meta():
  return json.dumps({"kind": "face3d-mgc-checkpoint", "format_version": 1,
                     "face_model_hash": "abc", "config_name": "tiny", "config": {}}).encode()


def _gcn_meta():
  from gcn_face.config import GCNConfig
  return json.dumps({"kind": "face3d-gcn-checkpoint", "version": 1,
                     "config": json.loads(GCNConfig().to_json()), "step": 3}).encode()


CASES = {
    # name: (loader, file name, valid sample: bytes or fixture name)
    "png": (load_images, "photo.png", lambda: _image_bytes(".png")),
    "jpg": (load_images, "photo.jpg", lambda: _image_bytes(".jpg")),
    "ppm": (load_images, "photo.ppm", lambda: _image_bytes(".ppm")),
    "tif": (load_images, "photo.tif", lambda: _image_bytes(".tif")),
    "webp": (load_images, "photo.webp", lambda: _image_bytes(".webp")),
    "mp4": (load_video, "clip.mp4", _video_bytes),
    "ict_npz": (load_face_model, "ict.npz", "small_ict_npz"),
    "project_npz": (load_face_model, "model.npz", "project_npz"),
    "bfm_mat": (load_face_model, "BFM_model_front.mat", "bfm_mat"),
    "sampling_npz": (load_sampling, "sampling.npz", "sampling_npz"),
    "bin": (load_bin, "train.bin", "bin_file"),
    "mgc_strip": (load_mgc_inputs, "000001.jpg", _strip_bytes),
    "mgc_landmarks": (load_mgc_text, "000001_lm.txt", _landmark_bytes),
    "mgc_meta": (load_checkpoint_meta, "meta.json", _mgc_meta),
    "gcn_meta": (load_checkpoint_meta, "gcn.json", _gcn_meta),
}


def _report(label, cases):
  """Prints the case count (seen with `pytest -s`); at least half the examples ran."""
  print(f"\nfuzz {label}: {len(cases)} cases")
  assert len(cases) >= EXAMPLES // 2


def _sample(request, source):
  return request.getfixturevalue(source) if isinstance(source, str) else source()


@pytest.mark.parametrize("case", sorted(CASES))
def test_valid_sample_loads(case, request, capfd):
  loader, name, source = CASES[case]
  with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / name
    path.write_bytes(_sample(request, source))
    loader(path)   # The unmutated sample is a good file: no error at all.
  assert capfd.readouterr().err == ""


@pytest.mark.parametrize("case", sorted(CASES))
def test_random_bytes(case, capfd):
  loader, name, _ = CASES[case]

  cases = []

  @FUZZ
  @given(content=RANDOM_BYTES)
  def run(content):
    cases.append(1)
    _check(loader, content, name, capfd)

  run()
  _report(f"random bytes {case}", cases)


@pytest.mark.parametrize("case", sorted(CASES))
def test_mutated_file(case, request, capfd):
  loader, name, source = CASES[case]
  original = _sample(request, source)

  cases = []

  @FUZZ
  @given(data=st.data())
  def run(data):
    cases.append(1)
    _check(loader, _mutate(data, original), name, capfd)

  run()
  _report(f"mutated {case}", cases)
