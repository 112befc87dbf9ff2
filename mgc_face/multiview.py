"""Multi-view geometry consistency terms (MGCNet's "MGC" losses).

Frames.  "Posed" coordinates are the model coordinates after the rigid pose
(`shared.model.camera.transform`): +y up, the camera on +z at `camera.distance`
looking at the origin.  The pinhole "camera frame" used for the epipolar
geometry is x right, y down, z forward (depth):

    c = M p + e,   M = diag(1, -1, -1),  e = (0, 0, distance),

so that `K c / c_z` gives the continuous pixel coordinates of
`shared.model.camera.project` (pixel centres at +0.5, y down).

Relative pose.  With p_t = R_t v + t_t and p_s = R_s v + t_s for a model point
v, the target-to-source transform is T_rel = T_s T_t^-1:

    R_rel = R_s R_t^T,   t_rel = t_s - R_rel t_t,   p_s = R_rel p_t + t_rel.

It is computed from the *predicted* poses only (no ground-truth pose).

Everything here is batched and vectorised: no Python loops over pixels or
vertices.
"""

from typing import NamedTuple

import tensorflow as tf

from shared.model import camera as camera_lib
from shared.render.image_sampling import sample_bilinear
from shared.train.losses import masked_mean, pixel_norm

CAMERA_FLIP = (1.0, -1.0, -1.0)   # M = diag(1, -1, -1): posed frame -> camera frame.
SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2
SSIM_WINDOW = 3
MASK_THRESHOLD = 0.999           # A bilinearly sampled mask must be ~1 to count.


# ----------------------------------------------------------------------------- poses

def pose_matrices(rotation, translation):
  """(R [B, 3, 3], t [B, 3]) from (pitch, yaw, roll) [B, 3] and translation [B, 3]."""
  return camera_lib.rotation_matrix(rotation), translation


def relative_pose(rot_target, trans_target, rot_source, trans_source):
  """Target-to-source rigid transform in the posed frame.

  Args:
    rot_target, rot_source: [B, 3] (pitch, yaw, roll) radians.
    trans_target, trans_source: [B, 3] model units.

  Returns:
    (R_rel [B, 3, 3], t_rel [B, 3]) with p_s = R_rel p_t + t_rel.
  """
  r_t = camera_lib.rotation_matrix(rot_target)
  r_s = camera_lib.rotation_matrix(rot_source)
  r_rel = tf.matmul(r_s, r_t, transpose_b=True)
  t_rel = trans_source - tf.einsum("bij,bj->bi", r_rel, trans_target)
  return r_rel, t_rel


def to_camera_frame(r_rel, t_rel, camera):
  """Converts a posed-frame relative transform to the pinhole camera frame.

  Returns:
    (R_c [B, 3, 3], t_c [B, 3]) with c_s = R_c c_t + t_c.
  """
  m = tf.constant(CAMERA_FLIP, r_rel.dtype)
  e = tf.constant([0.0, 0.0, camera.distance], r_rel.dtype)
  r_c = m[:, None] * r_rel * m[None, :]          # M R M.
  t_c = -tf.einsum("bij,j->bi", r_c, e) + m * t_rel + e
  return r_c, t_c


def skew(v):
  """[B, 3] -> [B, 3, 3] cross-product matrices: skew(a) b = a x b."""
  x, y, z = tf.unstack(v, axis=-1)
  zero = tf.zeros_like(x)
  return tf.reshape(tf.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1),
                    tf.concat([tf.shape(x), [3, 3]], 0))


def essential_matrix(r_c, t_c):
  """E = [t]x R (camera frame): c_s^T E c_t = 0.  [B, 3, 3]."""
  return tf.matmul(skew(t_c), r_c)


def fundamental_matrix(r_rel, t_rel, camera):
  """F = K^-T [t]x R K^-1 for continuous pixel coordinates: x_s^T F x_t = 0."""
  r_c, t_c = to_camera_frame(r_rel, t_rel, camera)
  k_inv = tf.linalg.inv(tf.constant(camera.intrinsics(), r_rel.dtype))
  return tf.einsum("ji,bjk,kl->bil", k_inv, essential_matrix(r_c, t_c), k_inv)


