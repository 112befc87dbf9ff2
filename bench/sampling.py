"""Times the CoMA hierarchy (factors 4 4 4 4) on the ICT face and the BFM front mesh.

  python bench/sampling.py [--meshes ict bfm] [--factors 4 4 4 4]

Prints a table (vertex counts per level, seconds, mean |U D V - V| at level 1
in mm) and, last, one JSON object with the same figures.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from shared.mesh import sampling as mesh_sampling  # noqa: E402
from shared.errors import InputError, report  # noqa: E402
from shared.io.paths import data_file  # noqa: E402

ICT_NPZ = "face_models/ict_face_light/ict_face_light.npz"
BFM_OBJ = "face_models/bfm_front_topology/Deep3D_mean.obj"
MM_PER_CM = 10.0
MM_PER_MM = 1.0
DEFAULT_FACTORS = (4, 4, 4, 4)


def load_ict():
  """ICT light face: ([9409, 3] cm, [18460, 3]) and mm per unit."""
  with np.load(data_file(ICT_NPZ)) as data:
    return data["mean_shape"], data["faces"], MM_PER_CM


def load_bfm():
  """Deep3D BFM front mean mesh: ([35709, 3] mm, [70789, 3]) and mm per unit."""
  import trimesh
  mesh = trimesh.load(data_file(BFM_OBJ), process=False)
  return np.asarray(mesh.vertices), np.asarray(mesh.faces), MM_PER_MM


MESHES = {"ict": load_ict, "bfm": load_bfm}


def run(name, factors):
  """Builds one hierarchy; returns a dict of figures."""
  vertices, faces, mm_per_unit = MESHES[name]()
  start = time.perf_counter()
  hierarchy = mesh_sampling.generate_hierarchy(vertices, faces, factors)
  seconds = time.perf_counter() - start
  fine = hierarchy.vertices[0].astype(np.float64)
  rebuilt = hierarchy.U[0] @ (hierarchy.D[0] @ fine)
  error = np.linalg.norm(rebuilt - fine, axis=1) * mm_per_unit
  return {"mesh": name, "vertices": hierarchy.num_vertices, "seconds": round(seconds, 2),
          "level1_mean_mm": round(float(error.mean()), 4),
          "level1_max_mm": round(float(error.max()), 4)}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--meshes", nargs="+", choices=sorted(MESHES), default=["ict", "bfm"])
  parser.add_argument("--factors", type=int, nargs="+", default=list(DEFAULT_FACTORS))
  args = parser.parse_args(argv)
  try:
    results = [run(name, args.factors) for name in args.meshes]
  except InputError as e:
    return report(e)
  print(f"{'mesh':<5} {'vertices per level':<40} {'seconds':>8} {'|UDV-V| mean mm':>16} "
        f"{'max mm':>8}")
  for r in results:
    counts = " -> ".join(f"{n:,}" for n in r["vertices"])
    print(f"{r['mesh']:<5} {counts:<40} {r['seconds']:>8.2f} {r['level1_mean_mm']:>16.4f} "
          f"{r['level1_max_mm']:>8.4f}")
  print(json.dumps({"factors": args.factors, "results": results}))
  return 0


if __name__ == "__main__":
  sys.exit(main())
