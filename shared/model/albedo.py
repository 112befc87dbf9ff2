"""A deterministic synthetic albedo basis for face models that have none (ICT).

The basis is a mean skin tone plus smooth per-vertex variations: the lowest
non-constant eigenvectors of the mesh's combinatorial graph Laplacian (the
mesh analogue of low spatial frequencies), each combined with a colour
direction (luminance, red-green, yellow-blue).  Components are ordered by
frequency then colour direction, and each gets a standard deviation that
decays with frequency, so coefficients are in standard-deviation units like
the BFM texture model.  The eigen-solver starts from a fixed vector and each
eigenvector's sign is fixed (largest-magnitude entry positive), so the same
mesh always gives the same basis.
"""

import dataclasses

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla


@dataclasses.dataclass(frozen=True)
class SyntheticAlbedoConfig:
  """Parameters of the synthetic albedo model (albedo values in [0, 1])."""
  num_components: int = 80
  mean_rgb: tuple = (0.72, 0.53, 0.45)   # A mid skin tone, linear RGB.
  # Colour directions: overall brightness, redness, yellowness.
  colour_directions: tuple = ((0.58, 0.58, 0.58), (0.71, -0.35, -0.35), (0.30, 0.30, -0.60))
  base_std: float = 0.10                  # Std of the lowest-frequency component.
  direction_std_scale: tuple = (1.0, 0.5, 0.35)
  decay: float = 0.15                     # std_k = base / (1 + decay * frequency_k).
  global_tone_std: float = 0.12           # The constant (frequency 0) components.
  eigen_shift: float = -1e-3              # Shift-invert target below the spectrum.
  seed: int = 0


def _graph_laplacian(num_vertices, faces):
  """Combinatorial Laplacian L = D - A of the mesh's edge graph, [V, V] csr."""
  edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
  edges = np.concatenate([edges, edges[:, ::-1]])
  adjacency = sp.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])),
                            shape=(num_vertices, num_vertices)).tocsr()
  adjacency.data[:] = 1.0
  degree = np.asarray(adjacency.sum(axis=1)).ravel()
  return (sp.diags(degree) - adjacency).tocsc()


def smooth_vertex_functions(num_vertices, faces, count, config=SyntheticAlbedoConfig()):
  """Returns the `count` lowest Laplacian eigenvectors, [count, V], unit max-norm.

  The first is the constant function.  Signs are fixed so the
  largest-magnitude entry of each vector is positive.
  """
  laplacian = _graph_laplacian(num_vertices, np.asarray(faces, np.int64))
  rng = np.random.default_rng(config.seed)
  v0 = rng.standard_normal(num_vertices)
  count = min(count, num_vertices - 2)
  values, vectors = spla.eigsh(laplacian, k=count, sigma=config.eigen_shift, which="LM",
                               v0=v0)
  order = np.argsort(values)
  vectors = vectors[:, order].T
  peak = vectors[np.arange(count), np.argmax(np.abs(vectors), axis=1)]
  vectors = vectors * np.sign(peak)[:, None]
  vectors /= np.abs(vectors).max(axis=1, keepdims=True)
  return vectors.astype(np.float32)


def synthetic_albedo(num_vertices, faces, config=SyntheticAlbedoConfig()):
  """Builds the synthetic albedo model.

  Args:
    num_vertices: V.
    faces: [F, 3] int triangles.
    config: `SyntheticAlbedoConfig`.

  Returns:
    (mean [V, 3] float32, basis [K, V, 3] float32 per unit std, std [K] float32)
    with K = config.num_components.
  """
  directions = np.asarray(config.colour_directions, np.float32)
  num_dirs = len(directions)
  num_freqs = -(-config.num_components // num_dirs)
  functions = smooth_vertex_functions(num_vertices, faces, num_freqs, config)
  freq = np.repeat(np.arange(num_freqs), num_dirs)[:config.num_components]
  direction = np.tile(np.arange(num_dirs), num_freqs)[:config.num_components]
  basis = functions[freq][:, :, None] * directions[direction][:, None, :]
  scale = np.asarray(config.direction_std_scale, np.float32)[direction]
  std = np.where(freq == 0, config.global_tone_std,
                 config.base_std / (1.0 + config.decay * freq)) * scale
  mean = np.broadcast_to(np.asarray(config.mean_rgb, np.float32), (num_vertices, 3))
  return mean.copy(), basis.astype(np.float32), std.astype(np.float32)
