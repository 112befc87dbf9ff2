#!/usr/bin/env python
"""GCN texture model speed: forward+backward seconds per batch.

For the BFM front hierarchy (35,709 vertices, factors 4 4 4 4: 5 levels,
mesh from ../shared/face_models/bfm_front_topology) and the ICT face one
(9,409 vertices), it times one gradient of `TextureGCN` (decoder + refiner
+ combine) on random inputs, per preset and architecture, batch 4 (the
paper's).  The image feature is 2048-d for `paper` (ResNet-50 pool5) and
128-d for `tiny`.  With --full it also times the whole ICT training step
(coarse synthesis, two renders at 224 px, all losses, Adam update) with a
stand-in coarse stage.  Hierarchies are cached (shared.mesh.topology).
Prints a table, then one JSON line.

    python bench/gcn.py [--meshes bfm ict] [--configs tiny paper]
                        [--archs normal resnet] [--batch 4] [--repeats 5] [--full]
"""

import argparse
import hashlib
import types

import common  # noqa: F401  (sets up paths and logging)
import numpy as np
import scipy.io as sio
import tensorflow as tf

from gcn_face import model as model_lib
from gcn_face.config import get_config
from shared.mesh import topology as topology_lib
from shared.model.face_model import load_face_model
from shared.io.paths import data_file

BFM = "face_models/bfm_front_topology"
MM_TO_UNITS = 0.01
FEATURES = {"paper": 2048, "tiny": 128}


def bfm_mesh():
  """The Deep3D BFM front mean mesh as a face-model-like object (decimetres)."""
  import trimesh
  obj = data_file(f"{BFM}/Deep3D_mean.obj")
  tri_file = data_file(f"{BFM}/facemodel_info.mat")
  vertices = np.asarray(trimesh.load(obj, process=False).vertices, np.float32) * MM_TO_UNITS
  faces = sio.loadmat(tri_file)["tri"].astype(np.int32) - 1
  digest = hashlib.sha256(obj.read_bytes() + tri_file.read_bytes()).hexdigest()[:16]
  return types.SimpleNamespace(mean_shape=vertices - vertices.mean(0), faces=faces,
                               source_hash=f"bfm-front-{digest}")


def hierarchy(name, factors):
  mesh = bfm_mesh() if name == "bfm" else load_face_model()
  return topology_lib.get_or_build_topology(mesh, factors, progress=False)


def gcn_step(topology, config, batch):
  gcn = model_lib.TextureGCN(topology, config)
  rng = np.random.default_rng(0)
  features = tf.constant(rng.standard_normal((batch, FEATURES[config.name])), tf.float32)
  inputs = tf.constant(rng.uniform(-1, 1, (batch, topology.num_vertices[0],
                                           model_lib.refiner_input_channels(config))),
                       tf.float32)
  target = tf.constant(rng.uniform(0, 1, (batch, topology.num_vertices[0], 3)), tf.float32)
  gcn(features, inputs)

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.abs(gcn(features, inputs) - target))
    return tape.gradient(loss, gcn.trainable_variables)

  params = sum(int(np.prod(v.shape)) for v in gcn.trainable_variables)
  return step, params


def full_step(config, batch):
  """The whole training step on ICT with a stand-in coarse stage."""
  from gcn_face import train as train_lib
  from gcn_face.coarse import CoarseStage
  from gcn_face.infer import TexturePipeline
  from shared.model.coeffs import CoeffLayout
  face_model = load_face_model()
  layout = CoeffLayout.for_model(face_model)
  size = FEATURES[config.name]

  def regressor(images):
    return (layout.zeros(images.shape[0]),
            tf.tile(tf.reduce_mean(images, [1, 2]), [1, size // 3 + 1])[:, :size])

  stage = CoarseStage(regressor, face_model, size)
  topology = topology_lib.get_or_build_topology(face_model, config.factors, progress=False)
  pipeline = TexturePipeline(stage, topology, config.replace(batch_size=batch))
  trainer = train_lib.Trainer(pipeline, config)
  rng = np.random.default_rng(0)
  images = tf.constant(rng.uniform(0, 1, (batch, config.image_size, config.image_size, 3)),
                       tf.float32)
  alpha = tf.ones([batch, config.image_size, config.image_size, 1])
  return lambda: trainer.train_step(images, alpha, epoch=5)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--meshes", nargs="+", default=["bfm", "ict"], choices=["bfm", "ict"])
  parser.add_argument("--configs", nargs="+", default=["tiny", "paper"],
                      choices=["tiny", "paper"])
  parser.add_argument("--archs", nargs="+", default=["normal", "resnet"],
                      choices=["normal", "resnet"])
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--full", action="store_true",
                      help="also time the full ICT training step (renders and losses)")
  args = parser.parse_args()
  rows, results = [], []
  for mesh in args.meshes:
    for name in args.configs:
      topo = hierarchy(mesh, get_config(name).factors)
      for arch in args.archs:
        config = get_config(name, arch)
        step, params = gcn_step(topo, config, args.batch)
        seconds = common.time_call(step, args.repeats)
        results.append({"mesh": mesh, "vertices": list(topo.num_vertices), "config": name,
                        "arch": arch, "params": params, "seconds_per_batch": round(seconds, 4)})
        rows.append([mesh, " > ".join(map(str, topo.num_vertices)), name, arch,
                     f"{params:,}", f"{seconds:.3f}"])
  common.print_table(["mesh", "vertices per level", "config", "arch", "params",
                      "fwd+bwd s/batch"], rows)
  full = {}
  if args.full:
    for name in args.configs:
      seconds = common.time_call(full_step(get_config(name), args.batch), args.repeats)
      full[name] = round(seconds, 4)
      print(f"full ICT training step ({name}, batch {args.batch}): {seconds:.3f} s")
  common.print_json({"bench": "gcn", "batch": args.batch, "fwd_bwd": True,
                     "results": results, "full_step_ict": full})


if __name__ == "__main__":
  main()
