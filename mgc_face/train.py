"""Training the MGC regressor: Adam, a compiled step, the shared loop policy.

The loop (automatic resume, skipped non-finite steps, atomic checkpoints,
tqdm, TensorBoard) is `shared.train.train_loop`'s, the same as the GCN trainer's;
the checkpoint folder's metadata (CKPT/meta.json) is `mgc_face.checkpoint`'s.

    CKPT/ckpt-N.index, ckpt-N.data-*, checkpoint   network, optimiser, step, skipped
    CKPT/meta.json                                 face model hash, config, layout, step
    CKPT/cascade.npz                               the landmark cascade (`cascade_scales` presets)
    CKPT/logs/                                     TensorBoard events, scalars.jsonl

Under a `tf.distribute` strategy (`--strategy mirrored|multiworker`, see
`shared.train.distribute` and docs/distributed.md) the variables, optimiser and
checkpoint live in the strategy's scope, each worker reads its own shard of
the list file, the batch size is global (each replica's batch-mean loss is
divided by the replicas, and the optimiser sums the gradients over them),
the finiteness check is agreed by all replicas (all apply or all skip), and
only the chief writes checkpoints, meta.json and summaries.
"""

import itertools
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mgc_face import augment as augment_lib
from mgc_face import cascade as cascade_lib
from mgc_face import checkpoint as checkpoint_lib
from mgc_face import model as model_lib
from mgc_face import objective as objective_lib
from mgc_face import prior_init
from shared.train import distribute
from shared.train import train_loop
from shared.errors import InputError
from shared.render.face_image import FaceSynthesizer


# ----------------------------------------------------------------------------- trainer

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


def loop_config(config):
  """The shared loop's settings from an `MGCConfig`."""
  return train_loop.LoopConfig(
      checkpoint_every=config.checkpoint_every, summary_every=config.summary_every,
      image_summary_every=config.image_summary_every, keep_checkpoints=config.keep_checkpoints,
      max_consecutive_bad_steps=config.max_consecutive_bad_steps)


