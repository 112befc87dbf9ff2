"""The shared training-loop policy (shared/train/train_loop.py, shared/train/checkpointing.py) on a toy model.

A linear model y = x w fitted by Adam stands in for the trainers: resume,
non-finite steps, atomic checkpoints, summaries and metadata do not depend
on the model.  Both trainers use this loop (tests/test_mgc_trainer.py and
tests/test_gcn_train.py check them through it).
"""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from shared.train import checkpointing
from shared.train import train_loop
from shared.errors import InputError

FEATURES = 3
BATCH = 4
CONFIG = train_loop.LoopConfig(checkpoint_every=2, summary_every=1, image_summary_every=2,
                               keep_checkpoints=2, max_consecutive_bad_steps=3)
KIND, VERSION, META = "face3d-toy-checkpoint", 1, "toy.json"


class Toy:
  """A linear model, its optimiser, a guarded step and the loop over a folder."""

  def __init__(self, directory, config=CONFIG, seed=0):
    rng = np.random.default_rng(seed)
    self.w = tf.Variable(rng.normal(size=(FEATURES, 1)).astype(np.float32), name="w")
    self.optimizer = keras.optimizers.Adam(0.05)
    self.optimizer.build([self.w])
    self.messages = []
    self.guard = train_loop.GuardedStep(self.compute, self.apply, log=self.messages.append)
    self.loop = train_loop.TrainingLoop(
        {"w": self.w, "optimizer": self.optimizer}, directory, config, self.guard,
        lambda step: checkpointing.write_meta(directory, META, KIND, VERSION, step, {"toy": 1}),
        [self.w])

  def compute(self, x, y):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean((x @ self.w - y) ** 2)
    grads = train_loop.dense_gradients(tape.gradient(loss, [self.w]), [self.w])
    visuals = {"picture": tf.zeros([1, 4, 4, 3]) + tf.reduce_mean(x)}
    return {"total": loss}, grads, train_loop.finite_flag(loss, grads), visuals

  def apply(self, grads):
    self.optimizer.apply_gradients(zip(grads, [self.w]))

  def step(self, x, y):
    return self.guard(tf.constant(x, tf.float32), tf.constant(y, tf.float32))


def batches(seed=1, bad=()):
  """Batches of y = x [1, -2, 0.5]; the steps (1-based) in `bad` get a NaN input."""
  rng = np.random.default_rng(seed)
  truth = np.array([[1.0], [-2.0], [0.5]], np.float32)
  step = 0
  while True:
    step += 1
    x = rng.normal(size=(BATCH, FEATURES)).astype(np.float32)
    if step in bad:
      x[0, 0] = np.nan
    yield x, x @ truth


def run(toy, total, data, **kwargs):
  return toy.loop.run(lambda: toy.step(*next(data)), total, progress=False, **kwargs)


def saved_w(directory):
  return tf.train.load_checkpoint(tf.train.latest_checkpoint(str(directory))).get_tensor(
      "w/.ATTRIBUTES/VARIABLE_VALUE")


def test_resume_continues_the_step_counter_weights_and_optimizer_state(tmp_path):
  # One run of 6 steps ...
  straight = Toy(tmp_path / "straight")
  run(straight, 6, batches())
  # ... equals 4 steps, a new process (fresh objects), and 2 more steps on the same batches.
  first = Toy(tmp_path / "resumed")
  data = batches()
  result = run(first, 4, data)
  assert result.steps == 4 and result.first_step == 0
  second = Toy(tmp_path / "resumed", seed=7)  # Other initial weights: the checkpoint wins.
  assert second.loop.restore() == 4
  assert any("resumed from" in m and "at step 4" in m for m in second.messages)
  assert int(second.optimizer.iterations.numpy()) == 4
  for a, b in zip(first.optimizer.variables, second.optimizer.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())  # Adam's moments too.
  result = run(second, 6, data)
  assert result.steps == 6 and result.first_step == 4
  np.testing.assert_allclose(second.w.numpy(), straight.w.numpy(), rtol=1e-6)
  assert checkpointing.checkpoint_step(result.checkpoint) == 6
  # Asking for fewer steps than the checkpoint holds does nothing.
  third = Toy(tmp_path / "resumed")
  third.loop.restore()
  assert run(third, 3, data).steps == 6


