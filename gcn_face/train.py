"""Training the GCN texture refiner on a `.bin` of aligned crops.

One step: the frozen coarse stage gives coefficients, features and the
coarse render; the GCN predicts the refined albedo; the losses of
`gcn_face.losses` are weighted by the sigma schedule; Adam with the
learning rate decayed per epoch (staircase) and per-variable gradient
clipping updates the generator.  With `gan`, `critic_steps` critic updates
on the same batch (fresh gradient-penalty mixes each) precede every
generator update.

Under a `tf.distribute` strategy (`--strategy mirrored|multiworker`, see
`shared.train.distribute` and docs/distributed.md) the GCN, critic, optimisers and
checkpoint are created in the strategy's scope, each worker reads its own
shard of the `.bin` (`BinReader.dataset(num_workers, worker_index)`), the
frozen coarse regressor runs eagerly on each local replica's images
(`distribute.map_local`), each replica's batch-mean loss is divided by the
replicas (the batch size is global), and only the chief writes checkpoints
and gcn.json.  Gradient clipping (`clip_norm`) is per replica, before the
optimiser sums the gradients over replicas.
"""

import dataclasses
import math
import sys
import time
from pathlib import Path

import keras
import tensorflow as tf

from gcn_face import losses
from gcn_face import model as model_lib
from gcn_face.binfile import BinReader
from gcn_face.infer import write_meta
from shared.train import distribute
from shared.errors import InputError, fail

MAX_KEEP = 3


@dataclasses.dataclass
class TrainResult:
  """What a run did: steps, seconds, last loss terms and the checkpoint path."""
  steps: int
  seconds: float
  terms: dict
  checkpoint: str


