"""The GCN pipeline on a toy face (a sphere cap, 64 px): inputs, models, training, I/O.

A toy face model and a stand-in coarse stage keep these fast: the stand-in
returns the true geometry, pose and light but the mean albedo, so the GCN
has a texture error to remove.
"""

import json

import numpy as np
import pytest
import tensorflow as tf
import trimesh

from gcn_face import binfile
from gcn_face import checkpoint as checkpoint_lib
from gcn_face import evaluate
from gcn_face import infer
from gcn_face import model as model_lib
from gcn_face import train as train_lib
from gcn_face.coarse import CoarseStage, projected_skin_mask
from gcn_face.config import PAPER, TINY
from shared.mesh import topology as topology_lib
from shared.model.albedo import synthetic_albedo
from shared.model.camera import Camera
from shared.model.coeffs import CoeffLayout
from shared.errors import InputError
from shared.train.embedding import FaceEmbedder
from shared.model.face_model import FaceModel
from shared.render.face_image import FaceSynthesizer

SEED = 0
SIZE = 64
CAMERA = Camera(focal=1015.0 * SIZE / 224, image_size=SIZE)
FACTORS = (2, 2)
FEATURES = 8
RADIUS = 0.9          # Decimetres: a face-sized cap.
CAP_Z = -0.2          # Keep the sphere in front of this plane (unit sphere).
NUM_IMAGES = 6
ALBEDO_SCALE = 2.0    # Std units of the true albedo coefficients.
BACKGROUND = 0.2
TOY = TINY.replace(
    coarse_fit_steps=0, factors=FACTORS, image_size=SIZE, decoder_channels=(16, 16), refiner_channels=(16, 32),
    refiner_skip_levels=(1,), resnet_decoder_channels=(8, 3), resnet_refiner_channels=(8, 16),
    disc_channels=(4, 4, 4, 4), decoder_fc_channels=8, refiner_bottleneck=16, batch_size=2,
    steps_per_epoch=2, log_every=1000, checkpoint_every=1000, learning_rate=3e-3)