class Trainer:
  """Owns the regressor, optimiser, objective, the guarded step and the training loop.

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
    self.strategy = strategy or tf.distribute.get_strategy()
    self.distributed = not distribute.is_default(self.strategy)
    with self.strategy.scope():
      self.regressor = model_lib.build_regressor(face_model, config, backbone_weights)
      # Landmark head: the coefficient map starts from face-model samples (a resume overwrites it).
      prior_init.init_coefficient_head(self.regressor.network, face_model, config, seed)
      self.synth = FaceSynthesizer(face_model)
      self.objective = objective_lib.Objective(self.synth, config, embedder)
      self.optimizer = make_optimizer(config, total_steps)
      self.variables = self.regressor.network.trainable_variables
      self.optimizer.build(self.variables)
    self.guard = train_loop.GuardedStep(self._compute_gradients, self._apply_gradients,
                                        self.strategy, log)
    self.log = self.guard.log
    self.step, self.skipped = self.guard.step, self.guard.skipped
    self.loop = train_loop.TrainingLoop(
        {"network": self.regressor.network, "optimizer": self.optimizer}, self.checkpoint_dir,
        loop_config(config), self.guard, self._write_meta, self.regressor.network.weights,
        describe=f"this network (config '{config.name}')")
    self.chief = self.loop.chief

  @property
  def consecutive_bad(self):
    return self.guard.consecutive_bad

  # -- checkpoints

  def _write_meta(self, step):
    checkpoint_lib.write_meta(self.checkpoint_dir, self.face_model, self.config, step,
                              self.multiview, self.backbone_weights)

  def restore(self):
    """Restores the latest checkpoint if there is one; returns the step reached."""
    meta = checkpoint_lib.read_meta(self.checkpoint_dir)
    if self.loop.saver.latest_checkpoint is not None and meta is not None:
      checkpoint_lib.check_resumable(meta, self.face_model, self.config, self.checkpoint_dir)
    return self.loop.restore()

  def save(self):
    """Saves a checkpoint and meta.json (chief only) unless a weight is not finite."""
    return self.loop.save()

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
    grads = train_loop.dense_gradients(tape.gradient(share, self.variables), self.variables)
    return terms, grads, train_loop.finite_flag(total, grads), visuals

  def _apply_gradients(self, grads):
    self.optimizer.apply_gradients(zip(grads, self.variables))

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
    return self.guard(batch, head_only)


def warmup_then_plain(data_dir, config, seed, warmup):
  """(iterator: `warmup` augmented batches, then unchanged ones; usable samples).

  The unchanged pipeline is built only when the warm-up's batches are used up.
  """
  from mgc_face import data as data_lib
  augmented, count = data_lib.make_dataset(data_dir, "train", config.batch_size, seed=seed,
                                           shuffle_buffer=config.shuffle_buffer, augment=config)

  def batches():
    yield from itertools.islice(iter(augmented), warmup)
    plain, _ = data_lib.make_dataset(data_dir, "train", config.batch_size, seed=seed,
                                     shuffle_buffer=config.shuffle_buffer, report=False)
    yield from iter(plain)

  return batches(), count


def make_input(trainer, data_dir, seed, start_step=0):
  """The training input: (iterator of batches, usable samples this worker reads).

  Under a strategy, a distributed dataset whose workers read disjoint shards
  of the list file (`config.batch_size` is the global batch).  With
  `config.data_stream`, an endless stream of fresh identities (count: 0),
  continued after `start_step`'s samples on a resume.  With `augment_*` on
  (`mgc_face.augment`), the landmark head's remaining warm-up steps read
  augmented views, the full steps the triplets unchanged.
  """
  from mgc_face import data as data_lib
  config = trainer.config
  if config.data_stream:
    from mgc_face import stream
    if trainer.distributed:
      raise InputError("data_stream: not supported under a distribution strategy")
    dataset = stream.make_stream_dataset(trainer.face_model, config.batch_size, seed,
                                         start=start_step * config.batch_size)
    return iter(dataset), 0
  warmup = max(config.landmark_warmup_steps - start_step, 0) if config.landmark_head else 0
  augmenting = augment_lib.active(config) and warmup > 0
  if not trainer.distributed:
    if augmenting:
      return warmup_then_plain(data_dir, config, seed, warmup)
    dataset, count = data_lib.make_dataset(data_dir, "train", config.batch_size, seed=seed,
                                           shuffle_buffer=config.shuffle_buffer)
    return iter(dataset), count
  counts = []

  def distributed(augment, report=True):
    def shard_dataset(batch_size, num_shards, index):
      dataset, count = data_lib.make_dataset(data_dir, "train", batch_size, seed=seed,
                                             shuffle_buffer=config.shuffle_buffer,
                                             num_shards=num_shards, shard_index=index,
                                             augment=augment, report=report)
      counts.append(count)
      return dataset
    return distribute.distribute_dataset(trainer.strategy, shard_dataset, config.batch_size)

  if not augmenting:
    return iter(distributed(None)), sum(counts)
  first = distributed(config)
  count = sum(counts)

  def batches():  # The warm-up's augmented batches, then the unchanged pipeline.
    yield from itertools.islice(iter(first), warmup)
    yield from iter(distributed(None, report=False))

  return batches(), count


# ----------------------------------------------------------------------------- landmark cascade

CASCADE_BATCH = 24      # Views per forward pass of the network while collecting the head's points.
READER_SAMPLES = 4000   # Prior faces of a cascade reader's map when `prior_init_samples` is 0.
RENDER_THREADS = 2      # Threads rendering the cascade's stream triplets.
RENDER_CHUNK = 8        # Triplets rendered ahead of the loop that collects them.
DENSE_NOISE_TAG = 0x44454E53  # "DENS"; an entropy word of the dense labels' noise generators.


def cascade_views(face_model, config, data_dir, seed, step, dense_vertices=None):
  """The views the landmark cascade trains on, as batches (images [n, 224, 224, 3] float in
  [0, 1], labels [n, K, 2] px): every view of the training split (fixed data sets), then
  `cascade_stream_samples` fresh triplets of the stream after the `step` batches a stream
  preset's network read (identities the network never saw; their head points err as on
  new faces).  The labels are the 68 landmarks' (the 1 px-noise detector stand-in), then,
  with `dense_vertices` [M], those vertices' projections with the same noise (a dense
  detector's stand-in; fixed sets read them from their _gt.npz files)."""
  from mgc_face import data as data_lib
  from mgc_face import stream
  from mgc_face import synthetic
  from shared.model import camera as camera_lib
  camera, noise = camera_lib.Camera(), synthetic.SyntheticConfig().landmark_noise

  def labelled(image, labels, posed, rng):
    """(image, labels [n, 68, 2]) followed by the dense vertices' noisy projections."""
    labels = np.asarray(labels, np.float32)
    if dense_vertices is None:
      return image, labels
    dense = camera_lib.project(tf.constant(posed[:, dense_vertices], tf.float32), camera).numpy()
    dense = dense + rng.normal(0.0, noise, dense.shape)
    return image, np.concatenate([labels, dense], 1).astype(np.float32)

  if not config.data_stream:
    records, landmarks, _ = data_lib.scan(data_dir, "train", report=False)
    for index, (record, labels) in enumerate(zip(records, landmarks)):
      strip = data_lib.read_strip(record.image_path(data_dir))
      posed = None if dense_vertices is None else synthetic.read_ground_truth(
          record.gt_path(data_dir))["posed"][:len(strip)]
      yield labelled(strip, labels, posed,
                     np.random.default_rng([DENSE_NOISE_TAG, seed, index]))
  if config.cascade_stream_samples:
    from concurrent.futures import ThreadPoolExecutor
    samples = stream.SampleStream(face_model, seed, start=step * config.batch_size)
    first, end = samples.count, samples.count + config.cascade_stream_samples

    def sample(k):
      if dense_vertices is None:
        image, _, labels, _ = samples.sample(k)
        return image, labels
      s = samples.render(k)
      return labelled(s["image"].astype(np.float32), s["noisy_landmarks"], s["posed"],
                      np.random.default_rng([stream.STREAM_TAG, seed, k, DENSE_NOISE_TAG]))

    # Each sample draws from its own generator, so threads render the same faces (1.6x
    # faster on 2 cores); chunks bound the rendered views waiting in memory.
    with ThreadPoolExecutor(RENDER_THREADS) as pool:
      for start in range(first, end, RENDER_CHUNK):
        yield from pool.map(sample, range(start, min(start + RENDER_CHUNK, end)))


