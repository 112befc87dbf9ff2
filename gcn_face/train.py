"""Training the GCN texture refiner on a `.bin` of aligned crops.

One step: the frozen coarse stage gives coefficients, features and the
coarse render; the GCN predicts the refined albedo; the losses of
`gcn_face.losses` are weighted by the sigma schedule; Adam with the
learning rate decayed per epoch (staircase) and per-variable gradient
clipping updates the generator.  With `gan`, `critic_steps` critic updates
on the same batch (fresh gradient-penalty mixes each) precede every
generator update.

The loop (automatic resume, skipped non-finite steps, atomic checkpoints,
tqdm, TensorBoard) is `shared.train.train_loop`'s, the same as the MGC trainer's;
a step whose generator loss or gradients are not finite is not applied,
and a critic update whose loss or gradients are not finite is not applied
either (each is guarded on its own and logged).  The folder's metadata (gcn.json)
is `gcn_face.checkpoint`'s.

Under a `tf.distribute` strategy (`--strategy mirrored|multiworker`, see
`shared.train.distribute` and docs/distributed.md) the GCN, critic, optimisers and
checkpoint are created in the strategy's scope, each worker reads its own
shard of the `.bin` (`BinReader.dataset(num_workers, worker_index)`), the
frozen coarse regressor runs eagerly on each local replica's images
(`distribute.map_local`), each replica's batch-mean loss is divided by the
replicas (the batch size is global), and only the chief writes checkpoints,
gcn.json and summaries.  Gradient clipping (`clip_norm`) is per replica,
before the optimiser sums the gradients over replicas.
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from gcn_face import checkpoint as checkpoint_lib
from gcn_face import losses
from gcn_face import model as model_lib
from gcn_face.binfile import BinReader
from gcn_face.evaluate import truth_albedo
from shared.train import distribute
from shared.train import train_loop
from shared.errors import fail


def loop_config(config):
  """The shared loop's settings from a `GCNConfig` (scalars every `log_every` steps)."""
  return train_loop.LoopConfig(
      checkpoint_every=config.checkpoint_every, summary_every=config.log_every,
      image_summary_every=config.log_every, keep_checkpoints=config.keep_checkpoints,
      max_consecutive_bad_steps=config.max_consecutive_bad_steps)


@dataclasses.dataclass
class TrainResult:
  """What a run did: steps, seconds, last loss terms and the checkpoint path."""
  steps: int
  seconds: float
  terms: dict
  checkpoint: str


