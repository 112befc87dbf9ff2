"""Per-identity albedo detail that a low-dimensional albedo basis cannot express.

Real faces carry colour detail that no 80-component 3DMM texture spans:
eyebrows, lip colour, freckles, moles, blotches and fine mottling.  The
synthetic albedo basis (`shared.model.albedo`) holds only smooth, low-frequency
functions, so synthetic faces built from it alone leave a texture refiner
(3D-Face-GCNs) nothing to find.  `AlbedoDetail` draws such detail per
identity, as a per-vertex affine map of the basis albedo

    albedo = clip(base * scale + offset, 0, 1)      scale, offset: [V, 3]

fixed to the mesh vertices (the head frame), so it is the same in every view
and follows every identity's and expression's shape.  Positions are placed on
the face model's mean shape (model units, decimetres; 0.01 = 1 mm) using its
68 landmarks and skin mask.  Each layer mixes the albedo towards a colour c
with a per-vertex weight w in [0, 1] (a -> a (1 - w) + c w); the layers are
composed in the order below into one (scale, offset) pair, and a small
per-vertex colour noise is added to the offset last:

| layer     | where                                    | colour            |
|-----------|------------------------------------------|-------------------|
| blotches  | a few broad blobs on the skin            | reddish           |
| freckles  | many small blobs, mostly cheeks and nose | light brown       |
| moles     | a few small, dark blobs on the skin      | dark brown        |
| eyebrows  | bands along landmarks 17-21 and 22-26    | the hair colour   |
| lips      | inside the outer lip contour (48-59)     | red-pink          |
| noise     | every vertex                             | grey + tint noise |

Every random draw comes from the `numpy.random.Generator` passed to
`AlbedoDetail.sample`, so an identity's detail is a deterministic function of
its generator.  All work is vectorised numpy over vertices (the blob and
segment distances are [N, V] arrays).
"""

import dataclasses

import numpy as np

BROW_RIGHT = np.arange(17, 22)    # Multi-PIE landmark indices (0-based).
BROW_LEFT = np.arange(22, 27)
OUTER_LIP = np.arange(48, 60)
EYE_CENTRES = (np.arange(36, 42), np.arange(42, 48))
MOUTH_CORNERS = (48, 54)
NOSE_TIP = 30
LIP_DEPTH_MARGIN = 0.1   # Model units (1 cm) behind the lip landmarks.


@dataclasses.dataclass(frozen=True)
class AlbedoDetailConfig:
  """Ranges of the detail layers (lengths in model units, colours linear RGB in [0, 1]).

  A `(low, high)` pair is drawn uniformly per identity; an integer pair is a
  count drawn with `integers(low, high + 1)`.  Strengths are mixing weights.
  """
  enabled: bool = True
  # Eyebrows: a band around the landmark polyline, raised by `brow_raise`.
  brow_half_width: tuple = (0.035, 0.06)     # 3.5-6 mm at the inner end.
  brow_taper: tuple = (0.4, 0.7)             # Half-width at the outer end / inner end.
  brow_raise: tuple = (0.0, 0.025)
  brow_strength: tuple = (0.55, 0.85)
  brow_softness: float = 0.012               # Edge width of the band (1.2 mm).
  brow_hair_noise: float = 0.35              # Per-vertex weight jitter (hair strands).
  hair_colour_low: tuple = (0.06, 0.04, 0.03)
  hair_colour_high: tuple = (0.35, 0.24, 0.14)
  # Lips: inside the outer lip contour.
  lip_strength: tuple = (0.45, 0.75)
  lip_softness: float = 0.01
  lip_colour_low: tuple = (0.55, 0.18, 0.22)
  lip_colour_high: tuple = (0.75, 0.35, 0.38)
  # Freckles: small blobs centred on skin vertices, favouring cheeks and nose.
  freckle_count: tuple = (0, 140)
  freckle_radius: tuple = (0.008, 0.018)
  freckle_strength: tuple = (0.25, 0.55)
  freckle_colour: tuple = (0.48, 0.30, 0.20)
  freckle_spread: float = 0.35               # Gaussian spread of the centres around the cheeks.
  # Moles: a few dark blobs anywhere on the skin.
  mole_count: tuple = (1, 5)
  mole_radius: tuple = (0.015, 0.03)
  mole_strength: tuple = (0.7, 0.9)
  mole_colour: tuple = (0.22, 0.13, 0.09)
  # Blotches: broad, faint reddish patches.
  blotch_count: tuple = (2, 6)
  blotch_radius: tuple = (0.06, 0.15)
  blotch_strength: tuple = (0.1, 0.3)
  blotch_colour: tuple = (0.80, 0.38, 0.38)
  # Fine colour noise added to the offset: luminance and per-channel std.
  noise_luminance_std: tuple = (0.01, 0.03)
  noise_channel_std: float = 0.008


