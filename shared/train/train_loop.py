"""The training-loop policy of both trainers (MGC regressor, GCN refiner), written once.

    guard = GuardedStep(compute, apply, strategy, log)   # the trainer's step
    loop = TrainingLoop(parts, directory, LoopConfig(...), guard, write_meta, watched)
    start = loop.restore()                               # automatic resume
    result = loop.run(lambda: guard(next(batches)), total_steps)

The policy:

* **Resume**: a run continues from the latest checkpoint in its output folder
  (step counter, weights and optimiser state); there is nothing to ask for.
  A run asked for fewer steps than the checkpoint holds does nothing.
* **Non-finite steps**: a step whose loss or gradients are not finite is not
  applied (weights and optimiser state stay as they were), is counted
  (`skipped`, kept in the checkpoint) and logged; after
  `max_consecutive_bad_steps` such steps in a row the run stops with one
  line (`InputError`), keeping the last good checkpoint.  Under a
  `tf.distribute` strategy the verdict is agreed by all replicas.
* **Checkpoints**: every `checkpoint_every` steps, at the end and on Ctrl-C
  (then the interrupt goes on); atomic, never of non-finite weights, the
  chief's only (`shared.train.checkpointing`); the model's metadata file is
  written after each one.
* **Progress**: a tqdm bar with the loss (off with `progress=False`).
* **TensorBoard**: loss terms every `summary_every` applied steps (and
  images every `image_summary_every`) into DIR/logs, plus the same scalars
  as JSON lines in DIR/logs/scalars.jsonl.
"""

import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from shared.train import distribute
from shared.train.checkpointing import LOG_DIR, CheckpointSaver
from shared.errors import InputError

SCALARS_FILE = "scalars.jsonl"
MAX_IMAGE_SUMMARIES = 2


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """How often the loop saves and logs, and when it gives up (steps)."""
  checkpoint_every: int = 1000
  summary_every: int = 100
  image_summary_every: int = 1000
  keep_checkpoints: int = 3
  max_consecutive_bad_steps: int = 50


def stderr_log(message):
  print(message, file=sys.stderr)


# ----------------------------------------------------------------------------- one guarded step

def finite_flag(loss, grads):
  """A boolean tensor: `loss` and every gradient are finite."""
  flag = tf.math.is_finite(loss)
  for g in grads:
    flag = flag & tf.reduce_all(tf.math.is_finite(g))
  return flag


def dense_gradients(grads, variables):
  """Gradients with None (no path to the loss) replaced by zeros."""
  return [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]


class GuardedUpdate:
  """One optimiser update: compute, agree on finiteness, apply or skip.

  Args:
    compute: per replica, `(*args, **kwargs) -> (terms dict of scalars,
      gradients, finite flag, visuals dict)`; the gradients are of the
      replica's share of the global loss.
    apply: per replica, `gradients -> None` (the optimiser step).
    strategy: a `tf.distribute.Strategy` (None: the current one).

  The two run as separate compiled functions with the verdict taken in
  between (under a strategy: agreed by all replicas), because an optimiser
  step under `tf.distribute` cannot sit inside a `tf.cond`.
  """

  def __init__(self, compute, apply, strategy=None):
    self.strategy = strategy or tf.distribute.get_strategy()
    self.distributed = not distribute.is_default(self.strategy)
    self._replica_compute, self._replica_apply = compute, apply
    if self.distributed:
      self._compute = tf.function(self._distributed_compute)
      self._apply = tf.function(self._distributed_apply)
    else:
      self._compute = tf.function(compute)
      self._apply = tf.function(apply)

  def _distributed_compute(self, *args, **kwargs):
    """`compute` on every replica: terms averaged over replicas, one agreed flag."""
    terms, grads, finite, visuals = self.strategy.run(self._replica_compute, args=args,
                                                      kwargs=kwargs)
    return (distribute.mean_terms(self.strategy, terms), grads,
            distribute.all_replicas(self.strategy, finite), visuals)

  def _distributed_apply(self, grads):
    """The optimiser step on every replica (it all-reduces the gradients).

    The gradients come in as function inputs, which carry no device; copies
    made inside the replica function get the replica's device, which the
    all-reduce needs.
    """
    self.strategy.run(lambda g: self._replica_apply([tf.identity(x) for x in g]), args=(grads,))

  def __call__(self, *args, **kwargs):
    """Computes and, when finite everywhere, applies; returns (terms as floats, applied, visuals).

    Under a strategy the visuals are the first local replica's.
    """
    terms, grads, finite, visuals = self._compute(*args, **kwargs)
    if self.distributed:
      visuals = {k: self.strategy.experimental_local_results(v)[0] for k, v in visuals.items()}
    applied = bool(finite.numpy())
    if applied:
      self._apply(grads)
    return {k: float(v) for k, v in terms.items()}, applied, visuals