def cascade_reader(regressor, config, dense_vertices=None):
  """The cascade's reader (`Cascade.reader`): the prior map (`mgc_face/prior_init.py`) from all
  the refined points at `cascade_prior_noise` px to identity and expression; one map per yaw
  under `cascade_reader_yaw_step`.  It reads the face model only, no image or label."""
  from mgc_face import prior_init
  reader_config = config.replace(
      prior_init_noise=config.cascade_prior_noise,
      prior_init_samples=(config.cascade_reader_samples or config.prior_init_samples
                          or READER_SAMPLES))
  points = None if dense_vertices is None else np.concatenate(
      [regressor.face_model.landmarks68, dense_vertices])
  mask = prior_init.supervised_columns(regressor.layout, ("identity", "expression"))
  if not config.cascade_reader_yaw_step:
    return prior_init.prior_map(regressor.face_model, reader_config, points=points) + (mask,)
  centres = prior_init.yaw_centres(config.cascade_reader_yaw_step)
  return prior_init.yaw_gated_map(regressor.face_model, reader_config, centres,
                                  config.cascade_reader_yaw_window, points=points) + (mask,
                                                                                      centres)


def train_cascade(regressor, config, data_dir, checkpoint_dir, seed, step, progress=True,
                  log=print):
  """Fits the landmark cascade (`mgc_face.cascade`) on the head's points of the training views
  and writes CKPT/cascade.npz.  Returns the `Cascade`."""
  from tqdm import tqdm
  greys, points, labels = [], [], []
  pending_images, pending_labels = [], []
  size = model_lib.IMAGE_SIZE
  head_points = tf.function(lambda images: regressor.head_landmarks(images)[1][0],
                            input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])

  def flush():
    images = np.concatenate(pending_images)
    head = head_points(tf.constant(images)).numpy()
    greys.append(cascade_lib.grey(images))
    points.append(head)
    labels.append(np.concatenate(pending_labels))
    pending_images.clear()
    pending_labels.clear()

  dense_vertices = flip = None
  if config.cascade_dense:
    from shared.fit.dense import symmetric_correspondence
    dense_vertices, dense_flip = symmetric_correspondence(regressor.face_model)
    flip = np.concatenate([augment_lib.FLIP_PERMUTATION, cascade_lib.LANDMARKS + dense_flip])
  views = tqdm(cascade_views(regressor.face_model, config, data_dir, seed, step, dense_vertices),
               desc="landmark cascade", unit="triplet", disable=not progress, leave=False)
  for images, marks in views:
    pending_images.append(images)
    pending_labels.append(marks)
    if sum(len(x) for x in pending_images) >= CASCADE_BATCH:
      flush()
  if pending_images:
    flush()
  if not greys:
    raise InputError(f"{data_dir}: no training views for the landmark cascade")
  greys, points, labels = np.concatenate(greys), np.concatenate(points), np.concatenate(labels)
  landmarks = cascade_lib.LANDMARKS
  lift = None if dense_vertices is None else cascade_lib.fit_lift(
      labels[:, :landmarks], labels[:, landmarks:], config.cascade_lift_ridge)
  cascade, trace = cascade_lib.fit(greys, points, labels, config.cascade_scales,
                                   config.cascade_ridge, config.cascade_shape_components, step,
                                   config.cascade_joint_dims, config.cascade_joint_ridge,
                                   config.cascade_joint_rank, lift, dense_vertices, flip)
  if config.cascade_prior_noise:
    cascade.reader = cascade_reader(regressor, config, dense_vertices)
  cascade.save(checkpoint_dir)

  def error(p):
    return float(np.mean(np.linalg.norm(p[:, :landmarks] - labels[:, :landmarks], axis=-1)))

  dense = "" if lift is None else f", {len(dense_vertices)} dense points"
  log(f"landmark cascade: {len(greys)} views, {len(config.cascade_scales)} stages{dense}; "
      f"mean distance to the 68 labels {error(points):.2f} -> {error(trace[-1]):.2f} px")
  return cascade