class Trainer:
  """Owns the pipeline, critic, optimisers and the guarded, compiled step.

  Args:
    pipeline: `TexturePipeline`.
    config: `GCNConfig`.
    gan: train with the WGAN-GP critic.
    seed: for the gradient-penalty mixes.
    strategy: a `tf.distribute.Strategy` (None: the default, one process);
      the trainable variables are created in its scope.
    log: one-line messages (default: stderr).
  """

  def __init__(self, pipeline, config, gan=False, seed=0, strategy=None, log=None):
    self.pipeline = pipeline
    self.config = config
    self.gan = gan
    self.seed = seed
    self.strategy = strategy or tf.distribute.get_strategy()
    self.distributed = not distribute.is_default(self.strategy)
    with self.strategy.scope():
      pipeline.build()
      self.optimizer = self._adam(pipeline.gcn.trainable_variables)
      self.critic = self.critic_optimizer = None
      if gan:
        self.critic = model_lib.Discriminator(config, name="critic")
        self.critic(tf.zeros([1, config.image_size, config.image_size, 3]))
        self.critic_optimizer = self._adam(self.critic.trainable_variables)
    self.guard = train_loop.GuardedStep(self._replica_compute, self._replica_apply,
                                        self.strategy, log)
    if gan:  # The critic's updates precede each generator step, each guarded on its own.
      self.critic_update = train_loop.GuardedUpdate(self._critic_compute, self._critic_apply,
                                                    self.strategy)
      self._fake = tf.function(self._distributed_fake if self.distributed else
                               self._replica_fake)
    self.log = self.guard.log
    self.step, self.skipped = self.guard.step, self.guard.skipped
    self.truth = None

  def set_truth(self, albedos):
    """The true albedo [N, V, 3] of every record, indexed by the batches' `index`
    (`config.truth_albedo_weight`)."""
    self.truth = tf.constant(albedos, tf.float32)

  def _adam(self, variables):
    """Adam with per-variable clipping, its slots built now so a resume restores them."""
    cfg = self.config
    optimizer = keras.optimizers.Adam(cfg.learning_rate, beta_1=cfg.adam_beta1,
                                      clipnorm=cfg.clip_norm)
    optimizer.build(variables)
    return optimizer

  def checkpoint_parts(self):
    """What a checkpoint holds besides the step counters."""
    parts = {"generator": self.pipeline.gcn, "optimizer": self.optimizer}
    if self.gan:
      parts.update(critic=self.critic, critic_optimizer=self.critic_optimizer)
    return parts

  def watched_weights(self):
    """The weights that must be finite for a checkpoint to be written."""
    weights = list(self.pipeline.gcn.weights)
    return weights + (list(self.critic.weights) if self.gan else [])

  def set_learning_rate(self, epoch):
    rate = self.config.learning_rate * self.config.lr_decay ** epoch
    self.optimizer.learning_rate.assign(rate)
    if self.gan:
      self.critic_optimizer.learning_rate.assign(rate)
    return rate

  def generator_terms(self, coarse, refined, truth=None):
    """The loss terms (dict of scalars) for one batch; `truth`: the records' true albedo
    [B, V, 3] or None."""
    cfg, p = self.config, self.pipeline
    synth = coarse.synth
    terms = {
        "pixel": losses.pixel_loss(refined.render.image, refined.render.mask, coarse.images,
                                   coarse.alpha),
        "project": losses.projection_loss(refined.lit, coarse.projected, coarse.visibility,
                                          synth.colours, cfg.invisible_weight),
        "symmetry": losses.symmetry_loss(refined.albedo, p.symmetry),
        "variance": losses.variance_loss(refined.albedo, p.skin),
        "refine": losses.refine_loss(refined.albedo, synth.albedo),
        "fc_l2": losses.fc_l2_loss(p.gcn.fc_kernels()),
    }
    if truth is not None:
      terms["truth_albedo"] = losses.refine_loss(refined.albedo, truth)
    if cfg.lowpass_weight > 0:
      terms["lowpass"] = losses.lowpass_loss(refined.albedo, synth.albedo, p.lowpass_down,
                                             p.lowpass_up)
    if p.embedding is not None or self.gan:
      fake = self.fake_image(coarse, refined)
      if p.embedding is not None:
        terms["perception"] = losses.perception_loss(coarse.embedding, p.embedding(fake))
      if self.gan:
        terms["adversarial"] = -tf.reduce_mean(self.critic(fake))
    return terms

  @staticmethod
  def fake_image(coarse, refined):
    """The refined render pasted on the input (the critic's and embedding's input)."""
    return losses.composite(refined.render.image, refined.render.mask, coarse.images,
                            coarse.alpha)

  def _replica_fake(self, images, alpha, regressed):
    """Per replica: the current generator's output pasted on the input (the critic's fake)."""
    coarse = self.pipeline.coarse(images, alpha, regressed)
    return tf.stop_gradient(self.fake_image(coarse, self.pipeline.refine(coarse)))

  def _distributed_fake(self, images, alpha, regressed):
    return self.strategy.run(self._replica_fake, args=(images, alpha, regressed))

  def _critic_compute(self, images, fake, k):
    """Per replica: one critic update's (terms, gradients, finite, visuals)."""
    seed = tf.stack([tf.cast(self.step, tf.int32), tf.constant(self.seed * 1000) + k])
    variables = self.critic.trainable_variables
    with tf.GradientTape() as tape:
      penalty = losses.gradient_penalty(self.critic, images, fake, seed)
      loss = losses.critic_loss(self.critic(images), self.critic(fake), penalty, self.config)
      share = distribute.replica_share(loss, self.strategy)  # `loss` with one replica.
    grads = train_loop.dense_gradients(tape.gradient(share, variables), variables)
    return {"critic": loss}, grads, train_loop.finite_flag(loss, grads), {}

  def _critic_apply(self, grads):
    self.critic_optimizer.apply_gradients(zip(grads, self.critic.trainable_variables))

  def _critic_steps(self, images, alpha, regressed):
    """`critic_steps` guarded critic updates on this batch (fresh penalty mixes each).

    Returns the last critic loss; a non-finite update is skipped and logged.
    """
    fake = self._fake(images, alpha, regressed)
    loss = float("nan")
    for k in range(self.config.critic_steps):
      terms, applied, _ = self.critic_update(images, fake, tf.constant(k, tf.int32))
      loss = terms["critic"]
      if not applied:
        self.log(f"warning: step {int(self.step.numpy()) + 1}: critic update {k + 1}: "
                 "non-finite loss or gradient; skipped")
    return loss

  def _replica_compute(self, images, alpha, regressed, ren, ref, index):
    """Per replica: (generator loss terms, gradients, finite, visuals)."""
    p = self.pipeline
    coarse = p.coarse(images, alpha, regressed)
    variables = p.gcn.trainable_variables
    truth = None if self.truth is None else tf.gather(self.truth, index)
    with tf.GradientTape() as tape:
      refined = p.refine(coarse)
      terms = self.generator_terms(coarse, refined, truth)
      total = losses.total_loss(terms, ren, ref, self.config)
      share = distribute.replica_share(total, self.strategy)  # `total` with one replica.
    grads = train_loop.dense_gradients(tape.gradient(share, variables), variables)
    terms["total"] = total
    return terms, grads, train_loop.finite_flag(total, grads), {}

  def _replica_apply(self, grads):
    self.optimizer.apply_gradients(zip(grads, self.pipeline.gcn.trainable_variables))

  def train_step(self, images, alpha, epoch, landmarks=None, index=None):
    """One guarded step on a batch -> (terms as floats, applied: bool, visuals).

    Under a strategy `images`, `alpha` (and `landmarks`, `index`) are per-replica
    values (an element of the distributed dataset); the terms are averaged
    over replicas.  `landmarks` [B, 68, 2] feed the coarse landmark refit
    (`config.coarse_fit_steps`); `index` [B] (the records' indices) picks the
    true albedo after `set_truth`.
    """
    if (self.truth is None) != (index is None):
      raise ValueError("train_step: pass the records' index exactly when set_truth was called")
    ren, ref = losses.sigma(self.config, epoch)
    # Eagerly, per local replica: see TexturePipeline.regress.
    if landmarks is None:
      regressed = distribute.map_local(self.strategy, self.pipeline.regress, images)
    else:
      regressed = distribute.map_local(self.strategy, self.pipeline.regress, images, landmarks,
                                       alpha)
    critic = self._critic_steps(images, alpha, regressed) if self.gan else None
    terms, applied, visuals = self.guard(images, alpha, regressed, tf.constant(ren),
                                         tf.constant(ref),
                                         tf.zeros([0], tf.int64) if index is None else index)
    terms.update(ren=ren, ref=ref)
    if critic is not None:
      terms["critic"] = critic
    return terms, applied, visuals


