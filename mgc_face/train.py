"""Training the MGC regressor: Adam, tf.function steps, NaN guard, checkpoints.

Checkpoint folder layout (the contract `mgc_face.infer.load_regressor` reads):

    CKPT/ckpt-N.index, ckpt-N.data-*, checkpoint   tf.train.CheckpointManager
    CKPT/meta.json                                 format_version, face model
                                                   hash, config, layout, steps
    CKPT/logs/                                     TensorBoard summaries

`tf.train.CheckpointManager` writes the data files, then the index, then the
`checkpoint` state file, so an interrupted save leaves the previous
checkpoint as the latest.  `meta.json` is written atomically afterwards.

A step whose loss or gradients are not finite is not applied: the weights
and the optimiser state stay as they were, the skip is logged, and the run
aborts after `config.max_consecutive_bad_steps` such steps in a row, keeping
the last good checkpoint.

Under a `tf.distribute` strategy (`--strategy mirrored|multiworker`, see
`shared.train.distribute` and docs/distributed.md) the variables, optimiser and
checkpoint live in the strategy's scope, each worker reads its own shard of
the list file, the batch size is global (each replica's batch-mean loss is
divided by the replicas, and the optimiser sums the gradients over them),
the finiteness check is agreed by all replicas (all apply or all skip), and
only the chief writes checkpoints, meta.json and summaries.
"""

import json
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mgc_face import model as model_lib
from mgc_face import objective as objective_lib
from mgc_face import prior_init
from mgc_face.config import MGCConfig
from shared.train import distribute
from shared.model.coeffs import CoeffLayout
from shared.errors import InputError
from shared.io.fileio import write_text_atomic
from shared.render.face_image import FaceSynthesizer

META_FILE = "meta.json"
META_KIND = "face3d-mgc-checkpoint"
META_VERSION = 1
LOG_DIR = "logs"
SCALARS_FILE = "scalars.jsonl"
MAX_IMAGE_SUMMARIES = 2


# ----------------------------------------------------------------------------- metadata

def layout_dict(layout):
  return {"num_id": layout.num_id, "num_albedo": layout.num_albedo, "num_exp": layout.num_exp,
          "size": layout.size}


def read_meta(checkpoint_dir):
  """Reads CKPT/meta.json -> dict, or None when absent; InputError when invalid."""
  path = Path(checkpoint_dir) / META_FILE
  if not path.exists():
    return None
  try:
    meta = json.loads(path.read_text())
  except ValueError as error:
    raise InputError(f"{path}: not valid JSON ({error})") from None
  if not isinstance(meta, dict) or meta.get("kind") != META_KIND:
    raise InputError(f"{path}: not an MGC checkpoint description")
  if meta.get("format_version") != META_VERSION:
    raise InputError(f"{path}: checkpoint format version {meta.get('format_version')}; this "
                     f"toolkit reads version {META_VERSION}")
  return meta


def write_meta(checkpoint_dir, face_model, config, steps, multiview, backbone_weights=None):
  meta = {"kind": META_KIND, "format_version": META_VERSION,
          "face_model_hash": face_model.source_hash, "face_model_name": face_model.name,
          "config_name": config.name, "config": config.to_dict(),
          "layout": layout_dict(CoeffLayout.for_model(face_model)), "steps": int(steps),
          "multiview": bool(multiview), "backbone_weights": backbone_weights}
  write_text_atomic(Path(checkpoint_dir) / META_FILE, json.dumps(meta, indent=2) + "\n")
  return meta


def check_face_model(meta, face_model, checkpoint_dir):
  """InputError (one line) when the checkpoint was trained on another face model."""
  if meta["face_model_hash"] != face_model.source_hash:
    raise InputError(
        f"{checkpoint_dir}: checkpoint was trained with face model '{meta['face_model_name']}' "
        f"(hash {meta['face_model_hash']}), not '{face_model.name}' (hash "
        f"{face_model.source_hash}); pass the matching --face-model")
  if meta["layout"] != layout_dict(CoeffLayout.for_model(face_model)):
    raise InputError(f"{checkpoint_dir}: checkpoint coefficient layout {meta['layout']} does not "
                     "match the face model")


# ----------------------------------------------------------------------------- trainer