DEFAULT = AlbedoDetailConfig()


def apply_detail(albedo, scale, offset):
  """clip(albedo * scale + offset, 0, 1) for numpy arrays or TensorFlow tensors.

  Args:
    albedo: [..., V, 3] base albedo in [0, 1].
    scale, offset: [V, 3] from `AlbedoDetail.sample` (broadcast over batches).
  """
  if isinstance(albedo, np.ndarray):
    return np.clip(albedo * scale + offset, 0.0, 1.0)
  import tensorflow as tf
  out = albedo * tf.cast(scale, albedo.dtype) + tf.cast(offset, albedo.dtype)
  return tf.clip_by_value(out, 0.0, 1.0)


def blob_weights(points, centres, radii, strengths):
  """Union of Gaussian blobs: 1 - prod_i (1 - s_i exp(-|p - c_i|^2 / 2 r_i^2)).

  Args:
    points: [V, 3]; centres: [N, 3]; radii, strengths: [N].

  Returns:
    [V] weights in [0, 1] (zeros when N = 0).
  """
  if len(centres) == 0:
    return np.zeros(len(points), np.float64)
  squared = ((points[None, :, :] - centres[:, None, :]) ** 2).sum(-1)       # [N, V]
  each = strengths[:, None] * np.exp(-squared / (2.0 * radii[:, None] ** 2))
  return 1.0 - np.prod(1.0 - each, axis=0)


def polyline_distance(points, polyline):
  """Distance of each point to a polyline, and the arc-length fraction of the closest point.

  Args:
    points: [V, D]; polyline: [P, D] with P >= 2.

  Returns:
    (distance [V], fraction [V] in [0, 1] along the polyline).
  """
  a, b = polyline[:-1], polyline[1:]                                        # [S, D]
  ab = b - a
  length = np.linalg.norm(ab, axis=-1)
  t = ((points[:, None, :] - a[None]) * ab[None]).sum(-1) / np.maximum(length ** 2, 1e-12)
  t = np.clip(t, 0.0, 1.0)                                                  # [V, S]
  closest = a[None] + t[..., None] * ab[None]
  dist = np.linalg.norm(points[:, None, :] - closest, axis=-1)
  seg = np.argmin(dist, axis=1)
  rows = np.arange(len(points))
  start = np.concatenate([[0.0], np.cumsum(length)])[seg]
  fraction = (start + t[rows, seg] * length[seg]) / max(length.sum(), 1e-12)
  return dist[rows, seg], fraction


def polygon_signed_distance(points, polygon):
  """Signed 2-D distance to a closed polygon: negative inside, positive outside.

  Args:
    points: [V, 2]; polygon: [P, 2] vertices in order (closed implicitly).

  Returns:
    [V] signed distances.
  """
  closed = np.concatenate([polygon, polygon[:1]])
  dist, _ = polyline_distance(points, closed)
  # Winding number from the summed signed angles subtended by the edges.
  rel = closed[None, :, :] - points[:, None, :]                             # [V, P + 1, 2]
  ang = np.arctan2(rel[..., 1], rel[..., 0])
  turn = np.diff(ang, axis=1)
  turn = (turn + np.pi) % (2.0 * np.pi) - np.pi
  inside = np.abs(turn.sum(axis=1)) > np.pi
  return np.where(inside, -dist, dist)


def _smoothstep_inside(signed, softness):
  """1 well inside (signed << 0), 0 outside, a smooth edge of width `softness`."""
  x = np.clip(0.5 - signed / (2.0 * softness), 0.0, 1.0)
  return x * x * (3.0 - 2.0 * x)


