"""Measures how MediaPipe's 468 mesh points drift from their model vertices
as the head turns, on synthetic renders, and stores the table that
`shared.fit.dense.MeshBias` applies before the dense fit.

    python tools/make_mesh_bias.py [--faces 320] [--seed 2] [--scene plain|varied|textured]
        [--mesh-model NAME] [--out FILE]

Renders `--faces` random ICT identities and expressions (shaded, grey
background; |yaw| uniform in 0-90 degrees with random sign, pitch within 15,
roll within 10; `bench/photo_synthetic.render_faces`), runs each through the
photo pipeline's detection and alignment (`PhotoReconstructor.detect`), and
takes, per face and mesh point, the residual (true projection of the point's
vertex, the correspondence of `--mesh-model` in `shared/correspondence/`) - (mesh point), in
pixels of the 224 alignment crop.  Faces at negative yaw are mirrored
(point -> its mirror point, x negated).  The table at each grid yaw is the
Gaussian-weighted mean (sigma `SIGMA_DEG` of true |yaw|) of those residuals.
Faces whose mesh is off by more than `MAX_FACE_ERROR` of their size (a
failed detection) are left out.

The mirror map of the 468 points is measured too: on the near-frontal
renders the mesh runs on the crop and on its mirror image, and the
assignment with the least total distance pairs the points.

Seeds: the bench (`bench/photo_synthetic.py`) uses seed 0 by default, so its
faces are not the ones the table is built from.  Nothing here uses
AFLW2000-16.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

FACES = 320
SEED = 2
MAX_YAW = 90.0
MAX_ROLL = 10.0
GRID_DEG = np.arange(0.0, 90.1, 5.0)
SIGMA_DEG = 6.0
MAX_FACE_ERROR = 0.2           # mean point error / sqrt(box area) above which a face is dropped
MIRROR_MAX_YAW = 12.0          # renders used to measure the mirror map


def mirror_map(images, jobs, yaws):
  """`[468]` int: the mesh point that mirrors each point (an involution)."""
  from scipy.optimize import linear_sum_assignment
  from shared.photo import face_mesh
  from shared.photo.landmarks import MESH_EYE_CORNERS
  size = face_mesh.MESH_INPUT
  flip = np.array([[-1.0, 0.0, size], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
  cost = np.zeros((face_mesh.NUM_POINTS, face_mesh.NUM_POINTS))
  for image, job, yaw in zip(images, jobs, yaws):
    if job is None or abs(yaw) > MIRROR_MAX_YAW:
      continue
    xy = job.face.dense[:, :2].astype(np.float64)
    box = np.concatenate([xy.min(0), xy.max(0)])
    matrix = face_mesh.roi_matrix(*face_mesh.roi_from_eyes(box, xy[MESH_EYE_CORNERS[0]],
                                                           xy[MESH_EYE_CORNERS[1]]))
    plain = face_mesh.run_mesh(image, matrix).points[:, :2]
    mirrored = face_mesh.run_mesh(image, (flip @ np.vstack([matrix, [0, 0, 1]]))[:2]).points[:, :2]
    cost += np.linalg.norm(plain[:, None] - mirrored[None], axis=-1)
  _, mirror = linear_sum_assignment(cost)
  if not (mirror[mirror] == np.arange(len(mirror))).all():
    raise SystemExit("error: the measured mirror map is not an involution")
  return mirror


def build(face_model, faces=FACES, seed=SEED, scene="plain", log=print):
  """(grid [C], bias [C, 468, 2], mirror [468], faces used)."""
  from photo_synthetic import render_faces
  from shared.fit import dense as dense_fit
  from shared.photo.reconstruct import PhotoReconstructor
  images, truth, yaws, projected = render_faces(face_model, faces, seed, max_yaw=MAX_YAW,
                                                spread="uniform", max_roll=MAX_ROLL,
                                                all_vertices=True, scene=scene)
  from shared.photo import face_mesh
  vertices, _ = dense_fit.load_correspondence(
      face_model, dense_fit.correspondence_file(face_mesh.mesh_model()))
  pipe = PhotoReconstructor(face_model)
  jobs = [next(iter(pipe.detect(image)), None) for image in images]
  mirror = mirror_map(images, jobs, yaws)
  used, residuals = [], []
  for k, job in enumerate(jobs):
    if job is None:
      continue
    linear = job.aligned.matrix[:, :2]
    error = projected[k][vertices] - job.face.dense[:, :2]
    size = np.sqrt(np.prod(truth[k].max(0) - truth[k].min(0)))
    if np.linalg.norm(error, axis=1).mean() / size > MAX_FACE_ERROR:
      continue
    crop = error @ linear.T
    if yaws[k] < 0:
      crop = crop[mirror] * np.array([-1.0, 1.0])
    used.append(abs(yaws[k]))
    residuals.append(crop)
  used, residuals = np.array(used), np.array(residuals)
  weights = np.exp(-0.5 * ((used[None] - GRID_DEG[:, None]) / SIGMA_DEG) ** 2)   # [C, N]
  bias = np.einsum("cn,npd->cpd", weights, residuals) / weights.sum(1)[:, None, None]
  log(f"{len(used)} of {faces} faces used; mean |bias| px by grid yaw: "
      + " ".join(f"{g:.0f}:{b:.1f}" for g, b in zip(GRID_DEG, np.linalg.norm(bias, axis=-1).mean(-1))))
  return GRID_DEG, bias, mirror, len(used)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--face-model", default=None)
  parser.add_argument("--faces", type=int, default=FACES)
  parser.add_argument("--seed", type=int, default=SEED)
  parser.add_argument("--scene", default="plain", choices=("plain", "varied", "textured"),
                      help="render scene (bench/photo_synthetic.render_faces)")
  parser.add_argument("--out", default=None)
  from shared.eval.landmark_eval import add_mesh_model_argument
  add_mesh_model_argument(parser)
  args = parser.parse_args(argv)
  from shared import quiet
  quiet.setup()  # Before TensorFlow is imported; FACE3D_VERBOSE=1 keeps library logs.
  from shared.photo import face_mesh
  face_mesh.select_mesh_model(args.mesh_model)
  from shared.fit import dense as dense_fit
  from shared.model.face_model import load_face_model
  face_model = load_face_model(args.face_model)
  grid, bias, mirror, used = build(face_model, args.faces, args.seed, args.scene)
  out = args.out or dense_fit.bias_file(args.mesh_model)
  dense_fit.save_bias(out, face_model, grid, bias, mirror, faces=np.int32(used),
                      seed=np.int32(args.seed), scene=np.array(args.scene), sigma_deg=np.float32(SIGMA_DEG))
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
