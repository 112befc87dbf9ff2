#!/usr/bin/env python
"""Supervised ceiling of an MGC network: what the architecture can read from the images.

    python bench/mgc_probe.py --data out/d96 --config tiny --steps 600
    python bench/mgc_probe.py --data out/d96 --config tiny --set landmark_head=true \\
        --set w_landmark_head=0.01 --steps 600

Trains the network of a preset (with `--set name=value` overrides of its
config) on the synthetic set's ground truth instead of the self-supervised
objective: the mean squared error of the identity, expression, rotation and
translation coefficients against `_gt.npz` (std units, radians, model units),
plus, with a landmark head, `w_landmark_head` x its landmark loss against the
strips' `_lm.txt` landmarks (1 px noise, the labels training uses).  All
views of the training strips are held in memory; each step draws
`batch_size x 3` random views.  Every `--eval-every` steps it scores the
held-out identities (test.txt, all 3 views) as `mgc_face.evaluate` does:
face-region RMSE after similarity alignment over the mean face's, and the
68-landmark NME (%) of the projected model landmarks (and of the landmark
head) against the noise-free ground truth.  A network whose supervised
ceiling is the mean face (ratio ~1) cannot learn shape self-supervised
either.  Prints a table, then one JSON line.
"""

import argparse
import dataclasses
import sys
import time

from common import load_average, print_json, print_table  # noqa: F401 (sets sys.path)

import keras
import numpy as np
import tensorflow as tf

from mgc_face import data as data_lib
from mgc_face import evaluate as eval_lib
from mgc_face import model as model_lib
from mgc_face import prior_init
from mgc_face import stream as stream_lib
from mgc_face import synthetic
from mgc_face import train as train_lib
from mgc_face.config import get_config
from shared.config_overrides import add_set_argument, apply_overrides
from shared.errors import InputError, report
from shared.train import losses
from shared.model.coeffs import CoeffLayout
from shared.model.face_model import load_face_model
from shared.eval.metrics import PERCENT, nme_68
from shared.render.face_image import FaceSynthesizer

EVAL_BATCH = 12


def load_split(root, split):
  """All views of a split: images [N, 224, 224, 3], gt dicts stacked per view."""
  records, landmarks, _ = data_lib.scan(root, split, report=False)
  images, coeffs, vertices, clean = [], [], [], []
  for record, noisy in zip(records, landmarks):
    gt = synthetic.read_ground_truth(record.gt_path(root))
    images.append(data_lib.read_strip(record.image_path(root)))
    coeffs.append(gt["coefficients"])
    vertices.append(np.repeat(gt["vertices"][None], data_lib.NUM_VIEWS, 0))
    clean.append(gt["landmarks2d"])
  cat = lambda x: np.concatenate(x, 0).astype(np.float32)  # noqa: E731
  return dict(images=cat(images), coefficients=cat(coeffs), vertices=cat(vertices),
              landmarks=cat([np.asarray(l) for l in landmarks]), clean=cat(clean))