def toy_face_model():
  sphere = trimesh.creation.icosphere(subdivisions=3)
  keep = sphere.vertices[:, 2] > CAP_Z
  faces = sphere.faces[keep[sphere.faces].all(axis=1)]
  index = -np.ones(len(keep), np.int64)
  index[keep] = np.arange(keep.sum())
  vertices = (sphere.vertices[keep] * RADIUS).astype(np.float32)
  faces = index[faces].astype(np.int32)
  v = len(vertices)
  rng = np.random.default_rng(SEED)
  mean, basis, std = synthetic_albedo(v, faces)
  uv = (vertices[:, :2] / (2 * RADIUS) + 0.5).astype(np.float32)
  return FaceModel(
      mean_shape=vertices - vertices.mean(axis=0), faces=faces,
      id_basis=rng.normal(0, 0.01, (2, v, 3)).astype(np.float32), id_std=np.ones(2, np.float32),
      exp_basis=rng.normal(0, 0.01, (2, v, 3)).astype(np.float32), exp_std=np.ones(2, np.float32),
      mean_albedo=mean, albedo_basis=basis, albedo_std=std,
      landmarks68=np.arange(68, dtype=np.int32) * (v // 68),
      skin_mask=(vertices[:, 2] > 0.3).astype(np.float32), uv=uv, name="toy",
      source_hash="toy-cap")


class ToyRegressor:
  """True geometry and light, mean albedo; features = image statistics."""

  def __init__(self, layout, truth):
    self.layout, self.truth = layout, truth

  def __call__(self, images):
    batch = tf.shape(images)[0]
    coeffs = self.layout.split(tf.tile(self.truth[None], [batch, 1]))
    coeffs = coeffs._replace(albedo=tf.zeros_like(coeffs.albedo))
    stats = tf.concat([tf.reduce_mean(images, [1, 2]), tf.math.reduce_std(images, [1, 2])], -1)
    return coeffs, tf.pad(stats, [[0, 0], [0, FEATURES - 6]])


@pytest.fixture(scope="module")
def toy():
  """(face model, topology, stage, images [N, S, S, 3], alpha [N, S, S, 1], truth)."""
  face_model = toy_face_model()
  topology = topology_lib.build_topology(face_model.mean_shape, face_model.faces, FACTORS,
                                         source_hash=face_model.source_hash, progress=False)
  layout = CoeffLayout.for_model(face_model)
  rng = np.random.default_rng(SEED)
  truth = np.zeros(layout.size, np.float32)
  offset = sum(layout.sizes[:5])  # The lighting part.
  truth[offset + 2] = 0.3         # Some directional light on top of the ambient.
  truth[offset + 3] = 0.2
  truth = tf.constant(truth)
  stage = CoarseStage(ToyRegressor(layout, truth), face_model, FEATURES, CAMERA)
  synth = FaceSynthesizer(face_model, CAMERA)
  images, alphas = [], []
  for _ in range(NUM_IMAGES):
    coeffs = layout.split(truth[None])
    albedo = tf.constant(rng.normal(0, ALBEDO_SCALE, (1, layout.num_albedo)), tf.float32)
    coeffs = coeffs._replace(albedo=albedo)
    out = synth(coeffs)
    mask = out.render.mask[0]
    images.append(out.render.image[0] * mask + BACKGROUND * (1 - mask))
    alphas.append(projected_skin_mask(synth, coeffs)[0])
  images = tf.clip_by_value(tf.stack(images), 0, 1)
  return face_model, topology, stage, images, tf.stack(alphas), truth


def face_l1(image, render, mask):
  return float(tf.reduce_sum(tf.abs(image - render) * mask) / (3 * tf.reduce_sum(mask)))


def test_refine_inputs_visibility_and_colours(toy):
  face_model, topology, stage, images, alpha, _ = toy
  pipeline = infer.TexturePipeline(stage, topology, TOY)
  coarse = pipeline.coarse(images[:2], alpha[:2])
  posed = coarse.synth.posed.numpy()
  vis = coarse.visibility.numpy()[..., 0]
  z = posed[0, :, 2]
  # Vertices at the back of the cap (facing away) are never visible.
  assert np.all(vis[:, z < z.min() + 0.05] == 0)
  # Front skin vertices well inside the eroded alpha are visible.
  central = (z > z.max() - 0.15) & (face_model.skin_mask > 0)
  assert central.any() and np.all(vis[:, central] > 0.99)
  inputs = coarse.inputs.numpy()
  np.testing.assert_allclose(inputs[..., :3], 2 * coarse.synth.albedo.numpy() - 1, atol=1e-6)
  np.testing.assert_allclose(inputs[..., 6], vis)
  # The de-lit colour: projected colour / coarse irradiance, clipped, times visibility.
  assert TOY.delit_input and inputs.shape[-1] == model_lib.refiner_input_channels(TOY) == 10
  from shared.model import lighting
  irradiance = lighting.irradiance(coarse.synth.normals, coarse.coeffs.lighting).numpy()
  delit = np.clip(coarse.projected.numpy() / np.maximum(irradiance, model_lib.MIN_IRRADIANCE),
                  0, 1)
  trusted = irradiance.min(-1, keepdims=True) > model_lib.MIN_IRRADIANCE
  np.testing.assert_allclose(inputs[..., 7:], (2 * delit - 1) * vis[..., None] * trusted,
                             atol=1e-5)
  np.testing.assert_allclose(inputs[..., 3:6], (2 * coarse.projected.numpy() - 1) * vis[..., None],
                             atol=1e-6)


def test_seen_region_hides_the_vertices_it_leaves_out(toy):
  """`coarse(..., seen=...)`: the well-lit vertices that project where a photo's unoccluded
  region is 0 (hair over the forehead) are unseen and `hidden`; dim ones (a shadow can fail
  the colour test) and the others keep the visibility they had."""
  _, topology, stage, images, alpha, _ = toy
  pipeline = infer.TexturePipeline(stage, topology, TOY)
  full = pipeline.coarse(images[:2], alpha[:2])
  size = images.shape[1]
  seen = np.ones((2, size, size, 1), np.float32)
  seen[:, :size // 2] = 0.0                             # the upper half occluded
  half = pipeline.coarse(images[:2], alpha[:2], seen=tf.constant(seen))
  from shared.model import camera as camera_lib
  y = camera_lib.project(full.synth.posed, pipeline.synthesizer.camera).numpy()[..., 1]
  before, after = full.visibility.numpy()[..., 0], half.visibility.numpy()[..., 0]
  from shared.model import lighting
  irradiance = lighting.irradiance(half.synth.normals, half.coeffs.lighting).numpy().mean(-1)
  lit = irradiance >= infer.HIDDEN_MIN_IRRADIANCE
  margin = TOY.erosion_radius + 2                       # the alpha is eroded before sampling
  upper, lower = y < size // 2 - margin, y > size // 2 + margin
  assert (before[upper & lit] > 0.5).any() and (before[upper & ~lit] > 0.5).any()
  assert np.all(after[upper & lit] == 0)
  np.testing.assert_array_equal(after[lower | ~lit], before[lower | ~lit])
  np.testing.assert_array_equal(half.hidden.numpy()[..., 0], (before >= 0.5) & (after < 0.5))


def test_test_step_fills_the_refined_change_on_hidden_vertices(toy):
  """`TestStep` with a `seen` region: the vertices it hides (seen under the alpha, not under
  alpha x seen) carry the harmonic fill of the refined change from around them; the others
  keep the refiner's albedo."""
  _, topology, stage, images, alpha, _ = toy
  pipeline = infer.TexturePipeline(stage, topology, TOY)
  size = images.shape[1]
  seen = np.ones((size, size, 1), np.float32)
  seen[:size // 2] = 0.0
  batch, mask = images[:1], alpha[0].numpy()
  regressed = pipeline.regress(batch)
  plain = infer.TestStep(pipeline)(batch, mask, regressed)
  out = infer.TestStep(pipeline)(batch, mask, regressed, seen)
  assert not plain["hidden"].any() and out["hidden"].any()
  full = pipeline.coarse(batch, alpha[:1], regressed).visibility.numpy()[0, :, 0]
  part = pipeline.coarse(batch, alpha[:1], regressed, tf.constant(seen[None]))
  np.testing.assert_array_equal(out["hidden"], (full >= 0.5) & (part.visibility.numpy()[0, :, 0] < 0.5))
  refined = pipeline.refine(part, blend=True).albedo.numpy()[0]
  kept = ~out["hidden"]
  np.testing.assert_allclose(out["refined_albedo"][kept], refined[kept], atol=1e-6)
  change = out["refined_albedo"].astype(np.float64) - out["coarse_albedo"]
  neighbours = topology.A[0].copy()
  neighbours.setdiag(0)
  neighbours.eliminate_zeros()
  neighbours.data[:] = 1.0
  mean = (neighbours @ change) / np.asarray(neighbours.sum(1))
  inside = out["hidden"] & (out["refined_albedo"] > 0).all(1) & (out["refined_albedo"] < 1).all(1)
  assert inside.any()
  np.testing.assert_allclose(change[inside], mean[inside], atol=1e-5)


@pytest.mark.parametrize("arch,combine_inputs", [("normal", False), ("resnet", False),
                                                 ("normal", True)])
def test_generator_shapes_range_and_gradients(toy, arch, combine_inputs):
  face_model, topology, stage, images, alpha, _ = toy
  config = TOY.replace(arch=arch, combine_inputs=combine_inputs)
  gcn = model_lib.TextureGCN(topology, config)
  v = face_model.num_vertices
  features = tf.random.stateless_normal([2, FEATURES], [SEED, 1])
  inputs = tf.random.stateless_uniform([2, v, model_lib.refiner_input_channels(config)],
                                       [SEED, 2])
  with tf.GradientTape() as tape:
    albedo = gcn(features, inputs)
    loss = tf.reduce_mean(albedo)
  assert albedo.shape == (2, v, 3)
  assert np.all((albedo.numpy() >= 0) & (albedo.numpy() <= 1))
  grads = tape.gradient(loss, gcn.trainable_variables)
  assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
  assert len(gcn.fc_kernels()) == (3 if arch == "normal" else 1)  # decoder fc (+ bottleneck)


def test_refit_lighting_recovers_the_lighting_and_matches_numpy():
  """Colours shaded by known SH are explained exactly; weights and the ridge as numpy's lstsq."""
  from shared.model import lighting
  rng = np.random.default_rng(5)
  normals = rng.normal(size=(2, 200, 3))
  normals = (normals / np.linalg.norm(normals, axis=-1, keepdims=True)).astype(np.float32)
  albedo = rng.uniform(0.2, 0.9, (2, 200, 3)).astype(np.float32)
  sh = rng.normal(0, 0.2, (2, 27)).astype(np.float32)
  colours = lighting.shade(albedo, normals, sh).numpy()
  ones = np.ones((2, 200, 1), np.float32)
  fitted = model_lib.refit_lighting(albedo, normals, colours, ones, 1e-6).numpy()
  np.testing.assert_allclose(fitted, sh, atol=2e-3)
  # Noisy colours, partial weights, a real ridge: numpy's weighted ridge regression.
  noisy = colours + rng.normal(0, 0.05, colours.shape).astype(np.float32)
  weights = rng.uniform(0, 1, (2, 200, 1)).astype(np.float32)
  ridge = 0.5
  fitted = model_lib.refit_lighting(albedo, normals, noisy, weights, ridge).numpy()
  basis = lighting.sh_basis(normals).numpy().astype(np.float64)
  prior = np.zeros(9)
  prior[0] = lighting.AMBIENT_DC
  for b in range(2):
    for c in range(3):
      x = albedo[b, :, c:c + 1] * basis[b]
      w = weights[b, :, 0]
      gamma = np.linalg.solve((x * w[:, None]).T @ x + ridge * np.eye(9),
                              (x * w[:, None]).T @ noisy[b, :, c] + ridge * prior)
      np.testing.assert_allclose(fitted[b, c * 9:(c + 1) * 9], gamma - prior, atol=2e-3)


def test_refit_lighting_prior_matches_numpy():
  """With a prior, the ridge pulls towards it: numpy's weighted ridge solve around it."""
  from shared.model import lighting
  rng = np.random.default_rng(6)
  normals = rng.normal(size=(2, 150, 3))
  normals = (normals / np.linalg.norm(normals, axis=-1, keepdims=True)).astype(np.float32)
  albedo = rng.uniform(0.2, 0.9, (2, 150, 3)).astype(np.float32)
  colours = rng.uniform(0.1, 0.9, (2, 150, 3)).astype(np.float32)
  weights = rng.uniform(0, 1, (2, 150, 1)).astype(np.float32)
  prior = rng.normal(0, 0.3, (2, 27)).astype(np.float32)
  ridge = 2.0
  fitted = model_lib.refit_lighting(albedo, normals, colours, weights, ridge, prior).numpy()
  basis = lighting.sh_basis(normals).numpy().astype(np.float64)
  for b in range(2):
    for c in range(3):
      centre = prior[b, c * 9:(c + 1) * 9].astype(np.float64)
      centre[0] += lighting.AMBIENT_DC
      x = albedo[b, :, c:c + 1] * basis[b]
      w = weights[b, :, 0]
      gamma = np.linalg.solve((x * w[:, None]).T @ x + ridge * np.eye(9),
                              (x * w[:, None]).T @ colours[b, :, c] + ridge * centre)
      gamma[0] -= lighting.AMBIENT_DC
      np.testing.assert_allclose(fitted[b, c * 9:(c + 1) * 9], gamma, atol=2e-3)
  # A huge ridge returns the prior itself.
  np.testing.assert_allclose(model_lib.refit_lighting(albedo, normals, colours, weights, 1e6,
                                                      prior).numpy(), prior, atol=1e-3)


class ShiftedRegressor(ToyRegressor):
  """The toy regressor with its pose off: a translation error of `SHIFT` model units."""
  SHIFT = (0.06, -0.04, 0.0)

  def __call__(self, images):
    coeffs, features = super().__call__(images)
    return coeffs._replace(translation=coeffs.translation + tf.constant(self.SHIFT)), features


def test_coarse_fit_lowers_the_landmark_error(toy):
  """coarse_fit_steps refits a misplaced coarse pose to the 2D landmarks in one batched
  fit; a record without landmarks (NaN) keeps the regressor's coefficients."""
  face_model, topology, _, images, _, truth = toy
  layout = CoeffLayout.for_model(face_model)
  stage = CoarseStage(ShiftedRegressor(layout, truth), face_model, FEATURES, CAMERA)
  synth = FaceSynthesizer(face_model, CAMERA)
  target = synth(layout.split(truth[None]), render=False).landmarks2d.numpy()
  landmarks = np.repeat(target, 3, axis=0)
  landmarks[2] = np.nan
  off, _ = infer.TexturePipeline(stage, topology, TOY).regress(images[:3], landmarks)
  fitted, _ = infer.TexturePipeline(stage, topology, TOY.replace(coarse_fit_steps=60)).regress(
      images[:3], landmarks)

  def error(coeffs):
    points = synth(coeffs, render=False).landmarks2d.numpy()
    return np.linalg.norm(points - target, axis=-1).mean(-1)

  before, after = error(off), error(fitted)
  assert before.min() > 1.5                       # pixels of the 64 px crop
  assert np.all(after[:2] < 0.25 * before[:2])
  np.testing.assert_allclose(after[2], before[2])  # no landmarks: untouched
  np.testing.assert_array_equal(fitted.albedo.numpy(), off.albedo.numpy())


def test_discriminator_scores_batch():
  critic = model_lib.Discriminator(TOY)
  scores = critic(tf.zeros([3, SIZE, SIZE, 3]))
  assert scores.shape == (3,)
  # The paper's critic: 224 px pooled five times to 7x7, covered by one 7x7 VALID conv.
  paper = model_lib.Discriminator(TINY.replace(disc_channels=PAPER.disc_channels))
  paper(tf.zeros([1, 224, 224, 3]))
  assert paper.conv_out.kernel.shape[:2] == (7, 7)


def test_training_lowers_face_l1_and_checkpoint_round_trip(toy, tmp_path):
  face_model, topology, stage, images, alpha, _ = toy
  records = np.concatenate([images.numpy(), alpha.numpy()], -1)
  data = tmp_path / "toy.bin"
  binfile.write_bin(data, [np.round(r * 255).astype(np.uint8) for r in records],
                    [f"{i}.png" for i in range(NUM_IMAGES)])
  pipeline = infer.TexturePipeline(stage, topology, TOY)
  steps = 40
  result = train_lib.train(pipeline, TOY, data, tmp_path / "ckpt", "coarse-dir", steps=steps,
                           log=lambda *a: None, progress=False)
  assert result.steps == steps and np.isfinite(result.terms["total"])
  meta = json.loads((tmp_path / "ckpt" / checkpoint_lib.META_FILE).read_text())
  assert meta["step"] == steps and meta["num_vertices"] == list(topology.num_vertices)
  coarse = pipeline.coarse(images, alpha)
  refined = pipeline.refine(coarse)
  mask = coarse.synth.render.mask * alpha
  before = face_l1(images, coarse.synth.render.image, mask)
  after = face_l1(images, refined.render.image, mask)
  assert after < 0.8 * before, (before, after)
  # Restore into a fresh pipeline: identical output.
  restored = infer.load_pipeline(tmp_path / "ckpt", stage=stage, topology=topology)
  np.testing.assert_allclose(restored.refine(restored.coarse(images, alpha)).albedo.numpy(),
                             refined.albedo.numpy(), atol=1e-6)
  # Evaluation and test mode on the same records agree with the numbers above.
  report = evaluate.evaluate(restored, data, batch_size=NUM_IMAGES)
  assert report["count"] == NUM_IMAGES
  assert report["refined"]["l1"] < report["coarse"]["l1"]
  assert report["coarse"]["l1"] == pytest.approx(before, abs=0.01)
  # The confidence blend (TOY keeps tiny's): "gcn" scores the GCN's own albedo,
  # "refined" the blend, which lies between the coarse and the GCN's albedo.
  assert restored.config.albedo_confidence > 0
  assert report["gcn"]["l1"] == pytest.approx(after, abs=0.01)
  blended = restored.refine(restored.coarse(images, alpha), blend=True).albedo.numpy()
  coarse_albedo = coarse.synth.albedo.numpy()
  gcn_albedo = refined.albedo.numpy()
  assert np.all((blended - coarse_albedo) * (gcn_albedo - blended) >= -1e-6)
  assert "gcn alone" in evaluate.format_report(report)
  result = infer.run_test(restored, data, tmp_path / "test", limit=1)
  names = sorted(p.name for p in (tmp_path / "test").iterdir())
  assert names == ["0_coarse.obj", "0_compare.png", "0_refined.mtl", "0_refined.obj", "0_uv.png"]
  assert "mtllib 0_refined.mtl" in (tmp_path / "test" / "0_refined.obj").read_text()
  assert "map_Kd 0_uv.png" in (tmp_path / "test" / "0_refined.mtl").read_text()
  assert result.mean("refined", "l1") < result.mean("coarse", "l1")
  # A plain RGB file (no alpha): the projected skin region stands in; not scored.
  from shared.io.export import read_obj_colours, write_png
  write_png(tmp_path / "photos" / "face.png", images[0].numpy())
  plain = infer.run_test(restored, tmp_path / "photos", tmp_path / "plain")
  assert len(plain.files) == 5 and plain.metrics == []
  vertices, faces, colours = read_obj_colours(tmp_path / "test" / "0_refined.obj")
  assert vertices.shape == (face_model.num_vertices, 3) and len(faces) == len(face_model.faces)
  assert colours.min() >= 0 and colours.max() <= 1


def test_foreign_sampling_file_is_refused(toy, tmp_path):
  face_model, topology, *_ = toy
  path = tmp_path / "other.npz"
  topology_lib.save_topology(path, topology, "some-other-mesh", FACTORS)
  with pytest.raises(InputError, match="built for face model some-other-mesh"):
    infer.load_topology_for(face_model, TOY, path)


def test_checkpoint_errors_are_one_line(tmp_path):
  with pytest.raises(InputError, match="GCN checkpoint folder not found"):
    checkpoint_lib.read_meta(tmp_path / "missing")
  with pytest.raises(InputError, match="not a GCN checkpoint folder"):
    checkpoint_lib.read_meta(tmp_path)


@pytest.mark.parametrize("arch", ["normal", "resnet"])
def test_every_generator_weight_is_checkpointed(toy, tmp_path, arch):
  _, topology, *_ = toy
  gcn = model_lib.TextureGCN(topology, TOY.replace(arch=arch))
  gcn(tf.zeros([1, FEATURES]), tf.zeros([1, topology.num_vertices[0], 7]))
  critic = model_lib.Discriminator(TOY)
  critic(tf.zeros([1, SIZE, SIZE, 3]))
  path = tf.train.Checkpoint(generator=gcn, critic=critic).write(str(tmp_path / "ck"))
  saved = [n for n in tf.train.load_checkpoint(path).get_variable_to_shape_map()
           if n.endswith("VARIABLE_VALUE")]
  assert len(saved) == len(gcn.trainable_variables) + len(critic.trainable_variables)


def test_gan_and_embedding_step(toy, tmp_path):
  """One compiled step with the critic and a user embedding model (perception loss)."""
  import keras
  face_model, topology, stage, images, alpha, _ = toy
  inputs = keras.Input((TOY.embedding_size, TOY.embedding_size, 3))
  pooled = keras.layers.GlobalAveragePooling2D()(inputs)
  keras.Model(inputs, keras.layers.Dense(5)(pooled)).save(tmp_path / "embed.keras")
  embedding = FaceEmbedder(tmp_path / "embed.keras", TOY.embedding_size)
  assert embedding.output_size == 5
  pipeline = infer.TexturePipeline(stage, topology, TOY, embedding)
  assert pipeline.feature_size == FEATURES + 5
  trainer = train_lib.Trainer(pipeline, TOY.replace(critic_steps=1), gan=True)
  before = [v.numpy().copy() for v in trainer.critic.trainable_variables]
  terms, applied, _ = trainer.train_step(images[:2], alpha[:2], epoch=5)
  assert applied
  assert np.isfinite(terms["critic"]) and np.isfinite(terms["adversarial"])
  assert 0.0 <= terms["perception"] <= 2.0
  assert any(not np.allclose(b, v.numpy()) for b, v in
             zip(before, trainer.critic.trainable_variables))
  (tmp_path / "bad.keras").write_bytes(b"junk")
  with pytest.raises(InputError, match="cannot load the embedding model"):
    FaceEmbedder(tmp_path / "bad.keras", TOY.embedding_size)


def test_cli_bad_inputs_are_one_line(tmp_path, capsys):
  import main as main_module
  binfile.write_bin(tmp_path / "small.bin", [np.zeros((8, 8, 4), np.uint8)], ["a"])
  raw = (tmp_path / "small.bin").read_bytes()
  (tmp_path / "cut.bin").write_bytes(raw[:-3])
  (tmp_path / "magic.bin").write_bytes(b"XXXXXXXX" + raw[8:])
  cases = [
      (["--mode", "train", "--data", str(tmp_path / "cut.bin"), "--coarse-checkpoint", "c",
        "--checkpoint", "g"], "truncated"),
      (["--mode", "train", "--data", str(tmp_path / "magic.bin"), "--coarse-checkpoint", "c",
        "--checkpoint", "g"], "not a face3d .bin file"),
      (["--mode", "train", "--data", str(tmp_path / "small.bin"), "--coarse-checkpoint", "c",
        "--checkpoint", "g"], "records are 8x8x4, this job needs 224x224x4"),
      (["--mode", "eval", "--data", str(tmp_path / "small.bin"), "--checkpoint",
        str(tmp_path / "none")], "GCN checkpoint folder not found"),
      (["--mode", "test", "--checkpoint", str(tmp_path)], "--mode test needs --input"),
      (["--mode", "train", "--data", "x.bin", "--coarse-checkpoint", "c", "--checkpoint", "g",
        "--steps", "0"], "--steps 0: must be at least 1"),
      (["--mode", "eval", "--data", str(tmp_path / "small.bin"), "--checkpoint", str(tmp_path),
        "--albedo-confidence", "-1"], "--albedo-confidence -1.0: must be 0 or more"),
  ]
  for argv, message in cases:
    assert main_module.main(["--model", "gcn"] + argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_test_inputs_are_checked_before_anything_is_written(tmp_path):
  """test mode creates its output folder only after this check, so a missing
  input or an empty folder leaves nothing behind."""
  with pytest.raises(InputError, match="input not found"):
    infer.test_inputs(tmp_path / "missing.jpg", 224)   # Raised on the call, not on iteration.
  (tmp_path / "empty").mkdir()
  with pytest.raises(InputError, match="no images found"):
    infer.test_inputs(tmp_path / "empty", 224)
  (tmp_path / "cut.bin").write_bytes(b"F3DBIN")
  with pytest.raises(InputError):
    infer.test_inputs(tmp_path / "cut.bin", 224)


def test_corrupt_image_leaves_no_output_folder(toy, tmp_path):
  """An image that cannot be decoded fails (one line) before the output folder is made."""
  _, topology, stage, _, _, _ = toy
  pipeline = infer.TexturePipeline(stage, topology, TOY)
  (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
  with pytest.raises(InputError, match="cannot decode"):
    infer.run_test(pipeline, tmp_path / "bad.jpg", tmp_path / "out")
  assert not (tmp_path / "out").exists()


def test_folder_skips_unusable_images_and_goes_on(toy, tmp_path):
  """In a folder, an image that cannot be read is reported and skipped (the photo
  pipeline's behaviour); the others are refined.  A folder where nothing can be used
  fails with one line and leaves no output folder."""
  from shared.io.export import write_png
  _, topology, stage, images, _, _ = toy
  pipeline = infer.TexturePipeline(stage, topology, TOY)
  write_png(tmp_path / "photos" / "a_face.png", images[0].numpy())
  (tmp_path / "photos" / "b_cut.jpg").write_bytes(b"not a jpeg")
  (tmp_path / "photos" / "c_empty.png").write_bytes(b"")
  lines = []
  result = infer.run_test(pipeline, tmp_path / "photos", tmp_path / "out", log=lines.append)
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
      "a_face_coarse.obj", "a_face_compare.png", "a_face_refined.mtl", "a_face_refined.obj",
      "a_face_uv.png"]
  assert len(result.skipped) == 2 and len(lines) == 2
  assert lines[0].startswith("skipped: ") and "b_cut.jpg: cannot decode" in lines[0]
  assert "c_empty.png: image file is empty" in lines[1]
  (tmp_path / "photos" / "a_face.png").unlink()
  with pytest.raises(InputError, match="none of its 2 images could be used"):
    infer.run_test(pipeline, tmp_path / "photos", tmp_path / "none", log=lines.append)
  assert not (tmp_path / "none").exists()


def test_photo_without_a_face_is_skipped_in_a_folder(tmp_path):
  """A photo in which the detector finds no face: skipped in a folder (`on_skip`),
  while the aligned crop beside it is still read."""
  import cv2
  from shared.model.face_model import load_face_model
  cv2.imwrite(str(tmp_path / "blank.png"), np.zeros((300, 300, 3), np.uint8))
  cv2.imwrite(str(tmp_path / "crop.png"), np.full((224, 224, 3), 128, np.uint8))
  skipped = []
  inputs = list(infer.test_inputs(tmp_path, 224, load_face_model(), on_skip=skipped.append))
  assert [name for name, *_ in inputs] == ["crop"]
  assert len(skipped) == 1 and str(skipped[0]).endswith("blank.png: no face found")


def test_photo_front_end_crops_faces(tmp_path):
  """A photo that is not an aligned crop goes through the photo pipeline's detector
  and aligner: one 224 x 224 crop per face, named STEM_faceK, without alpha, with the
  region of the face that hair does not cover."""
  import cv2
  from skimage import data
  from shared.model.face_model import load_face_model
  cv2.imwrite(str(tmp_path / "astronaut.png"), data.astronaut()[..., ::-1])
  inputs = list(infer.test_inputs(tmp_path, 224, load_face_model()))
  assert [name for name, *_ in inputs] == ["astronaut_face0"]
  _, rgb, alpha, landmarks, refit, seen = inputs[0]
  assert rgb.shape == (224, 224, 3) and alpha is None and 0.2 < rgb.mean() < 0.8
  # The detector's landmarks, in crop pixels.
  assert landmarks.shape == (68, 2) and (landmarks > 0).all() and (landmarks < 224).all()
  # The face seen unoccluded: her nose, eyes and mouth, not the fringe above her brows.
  assert seen.shape == (224, 224, 1)
  inner = np.round(landmarks[27:68] - 0.5).astype(int)
  assert seen[inner[:, 1], inner[:, 0], 0].all()
  eyes = np.linalg.norm(landmarks[36] - landmarks[45])
  x, y = np.round((landmarks[19] + landmarks[24]) / 2 - [0.0, 0.35 * eyes] - 0.5).astype(int)
  assert seen[y - 2:y + 3, x - 10:x + 11].max() == 0
  # `refit` fits the coarse coefficients as the photo pipeline does (here from the
  # posed mean face): its colour stage takes the skin's colour from the photo; the
  # mean albedo under the default light is far from it.
  from shared.fit.skin import skin_from_landmarks
  model = load_face_model()
  synth = FaceSynthesizer(model)
  fitted = refit(None)
  skin = np.asarray(skin_from_landmarks(rgb[None], landmarks[None]))[0, ..., 0]

  def skin_colour(coeffs):
    render = synth(coeffs, render=True).render
    weight = (render.mask.numpy()[0, ..., 0] * skin)[..., None]
    return (render.image.numpy()[0] * weight).sum((0, 1)) / weight.sum(), weight

  fitted_colour, weight = skin_colour(fitted)
  photo_colour = (rgb * weight).sum((0, 1)) / weight.sum()
  mean_colour, _ = skin_colour(fitted._replace(albedo=tf.zeros_like(fitted.albedo),
                                               lighting=tf.zeros_like(fitted.lighting)))
  assert np.abs(fitted_colour - photo_colour).max() < 0.05, (fitted_colour, photo_colour)
  assert np.abs(mean_colour - photo_colour).max() > 0.15, (mean_colour, photo_colour)
  cv2.imwrite(str(tmp_path / "astronaut.png"), np.zeros((300, 300, 3), np.uint8))
  with pytest.raises(InputError, match="no face found"):
    list(infer.test_inputs(tmp_path / "astronaut.png", 224, load_face_model()))


def test_inputs_with_one_stem_get_distinct_names(tmp_path):
  """crop.png and crop.jpg (aligned 224 crops) are named crop_jpg and crop_png, so their
  test-mode files do not overwrite each other."""
  import cv2
  crop = np.full((224, 224, 3), 128, np.uint8)
  for name in ("crop.png", "crop.jpg", "other.png"):
    cv2.imwrite(str(tmp_path / name), crop)
  assert [name for name, *_ in infer.test_inputs(tmp_path, 224)] == ["crop_jpg", "crop_png",
                                                                     "other"]
