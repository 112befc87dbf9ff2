"""Rendering a face fitted in the 224 crop directly in the photo's frame.

The crop camera (`shared.model.camera.Camera`, principal point at the crop centre)
followed by the crop -> photo similarity `p = s Rot(a) q + t` (image axes,
y down) is itself a pinhole camera: focal `s * focal`, principal point
`c0 = s Rot(a) (112, 112) + t`, and an in-plane rotation, which is the same
as rotating the posed mesh about the optical (Z) axis by `-a`.  So the mesh
is rendered at the photo's resolution, in a square window centred on `c0`
that just holds the face (`window_camera`), and the window is placed into
the photo frame by a pure translation.  Nothing is cut at the crop's edge,
and the result is as sharp as the photo.

The overlay blends only the face region: per-vertex weights are the model's
`skin_mask` smoothed over the mesh (`region_weights`, `REGION_SMOOTHING`
one-ring averages), so the render fades out towards the region's border.
"""

import dataclasses
import functools
import math

import cv2
import numpy as np
import tensorflow as tf

from shared.photo import alignment
from shared.model import camera as camera_lib
from shared.model import lighting
from shared.render import renderer as render_lib

WINDOW_MARGIN = 4.0           # pixels around the projected mesh
MAX_WINDOW = 4096             # longest render side, pixels
REGION_SMOOTHING = 6          # one-ring averaging rounds of the face-region weights


@dataclasses.dataclass
class PhotoLayers:
  """A render in a photo frame of `size = (w, h)`.

  rgb: `[h, w, C]` attributes; alpha: `[h, w, 1]` coverage (0 outside);
  depth: `[h, w, 1]` depth along the optical axis (model units, 0 outside).
  """
  rgb: np.ndarray
  alpha: np.ndarray
  depth: np.ndarray


def similarity_parts(matrix):
  """(scale s, angle a radians, translation [2]) of a `[2, 3]` similarity
  `s Rot(a) p + t` in image axes (y down)."""
  matrix = np.asarray(matrix, np.float64)
  scale = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
  return scale, math.atan2(matrix[1, 0], matrix[0, 0]), matrix[:, 2]


def roll_about_axis(posed, angle):
  """Rotates `[B, V, 3]` posed points about the camera's Z axis by `angle`."""
  c, s = math.cos(angle), math.sin(angle)
  rotation = tf.constant([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], tf.float32)
  return tf.einsum("ij,bvj->bvi", rotation, tf.convert_to_tensor(posed, tf.float32))


def window_camera(posed, crop_camera, to_photo, margin=WINDOW_MARGIN):
  """The square render window in the photo that holds the face.

  Args:
    posed: `[V, 3]` posed vertices in the crop camera's space.
    crop_camera: the `Camera` of the crop.
    to_photo: `[2, 3]` crop -> photo similarity.

  Returns:
    (rolled vertices `[1, V, 3]`, window `Camera`, `[2, 3]` window -> photo
    translation).
  """
  scale, angle, _ = similarity_parts(to_photo)
  centre = alignment.transform_points([crop_camera.centre] * 2, to_photo)
  projected = alignment.transform_points(
      camera_lib.project(tf.constant(np.asarray(posed, np.float32)[None]), crop_camera)
      .numpy()[0], to_photo)
  half = np.abs(projected - centre).max() + margin
  side = int(min(MAX_WINDOW, max(8, 2 * math.ceil(half))))
  camera = dataclasses.replace(crop_camera, focal=crop_camera.focal * scale, image_size=side)
  rolled = roll_about_axis(np.asarray(posed, np.float32)[None], -angle)
  to_frame = np.array([[1.0, 0.0, centre[0] - side / 2.0], [0.0, 1.0, centre[1] - side / 2.0]])
  return rolled, camera, to_frame