def network_shape(config):
  """The config fields that decide the network's variables (a checkpoint must match them)."""
  return (config.backbone, config.input_size, tuple(config.small_channels), config.small_norm,
          config.coord_channels, config.landmark_head, config.heatmap_block,
          config.heatmap_channels, config.landmark_hidden)


def make_optimizer(config, total_steps=None):
  """Adam with `config.learning_rate`, constant or cosine-decayed over `total_steps`
  (default `config.steps`) to `config.learning_rate_floor` x the start.

  The schedule reads the optimiser's own iteration count, which the checkpoint
  keeps, so a resumed run continues on the same curve.
  """
  rate = config.learning_rate
  if config.learning_rate_decay == "cosine":
    rate = keras.optimizers.schedules.CosineDecay(
        config.learning_rate, max(int(total_steps or config.steps), 1),
        alpha=config.learning_rate_floor)
  elif config.learning_rate_decay != "constant":
    raise InputError(f"unknown learning_rate_decay '{config.learning_rate_decay}'; choose "
                     "constant or cosine")
  return keras.optimizers.Adam(rate, beta_1=config.beta1)


class Trainer:
  """Owns the regressor, optimiser, objective and checkpoint manager.

  `strategy`: a `tf.distribute.Strategy` (None: the default one, a single
  process).  The trainer's variables are created in its scope.
  """

  def __init__(self, face_model, config, checkpoint_dir, multiview=True, embedder=None,
               backbone_weights=None, log=None, strategy=None, seed=0, total_steps=None):
    self.face_model = face_model
    self.config = config
    self.multiview = multiview and config.multiview
    self.checkpoint_dir = Path(checkpoint_dir)
    self.backbone_weights = backbone_weights
    self.log = log or (lambda message: print(message, file=sys.stderr))
    self.strategy = strategy or tf.distribute.get_strategy()
    self.distributed = not distribute.is_default(self.strategy)
    self.chief = distribute.is_chief(self.strategy)
    with self.strategy.scope():
      self.regressor = model_lib.build_regressor(face_model, config, backbone_weights)
      # Landmark head: the coefficient map starts from face-model samples (a resume overwrites it).
      prior_init.init_coefficient_head(self.regressor.network, face_model, config, seed)
      self.synth = FaceSynthesizer(face_model)
      self.objective = objective_lib.Objective(self.synth, config, embedder)
      self.optimizer = make_optimizer(config, total_steps)
      self.variables = self.regressor.network.trainable_variables
      self.optimizer.build(self.variables)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
      self.skipped = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped")
      self.checkpoint = tf.train.Checkpoint(network=self.regressor.network,
                                            optimizer=self.optimizer, step=self.step,
                                            skipped=self.skipped)
    self.saver = distribute.CheckpointSaver(self.checkpoint, self.checkpoint_dir,
                                            config.keep_checkpoints, self.strategy)
    self.manager = self.saver.manager
    if self.distributed:
      self._compute = tf.function(self._distributed_compute)
      self._apply = tf.function(self._distributed_apply)
    else:
      self._compute = tf.function(self._compute_gradients)
      self._apply = tf.function(self._apply_gradients)
    self.consecutive_bad = 0

  # -- checkpoints

  def restore(self):
    """Restores the latest checkpoint if there is one; returns the step reached."""
    meta = read_meta(self.checkpoint_dir)
    latest = self.saver.latest_checkpoint
    if latest is None:
      return 0
    if meta is not None:
      check_face_model(meta, self.face_model, self.checkpoint_dir)
      saved = MGCConfig.from_dict(meta["config"])
      if network_shape(saved) != network_shape(self.config):
        raise InputError(f"{self.checkpoint_dir}: checkpoint has backbone '{saved.backbone}' at "
                         f"{saved.input_size} px (config '{saved.name}'); resume with "
                         f"--config {saved.name} or use a new --checkpoint folder")
    self.checkpoint.restore(latest).assert_existing_objects_matched()
    self.log(f"resumed from {latest} at step {int(self.step.numpy())}")
    return int(self.step.numpy())

  def weights_finite(self):
    return all(np.isfinite(v.numpy()).all() for v in self.regressor.network.weights)

  def save(self):
    """Saves a checkpoint and meta.json (chief only), unless a weight is not finite.

    Every worker calls it (the weights are the same everywhere, so all take
    the same branch); returns the path on the chief, else None.
    """
    if not self.weights_finite():
      self.log("warning: non-finite weights; checkpoint not saved (the last good one is kept)")
      return None
    path = self.saver.save(checkpoint_number=int(self.step.numpy()))
    if self.chief:
      write_meta(self.checkpoint_dir, self.face_model, self.config, int(self.step.numpy()),
                 self.multiview, self.backbone_weights)
    return path

  # -- one step

  def _compute_gradients(self, batch, head_only=False):
    """Per replica: (terms, gradients of its share of the global loss, finite, visuals).

    `head_only`: the landmark head's own terms only (warm-up; no rendering).
    """
    with tf.GradientTape() as tape:
      images = objective_lib.flatten_views(batch.images)
      coeffs, head = self.regressor.head_landmarks(images, training=True)
      if head_only:
        total, terms = self.objective.head_terms(head, objective_lib.flatten_views(batch.landmarks))
        terms["total"], visuals = total, {}
      else:
        total, terms, visuals = self.objective(coeffs, batch, self.multiview, head)
      share = distribute.replica_share(total, self.strategy)  # `total` with one replica.
    grads = tape.gradient(share, self.variables)
    grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, self.variables)]
    finite = tf.math.is_finite(total)
    for g in grads:
      finite = finite & tf.reduce_all(tf.math.is_finite(g))
    return terms, grads, finite, visuals

  def _apply_gradients(self, grads):
    self.optimizer.apply_gradients(zip(grads, self.variables))

  def _distributed_compute(self, batch, head_only=False):
    """`_compute_gradients` on every replica.

    Returns the terms averaged over replicas (the same on every worker), the
    per-replica gradients, one finiteness flag agreed by all replicas, and
    the per-replica visuals.
    """
    terms, grads, finite, visuals = self.strategy.run(self._compute_gradients, args=(batch,),
                                                      kwargs={"head_only": head_only})
    return (distribute.mean_terms(self.strategy, terms), grads,
            distribute.all_replicas(self.strategy, finite), visuals)

  def _distributed_apply(self, grads):
    """The optimiser step on every replica (it all-reduces the gradients).

    The gradients come in as function inputs, which carry no device; copies
    made inside the replica function get the replica's device, which the
    all-reduce needs.
    """
    self.strategy.run(lambda g: self._apply_gradients([tf.identity(x) for x in g]),
                      args=(grads,))

  def train_step(self, batch):
    """One step.  Returns (terms as floats, applied: bool, visuals).

    With a landmark head, the first `config.landmark_warmup_steps` steps train
    the network on the head's own terms only (no rendering: about a third of
    a full step's time), so the head localises before the objective starts.

    `batch`: a `Batch`, or under a strategy an element of the distributed
    dataset; the visuals are then the first local replica's.
    """
    head_only = bool(self.config.landmark_head and
                     int(self.step.numpy()) < self.config.landmark_warmup_steps)
    terms, grads, finite, visuals = self._compute(batch, head_only)
    if self.distributed:
      visuals = {k: self.strategy.experimental_local_results(v)[0] for k, v in visuals.items()}
    applied = bool(finite.numpy())
    if applied:
      self._apply(grads)
      self.consecutive_bad = 0
    else:
      self.skipped.assign_add(1)
      self.consecutive_bad += 1
      self.log(f"warning: step {int(self.step.numpy()) + 1}: non-finite loss or gradient; "
               "update skipped")
    self.step.assign_add(1)
    return {k: float(v) for k, v in terms.items()}, applied, visuals