class GuardedStep(GuardedUpdate):
  """A training step: a `GuardedUpdate` that counts steps and skips, and logs each skip.

  Args: those of `GuardedUpdate`, and `log` (one-line messages).

  `step` and `skipped` are int64 variables for the checkpoint;
  `consecutive_bad` counts the skipped steps since the last applied one.
  """

  def __init__(self, compute, apply, strategy=None, log=None):
    super().__init__(compute, apply, strategy)
    self.log = log or stderr_log
    with self.strategy.scope():
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
      self.skipped = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped")
    self.consecutive_bad = 0

  def __call__(self, *args, **kwargs):
    """Runs one step; returns (terms as floats, applied: bool, visuals)."""
    terms, applied, visuals = super().__call__(*args, **kwargs)
    if applied:
      self.consecutive_bad = 0
    else:
      self.skipped.assign_add(1)
      self.consecutive_bad += 1
      self.log(f"warning: step {int(self.step.numpy()) + 1}: non-finite loss or gradient; "
               "update skipped")
    self.step.assign_add(1)
    return terms, applied, visuals


# ----------------------------------------------------------------------------- summaries

def _plugin_metadata(plugin):
  from tensorflow.core.framework import summary_pb2
  meta = summary_pb2.SummaryMetadata()
  meta.plugin_data.plugin_name = plugin
  return meta.SerializeToString()


SCALAR_METADATA = _plugin_metadata("scalars")
IMAGE_METADATA = _plugin_metadata("images")


def summary_writer(logdir, strategy=None):
  """A file writer on the chief, a no-op writer elsewhere."""
  if distribute.is_chief(strategy):
    return tf.summary.create_file_writer(str(logdir))
  return tf.summary.create_noop_writer()


def write_summaries(writer, step, terms, visuals=None):
  """TensorBoard scalars (loss terms) and images, with TensorFlow's own summary op.

  `tf.summary.scalar/image` need the tensorboard package; the raw
  `tf.summary.write` with the scalars/images plugin metadata writes the same
  event records without it.
  """
  with writer.as_default(step=step):
    for name, value in terms.items():
      if np.isfinite(value):
        tf.summary.write(f"loss/{name}", tf.constant(value, tf.float32), metadata=SCALAR_METADATA)
    for name, image in (visuals or {}).items():
      image = tf.image.convert_image_dtype(tf.clip_by_value(image, 0.0, 1.0)[:MAX_IMAGE_SUMMARIES],
                                           tf.uint8, saturate=True)
      size = [tf.as_string(image.shape[2]), tf.as_string(image.shape[1])]
      encoded = [tf.io.encode_png(i) for i in tf.unstack(image)]
      tf.summary.write(f"images/{name}", tf.stack(size + encoded), metadata=IMAGE_METADATA)


def append_scalars(path, step, terms):
  """Appends one JSON line of loss terms (readable without TensorBoard)."""
  Path(path).parent.mkdir(parents=True, exist_ok=True)
  with open(path, "a") as f:
    f.write(json.dumps({"step": step, **terms}) + "\n")


# ----------------------------------------------------------------------------- the loop

@dataclasses.dataclass
class LoopResult:
  """What `TrainingLoop.run` did."""
  steps: int              # The step counter at the end.
  first_step: int         # ... and at the start (after resuming).
  skipped: int            # Non-finite steps skipped in all (checkpointed).
  terms: dict             # The last step's loss terms.
  seconds: float          # Wall time of the loop.
  timed_steps: int        # Steps after the first (compiled) one ...
  timed_seconds: float    # ... and their wall time.
  checkpoint: str         # The latest checkpoint's path ("" on non-chief workers).


