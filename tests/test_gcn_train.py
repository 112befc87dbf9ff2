"""The GCN trainer under the shared loop policy: automatic resume, non-finite steps skipped.

Uses the toy face of tests/test_gcn_pipeline.py (a sphere cap, 64 px).
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from gcn_face import binfile
from gcn_face import checkpoint as checkpoint_lib
from gcn_face import infer
from gcn_face import train as train_lib
from shared.errors import InputError
from test_gcn_pipeline import NUM_IMAGES, TOY, toy  # noqa: F401  (toy: a fixture)


@pytest.fixture(scope="module")
def toy_bin(toy, tmp_path_factory):  # noqa: F811
  _, _, _, images, alpha, _ = toy
  path = tmp_path_factory.mktemp("gcn_train") / "toy.bin"
  records = np.concatenate([images.numpy(), alpha.numpy()], -1)
  binfile.write_bin(path, [np.round(r * 255).astype(np.uint8) for r in records],
                    [f"{i}.png" for i in range(NUM_IMAGES)])
  return path


def pipeline_of(toy):  # noqa: F811
  _, topology, stage, *_ = toy
  return infer.TexturePipeline(stage, topology, TOY)


def test_a_second_run_resumes_from_the_folder(toy, toy_bin, tmp_path):  # noqa: F811
  ckpt = tmp_path / "ckpt"
  first = train_lib.train(pipeline_of(toy), TOY, toy_bin, ckpt, "coarse-dir", steps=3,
                          log=lambda m: None, progress=False)
  assert first.steps == 3 and first.checkpoint.endswith("ckpt-3")
  messages = []
  second = train_lib.train(pipeline_of(toy), TOY, toy_bin, ckpt, "coarse-dir", steps=5,
                           log=messages.append, progress=False)
  assert second.steps == 5 and second.checkpoint.endswith("ckpt-5")
  assert any("resumed from" in m and "at step 3" in m for m in messages), messages
  reader = tf.train.load_checkpoint(second.checkpoint)
  assert reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 5
  assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 5
  meta = json.loads((ckpt / checkpoint_lib.META_FILE).read_text())
  assert meta["step"] == 5 and meta["format_version"] == checkpoint_lib.META_VERSION
  assert meta["relative_paths"] == {
      "coarse_checkpoint": os.path.relpath(Path("coarse-dir").resolve(), ckpt.resolve())}
  assert list((ckpt / "logs").glob("events.out.tfevents.*"))
  # Another architecture cannot resume this folder: one line, nothing written.
  with pytest.raises(InputError, match="holds a 'tiny' \\(normal\\) checkpoint") as error:
    train_lib.train(pipeline_of(toy), TOY.replace(arch="resnet"), toy_bin, ckpt, "coarse-dir",
                    steps=6, log=lambda m: None, progress=False)
  assert "\n" not in str(error.value)
  assert tf.train.latest_checkpoint(str(ckpt)).endswith("ckpt-5")


def test_checkpoint_of_another_hierarchy_is_refused(toy, toy_bin, tmp_path):  # noqa: F811
  """gcn.json names the hierarchy the weights were trained on (session 31): a run or a load
  with another one (same vertex counts) stops with one line instead of using it silently."""
  _, topology, stage, *_ = toy
  ckpt = tmp_path / "ckpt"
  train_lib.train(pipeline_of(toy), TOY, toy_bin, ckpt, "coarse-dir", steps=1,
                  log=lambda m: None, progress=False)
  meta_path = ckpt / checkpoint_lib.META_FILE
  meta = json.loads(meta_path.read_text())
  assert meta["topology_digest"] == topology.digest()
  assert infer.load_pipeline(ckpt, stage=stage, topology=topology).topology is topology
  meta["topology_digest"] = "0" * len(meta["topology_digest"])
  meta_path.write_text(json.dumps(meta))
  with pytest.raises(InputError, match="trained on another mesh hierarchy") as error:
    infer.load_pipeline(ckpt, stage=stage, topology=topology)
  assert "\n" not in str(error.value)
  with pytest.raises(InputError, match="trained on another mesh hierarchy"):
    train_lib.train(pipeline_of(toy), TOY, toy_bin, ckpt, "coarse-dir", steps=2,
                    log=lambda m: None, progress=False)
  assert tf.train.latest_checkpoint(str(ckpt)).endswith("ckpt-1")


def test_old_gcn_json_is_read(toy, tmp_path):  # noqa: F811
  """gcn.json of the previous format ("version"): still a valid checkpoint description."""
  (tmp_path / "gcn.json").write_text(json.dumps({
      "kind": checkpoint_lib.META_KIND, "version": 1, "step": 4,
      "config": json.loads(TOY.to_json())}))
  meta, config = checkpoint_lib.read_meta(tmp_path)
  assert meta["step"] == 4 and config == TOY


def test_recorded_paths_follow_a_moved_folder(tmp_path):
  """gcn.json records the coarse checkpoint relative to itself too (session 34): a folder
  holding both checkpoints still loads after a move; where neither path exists, one line
  names the option that replaces it."""
  tmp_path = tmp_path.resolve()   # the recorded paths are resolved (symlinks followed)
  old = tmp_path / "old"
  (old / "mgc_checkpoint").mkdir(parents=True)
  meta = checkpoint_lib.path_fields(old / "gcn_checkpoint",
                                    coarse_checkpoint=old / "mgc_checkpoint",
                                    sampling=None, embedding_model=None)
  assert meta["relative_paths"] == {"coarse_checkpoint": "../mgc_checkpoint"}
  assert meta["sampling"] is None and meta["coarse_checkpoint"] == str(old / "mgc_checkpoint")
  assert checkpoint_lib.recorded_path(meta, "coarse_checkpoint", old / "gcn_checkpoint") == str(
      old / "mgc_checkpoint")
  new = old.rename(tmp_path / "new")
  assert checkpoint_lib.recorded_path(meta, "coarse_checkpoint", new / "gcn_checkpoint") == str(
      new / "mgc_checkpoint")
  assert checkpoint_lib.recorded_path(meta, "sampling", new / "gcn_checkpoint") is None
  del meta["relative_paths"]   # a gcn.json written before session 34
  with pytest.raises(InputError, match="mgc_checkpoint: recorded in .*gcn.json but not found; "
                     "pass --coarse-checkpoint") as error:
    checkpoint_lib.recorded_path(meta, "coarse_checkpoint", new / "gcn_checkpoint")
  assert "\n" not in str(error.value)


def test_a_non_finite_step_changes_neither_generator_nor_critic(toy):  # noqa: F811
  _, _, _, images, alpha, _ = toy
  messages = []
  trainer = train_lib.Trainer(pipeline_of(toy), TOY.replace(critic_steps=1), gan=True,
                              log=messages.append)
  watched = trainer.watched_weights() + list(trainer.optimizer.variables) + list(
      trainer.critic_optimizer.variables)
  before = [v.numpy().copy() for v in watched]
  bad = images[:2].numpy()
  bad[0, 10, 10, 0] = np.nan
  terms, applied, _ = trainer.train_step(tf.constant(bad), alpha[:2], epoch=0)
  assert not applied and not np.isfinite(terms["total"])
  for old, new in zip(before, watched):
    np.testing.assert_array_equal(old, new.numpy())
  assert int(trainer.skipped.numpy()) == 1 and int(trainer.step.numpy()) == 1
  assert any("non-finite loss or gradient; update skipped" in m for m in messages)
  terms, applied, _ = trainer.train_step(images[:2], alpha[:2], epoch=0)
  assert applied and np.isfinite(terms["total"])
  assert int(trainer.optimizer.iterations.numpy()) == 1
  assert int(trainer.critic_optimizer.iterations.numpy()) == 1


def test_training_with_the_coarse_fit_uses_the_bins_landmarks(toy, tmp_path):  # noqa: F811
  """coarse_fit_steps: records with landmarks are refitted in the training step, the others
  keep the regressor's coefficients, and one warning line says how many lack them."""
  from shared.model.coeffs import CoeffLayout
  from shared.render.face_image import FaceSynthesizer
  from test_gcn_pipeline import CAMERA
  face_model, _, _, images, alpha, truth = toy
  synth = FaceSynthesizer(face_model, CAMERA)
  target = synth(CoeffLayout.for_model(face_model).split(truth[None]),
                 render=False).landmarks2d.numpy()[0]
  records = np.concatenate([images.numpy(), alpha.numpy()], -1)
  path = tmp_path / "lm.bin"
  binfile.write_bin(path, [np.round(r * 255).astype(np.uint8) for r in records],
                    [f"{i}.png" for i in range(NUM_IMAGES)],
                    landmarks=[target if i % 2 == 0 else None for i in range(NUM_IMAGES)])
  config = TOY.replace(coarse_fit_steps=5)
  _, topology, stage, *_ = toy
  messages = []
  result = train_lib.train(infer.TexturePipeline(stage, topology, config), config, path,
                           tmp_path / "ckpt", "coarse-dir", steps=2, log=messages.append,
                           progress=False)
  assert result.steps == 2 and np.isfinite(result.terms["total"])
  warnings = [m for m in messages if m.startswith("warning:")]
  assert len(warnings) == 1 and f"{NUM_IMAGES // 2} of {NUM_IMAGES} records" in warnings[0]