def epipolar_loss(points_target, points_source, fundamental, eps=1e-6):
  """Mean symmetric point-to-epipolar-line distance in pixels.

  Args:
    points_target: [B, N, 2] pixels in the target view.
    points_source: [B, N, 2] corresponding pixels in the source view.
    fundamental: [B, 3, 3] with x_s^T F x_t = 0.

  Returns:
    [B] mean over points of (d(x_s, F x_t) + d(x_t, F^T x_s)) / 2.
  """
  ones = tf.ones_like(points_target[..., :1])
  x_t = tf.concat([points_target, ones], -1)
  x_s = tf.concat([points_source, ones], -1)
  line_s = tf.einsum("bij,bnj->bni", fundamental, x_t)   # Lines in the source image.
  line_t = tf.einsum("bji,bnj->bni", fundamental, x_s)   # Lines in the target image.
  algebraic = tf.reduce_sum(x_s * line_s, -1)
  d_s = tf.abs(algebraic) / tf.sqrt(tf.reduce_sum(tf.square(line_s[..., :2]), -1) + eps)
  d_t = tf.abs(algebraic) / tf.sqrt(tf.reduce_sum(tf.square(line_t[..., :2]), -1) + eps)
  return tf.reduce_mean(0.5 * (d_s + d_t), axis=-1)


# ----------------------------------------------------------------------------- warping

def pixel_grid(height, width):
  """[H, W, 2] continuous pixel centres (u, v) = (j + 0.5, i + 0.5)."""
  v, u = tf.meshgrid(tf.range(height, dtype=tf.float32) + 0.5,
                     tf.range(width, dtype=tf.float32) + 0.5, indexing="ij")
  return tf.stack([u, v], -1)


def backproject(depth, camera):
  """Posed-frame 3D points of every pixel from a depth map.

  Args:
    depth: [B, H, W, 1] distance along the optical axis (model units).

  Returns:
    [B, H, W, 3] posed points (X, Y, Z) with Z = distance - depth.
  """
  height, width = depth.shape[1], depth.shape[2]
  grid = pixel_grid(height, width)
  d = depth[..., 0]
  x = (grid[..., 0] - camera.centre) * d / camera.focal
  y = -(grid[..., 1] - camera.centre) * d / camera.focal
  return tf.stack([x, y, camera.distance - d], -1)


def project_posed(points, camera):
  """[B, H, W, 3] posed points -> ([B, H, W, 2] pixels, [B, H, W, 1] depth)."""
  d = camera.distance - points[..., 2]
  safe = tf.where(d > camera.near, d, tf.ones_like(d))
  u = camera.centre + camera.focal * points[..., 0] / safe
  v = camera.centre - camera.focal * points[..., 1] / safe
  return tf.stack([u, v], -1), d[..., None]


def inverse_warp(source, target_depth, r_rel, t_rel, camera):
  """Warps source-view images into the target view (SfMLearner inverse warp).

  Each target pixel is lifted with the target depth map, moved by the
  relative pose and projected into the source image, which is sampled there.

  Args:
    source: [B, H, W, C] source-view values (image, depth map, mask...).
    target_depth: [B, H, W, 1] rendered target depth (0 on background).
    r_rel, t_rel: target-to-source transform, [B, 3, 3] and [B, 3].

  Returns:
    (warped [B, H, W, C], valid [B, H, W, 1] in-image and in front of the
    camera, projected_depth [B, H, W, 1] the depth of each target point seen
    from the source camera).
  """
  points = backproject(target_depth, camera)
  moved = tf.einsum("bij,bhwj->bhwi", r_rel, points) + t_rel[:, None, None, :]
  coords, depth = project_posed(moved, camera)
  warped, inside = sample_bilinear(source, coords, zero_outside=True)
  valid = inside * tf.cast(depth > camera.near, source.dtype)
  return warped, valid, depth


class Warp(NamedTuple):
  """Source view warped into the target view (all [B, H, W, C])."""
  image: tf.Tensor            # [B, H, W, 3] warped source image.
  depth: tf.Tensor            # [B, H, W, 1] warped source depth map.
  projected_depth: tf.Tensor  # [B, H, W, 1] target points' depth in the source camera.
  mask: tf.Tensor             # [B, H, W, 1] valid, covisible, on both renders.