def train(face_model, config, data_dir, checkpoint_dir, steps=None, multiview=True,
          embedder=None, backbone_weights=None, seed=0, progress=True, log=None, strategy=None):
  """Trains (or resumes) to `steps` total steps.

  With `config.cascade_scales` (and a landmark head), reaching `steps` also fits the
  landmark cascade (`train_cascade`) unless the folder has one for that step.

  `strategy`: a `tf.distribute.Strategy` (None: the default, one process);
  `config.batch_size` is then the global batch.  Only the chief writes
  checkpoints, meta.json and summaries.

  Returns:
    dict: steps done, skipped steps, last loss terms (averaged over
    replicas), wall time, images/s (all workers together; None when no step ran).
  """
  keras.utils.set_random_seed(seed)
  steps = config.steps if steps is None else steps
  trainer = Trainer(face_model, config, checkpoint_dir, multiview, embedder, backbone_weights, log,
                    strategy, seed, steps)
  strategy = trainer.strategy
  with distribute.peer_guard(strategy, checkpoint_dir):
    start_step = trainer.restore()
    distribute.check_same_step(strategy, start_step, checkpoint_dir)
    iterator, count = make_input(trainer, data_dir, seed, start_step)
  mode = "multi-view" if trainer.multiview else "single-view losses only"
  where = f"; {distribute.describe(strategy)}" if trainer.distributed else ""
  source = "a stream of fresh identities" if config.data_stream else f"{count} samples"
  trainer.log(f"training {config.name} ({config.backbone}) on {source}, {mode}, "
              f"steps {start_step} -> {steps}{where}")

  def postfix(terms):
    return {"loss": f"{terms['total']:.4f}",
            "lm": f"{terms.get('landmark', terms.get('landmark_head', 0.0)):.1f}"}

  result = trainer.loop.run(lambda: trainer.train_step(next(iterator)), steps, progress, postfix)
  trainer.loop.close()
  if config.cascade_scales and config.landmark_head and trainer.chief and result.steps >= steps:
    try:
      existing = cascade_lib.load(checkpoint_dir)
    except InputError:      # Damaged: fitted again and replaced.
      existing = None
    if existing is None or existing.step != result.steps:
      train_cascade(trainer.regressor, config, data_dir, checkpoint_dir, seed, result.steps,
                    progress, trainer.log)
  rate = (result.timed_steps * config.batch_size * objective_lib.NUM_VIEWS /
          max(result.timed_seconds, 1e-9)) if result.timed_steps else None
  return {"steps": result.steps, "skipped": result.skipped, "terms": result.terms,
          "seconds": result.seconds, "images_per_second": rate, "multiview": trainer.multiview}