@pytest.fixture(scope="module")
def truth_bin(toy, tmp_path_factory):  # noqa: F811
  """The toy records packed as 'sNN/000' of a source folder whose _gt.npz files hold a
  random true albedo per record."""
  face_model, _, _, images, alpha, _ = toy
  folder = tmp_path_factory.mktemp("gcn_truth")
  rng = np.random.default_rng(0)
  albedos = rng.uniform(0.2, 0.8, (NUM_IMAGES, face_model.num_vertices, 3)).astype(np.float32)
  names = [f"s{i:02d}/000" for i in range(NUM_IMAGES)]
  for name, albedo in zip(names, albedos):
    (folder / name).parent.mkdir()
    np.savez(folder / f"{name}_gt.npz", albedo=albedo)
  records = np.concatenate([images.numpy(), alpha.numpy()], -1)
  path = folder / "truth.bin"
  binfile.write_bin(path, [np.round(r * 255).astype(np.uint8) for r in records], names,
                    metadata={"source": str(folder)})
  return path, albedos


def test_the_truth_albedo_term_is_the_l1_to_each_records_truth(toy, truth_bin):  # noqa: F811
  """truth_albedo_weight: the term is mean |refined - truth[index]| (numpy reference), it
  enters the total with its weight, and steps with it lower it."""
  _, _, _, images, alpha, _ = toy
  path, albedos = truth_bin
  config = TOY.replace(truth_albedo_weight=10.0)
  trainer = train_lib.Trainer(infer.TexturePipeline(toy[2], toy[1], config), config,
                              log=lambda m: None)
  table = train_lib.read_truth(binfile.BinReader(path), albedos.shape[1])
  np.testing.assert_array_equal(table, albedos)
  trainer.set_truth(table)
  index = tf.constant([3, 1], tf.int64)
  pipeline = trainer.pipeline
  coarse = pipeline.coarse(images[:2], alpha[:2], pipeline.regress(images[:2]))
  expected = np.abs(pipeline.refine(coarse).albedo.numpy() - albedos[[3, 1]]).mean()
  first, applied, _ = trainer.train_step(images[:2], alpha[:2], epoch=0, index=index)
  assert applied
  np.testing.assert_allclose(first["truth_albedo"], expected, rtol=1e-5)
  for _ in range(15):
    last, _, _ = trainer.train_step(images[:2], alpha[:2], epoch=0, index=index)
  assert last["truth_albedo"] < 0.8 * first["truth_albedo"]
  with pytest.raises(ValueError, match="index"):
    trainer.train_step(images[:2], alpha[:2], epoch=0)


