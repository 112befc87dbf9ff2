"""The landmark cascade (mgc_face/cascade.py): descriptors, the closed-form stages, the file,
and its use by the inference path."""

import cv2
import numpy as np
import pytest
import tensorflow as tf

from mgc_face import augment
from mgc_face import cascade as cascade_lib
from shared.errors import InputError

SIDE = 96
DOTS = 3


def dot_images(count, seed):
  """Grey images with DOTS blurred bright dots; returns (images [N, S, S] uint8, centres
  [N, DOTS, 2] px, continuous coordinates with pixel centres at +0.5)."""
  rng = np.random.default_rng(seed)
  ys, xs = np.mgrid[0:SIDE, 0:SIDE] + 0.5
  images, centres = [], []
  for _ in range(count):
    image = np.full((SIDE, SIDE), 40.0)
    points = np.stack([rng.uniform(20, 76, DOTS), rng.uniform(20, 76, DOTS)], -1)
    for x, y in points:
      image += 180.0 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 2.5 ** 2))
    images.append(np.clip(image, 0, 255).astype(np.uint8))
    centres.append(points)
  return np.stack(images), np.stack(centres)


def test_features_are_one_hog_per_square_computed_alone():
  """Each descriptor is cv2's HOG of that point's square (with its one-sample margin) taken
  on its own, however the squares are stacked."""
  images, centres = dot_images(2, seed=0)
  half = 10.0
  ours = cascade_lib.features(images, centres, half)
  hog = cv2.HOGDescriptor((32, 32), (16, 16), (8, 8), (8, 8), 9)
  step = 2 * half / cascade_lib.PATCH
  for n in range(2):
    for k in range(DOTS):
      x, y = centres[n, k] - 0.5        # cv2: integer coordinates at pixel centres
      # Output pixel i (0..33) samples x - half + (i - 1 + 0.5) step.
      first = -half + (0.5 - cascade_lib.MARGIN) * step
      matrix = np.float32([[step, 0, x + first], [0, step, y + first]])
      square = cv2.warpAffine(images[n], matrix, (34, 34),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)
      alone = hog.compute(square, (32, 32), (0, 0), [(1, 1)]).ravel()
      np.testing.assert_allclose(ours[n, k], alone, atol=2e-2)
      assert np.abs(ours[n, k] - alone).mean() < 2e-3


def test_cascade_moves_points_onto_the_dots_of_new_images():
  train_images, train_truth = dot_images(300, seed=1)
  test_images, test_truth = dot_images(40, seed=2)
  rng = np.random.default_rng(3)

  def start(truth):
    return truth + rng.uniform(-4, 4, truth.shape)

  train_start, test_start = start(train_truth), start(test_truth)
  labels = train_truth + rng.normal(0, 0.5, train_truth.shape)
  cascade, trace = cascade_lib.fit(train_images, train_start, labels, (12.0, 8.0), ridge=1.0,
                                   step=7)
  assert cascade.weights.shape == (2, DOTS, 325, 2) and trace.shape == (2, 300, DOTS, 2)
  assert cascade.step == 7 and cascade.shape_basis.shape == (0, 2 * DOTS)
  refined = cascade.refine(None, test_start, grey_images=test_images)

  def error(points):
    return np.linalg.norm(points - test_truth, axis=-1).mean()

  assert error(test_start) > 2.5
  assert error(refined) < 0.5 * error(test_start)


def pair_images(count, seed):
  """Two blurred dots, left and right, and a third point at their midpoint where nothing is
  drawn: (images [N, S, S] uint8, points [N, 3, 2] px)."""
  rng = np.random.default_rng(seed)
  ys, xs = np.mgrid[0:SIDE, 0:SIDE] + 0.5
  images, points = [], []
  for _ in range(count):
    left = np.array([22.0, 48.0]) + rng.uniform(-4, 4, 2)
    right = np.array([74.0, 48.0]) + rng.uniform(-4, 4, 2)
    image = np.full((SIDE, SIDE), 40.0)
    for x, y in (left, right):
      image += 180.0 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 2.5 ** 2))
    images.append(np.clip(image, 0, 255).astype(np.uint8))
    points.append([left, right, 0.5 * (left + right)])
  return np.stack(images), np.array(points)


def test_joint_stage_places_a_point_its_own_square_cannot_see():
  """The start points err together (one shift per image, as the head's points lean
  together); the midpoint has nothing in its square, so the per-landmark stages cannot
  place it, and the joint stage moves it with the two dots."""
  train_images, train_truth = pair_images(400, seed=12)
  test_images, test_truth = pair_images(60, seed=13)
  rng = np.random.default_rng(14)

  def start(truth):
    shift = rng.uniform(-4, 4, (len(truth), 1, 2))
    return truth + shift + rng.uniform(-0.5, 0.5, truth.shape)

  train_start, test_start = start(train_truth), start(test_truth)
  errors = {}
  for dims in (0, 16):
    cascade, _ = cascade_lib.fit(train_images, train_start, train_truth, (12.0, 8.0), ridge=1.0,
                                 joint_dims=dims, joint_ridge=1e-2)
    assert (cascade.joint is None) == (dims == 0)
    refined = cascade.refine(None, test_start, grey_images=test_images)
    errors[dims] = np.linalg.norm(refined - test_truth, axis=-1).mean(0)   # [3]
  assert errors[0][2] > 2.5                      # Its own square tells the cascade nothing.
  assert errors[16][2] < 0.5 * errors[0][2]
  assert errors[16][:2].max() < 1.5              # The dots stay found.


