#!/usr/bin/env python
"""Renderer speed: forward+backward ms per image at 224x224, batch 8.

For the ICT face (18,460 triangles) and the BFM front mesh (70,789
triangles, from ../shared/face_models/bfm_front_topology), it times our
`shared.render.renderer.render` against tensorflow-graphics' `triangle_rasterizer`
called directly on the same mesh, colours and camera, in the same run.
The loss is a weighted sum of the colour image; gradients are taken with
respect to vertices and colours (both sides do the same work: vertices to
clip space, kernel, interpolation, backward).  Calls are timed round-robin
after two untimed warm-up rounds.

Rows per mesh: our stages (the kernel calls alone; the interpolation
forward; the interpolation forward+backward, both from precomputed triangle
ids), our full step and tfg's.  Columns: wall ms per image (min and median
over repeats) and CPU ms per image (minimum process time, all threads; less
sensitive to other jobs than wall time).  Prints the table, then one JSON
line.

    python bench/render.py [--batch 8] [--repeats 10]

Figures: README.md, Results.
"""

import argparse

import common  # noqa: F401  (sets up paths and logging)
import numpy as np
import scipy.io as sio
import tensorflow as tf
import trimesh
from tensorflow_graphics.rendering import rasterization_backend, triangle_rasterizer

from shared.model import camera as camera_lib
from shared.render import renderer as render_lib
from shared.model.face_model import load_face_model
from shared.io.paths import data_file

BFM = "face_models/bfm_front_topology"
MAX_ANGLE = 0.4  # Radians: random head rotations per image.


def meshes():
  ict = load_face_model()
  bfm_v = trimesh.load(data_file(f"{BFM}/Deep3D_mean.obj"), process=False).vertices * 0.01
  bfm_f = sio.loadmat(data_file(f"{BFM}/facemodel_info.mat"))["tri"].astype(np.int32) - 1
  return [("ict", ict.mean_shape, ict.faces),
          ("bfm", (bfm_v - bfm_v.mean(0)).astype(np.float32), bfm_f)]


def make_steps(vertices, faces, batch, cam):
  """{name: tf.function}: our stages, our full step ("ours") and tfg's ("tfg")."""
  rng = np.random.default_rng(0)
  posed = tf.constant(np.repeat(vertices[None], batch, 0))
  angles = tf.constant(rng.uniform(-MAX_ANGLE, MAX_ANGLE, (batch, 3)).astype(np.float32))
  posed = tf.Variable(camera_lib.transform(posed, angles, tf.zeros([batch, 3])))
  colours = tf.Variable(rng.uniform(0, 1, (batch, len(vertices), 3)).astype(np.float32))
  weights = tf.constant(rng.uniform(0, 1, (batch, cam.image_size, cam.image_size, 3)),
                        tf.float32)
  faces_t = tf.constant(faces)
  matrix = tf.constant(np.repeat(cam.projection_matrix()[None], batch, 0))
  size = (cam.image_size, cam.image_size)
  clip = tf.Variable(render_lib.to_clip(posed, cam))

  @tf.function
  def kernel():
    return render_lib.visibility(clip, faces_t, size)

  triangle_id, mask = kernel()

  @tf.function
  def interpolation_forward():
    return render_lib.interpolate(clip, faces_t, triangle_id, mask, colours)

  @tf.function
  def interpolation_forward_backward():
    with tf.GradientTape() as tape:
      image = render_lib.interpolate(clip, faces_t, triangle_id, mask, colours)
      loss = tf.reduce_sum(image * weights)
    return tape.gradient(loss, [clip, colours])

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

  return {"kernel (visibility)": kernel, "interp fwd": interpolation_forward,
          "interp fwd+bwd": interpolation_forward_backward, "ours": ours, "tfg": baseline}


def per_image_ms(stats, batch):
  return {key: round(1000.0 * value / batch, 2) for key, value in stats.items()}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=10)
  args = parser.parse_args()
  cam = camera_lib.Camera()
  rows, results = [], {}
  load_start = common.load_average()
  for name, vertices, faces in meshes():
    timed = common.time_interleaved(make_steps(vertices, faces, args.batch, cam), args.repeats)
    ms = {stage: per_image_ms(stats, args.batch) for stage, stats in timed.items()}
    for stage, t in ms.items():
      rows.append([name, stage, f"{t['min']:.2f}", f"{t['median']:.2f}", f"{t['cpu']:.2f}"])
    ours, tfg = ms["ours"], ms["tfg"]
    results[name] = {"triangles": int(len(faces)), "vertices": int(len(vertices)),
                     "ours_ms_per_image": ours["median"], "tfg_ms_per_image": tfg["median"],
                     "speedup_vs_tfg": round(tfg["median"] / ours["median"], 2),
                     "ours_cpu_ms_per_image": ours["cpu"], "tfg_cpu_ms_per_image": tfg["cpu"],
                     "stages_ms_per_image": ms}
    rows.append([name, "ratio tfg/ours", "", f"{tfg['median'] / ours['median']:.2f}x",
                 f"{tfg['cpu'] / ours['cpu']:.2f}x"])
  common.print_table(["mesh", "stage", "wall min", "wall median", "CPU"], rows)
  print("(ms per image; CPU = process time of all threads)")
  common.print_json({"bench": "render", "batch": args.batch, "image": cam.image_size,
                     "fwd_bwd": True, "repeats": args.repeats,
                     "load_average": [load_start, common.load_average()],
                     "results": results})


if __name__ == "__main__":
  main()