def view_synthesis(source_image, source_depth, source_mask, target_depth, target_mask,
                   covisible, r_rel, t_rel, camera):
  """Warps a source image and depth map into the target through the target depth.

  Args:
    source_image: [B, H, W, 3].  source_depth, source_mask: [B, H, W, 1] renders.
    target_depth, target_mask: [B, H, W, 1] renders of the target view.
    covisible: [B, H, W, 1] from `covisible_mask`.
    r_rel, t_rel: target-to-source transform.

  Returns:
    `Warp`.  The mask keeps target pixels that project inside the source
    image onto its rendered face (all four bilinear taps on the face, so no
    background depth leaks in) and whose triangle is covisible.
  """
  channels = source_image.shape[-1]
  stacked = tf.concat([source_image, source_depth, source_mask], -1)
  warped, valid, projected = inverse_warp(stacked, target_depth, r_rel, t_rel, camera)
  on_source = tf.stop_gradient(tf.cast(warped[..., channels + 1:] >= MASK_THRESHOLD,
                                       warped.dtype))
  mask = valid * covisible * target_mask * on_source
  return Warp(warped[..., :channels], warped[..., channels:channels + 1], projected, mask)


# ----------------------------------------------------------------------------- visibility

def visible_triangles(triangle_ids, num_faces):
  """Triangles seen in each image.

  Args:
    triangle_ids: [B, H, W] int32, -1 on background.
    num_faces: F.

  Returns:
    [B, F] bool.
  """
  batch = triangle_ids.shape[0]
  flat = tf.reshape(triangle_ids + 1, [batch, -1])
  counts = tf.math.bincount(flat, minlength=num_faces + 1, maxlength=num_faces + 1, axis=-1)
  return counts[:, 1:] > 0


def triangles_to_vertices(tri_mask, rings):
  """[B, F] bool -> [B, V] bool: vertices touching a marked triangle.

  `rings` is [V, R] (see `shared.mesh.normals_tf.vertex_face_rings`, F = padding).
  """
  padded = tf.pad(tri_mask, [[0, 0], [0, 1]])
  return tf.reduce_any(tf.gather(padded, rings, axis=1), axis=-1)


def vertices_to_triangles(vertex_mask, faces):
  """[B, V] bool -> [B, F] bool: triangles with at least one marked vertex."""
  return tf.reduce_any(tf.gather(vertex_mask, faces, axis=1), axis=-1)


def covisible_triangles(ids_target, ids_source, faces, rings, expand_rings=1):
  """Triangles visible in both views, expanded to their neighbours.

  As MGCNet's `mm_covisible_tri`: the vertices of the triangles visible in
  the target and in the source are intersected, then every triangle touching
  a covisible vertex is kept; `expand_rings` > 1 grows the set further.

  Returns:
    [B, F] bool.
  """
  num_faces = faces.shape[0]
  vis_t = triangles_to_vertices(visible_triangles(ids_target, num_faces), rings)
  vis_s = triangles_to_vertices(visible_triangles(ids_source, num_faces), rings)
  vertices = vis_t & vis_s
  tris = vertices_to_triangles(vertices, faces)
  for _ in range(expand_rings - 1):
    tris = vertices_to_triangles(triangles_to_vertices(tris, rings), faces)
  return tris


def covisible_mask(ids_target, ids_source, faces, rings, expand_rings=1):
  """Occlusion-aware covisible mask in the target image, [B, H, W, 1] float.

  A target pixel is covisible when the (z-buffered) triangle it shows is in
  `covisible_triangles`.  Reading the target's own triangle ids, rather than
  re-rendering the covisible triangles as MGCNet does, keeps the target's
  occlusions: a covisible triangle hidden behind another one in the target
  does not leak into the mask.
  """
  tris = covisible_triangles(ids_target, ids_source, faces, rings, expand_rings)
  num_faces = faces.shape[0]
  padded = tf.pad(tris, [[0, 0], [0, 1]])  # Column F = background.
  ids = tf.where(ids_target < 0, num_faces, ids_target)
  return tf.cast(tf.gather(padded, ids, batch_dims=1), tf.float32)[..., None]


# ----------------------------------------------------------------------------- losses

def pixel_consistency(warped, target, mask, eps=1e-6, mask_eps=1e-6):
  """Masked mean per-pixel RGB L2 norm between warped source and target, [B]."""
  return masked_mean(pixel_norm(warped, target, eps), mask, mask_eps)