def evaluate(network, layout, synth, test, region, mean_shape):
  rows = {"sim": [], "sim_mean": [], "nme": [], "nme_head": []}
  for start in range(0, len(test["images"]), EVAL_BATCH):
    images = tf.constant(test["images"][start:start + EVAL_BATCH])
    outputs = network(images, training=False)
    coeffs = layout.split(outputs[0])
    vertices, _, _, lm2d = synth.geometry(coeffs)
    for k, v in enumerate(vertices.numpy()):
      truth = test["vertices"][start + k]
      rows["sim"].append(eval_lib.aligned_rmse(v, truth, region, True))
      rows["sim_mean"].append(eval_lib.aligned_rmse(mean_shape, truth, region, True))
    clean = test["clean"][start:start + EVAL_BATCH]
    rows["nme"].extend(PERCENT * nme_68(lm2d.numpy(), clean))
    if len(outputs) > 2:
      rows["nme_head"].extend(PERCENT * nme_68(outputs[2].numpy(), clean))
  out = {"sim_vs_mean_face": float(np.mean(rows["sim"]) / np.mean(rows["sim_mean"])),
         "nme_percent": float(np.mean(rows["nme"]))}
  if rows["nme_head"]:
    out["head_nme_percent"] = float(np.mean(rows["nme_head"]))
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", required=True, help="synthetic set (tools/make_synthetic_dataset.py)")
  parser.add_argument("--test-data", help="held-out set (default: --data's test.txt)")
  parser.add_argument("--config", default="tiny")
  add_set_argument(parser, "the preset (MGCConfig, mgc_face/config.py)",
                   "w_landmark_head=0.01")
  parser.add_argument("--steps", type=int, default=600)
  parser.add_argument("--eval-every", type=int, default=200)
  parser.add_argument("--w-coefficients", type=float, default=1.0,
                      help="weight of the coefficient MSE (0: landmark head only)")
  parser.add_argument("--stream", action="store_true",
                      help="train on fresh identities rendered every step (mgc_face/stream.py) "
                           "instead of --data's training strips (all 3 views of batch_size faces)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--label", default="")
  args = parser.parse_args()
  keras.utils.set_random_seed(args.seed)
  try:
    config = apply_overrides(get_config(args.config), args.set)
  except InputError as error:
    return report(error)
  face_model = load_face_model()
  layout = CoeffLayout.for_model(face_model)
  synth = FaceSynthesizer(face_model)
  region = face_model.skin_mask > eval_lib.SKIN_REGION
  train = None if args.stream else load_split(args.data, "train")
  test = load_split(args.test_data or args.data, "test")
  network = model_lib.build_network(config, layout)
  prior_init.init_coefficient_head(network, face_model, config, args.seed)
  optimizer = train_lib.make_optimizer(config, args.steps)
  weights = tf.constant(losses.landmark_weights(config.landmark_detail_weight))
  sizes = layout.sizes
  # Supervised parts: identity, expression, rotation, translation (not albedo, light).
  starts = np.cumsum((0,) + tuple(sizes))
  keep = np.zeros(layout.size, np.float32)
  for part in (0, 2, 3, 4):
    keep[starts[part]:starts[part + 1]] = 1.0
  keep = tf.constant(keep / keep.sum() * layout.size)

  @tf.function
  def step(images, target, landmarks):
    with tf.GradientTape() as tape:
      outputs = network(images, training=True)
      loss = args.w_coefficients * tf.reduce_mean(tf.square(outputs[0] - target) * keep)
      head = tf.constant(0.0)
      if len(outputs) > 2:
        head = tf.reduce_mean(losses.landmark_loss(outputs[2], landmarks, weights))
        loss += config.w_landmark_head * head
        loss += config.w_heatmap * tf.reduce_mean(model_lib.heatmap_cross_entropy(
            outputs[3], landmarks, config.heatmap_sigma))
    variables = network.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss, head

  rng = np.random.default_rng(args.seed)
  batch = config.batch_size * data_lib.NUM_VIEWS
  rows, started, load = [], time.time(), [load_average()]
  loss = head = float("nan")
  source = stream_lib.SampleStream(face_model, args.seed) if args.stream else None
  for k in range(1, args.steps + 1):
    if source is not None:
      samples = [source.rng(n) for n in range((k - 1) * config.batch_size, k * config.batch_size)]
      samples = [synthetic.render_sample(source.renderer, r, source.config) for r in samples]
      images, target, lms = [np.concatenate([s[key] for s in samples]).astype(np.float32)
                             for key in ("image", "coefficients", "noisy_landmarks")]
    else:
      pick = rng.integers(0, len(train["images"]), batch)
      images, target, lms = (train[key][pick] for key in ("images", "coefficients", "landmarks"))
    loss, head = step(tf.constant(images), tf.constant(target), tf.constant(lms))
    if k % args.eval_every == 0 or k == args.steps:
      scores = evaluate(network, layout, synth, test, region, face_model.mean_shape)
      load.append(load_average())
      rows.append([k, f"{float(loss):.4f}", f"{float(head):.1f}",
                   f"{scores['sim_vs_mean_face']:.3f}", f"{scores['nme_percent']:.2f}",
                   f"{scores.get('head_nme_percent', float('nan')):.2f}",
                   f"{time.time() - started:.0f}"])
      print("  ".join(str(c) for c in rows[-1]), flush=True)
  print_table(["step", "loss", "head lm px^2", "held-out sim / mean face", "NME %",
               "head NME %", "s"], rows)
  print_json({"label": args.label, "config": args.config, "overrides": args.set or [],
              "data": args.data, "test_data": args.test_data or args.data,
              "steps": args.steps, "seed": args.seed, "train_views": "stream" if train is None else len(train["images"]),
              "test_views": len(test["images"]), "w_coefficients": args.w_coefficients,
              **scores, "seconds": time.time() - started, "load": [min(load), max(load)],
              "changed": {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
                          if getattr(config, f.name) != getattr(get_config(args.config), f.name)}})


if __name__ == "__main__":
  sys.exit(main())
