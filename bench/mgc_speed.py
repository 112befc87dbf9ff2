#!/usr/bin/env python
"""MGC speed: tiny-preset training throughput and single-image inference latency.

    python bench/mgc_speed.py [--train-steps 10] [--runs 20] [--config-train tiny]
                              [--config-infer paper]

1. A training step of the `--config-train` preset (batch of triplets, all
   losses, multi-view on), in images/s (3 views per triplet), after a warm-up
   step (tracing); beside it the network's own step (forward, backward and
   Adam on the same images, no decoding, rendering or losses), so that the
   rest, mostly the renderer's share, is the difference.
2. Single-image inference with the ResNet-50 (paper) preset: regress, decode
   and render one 224x224 image in one compiled call; median latency in ms,
   with the regression alone for reference.  Untrained weights, except that
   the batch norms get trained-like statistics (see `trained_like_batch_norms`).

Wall time is measured; CPU time is reported too because on a shared machine
wall time includes waiting for other processes.  A table, then one JSON line.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from shared import quiet  # noqa: E402

quiet.setup()  # Before TensorFlow is imported; FACE3D_VERBOSE=1 keeps library logs.

import numpy as np  # noqa: E402

LATENCY_GOAL_MS = 80.0


def random_batch(batch_size, rng):
  """A training batch of random images with plausible landmarks (speed only)."""
  import tensorflow as tf
  from mgc_face.objective import Batch
  images = rng.uniform(size=(batch_size, 3, 224, 224, 3)).astype(np.float32)
  skins = np.ones((batch_size, 3, 224, 224, 1), np.float32)
  landmarks = rng.uniform(60, 160, (batch_size, 3, 68, 2)).astype(np.float32)
  flags = np.full(batch_size, 2.0, np.float32)
  return Batch(*(tf.constant(a) for a in (images, skins, landmarks, flags)))


def timed(fn, runs):
  walls, cpus = [], []
  for _ in range(runs):
    w, c = time.perf_counter(), time.process_time()
    fn()
    walls.append(time.perf_counter() - w)
    cpus.append(time.process_time() - c)
  return np.array(walls), np.array(cpus)


def network_step(trainer, batch):
  """The network's forward, backward and optimiser step on `batch`'s views alone."""
  import tensorflow as tf
  from mgc_face.objective import flatten_views

  @tf.function
  def step(images):
    with tf.GradientTape() as tape:
      outputs = trainer.regressor.head_landmarks(flatten_views(images), training=True)
      loss = tf.add_n([tf.reduce_sum(tf.square(t)) for t in tf.nest.flatten(outputs)])
    grads = tape.gradient(loss, trainer.variables)
    trainer.optimizer.apply_gradients(zip(grads, trainer.variables))
    return loss

  return lambda: step(batch.images).numpy()


def bench_training(face_model, steps, batch_size, multiview, checkpoint_dir, config_name="tiny"):
  from mgc_face import train as train_lib
  from mgc_face.config import get_config
  # Full steps (the tiny preset's first landmark_warmup_steps train the head only, no rendering).
  config = get_config(config_name).replace(landmark_warmup_steps=0)
  if batch_size:
    config = config.replace(batch_size=batch_size)
  trainer = train_lib.Trainer(face_model, config, checkpoint_dir, multiview=multiview,
                              log=lambda message: None)
  batch = random_batch(config.batch_size, np.random.default_rng(0))
  trainer.train_step(batch)  # Tracing and XLA compilation.
  walls, cpus = timed(lambda: trainer.train_step(batch), steps)
  network = network_step(trainer, batch)
  network()  # Tracing.
  net_walls, _ = timed(network, steps)
  images = config.batch_size * 3
  step_s, net_s = float(np.median(walls)), float(np.median(net_walls))
  return {"train_config": config_name, "train_backbone": config.backbone,
          "train_input_size": config.input_size,
          "train_batch_triplets": config.batch_size, "train_multiview": multiview,
          "train_network_step_s": net_s, "train_rest_share": 1.0 - net_s / step_s,
          "train_step_s": step_s, "train_step_cpu_s": float(np.median(cpus)),
          "train_images_per_s": images / step_s,
          "train_images_per_cpu_s": images / float(np.median(cpus))}


def trained_like_batch_norms(network, rng):
  """Gives every batch norm non-trivial statistics and affine weights, as a
  trained network has.  Untrained ones (mean 0, variance 1, beta 0) fold into
  zero biases, which Grappler deletes, and a conv without a bias add is not
  fused with its ReLU: the untrained graph would not be the one users run."""
  import keras
  ranges = {"gamma": (0.5, 1.5), "beta": (-0.1, 0.1), "moving_mean": (-0.1, 0.1),
            "moving_variance": (0.5, 2.0)}
  for layer in network._flatten_layers(include_self=False):
    if isinstance(layer, keras.layers.BatchNormalization):
      for weight in layer.weights:
        low, high = ranges[weight.path.split("/")[-1]]
        weight.assign(rng.uniform(low, high, weight.shape).astype(np.float32))


def bench_inference(face_model, runs, config_name):
  import tensorflow as tf
  from mgc_face import infer
  from mgc_face.config import get_config
  regressor = infer.build_regressor(face_model, get_config(config_name))
  trained_like_batch_norms(regressor.network, np.random.default_rng(2))
  reconstructor = infer.Reconstructor(regressor)
  image = tf.constant(np.random.default_rng(1).uniform(size=(1, 224, 224, 3)).astype(np.float32))
  reconstructor(image)
  regressor(image)
  vector = regressor.layout.join(regressor(image)[0])
  reg_walls, _ = timed(lambda: regressor(image)[0].identity.numpy(), runs)
  render_walls, _ = timed(lambda: [t.numpy() for t in reconstructor._decode_and_render(vector)],
                          runs)
  walls, cpus = timed(lambda: reconstructor(image), runs)
  return {"infer_config": config_name, "infer_backbone": regressor.config.backbone,
          "infer_ms": 1000 * float(np.median(walls)), "infer_ms_min": 1000 * float(np.min(walls)),
          "infer_ms_p90": 1000 * float(np.percentile(walls, 90)),
          "infer_cpu_ms": 1000 * float(np.median(cpus)),
          "regress_only_ms": 1000 * float(np.median(reg_walls)),
          "decode_render_ms": 1000 * float(np.median(render_walls)),
          "infer_goal_ms": LATENCY_GOAL_MS}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--face-model", default=None)
  parser.add_argument("--train-steps", type=int, default=10, help="timed training steps")
  parser.add_argument("--batch-size", type=int, default=None, help="triplets (default: tiny)")
  parser.add_argument("--no-multiview", action="store_true")
  parser.add_argument("--runs", type=int, default=20, help="timed inference runs")
  parser.add_argument("--config-train", default="tiny", help="preset for the training step")
  parser.add_argument("--config-infer", default="paper", help="preset for the latency test")
  parser.add_argument("--skip-train", action="store_true")
  parser.add_argument("--skip-infer", action="store_true")
  args = parser.parse_args(argv)
  import tempfile
  import tensorflow as tf
  from shared.errors import InputError, report
  from shared.model.face_model import load_face_model
  try:
    face_model = load_face_model(args.face_model)
  except InputError as error:
    return report(error)
  result = {"cpu_count": os.cpu_count(),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads()}
  if not args.skip_train:
    with tempfile.TemporaryDirectory() as tmp:
      result.update(bench_training(face_model, args.train_steps, args.batch_size,
                                   not args.no_multiview, tmp, args.config_train))
    print(f"{args.config_train} training step ({result['train_backbone']}, "
          f"{result['train_input_size']} px, {result['train_batch_triplets']} triplets, multiview "
          f"{result['train_multiview']}): {result['train_step_s']:.3f} s wall, "
          f"{result['train_step_cpu_s']:.3f} s CPU -> {result['train_images_per_s']:.1f} images/s; "
          f"network alone {result['train_network_step_s']:.3f} s, the rest (decode, render, "
          f"losses) {100 * result['train_rest_share']:.0f} %")
  if not args.skip_infer:
    result.update(bench_inference(face_model, args.runs, args.config_infer))
    verdict = "meets" if result["infer_ms"] <= LATENCY_GOAL_MS else "misses"
    print(f"{result['infer_backbone']} inference (regress + decode + render, 1 image): "
          f"{result['infer_ms']:.1f} ms median wall (min {result['infer_ms_min']:.1f}, p90 "
          f"{result['infer_ms_p90']:.1f}), {result['infer_cpu_ms']:.1f} ms CPU; regression "
          f"{result['regress_only_ms']:.1f} ms + decode/render {result['decode_render_ms']:.1f} ms; "
          f"median {verdict} the {LATENCY_GOAL_MS:.0f} ms goal")
  print(json.dumps(result))
  return 0


if __name__ == "__main__":
  sys.exit(main())