class TrainingLoop:
  """Resume, the step loop, summaries and checkpoints of one training run.

  Args:
    parts: the objects to checkpoint besides the step counters (network,
      optimiser, ...), as `tf.train.Checkpoint` keyword arguments.
    directory: the output (checkpoint) folder.
    config: `LoopConfig`.
    guard: the trainer's `GuardedStep` (its counters are checkpointed).
    write_meta: `step -> None`, writes the model's metadata file (chief only).
    watched: variables that must be finite for a checkpoint to be written.
    describe: the model, for messages.
  """

  def __init__(self, parts, directory, config, guard, write_meta=None, watched=(),
               describe="this model"):
    self.directory = Path(directory)
    self.config = config
    self.guard = guard
    self.strategy = guard.strategy
    self.log = guard.log
    self.write_meta = write_meta
    self.describe = describe
    with self.strategy.scope():
      self.checkpoint = tf.train.Checkpoint(**parts, step=guard.step, skipped=guard.skipped)
    self.saver = CheckpointSaver(self.checkpoint, self.directory, config.keep_checkpoints,
                                 self.strategy, watched)
    self.chief = self.saver.chief

  @property
  def step(self):
    return int(self.guard.step.numpy())

  def restore(self):
    """Restores the latest checkpoint of the folder, if any; returns the step reached."""
    latest = self.saver.restore(self.describe)
    if latest is not None:
      self.log(f"resumed from {latest} at step {self.step} ({int(self.guard.skipped.numpy())} "
               "skipped so far)")
    return self.step

  def save(self):
    """Checkpoint + metadata (chief only), unless a weight is not finite; returns the path."""
    path, why = self.saver.save(self.step)
    if why == "non-finite weights":
      self.log("warning: non-finite weights; checkpoint not saved (the last good one is kept)")
      return None
    if self.chief and self.write_meta is not None:
      self.write_meta(self.step)
    return path

  def run(self, next_step, total_steps, progress=True, postfix=None):
    """Runs `next_step()` until the step counter reaches `total_steps`.

    Args:
      next_step: `() -> (terms, applied, visuals)`: one step of the guard,
        on the next batch.
      progress: show a tqdm bar.
      postfix: `terms -> dict` for the bar (default: the total loss).

    Returns:
      `LoopResult`.

    Raises:
      InputError: too many non-finite steps in a row (the last good
        checkpoint stays the latest).
      KeyboardInterrupt: after saving a checkpoint.
    """
    from tqdm import tqdm
    cfg = self.config
    strategy = self.strategy
    writer = summary_writer(self.directory / LOG_DIR, strategy)
    first_step = self.step
    resumed_from = self.saver.latest_checkpoint  # The same on every worker (the chief's).
    terms = {}
    started = time.time()
    timed_from, timed_steps = None, 0
    bar = tqdm(total=total_steps, initial=min(first_step, total_steps), desc="train",
               unit="step", disable=not progress or first_step >= total_steps,
               dynamic_ncols=True, file=sys.stderr)
    try:
      with distribute.peer_guard(strategy, self.directory):
        while self.step < total_steps:
          terms, applied, visuals = next_step()
          step = self.step
          if timed_from is None:
            timed_from = time.time()  # Excludes the first step (tracing).
          else:
            timed_steps += 1
          if self.guard.consecutive_bad >= cfg.max_consecutive_bad_steps:
            raise InputError(f"{self.guard.consecutive_bad} non-finite steps in a row at step "
                             f"{step}; stopping (last good checkpoint kept in {self.directory})")
          if applied and (step % cfg.summary_every == 0 or step == total_steps):
            images = visuals if step % cfg.image_summary_every == 0 else None
            write_summaries(writer, step, terms, images)
            if self.chief:
              append_scalars(self.directory / LOG_DIR / SCALARS_FILE, step, terms)
          if step % cfg.checkpoint_every == 0 or step == total_steps:
            self.save()
          bar.update(1)
          if math.isfinite(terms.get("total", math.nan)):
            bar.set_postfix(postfix(terms) if postfix else {"loss": f"{terms['total']:.4f}"})
        if self.step == first_step and resumed_from is None:
          self.save()  # Nothing to train (0 steps): still leave a usable folder.
    except KeyboardInterrupt:
      bar.close()
      path = self.save()
      self.log(f"interrupted at step {self.step}; saved {path or 'nothing'}; run the same "
               "command to resume")
      raise
    finally:
      bar.close()
      writer.flush()
    with distribute.peer_guard(strategy, self.directory):
      distribute.barrier(strategy)  # No worker leaves while a peer still needs it.
    timed_seconds = time.time() - timed_from if timed_from is not None else 0.0
    return LoopResult(self.step, first_step, int(self.guard.skipped.numpy()), terms,
                      time.time() - started, timed_steps, timed_seconds,
                      str(self.saver.latest_checkpoint or "") if self.chief else "")

  def close(self):
    self.saver.close()