def test_a_non_finite_step_is_skipped_and_leaves_weights_and_optimizer_alone(tmp_path):
  toy = Toy(tmp_path)
  data = batches(bad=(2,))
  toy.step(*next(data))
  before = [v.numpy().copy() for v in [toy.w] + list(toy.optimizer.variables)]
  terms, applied, _ = toy.step(*next(data))
  assert not applied and not np.isfinite(terms["total"])
  for old, new in zip(before, [toy.w] + list(toy.optimizer.variables)):
    np.testing.assert_array_equal(old, new.numpy())
  assert int(toy.guard.skipped.numpy()) == 1 and int(toy.guard.step.numpy()) == 2
  assert toy.guard.consecutive_bad == 1
  assert any("step 2: non-finite loss or gradient; update skipped" in m for m in toy.messages)
  _, applied, _ = toy.step(*next(data))
  assert applied and toy.guard.consecutive_bad == 0
  assert int(toy.optimizer.iterations.numpy()) == 2


def test_too_many_non_finite_steps_stop_with_one_line_and_keep_the_last_good_checkpoint(
    tmp_path):
  toy = Toy(tmp_path)
  run(toy, 2, batches())
  good = saved_w(tmp_path)
  # Steps 3.. are all bad: the third in a row stops the run.
  with pytest.raises(InputError) as error:
    run(toy, 10, batches(bad=range(1, 100)))
  message = str(error.value)
  assert "\n" not in message and "3 non-finite steps in a row at step 5" in message
  assert "last good checkpoint kept" in message
  # Step 4's periodic checkpoint holds the same (good) weights; nothing is saved at the stop.
  assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-4")
  np.testing.assert_array_equal(saved_w(tmp_path), good)
  assert int(toy.guard.skipped.numpy()) == 3


def test_non_finite_weights_are_never_saved(tmp_path):
  toy = Toy(tmp_path)
  run(toy, 2, batches())
  toy.w.assign(tf.fill(toy.w.shape, np.float32("nan")))
  toy.guard.step.assign(4)
  assert toy.loop.save() is None
  assert any("non-finite weights; checkpoint not saved" in m for m in toy.messages)
  assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-2")
  assert np.isfinite(saved_w(tmp_path)).all()


def test_an_interrupted_checkpoint_write_leaves_the_previous_one_readable(tmp_path, monkeypatch):
  toy = Toy(tmp_path)
  run(toy, 2, batches())
  good = saved_w(tmp_path)
  meta = json.loads((tmp_path / META).read_text())
  from tensorflow.python.checkpoint import checkpoint_management

  def killed(*args, **kwargs):  # The data and index are written; the state file is not.
    raise KeyboardInterrupt

  monkeypatch.setattr(checkpoint_management, "update_checkpoint_state_internal", killed)
  toy.step(*next(batches(seed=3)))
  with pytest.raises(KeyboardInterrupt):
    toy.loop.save()
  monkeypatch.undo()
  # The folder still names step 2 as the latest; it loads, with its metadata, in a new run.
  assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-2")
  np.testing.assert_array_equal(saved_w(tmp_path), good)
  assert json.loads((tmp_path / META).read_text()) == meta
  fresh = Toy(tmp_path, seed=5)
  assert fresh.loop.restore() == 2
  np.testing.assert_array_equal(fresh.w.numpy(), good)
  # The next save of step 3 is complete.
  fresh.step(*next(batches(seed=3)))
  assert fresh.loop.save().endswith("ckpt-3")
  assert json.loads((tmp_path / META).read_text())["step"] == 3


def test_ctrl_c_saves_then_stops_and_the_same_command_resumes(tmp_path):
  toy = Toy(tmp_path, dataclasses.replace(CONFIG, checkpoint_every=100))
  data = batches()
  calls = []

  def step():
    calls.append(1)
    if len(calls) == 4:
      raise KeyboardInterrupt
    return toy.step(*next(data))

  with pytest.raises(KeyboardInterrupt):
    toy.loop.run(step, 10, progress=False)
  assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-3")
  assert any("interrupted at step 3" in m for m in toy.messages)
  assert Toy(tmp_path).loop.restore() == 3


