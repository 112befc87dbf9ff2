"""Builds the fixed correspondence from MediaPipe's 468 face-mesh points to
the face model's vertices, from synthetic renders of the model.

    python tools/make_mesh_correspondence.py [--face-model PATH] [--mesh-model NAME] [--out FILE]

The package carries no canonical 3D face geometry for the mesh model, so the
correspondence is measured: the model is rendered (shaded, random
identities, yaw -30..30 degrees, pitch -10..10), BlazeFace and the mesh model
run on each render like on a photo (`shared.photo.face_mesh`), and each of the 468
predicted points takes the visible, camera-facing vertex whose projection is
nearest.  Per point, the chosen vertices' MEAN-SHAPE positions are reduced
to their median over the renders, and the vertex nearest that median is the
answer.  A point's weight is 1 when it was matched in at least half the
renders within `MAX_MATCH_PX` pixels and its matches spread less than
`MAX_SPREAD_MM`, else 0 (the fit ignores it).  Writes an npz read by
`shared.fit.dense.load_correspondence`.  Tuned on nothing but these renders.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

IMAGE_SIZE = 448
FOCAL = 1100.0
YAWS = (-30.0, -15.0, 0.0, 15.0, 30.0)
PITCHES = (-10.0, 0.0, 10.0)
IDENTITIES = 3
IDENTITY_STD = 0.7
MIN_FACING = 0.2                    # vertex normal z (towards the camera) to count
MAX_MATCH_PX = 4.0                  # at this render scale, about 2 mm on the face
MAX_SPREAD_MM = 6.0
MM_PER_UNIT = 100.0                 # model units are decimetres
SEED = 0


def render_batch(face_model, rng):
  """Shaded renders [N, S, S, 3] uint8 and the visible facing vertex sets."""
  import tensorflow as tf
  from shared.model import camera as camera_lib
  from shared.photo.photo_render import shaded_photos
  from shared.render.face_image import FaceSynthesizer
  synth = FaceSynthesizer(face_model, camera_lib.Camera(focal=FOCAL, image_size=IMAGE_SIZE))
  poses = [(p, y) for p in PITCHES for y in YAWS]
  count = len(poses) * IDENTITIES
  coeffs = synth.layout.zeros(count)
  identity = rng.normal(0.0, IDENTITY_STD, coeffs.identity.shape).astype(np.float32)
  identity[:len(poses)] = 0.0                       # the mean face at every pose, too
  rotation = np.radians([[p, y, 0.0] for p, y in poses] * IDENTITIES).astype(np.float32)
  coeffs = coeffs._replace(identity=tf.constant(identity), rotation=tf.constant(rotation))
  out = []
  for first in range(0, count, 5):
    part = type(coeffs)(*[v[first:first + 5] for v in coeffs])
    image, syn = shaded_photos(synth, part)
    r = syn.render
    projected = camera_lib.project(syn.posed, synth.camera).numpy()
    for b in range(len(image)):
      ids = r.triangle_ids.numpy()[b].ravel()
      visible = np.zeros(face_model.num_vertices, bool)
      visible[face_model.faces[np.unique(ids[ids >= 0])].ravel()] = True
      visible &= syn.normals.numpy()[b, :, 2] > MIN_FACING
      out.append((image[b], projected[b], visible))
  return out


def build(face_model, log=print):
  """Returns the npz fields (see module doc)."""
  from shared.photo import blazeface
  from shared.photo import face_mesh
  rng = np.random.default_rng(SEED)
  mean = np.asarray(face_model.mean_shape, np.float64)
  matches = [[] for _ in range(face_mesh.NUM_POINTS)]
  renders = render_batch(face_model, rng)
  used = 0
  for image, projected, visible in renders:
    detections = blazeface.detect(image)
    if not detections:
      continue
    d = detections[0]
    mesh = face_mesh.mesh_for_detection(image, d.box, d.keypoints[0], d.keypoints[1])
    used += 1
    candidates = np.flatnonzero(visible)
    points = mesh.points[:, :2].astype(np.float64)
    dist = np.linalg.norm(points[:, None] - projected[candidates][None], axis=-1)  # [468, Vvis]
    best = dist.argmin(1)
    for k in range(face_mesh.NUM_POINTS):
      if dist[k, best[k]] <= MAX_MATCH_PX:
        matches[k].append(mean[candidates[best[k]]])
  log(f"{used} of {len(renders)} renders detected")
  vertices = np.zeros(face_mesh.NUM_POINTS, np.int32)
  weights = np.zeros(face_mesh.NUM_POINTS, np.float32)
  spread = np.full(face_mesh.NUM_POINTS, np.nan, np.float32)
  for k, found in enumerate(matches):
    if not found:
      continue
    found = np.array(found)
    centre = np.median(found, 0)
    vertices[k] = int(np.linalg.norm(mean - centre, axis=1).argmin())
    spread[k] = float(np.median(np.linalg.norm(found - centre, axis=1)) * MM_PER_UNIT)
    weights[k] = float(len(found) >= used / 2 and spread[k] <= MAX_SPREAD_MM)
  return {"vertices": vertices, "weights": weights, "spread_mm": spread,
          "renders": np.int32(used), "num_vertices": np.int32(face_model.num_vertices)}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--face-model", default=None)
  parser.add_argument("--out", default=None,
                      help="npz to write (default: the packaged file of --mesh-model)")
  from shared.eval.landmark_eval import add_mesh_model_argument
  add_mesh_model_argument(parser)
  args = parser.parse_args(argv)
  from shared import quiet
  quiet.setup()  # Before TensorFlow is imported; FACE3D_VERBOSE=1 keeps library logs.
  from shared.photo import face_mesh
  face_mesh.select_mesh_model(args.mesh_model)
  from shared.fit import dense as dense_fit
  from shared.model.face_model import load_face_model
  model = load_face_model(args.face_model)
  fields = build(model)
  out = Path(args.out) if args.out else dense_fit.correspondence_file(args.mesh_model)
  dense_fit.save_correspondence(out, model, **fields)
  w = fields["weights"]
  print(f"{int(w.sum())} of {len(w)} points kept; median spread "
        f"{np.nanmedian(fields['spread_mm']):.2f} mm -> {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
