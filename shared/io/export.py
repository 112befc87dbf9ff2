"""Writing results: meshes (.obj with vertex colours, .ply) and pictures.

Every writer is atomic (temporary file, then rename), so an interrupted run
never leaves half a file.
"""

import numpy as np

from shared.io.fileio import atomic_path, write_text_atomic
# One implementation of each (one-line errors), also reached as export.*:
from shared.io.image_io import to_uint8, write_png  # noqa: F401

UINT8_MAX = 255.0


def rows_text(line_format, rows):
  """One text line per row of `rows` [N, C]: `line_format` (a %-format taking the row's C
  values, e.g. "v %.6f %.6f %.6f") and a newline.  One formatting call for all rows (no
  Python loop over them: a mesh's text in a few milliseconds)."""
  rows = np.asarray(rows)
  return ((line_format + "\n") * rows.shape[0]) % tuple(rows.ravel().tolist())


def obj_vertex_text(vertices, colours=None):
  """The `v` lines of an OBJ: "v x y z" or, with colours [V, 3] (clipped to [0, 1]),
  "v x y z r g b"."""
  rows = np.asarray(vertices, np.float64)
  if colours is not None:
    rows = np.concatenate([rows, np.clip(np.asarray(colours, np.float64), 0, 1)], axis=1)
  return rows_text("v" + " %.6f" * rows.shape[1], rows)


def obj_text(vertices, faces, colours=None):
  """OBJ text with optional per-vertex colours ("v x y z r g b", r,g,b in [0,1]).

  Args:
    vertices: [V, 3].  faces: [F, 3] 0-based.  colours: optional [V, 3].
  """
  return obj_vertex_text(vertices, colours) + rows_text("f %d %d %d", np.asarray(faces) + 1)


def write_obj(path, vertices, faces, colours=None):
  """Writes an OBJ with vertex colours atomically."""
  write_text_atomic(path, obj_text(vertices, faces, colours))


def read_obj_colours(path):
  """Reads back (vertices [V,3], faces [F,3] 0-based, colours [V,3] or None)."""
  verts, faces = [], []
  with open(path) as f:
    for line in f:
      if line.startswith("v "):
        verts.append([float(x) for x in line.split()[1:]])
      elif line.startswith("f "):
        faces.append([int(p.split("/")[0]) - 1 for p in line.split()[1:4]])
  verts = np.asarray(verts)
  colours = verts[:, 3:6] if verts.shape[1] >= 6 else None
  return verts[:, :3], np.asarray(faces, np.int64), colours


def write_ply(path, vertices, faces, colours=None):
  """Writes a binary PLY with optional vertex colours via trimesh, atomically."""
  import trimesh
  mesh = trimesh.Trimesh(np.asarray(vertices), np.asarray(faces), process=False)
  if colours is not None:
    mesh.visual.vertex_colors = np.concatenate(
        [to_uint8(colours), np.full((len(vertices), 1), 255, np.uint8)], axis=1)
  with atomic_path(path) as tmp:
    mesh.export(tmp, file_type="ply")


def overlay(image, render, mask, opacity=1.0):
  """Composites a render over an image: [H, W, 3] each, mask [H, W, 1]."""
  image = np.asarray(image, np.float32)
  if image.max() > 1.0:
    image = image / UINT8_MAX
  alpha = np.asarray(mask, np.float32) * opacity
  return image * (1.0 - alpha) + np.asarray(render, np.float32) * alpha


def depth_image(depth, mask):
  """Depth [H, W, 1] -> grey [H, W, 3] in [0, 1], near = bright, bg = black."""
  depth = np.asarray(depth)[..., 0]
  mask = np.asarray(mask)[..., 0] > 0
  out = np.zeros_like(depth)
  if mask.any():
    near, far = depth[mask].min(), depth[mask].max()
    out[mask] = 1.0 - 0.8 * (depth[mask] - near) / max(far - near, 1e-6)
  return np.repeat(out[..., None], 3, axis=-1)


def grid(images, columns):
  """Tiles equal-size [H, W, C] images into one picture, row-major."""
  images = [np.asarray(i, np.float32) for i in images]
  h, w, c = images[0].shape
  rows = -(-len(images) // columns)
  out = np.ones((rows * h, columns * w, c), np.float32)
  for k, img in enumerate(images):
    r, q = divmod(k, columns)
    out[r * h:(r + 1) * h, q * w:(q + 1) * w] = img
  return out