def test_the_truth_albedo_term_needs_a_bin_with_truth(toy, toy_bin, tmp_path):  # noqa: F811
  """A .bin without true albedos: one line naming it, no checkpoint written."""
  config = TOY.replace(truth_albedo_weight=1.0)
  problem = f"{NUM_IMAGES} of {NUM_IMAGES} records have no true albedo"
  with pytest.raises(InputError, match=problem) as error:
    train_lib.train(infer.TexturePipeline(toy[2], toy[1], config), config, toy_bin,
                    tmp_path / "ckpt", "coarse-dir", steps=2, log=lambda m: None,
                    progress=False)
  assert "\n" not in str(error.value) and str(toy_bin) in str(error.value)
  assert not (tmp_path / "ckpt").exists() or not list((tmp_path / "ckpt").glob("ckpt-*"))


def test_training_with_the_truth_albedo_term_runs_from_the_bin(toy, truth_bin,  # noqa: F811
                                                               tmp_path):
  path, _ = truth_bin
  config = TOY.replace(truth_albedo_weight=1.0)
  result = train_lib.train(infer.TexturePipeline(toy[2], toy[1], config), config, path,
                           tmp_path / "ckpt", "coarse-dir", steps=2, log=lambda m: None,
                           progress=False)
  assert result.steps == 2 and np.isfinite(result.terms["truth_albedo"])


GCN_PAPER_SCRIPT = """
import json, sys
sys.path.insert(0, "tools")
from shared import quiet
quiet.setup()
import create_bin
from gcn_face import coarse as coarse_lib, infer, train as train_lib
from gcn_face.config import get_config
dataset, coarse, out = sys.argv[1:4]
config = get_config("paper").replace(batch_size=1)
data = out + "/train.bin"
assert create_bin.main(["--input", dataset, "--split", "train", "--output", data]) == 0
pipeline = infer.build_pipeline(coarse_lib.load_coarse_stage(coarse), config, progress=False)
result = train_lib.train(pipeline, config, data, out + "/ckpt", coarse, steps=1,
                         log=lambda message: None, progress=False)
print(json.dumps({"arch": config.arch, "image_size": config.image_size, "steps": result.steps,
                  "checkpoint": result.checkpoint,
                  "terms": {k: float(v) for k, v in result.terms.items()}}))
"""


def test_paper_preset_trains_a_step_on_the_face_model(mgc_trained, mgc_dataset, tmp_path,
                                                      script_json):
  """The `paper` preset (the original's `normal` GCN on the ICT hierarchy, 224 px crops, the
  paper's losses) trains one step on a .bin that tools/create_bin.py packed from a synthetic
  dataset, over an MGC coarse stage: the preset a GPU user starts from stays runnable (the
  other tests train the toy config).  In its own process, whose memory goes back when it ends."""
  report = script_json(GCN_PAPER_SCRIPT, mgc_dataset, mgc_trained[0], tmp_path)
  assert report["arch"] == "normal" and report["image_size"] == 224
  assert report["steps"] == 1 and report["checkpoint"].endswith("ckpt-1")
  assert report["terms"] and all(np.isfinite(v) for v in report["terms"].values())