def read_truth(reader, num_vertices):
  """[N, V, 3]: the true albedo of every record of `reader` (`config.truth_albedo_weight`);
  InputError naming the first record without one."""
  albedos = truth_albedo(reader, num_vertices)
  missing = [name for name, albedo in zip(reader.names, albedos) if albedo is None]
  if missing:
    fail(reader.path, f"{len(missing)} of {len(albedos)} records have no true albedo (first: "
         f"{missing[0]}); truth_albedo_weight needs a .bin packed from a synthetic data set "
         "whose _gt.npz files hold it")
  return np.stack(albedos)


def make_input(trainer, reader, seed):
  """An iterator of batches {index, image, alpha}; under a strategy, of per-worker shards.

  `config.batch_size` is the global batch; each worker reads the records
  i with i mod workers == its index (InputError when its shard holds less
  than one per-replica batch).
  """
  config = trainer.config
  if not trainer.distributed:
    return iter(reader.dataset(config.batch_size, shuffle=True, seed=seed, repeat=True,
                               drop_remainder=True))

  def shard_dataset(batch_size, num_shards, index):
    if len(range(index, len(reader), num_shards)) < batch_size:
      fail(reader.path, f"has {len(reader)} records: worker {index} of {num_shards} gets fewer "
           f"than one per-replica batch of {batch_size}")
    return reader.dataset(batch_size, shuffle=True, seed=seed, num_workers=num_shards,
                          worker_index=index, repeat=True, drop_remainder=True)

  return iter(distribute.distribute_dataset(trainer.strategy, shard_dataset, config.batch_size))


