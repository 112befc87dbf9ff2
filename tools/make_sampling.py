"""Builds the CoMA mesh hierarchy (A, L, D, U, rings, symmetry) as an .npz.

  python tools/make_sampling.py --face-model PATH --factors 4 4 4 4 --output FILE.npz

Without --face-model the default model is used (see shared/io/paths.py); without
--output the file goes to the cache that main.py reads when no sampling file
is given.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.errors import InputError, report  # noqa: E402

DEFAULT_FACTORS = (4, 4, 4, 4)


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--face-model", default=None,
                      help="face model file or folder (default: the ICT model in the data folder)")
  parser.add_argument("--factors", type=int, nargs="+", default=list(DEFAULT_FACTORS),
                      help="decimation factor per level (default: 4 4 4 4)")
  parser.add_argument("--output", default=None,
                      help="output .npz (default: the topology cache for this face model)")
  parser.add_argument("--quiet", action="store_true", help="no progress bar")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  try:
    from shared.mesh import topology
    factors = topology.normalise_factors(args.factors)
    from shared.model.face_model import load_face_model
    model = load_face_model(args.face_model)
    output = (Path(args.output) if args.output else
              topology.default_cache_path(model.source_hash, factors))
    start = time.perf_counter()
    topo = topology.build_topology(model.mean_shape, model.faces, factors,
                                   source_hash=model.source_hash, progress=not args.quiet)
    seconds = time.perf_counter() - start
    topology.save_topology(output, topo, model.source_hash, factors)
  except InputError as e:
    return report(e)
  counts = " -> ".join(f"{n:,}" for n in topo.num_vertices)
  print(f"face model: {getattr(model, 'name', '')} ({model.source_hash})")
  print(f"vertices per level: {counts}  (factors {' '.join(map(str, factors))}, {seconds:.1f} s)")
  print(f"wrote {output}")
  return 0


if __name__ == "__main__":
  from shared import quiet
  quiet.setup()  # Before TensorFlow is imported; FACE3D_VERBOSE=1 keeps library logs.
  sys.exit(main())