class Trainer:
  """Owns the pipeline, critic, optimisers and the compiled step.

  Args:
    pipeline: `TexturePipeline`.
    config: `GCNConfig`.
    gan: train with the WGAN-GP critic.
    seed: for the gradient-penalty mixes.
    strategy: a `tf.distribute.Strategy` (None: the default, one process);
      the trainable variables are created in its scope.
  """

  def __init__(self, pipeline, config, gan=False, seed=0, strategy=None):
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
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    self._compiled = tf.function(self._distributed_step if self.distributed else
                                 self._train_step)

  def _adam(self, variables):
    """Adam with per-variable clipping, its slots built now so a resume restores them."""
    cfg = self.config
    optimizer = keras.optimizers.Adam(cfg.learning_rate, beta_1=cfg.adam_beta1,
                                      clipnorm=cfg.clip_norm)
    optimizer.build(variables)
    return optimizer

  def checkpoint(self):
    parts = {"generator": self.pipeline.gcn, "optimizer": self.optimizer, "step": self.step}
    if self.gan:
      parts.update(critic=self.critic, critic_optimizer=self.critic_optimizer)
    return tf.train.Checkpoint(**parts)

  def set_learning_rate(self, epoch):
    rate = self.config.learning_rate * self.config.lr_decay ** epoch
    self.optimizer.learning_rate.assign(rate)
    if self.gan:
      self.critic_optimizer.learning_rate.assign(rate)
    return rate

  def generator_terms(self, coarse, refined):
    """The loss terms (dict of scalars) for one batch."""
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

  def _critic_steps(self, coarse, refined):
    fake = tf.stop_gradient(self.fake_image(coarse, refined))
    loss = tf.constant(0.0)
    for k in range(self.config.critic_steps):
      seed = tf.stack([tf.cast(self.step, tf.int32), tf.constant(self.seed * 1000 + k)])
      with tf.GradientTape() as tape:
        penalty = losses.gradient_penalty(self.critic, coarse.images, fake, seed)
        loss = losses.critic_loss(self.critic(coarse.images), self.critic(fake), penalty,
                                  self.config)
        share = distribute.replica_share(loss, self.strategy)  # `loss` with one replica.
      variables = self.critic.trainable_variables
      self.critic_optimizer.apply_gradients(zip(tape.gradient(share, variables), variables))
    return loss

  def _train_step(self, images, alpha, regressed, ren, ref):
    terms = self._replica_step(images, alpha, regressed, ren, ref)
    self.step.assign_add(1)
    return terms

  def _distributed_step(self, images, alpha, regressed, ren, ref):
    """`_replica_step` on every replica; the terms averaged over replicas."""
    terms = self.strategy.run(self._replica_step, args=(images, alpha, regressed, ren, ref))
    self.step.assign_add(1)
    return distribute.mean_terms(self.strategy, terms)

  def _replica_step(self, images, alpha, regressed, ren, ref):
    """One critic + generator update on this replica's batch; returns the loss terms."""
    p = self.pipeline
    coarse = p.coarse(images, alpha, regressed)
    terms = {}
    if self.gan:  # The critic first, on the current generator's output (as the original).
      terms["critic"] = self._critic_steps(coarse, p.refine(coarse))
    with tf.GradientTape() as tape:
      refined = p.refine(coarse)
      terms.update(self.generator_terms(coarse, refined))
      total = losses.total_loss(terms, ren, ref, self.config)
      share = distribute.replica_share(total, self.strategy)  # `total` with one replica.
    variables = p.gcn.trainable_variables
    self.optimizer.apply_gradients(zip(tape.gradient(share, variables), variables))
    terms["total"] = total
    return terms

  def train_step(self, images, alpha, epoch):
    """One compiled step on a batch; returns the loss terms as floats.

    Under a strategy `images` and `alpha` are per-replica values (an element
    of the distributed dataset); the terms are averaged over replicas.
    """
    ren, ref = losses.sigma(self.config, epoch)
    # Eagerly, per local replica: see TexturePipeline.regress.
    regressed = distribute.map_local(self.strategy, self.pipeline.regress, images)
    terms = self._compiled(images, alpha, regressed, tf.constant(ren), tf.constant(ref))
    out = {k: float(v) for k, v in terms.items()}
    out.update(ren=ren, ref=ref)
    return out


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
          gan=False, seed=0, sampling=None, embedding_path=None, resume=False, log=print,
          strategy=None):
  """Trains and checkpoints; returns a `TrainResult`.

  Args:
    pipeline: `TexturePipeline` (its GCN is trained, the coarse stage frozen).
    config: `GCNConfig`.
    data_path: the training `.bin`.
    checkpoint_dir: output folder (gcn.json + TensorFlow checkpoints).
    coarse_checkpoint, sampling, embedding_path: recorded in gcn.json.
    steps: total steps; None = config.epochs x steps per epoch.
    resume: continue from the latest checkpoint in `checkpoint_dir`.
    strategy: a `tf.distribute.Strategy` (None: the default, one process);
      `config.batch_size` is then the global batch, and only the chief writes
      checkpoints and gcn.json (its `TrainResult.checkpoint`; "" elsewhere).
  """
  reader = BinReader(data_path)
  reader.require_size(config.image_size)
  if len(reader) < config.batch_size:
    fail(data_path, f"has {len(reader)} records, fewer than one batch of {config.batch_size}")
  steps_per_epoch = config.steps_per_epoch or max(1, len(reader) // config.batch_size)
  total_steps = steps if steps is not None else config.epochs * steps_per_epoch
  keras.utils.set_random_seed(seed)  # Weight initialisation happens in Trainer().
  trainer = Trainer(pipeline, config, gan=gan, seed=seed, strategy=strategy)
  strategy = trainer.strategy
  with strategy.scope():
    checkpoint = trainer.checkpoint()
  saver = distribute.CheckpointSaver(checkpoint, checkpoint_dir, MAX_KEEP, strategy)
  if resume and saver.latest_checkpoint:
    status = checkpoint.read(saver.latest_checkpoint)
    try:
      status.assert_existing_objects_matched()
    except AssertionError as error:
      fail(saver.latest_checkpoint, "cannot resume: the checkpoint does not match this "
           f"model ({str(error).splitlines()[0][:200]})")
    log(f"resuming from {saver.latest_checkpoint} (step {int(trainer.step.numpy())}, "
        f"optimizer at {int(trainer.optimizer.iterations.numpy())})")
  if trainer.distributed:
    log(distribute.describe(strategy))
  with distribute.peer_guard(strategy, checkpoint_dir):
    distribute.check_same_step(strategy, int(trainer.step.numpy()), checkpoint_dir)
    data = make_input(trainer, reader, seed)
  if saver.chief:
    Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)

  def save():
    path = saver.save(checkpoint_number=int(trainer.step.numpy()))
    if saver.chief:
      write_meta(checkpoint_dir, config, pipeline, coarse_checkpoint, sampling, gan,
                 embedding_path, int(trainer.step.numpy()))
    return path

  start = time.perf_counter()
  first_step = int(trainer.step.numpy())
  with distribute.peer_guard(strategy, checkpoint_dir):
    terms, path = _loop(trainer, data, total_steps, steps_per_epoch, save, log,
                        saver.latest_checkpoint)
    distribute.barrier(strategy)  # No worker leaves while a peer still needs it.
  seconds = time.perf_counter() - start
  log(f"trained {int(trainer.step.numpy()) - first_step} steps in {seconds:.1f} s; "
      f"checkpoint {path}")
  sys.stdout.flush()
  saver.close()
  return TrainResult(int(trainer.step.numpy()), seconds, terms, str(path or ""))


def _loop(trainer, data, total_steps, steps_per_epoch, save, log, latest):
  """The steps up to `total_steps`; returns (last terms, last checkpoint path).

  The same saves happen on every worker (non-chief ones get None back).
  """
  config = trainer.config
  first_step = int(trainer.step.numpy())
  terms, path = {}, latest
  window, window_step = time.perf_counter(), first_step
  for step in range(first_step, total_steps):
    epoch = step // steps_per_epoch
    trainer.set_learning_rate(epoch)
    batch = next(data)
    terms = trainer.train_step(batch["image"], batch["alpha"], epoch)
    if not all(math.isfinite(v) for v in terms.values()):
      raise InputError(f"step {step}: non-finite loss {terms}; lower the learning rate")
    done = step + 1
    if done % config.log_every == 0 or done == total_steps:
      per_step = (time.perf_counter() - window) / (done - window_step)
      window, window_step = time.perf_counter(), done
      shown = " ".join(f"{k} {v:.4f}" for k, v in sorted(terms.items()))
      log(f"step {done}/{total_steps} epoch {epoch} {per_step:.2f} s/step  {shown}")
    if done % config.checkpoint_every == 0:
      path = save()
  if int(trainer.step.numpy()) > first_step or latest is None:
    path = save()
  return terms, path