def render_in_photo(posed, triangles, attributes, crop_camera, to_photo, size):
  """Renders `attributes` of a mesh fitted in the crop into a photo frame.

  Args:
    posed: `[V, 3]` posed vertices (crop camera space).
    triangles: `[T, 3]`.  attributes: `[V, C]`.
    crop_camera: `Camera` of the crop.
    to_photo: `[2, 3]` crop -> frame similarity.
    size: `(w, h)` of the frame.

  Returns:
    `PhotoLayers`.
  """
  rolled, camera, to_frame = window_camera(posed, crop_camera, to_photo)
  out = render_lib.render(rolled, triangles, tf.constant(np.asarray(attributes, np.float32)[None]),
                          camera)
  out = render_lib.drop_back_faces(out, rolled, triangles, camera)
  layers = np.concatenate([out.image.numpy()[0], out.mask.numpy()[0],
                           out.depth.numpy()[0] * out.mask.numpy()[0]], -1).astype(np.float32)
  frame = alignment.warp_affine(layers, to_frame, size, border=cv2.BORDER_CONSTANT)
  channels = np.asarray(attributes).shape[-1]
  alpha = frame[..., channels:channels + 1]
  depth = np.where(alpha > 0.5, frame[..., channels + 1:] / np.maximum(alpha, 1e-6), 0.0)
  return PhotoLayers(rgb=frame[..., :channels], alpha=alpha, depth=depth.astype(np.float32))


@functools.lru_cache(maxsize=8)
def _adjacency(triangles_bytes, num_vertices):
  import scipy.sparse as sp
  triangles = np.frombuffer(triangles_bytes, np.int32).reshape(-1, 3)
  rows = np.concatenate([triangles[:, i] for i in (0, 1, 2, 1, 2, 0)])
  cols = np.concatenate([triangles[:, i] for i in (1, 2, 0, 0, 1, 2)])
  adj = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(num_vertices,) * 2).tocsr()
  adj = adj + sp.identity(num_vertices, format="csr")
  adj.data[:] = 1.0
  return sp.diags(1.0 / np.asarray(adj.sum(1)).ravel()) @ adj


def region_weights(face_model, rounds=REGION_SMOOTHING):
  """`[V]` face-region blend weights in [0, 1]: the model's `skin_mask`
  averaged `rounds` times over each vertex's one-ring, so they fall off
  smoothly at the region's border; vertices outside the region stay 0."""
  triangles = np.ascontiguousarray(face_model.faces, np.int32)
  smooth = _adjacency(triangles.tobytes(), face_model.num_vertices)
  inside = np.asarray(face_model.skin_mask, np.float64)
  weights = inside.copy()
  for _ in range(rounds):
    weights = smooth @ weights
  # Fall to 0 at the border: rescale so the region's interior keeps 1.
  weights = np.clip((weights - 0.5) * 2.0, 0.0, 1.0) * inside
  return weights.astype(np.float32)


# Synthetic "photos" of the model (correspondence tool, synthetic bench, tests).
SYNTHETIC_LIGHT = {1: -0.25, 2: 0.2, 3: 0.3}   # SH band -> coefficient, every colour
SYNTHETIC_BACKGROUND = 0.35


def shaded_photos(synthesizer, coeffs, light=None, background=None, albedo=None):
  """Renders `coeffs` with their lighting replaced by `light` (`[B, 27]` SH
  coefficients; default `SYNTHETIC_LIGHT`, a soft key light from the upper
  side) over `background` (`[B, S, S, 3]` float in [0, 1]; default grey).
  `albedo` (`[V, 3]` in [0, 1], e.g. colours sampled from a photo) replaces
  the model's albedo for every face.

  Returns:
    (images `uint8 [B, S, S, 3]`, the `Synthesis`).
  """
  if light is None:
    light = np.zeros(coeffs.lighting.shape, np.float32)
    for band, value in SYNTHETIC_LIGHT.items():
      light[:, band::9] = value
  syn = synthesizer(coeffs._replace(lighting=tf.constant(np.asarray(light, np.float32))))
  render = syn.render
  if albedo is not None:
    batch = syn.normals.shape[0]
    base = tf.tile(tf.constant(np.asarray(albedo, np.float32))[None], [batch, 1, 1])
    render = synthesizer.render_attributes(syn.posed, lighting.shade(base, syn.normals,
                                                                     tf.constant(light)))
    syn = dataclasses.replace(syn, render=render)
  mask = render.mask.numpy()
  back = SYNTHETIC_BACKGROUND if background is None else np.asarray(background, np.float32)
  image = render.image.numpy() * mask + back * (1 - mask)
  return (np.clip(image, 0, 1) * 255).round().astype(np.uint8), syn