def ssim_map(x, y):
  """Per-pixel SSIM with 3x3 mean windows (SfMLearner/MGCNet style), [B, H, W, C]."""
  pool = lambda t: tf.nn.avg_pool2d(t, SSIM_WINDOW, 1, "SAME")  # noqa: E731
  mu_x, mu_y = pool(x), pool(y)
  sigma_x = pool(x * x) - mu_x * mu_x
  sigma_y = pool(y * y) - mu_y * mu_y
  sigma_xy = pool(x * y) - mu_x * mu_y
  numerator = (2 * mu_x * mu_y + SSIM_C1) * (2 * sigma_xy + SSIM_C2)
  denominator = (mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (sigma_x + sigma_y + SSIM_C2)
  return numerator / denominator


def ssim_loss(warped, target, mask, mask_eps=1e-6):
  """Masked mean of (1 - SSIM) / 2 over pixels and channels, [B]."""
  dissimilarity = tf.clip_by_value((1.0 - ssim_map(warped, target)) / 2.0, 0.0, 1.0)
  return masked_mean(tf.reduce_mean(dissimilarity, -1, keepdims=True), mask, mask_eps)


def depth_scale(reference, other, mask, mask_eps=1e-6):
  """Scale s aligning `other` to `reference`: ratio of masked means, [B, 1, 1, 1]."""
  axes = [1, 2, 3]
  ratio = (tf.reduce_sum(reference * mask, axes) + mask_eps) / (
      tf.reduce_sum(other * mask, axes) + mask_eps)
  return ratio[:, None, None, None]


def depth_consistency(warped_source_depth, projected_depth, mask, mm_per_unit, mask_eps=1e-6):
  """Scale-aligned depth L1 in millimetres, [B].

  The source depth map sampled at each target pixel's source projection is
  compared with the depth that target point has in the source camera
  (`inverse_warp`'s `projected_depth`), after rescaling by the ratio of
  masked means.  (MGCNet compares the warped source depth with the target
  depth directly, which mixes two cameras' depths; its code line carries a
  "TODO: bug" note.)
  """
  scale = depth_scale(projected_depth, warped_source_depth, mask, mask_eps)
  error = tf.abs(scale * warped_source_depth - projected_depth) * mm_per_unit
  return masked_mean(error, mask, mask_eps)


class PairTerms(NamedTuple):
  """Per-pair multi-view terms, each [P] for P (target, source) pairs."""
  pixel: tf.Tensor
  ssim: tf.Tensor        # Zeros when SSIM is off.
  depth: tf.Tensor
  epipolar: tf.Tensor
  warped: tf.Tensor      # [P, H, W, 3] warped source image times its mask (for summaries).


def pair_terms(target_image, source_image, target_depth, source_depth, target_mask, source_mask,
               covisible, rot_target, trans_target, rot_source, trans_source, target_landmarks,
               source_landmarks, camera, mm_per_unit, with_ssim=False, eps=1e-6, mask_eps=1e-6):
  """All multi-view terms for P (target, source) pairs.

  The relative pose comes from the predicted absolute poses; the source
  image and rendered depth are warped into the target through the rendered
  target depth; the landmarks give the epipolar term.  Pure TensorFlow with
  static shapes, so it compiles with XLA (`tf.function(jit_compile=True)`),
  which on CPU is several times faster than running the per-pixel ops one
  by one.

  Args:
    *_image: [P, H, W, 3].  *_depth, *_mask: [P, H, W, 1] renders.
    covisible: [P, H, W, 1] from `covisible_mask`.
    rot_*, trans_*: [P, 3] predicted poses.  *_landmarks: [P, 68, 2].

  Returns:
    `PairTerms`.
  """
  r_rel, t_rel = relative_pose(rot_target, trans_target, rot_source, trans_source)
  warp = view_synthesis(source_image, source_depth, source_mask, target_depth, target_mask,
                        covisible, r_rel, t_rel, camera)
  pixel = pixel_consistency(warp.image, target_image, warp.mask, eps, mask_eps)
  ssim = (ssim_loss(warp.image, target_image, warp.mask, mask_eps) if with_ssim
          else tf.zeros_like(pixel))
  depth = depth_consistency(warp.depth, warp.projected_depth, warp.mask, mm_per_unit, mask_eps)
  epipolar = epipolar_loss(target_landmarks, source_landmarks,
                           fundamental_matrix(r_rel, t_rel, camera))
  return PairTerms(pixel, ssim, depth, epipolar, warp.image * warp.mask)