def test_shape_space_keeps_its_shapes_and_removes_noise_off_it():
  """Label sets made from a mean shape and 3 small modes, at random position and size: the
  space of 3 components keeps them (up to the second-order effect of dividing each set by its
  own size), the full space keeps them exactly, noisy copies move towards them, and the
  projection keeps each set's centre."""
  rng = np.random.default_rng(8)
  count, landmarks = 200, 30
  modes = rng.normal(size=(4, landmarks, 2))                  # mean shape + 3 modes
  shapes = modes[0] + np.einsum("nm,mkd->nkd", 0.01 * rng.normal(size=(count, 3)), modes[1:])
  labels = shapes * rng.uniform(50, 150, (count, 1, 1)) + rng.uniform(50, 150, (count, 1, 2))
  mean, basis = cascade_lib.shape_space(labels, 3)
  assert mean.shape == (2 * landmarks,) and basis.shape == (3, 2 * landmarks)
  np.testing.assert_allclose(basis @ basis.T, np.eye(3), atol=1e-9)
  np.testing.assert_allclose(cascade_lib.project(labels, mean, basis), labels, atol=0.05)
  full = cascade_lib.shape_space(labels, 2 * landmarks)[1]
  np.testing.assert_allclose(cascade_lib.project(labels, mean, full), labels, atol=1e-9)
  noisy = labels + rng.normal(0, 2.0, labels.shape)
  projected = cascade_lib.project(noisy, mean, basis)
  np.testing.assert_allclose(projected.mean(1), noisy.mean(1), atol=1e-9)
  assert (np.linalg.norm(projected - labels, axis=-1).mean()
          < 0.5 * np.linalg.norm(noisy - labels, axis=-1).mean())
  assert cascade_lib.project(noisy, mean, basis[:0]) is noisy      # no space: unchanged