class AlbedoDetail:
  """Draws per-identity albedo detail for one face model.

  Args:
    face_model: `shared.model.face_model.FaceModel` (mean_shape, landmarks68, skin_mask).
    config: `AlbedoDetailConfig`.
  """

  def __init__(self, face_model, config=DEFAULT):
    self.config = config
    self.points = np.asarray(face_model.mean_shape, np.float64)
    self.num_vertices = len(self.points)
    self.landmarks = self.points[np.asarray(face_model.landmarks68)]
    self.skin = np.flatnonzero(np.asarray(face_model.skin_mask) > 0.5)
    lm = self.landmarks
    # The lip region is a 2-D polygon seen from the front; the depth test keeps the
    # back of the head (same x, y) out of it.
    front = self.points[:, 2] > lm[OUTER_LIP, 2].min() - LIP_DEPTH_MARGIN
    self.lip_signed = np.where(front, polygon_signed_distance(self.points[:, :2],
                                                              lm[OUTER_LIP, :2]), np.inf)
    # Freckles favour the cheeks and the nose: centres drawn with a Gaussian weight
    # around the points midway between each eye and the mouth corner, and the nose tip.
    cheeks = [0.5 * (lm[eye].mean(0) + lm[corner]) for eye, corner in
              zip(EYE_CENTRES, MOUTH_CORNERS)]
    hubs = np.stack(cheeks + [lm[NOSE_TIP]])
    skin_points = self.points[self.skin]
    near = ((skin_points[:, None, :] - hubs[None]) ** 2).sum(-1).min(1)
    weights = np.exp(-near / (2.0 * config.freckle_spread ** 2))
    self.freckle_probability = weights / weights.sum()

  def identity(self):
    """The do-nothing detail: (ones [V, 3], zeros [V, 3]) float32."""
    return (np.ones((self.num_vertices, 3), np.float32),
            np.zeros((self.num_vertices, 3), np.float32))

  def sample(self, rng):
    """One identity's detail: (scale [V, 3], offset [V, 3]) float32.

    Args:
      rng: `numpy.random.Generator` of the identity.
    """
    cfg = self.config
    if not cfg.enabled:
      return self.identity()
    layers = [
        (self._blobs(rng, cfg.blotch_count, cfg.blotch_radius, cfg.blotch_strength),
         np.asarray(cfg.blotch_colour)),
        (self._blobs(rng, cfg.freckle_count, cfg.freckle_radius, cfg.freckle_strength,
                     self.freckle_probability), np.asarray(cfg.freckle_colour)),
        (self._blobs(rng, cfg.mole_count, cfg.mole_radius, cfg.mole_strength),
         np.asarray(cfg.mole_colour)),
        (self._brows(rng), rng.uniform(cfg.hair_colour_low, cfg.hair_colour_high)),
        (self._lips(rng), rng.uniform(cfg.lip_colour_low, cfg.lip_colour_high)),
    ]
    scale = np.ones((self.num_vertices, 3))
    offset = np.zeros((self.num_vertices, 3))
    for weight, colour in layers:
      keep = 1.0 - weight[:, None]
      scale, offset = scale * keep, offset * keep + colour[None, :] * weight[:, None]
    luminance = rng.normal(0.0, rng.uniform(*cfg.noise_luminance_std), (self.num_vertices, 1))
    offset = offset + luminance + rng.normal(0.0, cfg.noise_channel_std, (self.num_vertices, 3))
    return scale.astype(np.float32), offset.astype(np.float32)

  def _blobs(self, rng, count, radius, strength, probability=None):
    """[V] union of `count` Gaussian blobs centred on skin vertices."""
    n = int(rng.integers(count[0], count[1] + 1))
    centres = self.points[rng.choice(self.skin, size=n, p=probability)]
    return blob_weights(self.points, centres, rng.uniform(*radius, n), rng.uniform(*strength, n))

  def _brows(self, rng):
    """[V] weight of both eyebrows: bands tapering from the inner to the outer end."""
    cfg = self.config
    half = rng.uniform(*cfg.brow_half_width)
    taper = rng.uniform(*cfg.brow_taper)
    lift = np.array([0.0, rng.uniform(*cfg.brow_raise), 0.0])
    strength = rng.uniform(*cfg.brow_strength)
    weight = np.zeros(self.num_vertices)
    # Polylines run from the inner end (near the nose) outwards.
    for polyline in (self.landmarks[BROW_RIGHT][::-1], self.landmarks[BROW_LEFT]):
      dist, along = polyline_distance(self.points, polyline + lift)
      width = half * (1.0 - (1.0 - taper) * along)
      weight = np.maximum(weight, _smoothstep_inside(dist - width, cfg.brow_softness))
    hair = 1.0 + cfg.brow_hair_noise * rng.uniform(-1.0, 1.0, self.num_vertices)
    return np.clip(strength * weight * hair, 0.0, 1.0)

  def _lips(self, rng):
    """[V] weight inside the outer lip contour (of the mean shape, seen from the front)."""
    cfg = self.config
    return rng.uniform(*cfg.lip_strength) * _smoothstep_inside(self.lip_signed, cfg.lip_softness)