def _metadata(plugin):
  from tensorflow.core.framework import summary_pb2
  meta = summary_pb2.SummaryMetadata()
  meta.plugin_data.plugin_name = plugin
  return meta.SerializeToString()


SCALAR_METADATA = _metadata("scalars")
IMAGE_METADATA = _metadata("images")


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
  with open(path, "a") as f:
    f.write(json.dumps({"step": step, **{k: v for k, v in terms.items()}}) + "\n")


def make_input(trainer, data_dir, seed):
  """The training input: (iterator of batches, usable samples this worker reads).

  Under a strategy, a distributed dataset whose workers read disjoint shards
  of the list file (`config.batch_size` is the global batch).
  """
  from mgc_face import data as data_lib
  config = trainer.config
  if not trainer.distributed:
    dataset, count = data_lib.make_dataset(data_dir, "train", config.batch_size, seed=seed,
                                           shuffle_buffer=config.shuffle_buffer)
    return iter(dataset), count
  counts = []

  def shard_dataset(batch_size, num_shards, index):
    dataset, count = data_lib.make_dataset(data_dir, "train", batch_size, seed=seed,
                                           shuffle_buffer=config.shuffle_buffer,
                                           num_shards=num_shards, shard_index=index)
    counts.append(count)
    return dataset

  dataset = distribute.distribute_dataset(trainer.strategy, shard_dataset, config.batch_size)
  return iter(dataset), sum(counts)