def test_grey_is_opencv_s():
  rgb = np.random.default_rng(4).random((2, 8, 8, 3)).astype(np.float32)
  ours = cascade_lib.grey(rgb)
  theirs = np.stack([cv2.cvtColor(np.rint(i * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
                     for i in rgb])
  assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1


def test_file_round_trip_and_damage(tmp_path):
  weights = np.random.default_rng(5).normal(size=(2, 68, 325, 2)).astype(np.float32)
  cascade_lib.Cascade(weights, (16.0, 8.0), 10.0, step=12).save(tmp_path)
  loaded = cascade_lib.load(tmp_path)
  np.testing.assert_array_equal(loaded.weights, weights)
  np.testing.assert_array_equal(loaded.scales, [16.0, 8.0])
  assert loaded.step == 12 and loaded.ridge == 10.0 and loaded.shape_basis.shape == (0, 136)
  basis = np.linalg.qr(np.random.default_rng(9).normal(size=(136, 4)))[0].T
  cascade_lib.Cascade(weights, (16.0, 8.0), 10.0, 12, np.arange(136.0), basis).save(tmp_path)
  loaded = cascade_lib.load(tmp_path)
  np.testing.assert_array_equal(loaded.shape_basis, basis)
  np.testing.assert_array_equal(loaded.shape_mean, np.arange(136.0))
  assert cascade_lib.load(tmp_path / "none") is None
  rng = np.random.default_rng(15)
  joint = [(rng.normal(size=(68, 324)), rng.normal(size=(324, 4)), rng.random(272) + 0.5,
            rng.normal(size=(272, 136)), rng.normal(size=136)) for _ in range(2)]
  cascade_lib.Cascade(weights, (16.0, 8.0), 10.0, 12, np.arange(136.0), basis,
                      joint=joint).save(tmp_path)
  loaded = cascade_lib.load(tmp_path)
  for ours, theirs in zip(loaded.joint, joint):
    for a, b in zip(ours, theirs):
      np.testing.assert_allclose(a, b, rtol=1e-6)
  broken = [(m, b[:, :3], sc, w, bi) for m, b, sc, w, bi in joint]
  cascade_lib.Cascade(weights, (16.0, 8.0), 10.0, 12, joint=broken).save(tmp_path)
  with pytest.raises(InputError, match="joint stages of shapes"):
    cascade_lib.load(tmp_path)
  cascade_lib.Cascade(weights[:, :, :10], (16.0, 8.0), 10.0, step=12).save(tmp_path)
  with pytest.raises(InputError, match="stage weights of shape"):
    cascade_lib.load(tmp_path)
  cascade_lib.Cascade(weights, (16.0, 8.0), 10.0, 12, np.zeros(130), basis).save(tmp_path)
  with pytest.raises(InputError, match="shape space of shapes"):
    cascade_lib.load(tmp_path)
  cascade_lib.Cascade(weights, (16.0, 8.0), 10.0, step=12).save(tmp_path)
  path = tmp_path / cascade_lib.FILE_NAME
  whole = path.read_bytes()
  for damaged in (b"not a zip", whole[:len(whole) // 2]):
    path.write_bytes(damaged)
    with pytest.raises(InputError, match="damaged landmark cascade"):
      cascade_lib.load(tmp_path)


def test_reader_replaces_its_coefficients_and_round_trips(tmp_path):
  rng = np.random.default_rng(11)
  weights = rng.normal(size=(1, 68, 325, 2)).astype(np.float32)
  reader = (rng.normal(size=(139, 6)), rng.normal(size=6), np.array([1, 1, 0, 0, 1, 0], bool))
  cascade = cascade_lib.Cascade(weights, (8.0,), 3.0, 4, reader=reader)
  inputs, vectors = rng.normal(size=(5, 139)), rng.normal(size=(5, 6))
  read = cascade.read(inputs, vectors)
  expected = inputs @ reader[0] + reader[1]
  np.testing.assert_allclose(read[:, reader[2]], expected[:, reader[2]], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(read[:, ~reader[2]], vectors[:, ~reader[2]], rtol=1e-6)
  assert cascade_lib.Cascade(weights, (8.0,), 3.0, 4).read(inputs, vectors) is vectors
  cascade.save(tmp_path)
  loaded = cascade_lib.load(tmp_path)
  for ours, theirs in zip(loaded.reader, reader):
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
  cascade_lib.Cascade(weights, (8.0,), 3.0, 4, reader=(reader[0], reader[1][:5], reader[2])
                      ).save(tmp_path)
  with pytest.raises(InputError, match="reader of shapes"):
    cascade_lib.load(tmp_path)


def test_yaw_gated_reader_blends_the_two_nearest_maps_and_round_trips(tmp_path):
  rng = np.random.default_rng(22)
  weights = rng.normal(size=(1, 68, 325, 2)).astype(np.float32)
  centres = np.array([-20.0, 0.0, 20.0])
  mask = np.array([1, 1, 0, 0, 1, 0], bool)
  reader = (rng.normal(size=(3, 139, 6)), rng.normal(size=(3, 6)), mask, centres)
  cascade = cascade_lib.Cascade(weights, (8.0,), 3.0, 4, reader=reader)
  assert cascade.gated
  inputs, vectors = rng.normal(size=(4, 139)), rng.normal(size=(4, 6))
  yaw = np.array([0.0, 5.0, -35.0, 90.0])      # A centre, between two, and past each end.
  maps = [inputs @ reader[0][g] + reader[1][g] for g in range(3)]
  expected = np.stack([maps[1][0], 0.75 * maps[1][1] + 0.25 * maps[2][1], maps[0][2],
                       maps[2][3]])
  read = cascade.read(inputs, vectors, yaw)
  np.testing.assert_allclose(read[:, mask], expected[:, mask], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(read[:, ~mask], vectors[:, ~mask], rtol=1e-6)
  with pytest.raises(ValueError, match="yaw"):
    cascade.read(inputs, vectors)
  cascade.save(tmp_path)
  loaded = cascade_lib.load(tmp_path)
  assert loaded.gated
  np.testing.assert_allclose(loaded.read(inputs, vectors, yaw), read, rtol=1e-6)
  for damaged, message in (((reader[0], reader[1], mask, centres[::-1]), "do not increase"),
                           ((reader[0], reader[1][:2], mask, centres), "reader of shapes"),
                           ((reader[0][0], reader[1][0], mask, centres), "reader of shapes")):
    cascade_lib.Cascade(weights, (8.0,), 3.0, 4, reader=damaged).save(tmp_path)
    with pytest.raises(InputError, match=message):
      cascade_lib.load(tmp_path)


def test_version_2_files_load_without_joint_stages(tmp_path):
  rng = np.random.default_rng(16)
  weights = (1e-3 * rng.normal(size=(1, 68, 325, 2))).astype(np.float32)
  np.savez(tmp_path / cascade_lib.FILE_NAME, kind=np.array(cascade_lib.KIND), version=2,
           weights=weights, scales=np.float32([8.0]), ridge=3.0, step=5,
           shape_mean=np.zeros(136), shape_basis=np.zeros((0, 136)))
  loaded = cascade_lib.load(tmp_path)
  assert loaded.step == 5 and loaded.joint is None


def test_version_1_files_load_without_a_shape_space(tmp_path):
  """Session 13's cascades (version 1: no shape space) still load, and refine as they did:
  one offset per stage, no projection."""
  rng = np.random.default_rng(10)
  weights = (1e-3 * rng.normal(size=(1, 68, 325, 2))).astype(np.float32)
  np.savez(tmp_path / cascade_lib.FILE_NAME, kind=np.array(cascade_lib.KIND), version=1,
           weights=weights, scales=np.float32([8.0]), ridge=10.0, step=3)
  loaded = cascade_lib.load(tmp_path)
  assert loaded.step == 3 and loaded.shape_basis.shape == (0, 136)
  greys = rng.integers(0, 256, (1, 224, 224), dtype=np.uint8)
  points = rng.uniform(60, 160, (1, 68, 2)).astype(np.float32)
  inputs = np.concatenate([cascade_lib.features(greys, points, 8.0), np.ones((1, 68, 1))], -1)
  expected = points + np.einsum("nkf,kfo->nko", inputs, weights[0]) * cascade_lib.face_size(points)
  np.testing.assert_allclose(loaded.refine(None, points, grey_images=greys), expected, atol=1e-4)


def test_lift_places_points_that_follow_the_anchors_linearly():
  """Dense points that are a fixed linear function of the anchors' normalised shape are
  placed exactly by the lift, at any position and size."""
  rng = np.random.default_rng(20)
  anchors = rng.normal(size=(300, 68, 2)) * 5 + np.linspace(-40, 40, 68)[:, None]
  mixing = rng.normal(size=(136, 20)) * 0.1
  flat, centre, size = cascade_lib.relative(anchors, anchors)
  dense = (flat @ mixing + 0.3).reshape(300, 10, 2) * size + centre
  shift, scale = rng.uniform(50, 150, (300, 1, 2)), rng.uniform(0.5, 2, (300, 1, 1))
  anchors, dense = anchors * scale + shift, dense * scale + shift
  lift = cascade_lib.fit_lift(anchors[:200], dense[:200], 1e-9)
  assert lift[0].shape == (136, 20) and lift[1].shape == (20,)
  placed = cascade_lib.lifted(anchors[200:], lift)
  assert placed.shape == (100, 78, 2)
  np.testing.assert_allclose(placed[:, :68], anchors[200:])
  np.testing.assert_allclose(placed[:, 68:], dense[200:], atol=1e-5)
  assert cascade_lib.lifted(anchors, None) is anchors


def test_joint_stage_by_views_and_of_full_rank_is_the_plain_solution():
  """With more inputs than views the joint solve runs by the views: the same map as the
  ridge normal equations; with a rank r the offsets are the full map's projected onto the
  targets' first r principal directions (and a rank of every output is no rank)."""
  rng = np.random.default_rng(21)
  descriptors = rng.random((30, 5, 12)).astype(np.float32)
  target = rng.normal(size=(30, 5, 2))
  mean, basis, scale, weights, bias, out = cascade_lib._fit_joint(descriptors, target, 8, 0.1)
  assert out is None and weights.shape == (40, 10)           # 40 inputs > 30 views
  inputs = cascade_lib._joint_inputs(descriptors, (mean, basis, scale))
  values = target.reshape(30, -1) - bias
  plain = np.linalg.solve(inputs.T @ inputs + 0.1 * 30 * np.eye(40), inputs.T @ values)
  np.testing.assert_allclose(weights, plain, atol=1e-8)
  full = cascade_lib._fit_joint(descriptors, target, 8, 0.1, rank=9)
  assert full[5].shape == (9, 10) and full[3].shape == (40, 9)
  directions = np.linalg.svd(values, full_matrices=False)[2][:9]
  np.testing.assert_allclose(full[5], directions, atol=1e-8)
  ranked = cascade_lib._joint_offsets(descriptors, full).reshape(30, -1) - bias
  plain_offsets = cascade_lib._joint_offsets(
      descriptors, (mean, basis, scale, weights, bias, None)).reshape(30, -1) - bias
  np.testing.assert_allclose(ranked, plain_offsets @ directions.T @ directions, atol=1e-5)
  every = cascade_lib._fit_joint(descriptors, target, 8, 0.1, rank=10)   # rank = outputs: none
  assert every[5] is None


def dense_cascade(rng, stages=2, count=70):
  """A version-4 cascade of 68 landmarks + 2 dense points with joint stages of rank 3."""
  dims, rank = 2, 3
  weights = (1e-3 * rng.normal(size=(stages, count, 325, 2))).astype(np.float32)
  joint = [(rng.normal(size=(count, 324)), rng.normal(size=(324, dims)),
            rng.random(count * dims) + 0.5, 1e-3 * rng.normal(size=(count * dims, rank)),
            1e-3 * rng.normal(size=2 * count), rng.normal(size=(rank, 2 * count)))
           for _ in range(stages)]
  lift = (0.01 * rng.normal(size=(136, 2 * (count - 68))), rng.normal(size=2 * (count - 68)))
  flip = np.concatenate([augment.FLIP_PERMUTATION, [69, 68]])
  return cascade_lib.Cascade(weights, (16.0, 8.0)[:stages], 3.0, 5, joint=joint, lift=lift,
                             dense_vertices=[7, 9], flip=flip)


def test_dense_cascade_file_round_trip_and_damage(tmp_path):
  rng = np.random.default_rng(22)
  cascade = dense_cascade(rng)
  cascade.save(tmp_path)
  loaded = cascade_lib.load(tmp_path)
  assert loaded.points == 70
  np.testing.assert_array_equal(loaded.flip, cascade.flip)
  np.testing.assert_array_equal(loaded.dense_vertices, [7, 9])
  for ours, theirs in zip(loaded.lift, cascade.lift):
    np.testing.assert_array_equal(ours, theirs)
  for ours, theirs in zip(loaded.joint, cascade.joint):
    for a, b in zip(ours, theirs):
      np.testing.assert_array_equal(a, b)
  greys = rng.integers(0, 256, (2, 224, 224), dtype=np.uint8)
  head = rng.uniform(60, 160, (2, 68, 2)).astype(np.float32)
  refined = loaded.refine(None, head, grey_images=greys)
  assert refined.shape == (2, 70, 2)
  np.testing.assert_allclose(refined, cascade.refine(None, head, grey_images=greys))
  broken = dense_cascade(rng)
  broken.flip = np.concatenate([augment.FLIP_PERMUTATION, [68, 68]])
  broken.save(tmp_path)
  with pytest.raises(InputError, match="not a pairing"):
    cascade_lib.load(tmp_path)
  broken.flip, broken.dense_vertices = cascade.flip, np.arange(3)
  broken.save(tmp_path)
  with pytest.raises(InputError, match="dense points of shapes"):
    cascade_lib.load(tmp_path)
  broken = dense_cascade(rng)
  broken.joint = [stage[:5] + (stage[5][:, :-2],) for stage in broken.joint]
  broken.save(tmp_path)
  with pytest.raises(InputError, match="joint stages of shapes"):
    cascade_lib.load(tmp_path)


def test_version_3_files_load_with_full_joint_maps(tmp_path):
  rng = np.random.default_rng(23)
  weights = (1e-3 * rng.normal(size=(1, 68, 325, 2))).astype(np.float32)
  joint = dict(joint_mean=rng.normal(size=(1, 68, 324)), joint_basis=rng.normal(size=(1, 324, 2)),
               joint_scale=rng.random((1, 136)) + 0.5, joint_weights=rng.normal(size=(1, 136, 136)),
               joint_bias=rng.normal(size=(1, 136)))
  np.savez(tmp_path / cascade_lib.FILE_NAME, kind=np.array(cascade_lib.KIND), version=3,
           weights=weights, scales=np.float32([8.0]), ridge=3.0, step=5,
           shape_mean=np.zeros(136), shape_basis=np.zeros((0, 136)), **joint)
  loaded = cascade_lib.load(tmp_path)
  assert loaded.lift is None and loaded.flip is None and loaded.joint[0][5] is None
  np.testing.assert_allclose(loaded.joint[0][3], joint["joint_weights"][0], rtol=1e-6)


def test_coefficient_layer_on_the_head_points_is_the_network(mgc_trained):
  from mgc_face import infer
  regressor = infer.load_regressor(mgc_trained[0])
  images = tf.constant(np.random.default_rng(6).random((2, 224, 224, 3)), tf.float32)
  outputs = regressor.network(images)
  again = regressor.coefficients_from_points(outputs[1], outputs[2])
  np.testing.assert_allclose(again.numpy(), outputs[0].numpy(), atol=1e-5)


def test_cascade_views_are_the_training_split_then_stream_triplets(mgc_dataset, ict_model):
  from mgc_face import train as train_lib
  from mgc_helpers import TEST_CONFIG
  views = list(train_lib.cascade_views(ict_model, TEST_CONFIG, mgc_dataset, seed=0, step=2))
  assert len(views) == 2 + TEST_CONFIG.cascade_stream_samples      # 2 training triplets
  for images, labels in views:
    assert images.shape == (3, 224, 224, 3) and labels.shape == (3, 68, 2)
  stream_only = TEST_CONFIG.replace(data_stream=True)
  streamed = list(train_lib.cascade_views(ict_model, stream_only, "unused", 0, 2))
  assert len(streamed) == 2
  # Rendered by threads, they are the stream's samples after the batches the network read.
  from mgc_face import stream
  samples = stream.SampleStream(ict_model, 0, start=2 * stream_only.batch_size)
  for (images, labels), k in zip(streamed, range(samples.count, samples.count + 2)):
    expected = samples.sample(k)
    np.testing.assert_array_equal(images, expected[0])
    np.testing.assert_array_equal(labels, expected[2])


def test_training_writes_the_cascade_and_inference_uses_it(mgc_trained, capsys):
  from mgc_face import infer
  ckpt, _ = mgc_trained
  regressor = infer.load_regressor(ckpt)
  assert regressor.cascade is not None and regressor.cascade.step == regressor.steps
  assert regressor.config.cascade_test_mirror
  images = np.random.default_rng(7).random((2, 224, 224, 3)).astype(np.float32)
  coeffs, _ = regressor(images)
  raw = regressor.network(tf.constant(images))
  mirrors = np.ascontiguousarray(images[:, :, ::-1])
  mirrored = regressor.cascade.refine(mirrors, regressor.network(tf.constant(mirrors))[2].numpy())
  # The image's refined points averaged with its mirror image's, mapped back.
  refined = 0.5 * (regressor.cascade.refine(images, raw[2].numpy()) +
                   augment.mirror_points(mirrored, 224))
  expected = regressor.coefficients_from_points(raw[1], refined).numpy()
  np.testing.assert_allclose(regressor.layout.join(coeffs).numpy(), expected, atol=1e-4)
  head = regressor.head_landmarks(tf.constant(images))[1][0].numpy()
  np.testing.assert_allclose(head, refined, atol=1e-4)


def test_mirror_averaged_points_of_a_mirror_image_are_the_mirror_of_its_points(mgc_trained):
  from mgc_face import infer
  regressor = infer.load_regressor(mgc_trained[0])
  images = np.random.default_rng(8).random((2, 224, 224, 3)).astype(np.float32)
  points = regressor.head_landmarks(tf.constant(images))[1][0].numpy()
  mirrors = np.ascontiguousarray(images[:, :, ::-1])
  mirrored = regressor.head_landmarks(tf.constant(mirrors))[1][0].numpy()
  np.testing.assert_allclose(mirrored, augment.mirror_points(points, 224), atol=1e-3)
  single = infer.load_regressor(mgc_trained[0])
  single.config = single.config.replace(cascade_test_mirror=False)
  alone = single.head_landmarks(tf.constant(images))[1][0].numpy()
  assert np.abs(alone - points).max() > 1e-3   # the mirror's points do change them


def test_a_checkpoint_from_before_the_mirror_flag_refines_without_the_mirror(mgc_trained,
                                                                           tmp_path):
  import json
  import shutil
  from mgc_face import infer
  ckpt = tmp_path / "ckpt"
  shutil.copytree(mgc_trained[0], ckpt)
  meta = json.loads((ckpt / "meta.json").read_text())
  del meta["config"]["cascade_test_mirror"]
  (ckpt / "meta.json").write_text(json.dumps(meta))
  regressor = infer.load_regressor(ckpt)
  assert not regressor.config.cascade_test_mirror
  images = np.random.default_rng(9).random((2, 224, 224, 3)).astype(np.float32)
  points = regressor.head_landmarks(tf.constant(images))[1][0].numpy()
  raw = regressor.network(tf.constant(images))[2].numpy()
  np.testing.assert_allclose(points, regressor.cascade.refine(images, raw), atol=1e-3)


def test_inference_reads_the_readers_coefficients_from_the_refined_points(mgc_trained,
                                                                          tmp_path):
  import shutil
  from mgc_face import infer
  from mgc_face import model as model_lib
  ckpt = tmp_path / "ckpt"
  shutil.copytree(mgc_trained[0], ckpt)
  old = cascade_lib.load(ckpt)
  rng = np.random.default_rng(12)
  regressor = infer.load_regressor(ckpt)
  size = regressor.layout.size
  mask = np.zeros(size, bool)
  mask[:5] = True
  reader = (0.1 * rng.normal(size=(139, size)), rng.normal(size=size), mask)
  cascade_lib.Cascade(old.weights, old.scales, old.ridge, old.step, old.shape_mean,
                      old.shape_basis, reader, old.joint).save(ckpt)
  images = rng.random((2, 224, 224, 3)).astype(np.float32)
  without = regressor.layout.join(regressor(images)[0]).numpy()
  with_reader = infer.load_regressor(ckpt)
  ours = with_reader.layout.join(with_reader(images)[0]).numpy()
  points = with_reader.head_landmarks(tf.constant(images))[1][0]
  expected = model_lib.normalise_landmarks(points).numpy() @ reader[0] + reader[1]
  np.testing.assert_allclose(ours[:, mask], expected[:, mask], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(ours[:, ~mask], without[:, ~mask], rtol=1e-5, atol=1e-5)


def test_a_prior_noise_gives_the_cascade_the_prior_map_as_reader(mgc_trained, mgc_dataset,
                                                                  ict_model, tmp_path):
  import shutil
  from mgc_face import prior_init
  from mgc_face import train as train_lib
  from mgc_helpers import SINGLE_VIEW
  ckpt = tmp_path / "ckpt"
  shutil.copytree(mgc_trained[0], ckpt)
  (ckpt / cascade_lib.FILE_NAME).unlink()
  config = SINGLE_VIEW.replace(cascade_prior_noise=1.5)
  train_lib.train(ict_model, config, mgc_dataset, ckpt, steps=2, progress=False,
                  log=lambda line: None)
  weights, bias, mask = cascade_lib.load(ckpt).reader
  expected = prior_init.prior_map(ict_model, config.replace(prior_init_noise=1.5))
  np.testing.assert_allclose(weights, expected[0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(bias, expected[1], rtol=1e-5, atol=1e-6)
  from shared.model.coeffs import CoeffLayout
  layout = CoeffLayout.for_model(ict_model)
  np.testing.assert_array_equal(mask, prior_init.supervised_columns(layout,
                                                                    ("identity", "expression")))


# tiny's reader test: the preset's noise, yaw step and window, but fewer prior faces than its
# 40,000, which would cost about 12 s twice (training and the reference map).
TINY_READER_SAMPLES = 3000


def test_tiny_trains_its_yaw_gated_reader(mgc_trained, mgc_dataset, ict_model, tmp_path):
  import shutil
  from mgc_face import config as config_lib
  from mgc_face import infer
  from mgc_face import prior_init
  from mgc_face import train as train_lib
  from mgc_helpers import SINGLE_VIEW
  tiny = config_lib.get_config("tiny")
  assert tiny.cascade_prior_noise > 0 and tiny.cascade_reader_yaw_step > 0
  assert not config_lib.get_config("tiny_stream").cascade_prior_noise
  ckpt = tmp_path / "ckpt"
  shutil.copytree(mgc_trained[0], ckpt)
  (ckpt / cascade_lib.FILE_NAME).unlink()
  fields = {name: getattr(tiny, name) for name in config_lib.NO_READER}
  config = SINGLE_VIEW.replace(**fields).replace(cascade_reader_samples=TINY_READER_SAMPLES)
  train_lib.train(ict_model, config, mgc_dataset, ckpt, steps=2, progress=False,
                  log=lambda line: None)
  cascade = cascade_lib.load(ckpt)
  assert cascade.gated
  centres = prior_init.yaw_centres(tiny.cascade_reader_yaw_step)
  np.testing.assert_allclose(cascade.reader[3], centres)
  weights, bias = prior_init.yaw_gated_map(
      ict_model, config.replace(prior_init_noise=tiny.cascade_prior_noise,
                                prior_init_samples=TINY_READER_SAMPLES),
      centres, tiny.cascade_reader_yaw_window)
  np.testing.assert_allclose(cascade.reader[0], weights, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(cascade.reader[1], bias, rtol=1e-5, atol=1e-6)
  regressor = infer.load_regressor(ckpt)
  coefficients = regressor.layout.join(regressor(np.full((1, 224, 224, 3), 0.5, np.float32))[0])
  assert np.all(np.isfinite(coefficients.numpy()))


# The refit test's reader sample: cpu_hour's 40,000 prior faces cost a minute on a slow 2-core
# machine, twice (tool and reference); what the test checks is that the tool uses the preset.
REFIT_READER_SAMPLES = 4000


def test_refit_tool_gives_a_trained_cascade_the_presets_gated_reader(mgc_trained, ict_model,
                                                                       tmp_path, capsys,
                                                                       monkeypatch):
  import json
  import shutil
  from mgc_face import config as config_lib
  from mgc_face import infer
  from mgc_face import prior_init
  import sys
  from pathlib import Path
  sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
  import refit_cascade_reader as tool
  monkeypatch.setitem(config_lib.PRESETS, "cpu_hour", config_lib.PRESETS["cpu_hour"].replace(
      cascade_reader_samples=REFIT_READER_SAMPLES))
  ckpt = tmp_path / "ckpt"
  shutil.copytree(mgc_trained[0], ckpt)
  old = cascade_lib.load(ckpt)
  assert tool.main(["--checkpoint", str(ckpt), "--config", "cpu_hour"]) == 0
  preset = config_lib.get_config("cpu_hour")
  new = cascade_lib.load(ckpt)
  np.testing.assert_array_equal(new.weights, old.weights)        # The stages are kept.
  centres = prior_init.yaw_centres(preset.cascade_reader_yaw_step)
  np.testing.assert_allclose(new.reader[3], centres)
  weights, bias = prior_init.yaw_gated_map(
      ict_model, preset.replace(prior_init_noise=preset.cascade_prior_noise,
                                prior_init_samples=preset.cascade_reader_samples),
      centres, preset.cascade_reader_yaw_window)
  np.testing.assert_allclose(new.reader[0], weights, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(new.reader[1], bias, rtol=1e-5, atol=1e-6)
  meta = json.loads((ckpt / "meta.json").read_text())
  assert meta["config"]["cascade_reader_yaw_step"] == preset.cascade_reader_yaw_step
  regressor = infer.load_regressor(ckpt)
  assert regressor.cascade.gated
  coefficients = regressor.layout.join(regressor(np.full((1, 224, 224, 3), 0.5, np.float32))[0])
  assert np.all(np.isfinite(coefficients.numpy()))
  capsys.readouterr()
  (ckpt / cascade_lib.FILE_NAME).unlink()
  assert tool.main(["--checkpoint", str(ckpt)]) == 2
  assert capsys.readouterr().err.strip().startswith(f"error: {ckpt}: no landmark cascade")


def test_a_cascade_of_another_step_is_not_used(mgc_trained, tmp_path, capsys):
  import shutil
  from mgc_face import infer
  ckpt = tmp_path / "ckpt"
  shutil.copytree(mgc_trained[0], ckpt)
  old = cascade_lib.load(ckpt)
  cascade_lib.Cascade(old.weights, old.scales, old.ridge, old.step + 5, old.shape_mean,
                      old.shape_basis).save(ckpt)
  regressor = infer.load_regressor(ckpt)
  assert regressor.cascade is None
  assert "not used" in capsys.readouterr().err


def test_training_again_refits_a_damaged_cascade(mgc_trained, mgc_dataset, ict_model, tmp_path):
  import shutil
  from mgc_face import train as train_lib
  from mgc_helpers import SINGLE_VIEW
  ckpt = tmp_path / "ckpt"
  shutil.copytree(mgc_trained[0], ckpt)
  (ckpt / cascade_lib.FILE_NAME).write_bytes(b"PK damaged")
  lines = []
  result = train_lib.train(ict_model, SINGLE_VIEW, mgc_dataset, ckpt, steps=2, progress=False,
                           log=lines.append)
  assert result["images_per_second"] is None      # No step ran: no rate (JSON null, not NaN).
  assert cascade_lib.load(ckpt).step == 2
  assert any(line.startswith("landmark cascade: 12 views") for line in lines)


def test_cascade_views_add_the_dense_vertices_noisy_projections(mgc_dataset, ict_model):
  from mgc_face import data as data_lib
  from mgc_face import stream
  from mgc_face import synthetic
  from mgc_face import train as train_lib
  from mgc_helpers import TEST_CONFIG
  from shared.model import camera as camera_lib
  dense = np.array([10, 500, 2000, 4000])
  plain = list(train_lib.cascade_views(ict_model, TEST_CONFIG, mgc_dataset, seed=0, step=2))
  views = list(train_lib.cascade_views(ict_model, TEST_CONFIG, mgc_dataset, 0, 2, dense))
  records, _, _ = data_lib.scan(mgc_dataset, "train", report=False)
  samples = stream.SampleStream(ict_model, 0, start=2 * TEST_CONFIG.batch_size)
  posed = [synthetic.read_ground_truth(r.gt_path(mgc_dataset))["posed"] for r in records]
  posed += [samples.render(k)["posed"] for k in range(samples.count, samples.count + 2)]
  errors = []
  for (images, labels), (plain_images, plain_labels), vertices in zip(views, plain, posed):
    assert labels.shape == (3, 72, 2)
    np.testing.assert_array_equal(images, plain_images)
    np.testing.assert_array_equal(labels[:, :68], plain_labels)
    truth = camera_lib.project(tf.constant(vertices[:, dense], tf.float32),
                               camera_lib.Camera()).numpy()
    errors.append(labels[:, 68:] - truth)
  errors = np.concatenate(errors)
  noise = synthetic.SyntheticConfig().landmark_noise
  assert np.abs(errors).max() < 5 * noise and 0.6 * noise < errors.std() < 1.4 * noise


def test_a_dense_cascade_trains_and_inference_reads_every_point(mgc_trained, mgc_dataset,
                                                                 ict_model, tmp_path):
  """`cascade_dense`: the cascade refines the 68 landmarks and the mirror-closed dense set,
  inference gives the 68 as the head's points, the reader (the prior map of all points)
  reads every refined point, and the mirror averaging keeps its symmetry."""
  import shutil
  from mgc_face import infer
  from mgc_face import model as model_lib
  from mgc_face import prior_init
  from mgc_face import train as train_lib
  from mgc_helpers import SINGLE_VIEW
  from shared.fit.dense import symmetric_correspondence
  ckpt = tmp_path / "ckpt"
  shutil.copytree(mgc_trained[0], ckpt)
  (ckpt / cascade_lib.FILE_NAME).unlink()
  config = SINGLE_VIEW.replace(cascade_prior_noise=1.5, cascade_dense=True,
                               cascade_shape_components=10, cascade_joint_rank=6)
  lines = []
  train_lib.train(ict_model, config, mgc_dataset, ckpt, steps=2, progress=False,
                  log=lines.append)
  assert any("484 dense points" in line for line in lines)
  cascade = cascade_lib.load(ckpt)
  vertices, dense_flip = symmetric_correspondence(ict_model)
  count = 68 + len(vertices)
  assert cascade.points == count and cascade.joint[0][5].shape == (6, 2 * count)
  np.testing.assert_array_equal(cascade.dense_vertices, vertices)
  np.testing.assert_array_equal(cascade.flip[68:], 68 + dense_flip)
  expected = prior_init.prior_map(ict_model, config.replace(prior_init_noise=1.5),
                                  points=np.concatenate([ict_model.landmarks68, vertices]))
  np.testing.assert_allclose(cascade.reader[0], expected[0], rtol=1e-5, atol=1e-6)
  regressor = infer.load_regressor(ckpt)
  images = np.random.default_rng(24).random((2, 224, 224, 3)).astype(np.float32)
  mirrors = np.ascontiguousarray(images[:, :, ::-1])
  raw = [regressor.network(tf.constant(x))[2].numpy() for x in (images, mirrors)]
  points = 0.5 * (cascade.refine(images, raw[0]) +
                  augment.mirror_points(cascade.refine(mirrors, raw[1]), 224, cascade.flip))
  head = regressor.head_landmarks(tf.constant(images))[1][0].numpy()
  np.testing.assert_allclose(head, points[:, :68], atol=1e-3)
  mirrored = regressor.head_landmarks(tf.constant(mirrors))[1][0].numpy()
  np.testing.assert_allclose(mirrored, augment.mirror_points(head, 224), atol=1e-3)
  coefficients = regressor.layout.join(regressor(images)[0]).numpy()
  read = model_lib.normalise_landmarks(tf.constant(points)).numpy() @ expected[0] + expected[1]
  mask = cascade.reader[2]
  np.testing.assert_allclose(coefficients[:, mask], read[:, mask], rtol=1e-3, atol=1e-3)