def train(pipeline, config, data_path, checkpoint_dir, coarse_checkpoint, steps=None,
          gan=False, seed=0, sampling=None, embedding_path=None, log=None, strategy=None,
          progress=True):
  """Trains (or resumes, from the latest checkpoint in `checkpoint_dir`); returns a `TrainResult`.

  Args:
    pipeline: `TexturePipeline` (its GCN is trained, the coarse stage frozen).
    config: `GCNConfig`.
    data_path: the training `.bin`.
    checkpoint_dir: output folder (gcn.json, TensorFlow checkpoints, logs/).
    coarse_checkpoint, sampling, embedding_path: recorded in gcn.json.
    steps: total steps; None = config.epochs x steps per epoch.
    log: one-line messages (default: stderr).
    strategy: a `tf.distribute.Strategy` (None: the default, one process);
      `config.batch_size` is then the global batch, and only the chief writes
      checkpoints and gcn.json (its `TrainResult.checkpoint`; "" elsewhere).
    progress: show a tqdm bar.
  """
  reader = BinReader(data_path)
  reader.require_size(config.image_size)
  fits = config.coarse_fit_steps > 0 or config.coarse_fit_colour_steps > 0
  if fits and not reader.has_landmarks():
    missing = len(reader) if reader.landmarks is None else int(
        (~np.isfinite(reader.landmarks).all(axis=(1, 2))).sum())
    (log or train_loop.stderr_log)(
        f"warning: {data_path}: {missing} of {len(reader)} records have no landmarks; they keep "
        f"the regressor's coarse coefficients (config '{config.name}' refits the coarse stage "
        "to landmarks: tools/create_bin.py packs them from a dataset's _lm.txt files)")
  if len(reader) < config.batch_size:
    fail(data_path, f"has {len(reader)} records, fewer than one batch of {config.batch_size}")
  steps_per_epoch = config.steps_per_epoch or max(1, len(reader) // config.batch_size)
  total_steps = steps if steps is not None else config.epochs * steps_per_epoch
  keras.utils.set_random_seed(seed)  # Weight initialisation happens in Trainer().
  trainer = Trainer(pipeline, config, gan=gan, seed=seed, strategy=strategy, log=log)
  strategy = trainer.strategy
  if config.truth_albedo_weight > 0:
    trainer.set_truth(read_truth(reader, pipeline.stage.face_model.num_vertices))

  def write_meta(step):
    checkpoint_lib.write_meta(checkpoint_dir, config, pipeline, coarse_checkpoint, sampling, gan,
                              embedding_path, step)

  loop = train_loop.TrainingLoop(trainer.checkpoint_parts(), checkpoint_dir, loop_config(config),
                                 trainer.guard, write_meta, trainer.watched_weights(),
                                 describe=f"this GCN (config '{config.name}', {config.arch})")
  found = checkpoint_lib.find_meta(checkpoint_dir)
  if found is not None and loop.saver.latest_checkpoint is not None:
    checkpoint_lib.check_resumable(found[0], config, pipeline, checkpoint_dir)
  with distribute.peer_guard(strategy, checkpoint_dir):
    first_step = loop.restore()
    if trainer.distributed:
      trainer.log(distribute.describe(strategy))
    distribute.check_same_step(strategy, first_step, checkpoint_dir)
    data = make_input(trainer, reader, seed)

  def next_step():
    epoch = int(trainer.step.numpy()) // steps_per_epoch
    trainer.set_learning_rate(epoch)
    batch = next(data)
    landmarks = batch.get("landmarks") if fits else None
    index = batch["index"] if trainer.truth is not None else None
    return trainer.train_step(batch["image"], batch["alpha"], epoch, landmarks, index)

  result = loop.run(next_step, total_steps, progress)
  trainer.log(f"trained {result.steps - result.first_step} steps in {result.seconds:.1f} s "
              f"({result.skipped} skipped in all); checkpoint {result.checkpoint or '-'}")
  loop.close()
  return TrainResult(result.steps, result.seconds, result.terms, result.checkpoint)