def test_summaries_scalars_and_metadata(tmp_path):
  toy = Toy(tmp_path)
  run(toy, 4, batches())
  assert list((tmp_path / "logs").glob("events.out.tfevents.*"))
  lines = [json.loads(line) for line in (tmp_path / "logs" / "scalars.jsonl").read_text()
           .splitlines()]
  assert [line["step"] for line in lines] == [1, 2, 3, 4]
  assert all(np.isfinite(line["total"]) for line in lines)
  meta = checkpointing.read_meta(tmp_path, (META,), KIND, VERSION, "a toy checkpoint")
  assert meta["step"] == 4 and meta["toy"] == 1 and meta["format_version"] == VERSION
  # Only `keep_checkpoints` are kept.
  assert len(list(tmp_path.glob("ckpt-*.index"))) == CONFIG.keep_checkpoints


def test_metadata_reader_reads_old_keys_and_rejects_others_in_one_line(tmp_path):
  (tmp_path / "old.json").write_text(json.dumps({"kind": KIND, "version": 1, "steps": 7}))
  meta = checkpointing.read_meta(tmp_path, (META, "old.json"), KIND, VERSION, "a toy")
  assert meta["step"] == 7 and meta["format_version"] == 1
  assert checkpointing.read_meta(tmp_path / "none", (META,), KIND, VERSION, "a toy") is None
  for text, problem in (("{", "not valid JSON"), ('{"kind": "other"}', "not the description of"),
                        (json.dumps({"kind": KIND, "format_version": 9}), "format version 9")):
    (tmp_path / META).write_text(text)
    with pytest.raises(InputError, match=problem) as error:
      checkpointing.read_meta(tmp_path, (META,), KIND, VERSION, "a toy")
    assert "\n" not in str(error.value) and str(tmp_path / META) in str(error.value)


def test_a_checkpoint_of_another_model_is_refused_in_one_line(tmp_path):
  run(Toy(tmp_path), 2, batches())
  other = tf.Variable(tf.zeros([FEATURES + 1, 1]), name="w")
  guard = train_loop.GuardedStep(None, None, log=lambda m: None)
  loop = train_loop.TrainingLoop({"w": other}, tmp_path, CONFIG, guard)
  with pytest.raises(InputError, match="cannot resume") as error:
    loop.restore()
  assert "\n" not in str(error.value)


MIRRORED_SCRIPT = """
import json, sys
import numpy as np, tensorflow as tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from shared.train import train_loop
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
  w = tf.Variable(tf.ones([3, 1]))
  optimizer = keras.optimizers.Adam(0.1)
  optimizer.build([w])

def compute(x):
  with tf.GradientTape() as tape:
    loss = tf.reduce_mean(x @ w)
  grads = tape.gradient(loss, [w])
  return {"total": loss}, grads, train_loop.finite_flag(loss, grads), {}

update = train_loop.GuardedUpdate(compute, lambda g: optimizer.apply_gradients(zip(g, [w])),
                                  strategy)

def batch(bad_replica):
  def fn(context):
    x = np.ones((2, 3), np.float32)
    if context.replica_id_in_sync_group == bad_replica:
      x[0, 0] = np.nan
    return tf.constant(x)
  return strategy.experimental_distribute_values_from_function(fn)

out = []
for bad in (None, 1, None):
  _, applied, _ = update(batch(bad))
  out.append([applied, float(w.numpy()[0, 0]), int(optimizer.iterations.numpy())])
print(json.dumps(out))
"""


def test_a_non_finite_replica_skips_the_update_on_every_replica():
  """Two CPU replicas (MirroredStrategy): a NaN on one of them skips the update on both."""
  root = Path(__file__).resolve().parent.parent
  result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True,
                          text=True, cwd=root, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "2"})
  assert result.returncode == 0, result.stderr[-2000:]
  (good, w1, n1), (bad, w2, n2), (again, w3, n3) = json.loads(result.stdout.splitlines()[-1])
  assert good and not bad and again
  assert w2 == w1 and n2 == n1 == 1      # The skipped update changed nothing on either replica.
  assert w3 < w2 and n3 == 2