def train(face_model, config, data_dir, checkpoint_dir, steps=None, multiview=True,
          embedder=None, backbone_weights=None, seed=0, progress=True, log=None, strategy=None):
  """Trains (or resumes) to `steps` total steps.

  `strategy`: a `tf.distribute.Strategy` (None: the default, one process);
  `config.batch_size` is then the global batch.  Only the chief writes
  checkpoints, meta.json and summaries.

  Returns:
    dict: steps done, skipped steps, last loss terms (averaged over
    replicas), wall time, images/s (all workers together).
  """
  from tqdm import tqdm
  keras.utils.set_random_seed(seed)
  steps = config.steps if steps is None else steps
  trainer = Trainer(face_model, config, checkpoint_dir, multiview, embedder, backbone_weights, log,
                    strategy, seed, steps)
  log = trainer.log
  strategy = trainer.strategy
  with distribute.peer_guard(strategy, checkpoint_dir):
    start_step = trainer.restore()
    distribute.check_same_step(strategy, start_step, checkpoint_dir)
    iterator, count = make_input(trainer, data_dir, seed)
  mode = "multi-view" if trainer.multiview else "single-view losses only"
  where = f"; {distribute.describe(strategy)}" if trainer.distributed else ""
  log(f"training {config.name} ({config.backbone}) on {count} samples, {mode}, "
      f"steps {start_step} -> {steps}{where}")
  writer = distribute.summary_writer(Path(checkpoint_dir) / LOG_DIR, strategy)
  terms = {}
  started = time.time()
  timed_from, timed_steps = None, 0
  bar = tqdm(total=steps, initial=start_step, desc="train", unit="step", disable=not progress,
             dynamic_ncols=True)
  try:
    with distribute.peer_guard(strategy, checkpoint_dir):
      while int(trainer.step.numpy()) < steps:
        batch = next(iterator)
        terms, applied, visuals = trainer.train_step(batch)
        step = int(trainer.step.numpy())
        if timed_from is None:
          timed_from = time.time()  # Excludes the first step (tracing).
        else:
          timed_steps += 1
        if trainer.consecutive_bad >= config.max_consecutive_bad_steps:
          raise InputError(f"{trainer.consecutive_bad} non-finite steps in a row at step {step}; "
                           f"stopping (last good checkpoint kept in {checkpoint_dir})")
        if applied and (step % config.summary_every == 0 or step == steps):
          images = visuals if step % config.image_summary_every == 0 else None
          write_summaries(writer, step, terms, images)
          if trainer.chief:
            append_scalars(Path(checkpoint_dir) / LOG_DIR / SCALARS_FILE, step, terms)
        if step % config.checkpoint_every == 0 or step == steps:
          trainer.save()
        bar.update(1)
        if "total" in terms and np.isfinite(terms["total"]):
          bar.set_postfix(loss=f"{terms['total']:.4f}",
                          lm=f"{terms.get('landmark', terms.get('landmark_head', 0.0)):.1f}")
  except KeyboardInterrupt:
    bar.close()
    path = trainer.save()
    log(f"interrupted at step {int(trainer.step.numpy())}; saved {path}; run the same command "
        "to resume")
    raise
  bar.close()
  writer.flush()
  with distribute.peer_guard(strategy, checkpoint_dir):
    distribute.barrier(strategy)  # No worker leaves while a peer still needs it.
  elapsed = time.time() - started
  rate = (timed_steps * config.batch_size * objective_lib.NUM_VIEWS /
          max(time.time() - timed_from, 1e-9)) if timed_steps else float("nan")
  return {"steps": int(trainer.step.numpy()), "skipped": int(trainer.skipped.numpy()),
          "terms": terms, "seconds": elapsed, "images_per_second": rate,
          "multiview": trainer.multiview}
