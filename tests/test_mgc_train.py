"""MGC regressor, objective, training loop, checkpoints, inference and the command line."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

import main as main_module
from mgc_face import config as config_lib
from mgc_face import data as data_lib
from mgc_face import infer
from mgc_face import model as model_lib
from mgc_face import objective as objective_lib
from mgc_face import synthetic
from mgc_face import train as train_lib
from shared.train.embedding import FaceEmbedder
from shared.errors import InputError

# No landmark-head warm-up (the step tests need the full objective) and a small prior sample.
TEST_CONFIG = config_lib.get_config("tiny").replace(batch_size=1, checkpoint_every=2,
                                                     summary_every=1, image_summary_every=2,
                                                     landmark_warmup_steps=0,
                                                     prior_init_samples=300)
# Checkpoint and resume tests train single-view: it compiles in about half the time.
SINGLE_VIEW = TEST_CONFIG.replace(multiview=False)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, ict_model):
  root = tmp_path_factory.mktemp("mgc_synth")
  synthetic.generate(ict_model, root, identities=3, test_identities=1, seed=3, progress=False)
  return root


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory, ict_model):
  """A checkpoint after 2 training steps."""
  ckpt = tmp_path_factory.mktemp("mgc_ckpt")
  result = train_lib.train(ict_model, SINGLE_VIEW, dataset, ckpt, steps=2, progress=False,
                           log=lambda message: None)
  return ckpt, result


@pytest.fixture(scope="module")
def trainer(ict_model, tmp_path_factory):
  """A multi-view trainer shared by the step tests (compiling one costs ~20 s)."""
  messages = []
  trainer = train_lib.Trainer(ict_model, TEST_CONFIG, tmp_path_factory.mktemp("mgc_trainer"),
                              log=messages.append)
  trainer.messages = messages
  return trainer


def first_batch(dataset, batch_size=1):
  ds, _ = data_lib.make_dataset(dataset, "train", batch_size, shuffle=False, repeat=False,
                                report=False)
  return next(iter(ds))


def test_untrained_regressor_predicts_the_mean_face(ict_model):
  regressor = infer.build_regressor(ict_model, TEST_CONFIG)
  images = np.random.default_rng(0).uniform(size=(2, 224, 224, 3)).astype(np.float32)
  coeffs, features = regressor(images)
  assert features.shape == (2, regressor.feature_size)
  assert regressor.layout.size == 100 + 80 + 53 + 6 + 27
  for part in coeffs:
    np.testing.assert_array_equal(part.numpy(), 0.0)
  again = infer.regress(regressor, images[0])
  assert again.identity.shape == (1, 100)
  with pytest.raises(InputError, match="images must be"):
    infer.regress(regressor, np.zeros((1, 100, 100, 3), np.float32))


def test_objective_is_finite_and_multiview_terms_follow_the_flags(dataset, ict_model):
  from shared.render.face_image import FaceSynthesizer
  batch = first_batch(dataset, 2)
  regressor = model_lib.build_regressor(ict_model, TEST_CONFIG)
  objective = objective_lib.Objective(FaceSynthesizer(ict_model), TEST_CONFIG)
  coeffs, _ = regressor(objective_lib.flatten_views(batch.images))
  total, terms, visuals = objective(coeffs, batch)
  assert np.isfinite(total.numpy())
  for name in ("landmark", "photometric", "reg_shape", "reg_albedo", "mv_pixel", "mv_depth",
               "mv_epipolar"):
    assert np.isfinite(terms[name].numpy()), name
  assert terms["landmark"].numpy() > 10.0      # The mean face is far from the landmarks.
  assert terms["mv_pixel"].numpy() > 0.0
  # Identical predicted poses give F = 0: the epipolar term is exactly 0 there ...
  assert terms["mv_epipolar"].numpy() == 0.0
  # ... and positive once the views' poses differ.
  rotation = np.zeros((6, 3), np.float32)
  rotation[:, 1] = [0.0, -0.5, 0.5, 0.1, -0.4, 0.6]
  _, posed_terms, _ = objective(coeffs._replace(rotation=tf.constant(rotation)), batch)
  assert posed_terms["mv_epipolar"].numpy() > 0.1
  assert visuals["overlay"].shape == (2, 224, 224, 3)
  mono = batch._replace(flags=tf.zeros_like(batch.flags))
  _, mono_terms, _ = objective(coeffs, mono)
  assert mono_terms["mv_pixel"].numpy() == 0.0 and mono_terms["mv_epipolar"].numpy() == 0.0
  _, single, _ = objective(coeffs, batch, multiview=False)
  assert "mv_pixel" not in single
  np.testing.assert_allclose(single["landmark"].numpy(), terms["landmark"].numpy(), rtol=1e-5)


def test_nan_step_is_skipped_and_keeps_weights(dataset, trainer):
  batch = first_batch(dataset)
  iterations = int(trainer.optimizer.iterations.numpy())
  step, skipped = int(trainer.step.numpy()), int(trainer.skipped.numpy())
  before = [v.numpy().copy() for v in trainer.regressor.network.weights]
  optimizer_before = [v.numpy().copy() for v in trainer.optimizer.variables]
  bad = batch._replace(images=batch.images * np.float32("nan"))
  terms, applied, _ = trainer.train_step(bad)
  assert not applied and not np.isfinite(terms["total"])
  assert int(trainer.optimizer.iterations.numpy()) == iterations
  for old, new in zip(before, trainer.regressor.network.weights):
    np.testing.assert_array_equal(old, new.numpy())
  for old, new in zip(optimizer_before, trainer.optimizer.variables):
    np.testing.assert_array_equal(old, new.numpy())
  assert any("non-finite" in m and "skipped" in m for m in trainer.messages)
  assert int(trainer.skipped.numpy()) == skipped + 1 and int(trainer.step.numpy()) == step + 1
  # A good step afterwards is applied.
  _, applied, _ = trainer.train_step(batch)
  assert applied and int(trainer.optimizer.iterations.numpy()) == iterations + 1


def test_short_training_lowers_the_loss(dataset, trainer):
  batch = first_batch(dataset)
  first, _, _ = trainer.train_step(batch)
  for _ in range(12):
    last, applied, _ = trainer.train_step(batch)
    assert applied
  assert last["total"] < 0.7 * first["total"], (first["total"], last["total"])
  assert last["landmark"] < first["landmark"]


def test_checkpoint_round_trip_and_metadata(trained, ict_model):
  ckpt, result = trained
  assert result["steps"] == 2 and result["skipped"] == 0
  meta = json.loads((ckpt / "meta.json").read_text())
  assert meta["format_version"] == train_lib.META_VERSION
  assert meta["face_model_hash"] == ict_model.source_hash
  assert meta["config_name"] == "tiny" and meta["steps"] == 2
  assert meta["layout"] == {"num_id": 100, "num_albedo": 80, "num_exp": 53, "size": 266}
  assert list((ckpt / "logs").glob("events.out.tfevents.*"))
  regressor = infer.load_regressor(ckpt, ict_model)
  trainer = train_lib.Trainer(ict_model, SINGLE_VIEW, ckpt, log=lambda m: None)
  assert trainer.restore() == 2
  images = np.random.default_rng(1).uniform(size=(1, 224, 224, 3)).astype(np.float32)
  expected = trainer.regressor.network(images, training=False)[0].numpy()
  got = regressor.layout.join(regressor(images)[0]).numpy()
  np.testing.assert_allclose(got, expected, atol=1e-5)
  assert np.abs(got).max() > 0   # Trained: no longer the zero head.


def test_interrupt_saves_and_resume_continues(trained, dataset, ict_model, tmp_path, monkeypatch):
  import shutil
  ckpt, _ = trained
  copy = tmp_path / "ckpt"
  shutil.copytree(ckpt, copy)
  original = train_lib.Trainer.train_step
  calls = []

  def interrupted(self, batch):
    calls.append(1)
    if len(calls) == 2:
      raise KeyboardInterrupt
    return original(self, batch)

  monkeypatch.setattr(train_lib.Trainer, "train_step", interrupted)
  messages = []
  with pytest.raises(KeyboardInterrupt):
    train_lib.train(ict_model, SINGLE_VIEW, dataset, copy, steps=5, progress=False,
                    log=messages.append)
  assert any("resumed" in m and "step 2" in m for m in messages)
  assert any("interrupted at step 3" in m for m in messages)
  assert json.loads((copy / "meta.json").read_text())["steps"] == 3
  monkeypatch.setattr(train_lib.Trainer, "train_step", original)
  messages.clear()
  result = train_lib.train(ict_model, SINGLE_VIEW, dataset, copy, steps=4, progress=False,
                           log=messages.append)
  assert result["steps"] == 4
  assert any("resumed" in m and "step 3" in m for m in messages)
  assert json.loads((copy / "meta.json").read_text())["steps"] == 4


def test_identity_loss_uses_a_face_embedding_savedmodel(dataset, ict_model, tmp_path):
  from shared.render.face_image import FaceSynthesizer

  class Embedder(tf.Module):
    def __init__(self):
      super().__init__()
      self.w = tf.Variable(np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)])
    def embed(self, images):
      return {"embedding": tf.reduce_mean(images, axis=[1, 2]) @ self.w}

  module = Embedder()
  tf.saved_model.save(module, str(tmp_path / "embedder"),
                      signatures={"serving_default": module.embed})
  embedder = FaceEmbedder(tmp_path / "embedder")
  assert embedder(tf.zeros([2, 224, 224, 3])).shape == (2, 8)
  batch = first_batch(dataset)
  objective = objective_lib.Objective(FaceSynthesizer(ict_model), TEST_CONFIG, embedder)
  coeffs = model_lib.CoeffLayout.for_model(ict_model).zeros(3)
  total, terms, _ = objective(coeffs, batch, multiview=False)
  assert 0.0 < terms["identity"].numpy() <= 2.0
  with pytest.raises(InputError, match="embedding model not found"):
    FaceEmbedder(tmp_path / "missing")


def test_checkpoint_of_another_face_model_is_refused(trained, ict_model, dataset):
  ckpt, _ = trained
  other = dataclasses.replace(ict_model, source_hash="0123456789abcdef", name="other model")
  with pytest.raises(InputError, match="trained with face model") as error:
    infer.load_regressor(ckpt, other)
  assert "\n" not in str(error.value)
  trainer = train_lib.Trainer(other, SINGLE_VIEW, ckpt, log=lambda m: None)
  with pytest.raises(InputError, match="trained with face model"):
    trainer.restore()


def test_missing_checkpoint_is_an_input_error(tmp_path, ict_model):
  with pytest.raises(InputError, match="no checkpoint"):
    infer.load_regressor(tmp_path, ict_model)
  with pytest.raises(InputError, match="not found"):
    infer.load_regressor(tmp_path / "nope", ict_model)


def test_procrustes_rmse_removes_rigid_motion():
  from mgc_face.evaluate import aligned_rmse
  from scipy.spatial.transform import Rotation
  rng = np.random.default_rng(4)
  truth = rng.normal(size=(500, 3))
  moved = truth @ Rotation.from_euler("xyz", [20, -50, 10], degrees=True).as_matrix().T + 3.0
  assert aligned_rmse(moved, truth) < 1e-9
  noise = rng.normal(0, 0.01, truth.shape)
  np.testing.assert_allclose(aligned_rmse(moved + noise, truth), np.sqrt((noise ** 2).sum(1).mean()),
                             rtol=0.05)
  region = np.zeros(500, bool)
  region[:100] = True
  assert aligned_rmse(moved, truth, region) < 1e-9


def test_similarity_rmse_also_removes_one_scale():
  from mgc_face.evaluate import aligned_rmse
  from scipy.spatial.transform import Rotation
  rng = np.random.default_rng(5)
  truth = rng.normal(size=(400, 3))
  moved = 0.9 * truth @ Rotation.from_euler("xyz", [-10, 35, 5], degrees=True).as_matrix().T - 2.0
  assert aligned_rmse(moved, truth, with_scale=True) < 1e-9
  # Rigid alignment keeps the 10 % size error: sqrt(mean |0.1 x|^2) for centred points.
  centred = truth - truth.mean(0)
  np.testing.assert_allclose(aligned_rmse(moved, truth),
                             0.1 * np.sqrt((centred ** 2).sum(1).mean()), rtol=1e-3)
  # A mirror is not a rotation: the fitted transform stays proper.
  mirrored = truth * np.array([-1.0, 1.0, 1.0])
  assert aligned_rmse(mirrored, truth, with_scale=True) > 0.1


def run_main(argv, capsys):
  code = main_module.main(argv)
  captured = capsys.readouterr()
  return code, captured.out, captured.err


def test_cli_test_mode_writes_every_output(trained, dataset, tmp_path, capsys):
  ckpt, _ = trained
  out = tmp_path / "out"
  code, stdout, _ = run_main(["--model", "mgc", "--mode", "test", "--checkpoint", str(ckpt),
                              "--input", str(dataset / "heldout"), "--output", str(out)], capsys)
  assert code == 0 and "wrote 1 reconstruction" in stdout
  name = "id00002_000"
  for suffix in (".obj", "_coeffs.npz", "_lm2d.txt", "_lm3d.txt", "_overlay.png", "_depth.png",
                 "_poses.png"):
    assert (out / f"{name}{suffix}").exists(), suffix
  from shared.io.export import read_obj_colours
  vertices, faces, colours = read_obj_colours(out / f"{name}.obj")
  assert vertices.shape == (9409, 3) and colours.shape == (9409, 3) and faces.shape[0] == 18460
  lm2d = np.loadtxt(out / f"{name}_lm2d.txt")
  lm3d = np.loadtxt(out / f"{name}_lm3d.txt")
  assert lm2d.shape == (68, 2) and lm3d.shape == (68, 3)
  coeffs = np.load(out / f"{name}_coeffs.npz")
  assert coeffs["coefficients"].shape == (266,) and coeffs["identity"].shape == (100,)
  import cv2
  assert cv2.imread(str(out / f"{name}_overlay.png")).shape == (224, 448, 3)


def test_cli_test_mode_refuses_a_wrong_size_image(trained, tmp_path, capsys):
  import cv2
  ckpt, _ = trained
  bad = tmp_path / "big.png"
  cv2.imwrite(str(bad), np.zeros((300, 300, 3), np.uint8))
  code, _, stderr = run_main(["--model", "mgc", "--mode", "test", "--checkpoint", str(ckpt),
                              "--input", str(bad), "--input-kind", "aligned",
                              "--output", str(tmp_path / "o")], capsys)
  assert code == 2
  lines = [line for line in stderr.splitlines() if line.startswith("error:")]
  assert len(lines) == 1 and "image is 300x300" in lines[0]
  assert not (tmp_path / "o" / "big.obj").exists()


def test_cli_eval_prints_a_table_then_json(trained, dataset, capsys):
  ckpt, _ = trained
  code, stdout, _ = run_main(["--model", "mgc", "--mode", "eval", "--checkpoint", str(ckpt),
                              "--data", str(dataset), "--quiet"], capsys)
  assert code == 0
  metrics = json.loads(stdout.strip().splitlines()[-1])
  assert metrics["samples"] == 1 and metrics["views"] == 3
  for key in ("rmse_face_units", "rmse_face_mm", "nme_percent", "photometric", "rmse_face_sim_mm",
              "mean_face_rmse_face_sim_mm", "fit_rmse_face_mm", "fit_rmse_face_sim_mm"):
    assert np.isfinite(metrics[key]), key
  # A similarity fit has one more degree of freedom than a rigid one.
  assert metrics["rmse_face_sim_mm"] <= metrics["rmse_face_mm"] + 1e-9
  assert metrics["mean_face_rmse_face_sim_mm"] <= metrics["mean_face_rmse_face_mm"] + 1e-9
  from mgc_face.evaluate import LANDMARK_FIT
  assert metrics["fit_landmark_steps"] == LANDMARK_FIT.landmark_steps and "+ landmark fit" in stdout
  np.testing.assert_allclose(metrics["rmse_face_mm"], 100 * metrics["rmse_face_units"], rtol=1e-6)
  assert "68-landmark NME (%)" in stdout
  # --fit-steps sets the landmark fit's length; 0 turns it off.
  code, stdout, _ = run_main(["--model", "mgc", "--mode", "eval", "--checkpoint", str(ckpt),
                              "--data", str(dataset), "--quiet", "--fit-steps", "0"], capsys)
  short = json.loads(stdout.strip().splitlines()[-1])
  assert code == 0 and short["fit_landmark_steps"] == 0 and "+ landmark fit" not in stdout
  assert short["rmse_face_mm"] == metrics["rmse_face_mm"]


def test_cli_needs_its_flags(capsys):
  code, _, stderr = run_main(["--model", "mgc", "--mode", "train"], capsys)
  assert code == 2 and "needs --data" in stderr


def test_landmark_warmup_steps_train_the_head_only(dataset, ict_model, tmp_path):
  config = SINGLE_VIEW.replace(landmark_warmup_steps=1)
  trainer = train_lib.Trainer(ict_model, config, tmp_path, log=lambda m: None)
  batch = first_batch(dataset)
  head_kernel = trainer.regressor.network.get_layer("heatmaps").kernel.numpy().copy()
  coefficient_kernel = trainer.regressor.network.get_layer("coefficients").kernel.numpy().copy()
  terms, applied, _ = trainer.train_step(batch)
  assert applied and set(terms) == {"landmark_head", "heatmap", "total"}
  assert not np.allclose(trainer.regressor.network.get_layer("heatmaps").kernel.numpy(),
                         head_kernel)
  # The coefficient layer has no gradient from the head's terms (stop_gradient).
  np.testing.assert_array_equal(
      trainer.regressor.network.get_layer("coefficients").kernel.numpy(), coefficient_kernel)
  terms, applied, _ = trainer.train_step(batch)
  assert applied and {"landmark", "photometric", "landmark_head"} <= set(terms)
