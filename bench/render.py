#!/usr/bin/env python
"""Renderer speed: forward+backward ms per image at 224x224, batch 8.

For the ICT face (18,460 triangles) and the BFM front mesh (70,789
triangles, from ../shared/face_models/bfm_front_topology), it times our
`shared.render.render` against tensorflow-graphics' `triangle_rasterizer`
called directly on the same mesh, colours and camera, in the same run.
The loss is a weighted sum of the colour image; gradients are taken with
respect to vertices and colours.  Prints a table, then one JSON line.

    python bench/render.py [--batch 8] [--repeats 10]
"""

import argparse

import common  # noqa: F401  (sets up paths and logging)
import numpy as np
import scipy.io as sio
import tensorflow as tf
import trimesh
from tensorflow_graphics.rendering import rasterization_backend, triangle_rasterizer

from shared import camera as camera_lib
from shared import render as render_lib
from shared.face_model import load_face_model
from shared.paths import data_file

BFM = "face_models/bfm_front_topology"


def meshes():
  ict = load_face_model()
  bfm_v = trimesh.load(data_file(f"{BFM}/Deep3D_mean.obj"), process=False).vertices * 0.01
  bfm_f = sio.loadmat(data_file(f"{BFM}/facemodel_info.mat"))["tri"].astype(np.int32) - 1
  return [("ict", ict.mean_shape, ict.faces),
          ("bfm", (bfm_v - bfm_v.mean(0)).astype(np.float32), bfm_f)]


def make_steps(vertices, faces, batch, cam):
  rng = np.random.default_rng(0)
  posed = tf.constant(np.repeat(vertices[None], batch, 0))
  angles = tf.constant(rng.uniform(-0.4, 0.4, (batch, 3)).astype(np.float32))
  posed = tf.Variable(camera_lib.transform(posed, angles, tf.zeros([batch, 3])))
  colours = tf.Variable(rng.uniform(0, 1, (batch, len(vertices), 3)).astype(np.float32))
  weights = tf.constant(rng.uniform(0, 1, (batch, cam.image_size, cam.image_size, 3)),
                        tf.float32)
  faces_t = tf.constant(faces)
  matrix = tf.constant(np.repeat(cam.projection_matrix()[None], batch, 0))
  size = (cam.image_size, cam.image_size)

  @tf.function
  def ours():
    with tf.GradientTape() as tape:
      out = render_lib.render(posed, faces_t, colours, cam)
      loss = tf.reduce_sum(out.image * weights)
    return tape.gradient(loss, [posed, colours])

  @tf.function
  def baseline():
    with tf.GradientTape() as tape:
      out = triangle_rasterizer.rasterize(
          posed, faces_t, {"colour": colours}, matrix, size, enable_cull_face=False,
          backend=rasterization_backend.RasterizationBackends.CPU)
      loss = tf.reduce_sum(out["colour"] * weights)
    return tape.gradient(loss, [posed, colours])

  return ours, baseline


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=10)
  args = parser.parse_args()
  cam = camera_lib.Camera()
  rows, results = [], {}
  for name, vertices, faces in meshes():
    ours, baseline = make_steps(vertices, faces, args.batch, cam)
    t_ours = time_ms(ours, args) / args.batch
    t_base = time_ms(baseline, args) / args.batch
    results[name] = {"triangles": int(len(faces)), "vertices": int(len(vertices)),
                     "ours_ms_per_image": round(t_ours, 2),
                     "tfg_ms_per_image": round(t_base, 2),
                     "speedup_vs_tfg": round(t_base / t_ours, 2)}
    rows.append([name, len(faces), f"{t_ours:.2f}", f"{t_base:.2f}", f"{t_base / t_ours:.2f}x"])
  common.print_table(["mesh", "triangles", "ours ms/img", "tfg ms/img", "ratio"], rows)
  common.print_json({"bench": "render", "batch": args.batch, "image": cam.image_size,
                     "fwd_bwd": True, **common.machine(), "results": results})


def time_ms(fn, args):
  return 1000.0 * common.time_call(fn, args.repeats)


if __name__ == "__main__":
  main()
