"""What a GCN checkpoint folder says about its model: CKPT/gcn.json.

    {"kind": "face3d-gcn-checkpoint", "format_version": 1, "step": N, "config",
     "feature_size", "face_model_hash", "num_vertices", "topology_digest",
     "coarse_checkpoint", "sampling", "embedding_model", "gan", "relative_paths"}

The three recorded paths are absolute; `relative_paths` (since session 34) holds
them relative to the checkpoint folder as well, so that a folder holding both
checkpoints (the demo's `out/demo`) still loads after it is moved or copied to
another machine (`recorded_path`).

`topology_digest` (`shared.mesh.topology.Topology.digest`, since session 31) names
the mesh hierarchy the weights were trained on; a checkpoint is refused with
another one (older files without it are checked on vertex counts only).

Written and read by `shared.train.checkpointing` (atomic, one-line errors); files
of older versions of this toolkit (with "version") are read too.  The
folder's layout and save policy: `shared.train.checkpointing`, `shared.train.train_loop`.
"""

import json
import os
from pathlib import Path

from gcn_face.config import GCNConfig
from shared.train import checkpointing
from shared.errors import fail

META_FILE = "gcn.json"
META_KIND = "face3d-gcn-checkpoint"
META_VERSION = 1
WHAT = "a GCN checkpoint"
# The recorded inputs of a GCN checkpoint, and the option that replaces each.
RECORDED_PATHS = {"coarse_checkpoint": "--coarse-checkpoint", "sampling": "--sampling",
                  "embedding_model": "--embedding-model"}
# The config fields that decide the models' variables (or the hierarchy they are built on): a
# checkpoint resumes only with the values it was trained with.
NETWORK_FIELDS = ("factors", "cheb_order", "decoder_fc_channels", "decoder_channels",
                  "refiner_input_channels", "refiner_channels", "refiner_bottleneck",
                  "refiner_skip_levels", "resnet_decoder_channels", "resnet_refiner_channels",
                  "disc_channels", "image_size", "delit_input", "combine_inputs", "embedding_size")


def _absolute(path):
  return str(Path(path).resolve()) if path else None


def write_meta(checkpoint_dir, config, pipeline, coarse_checkpoint, sampling, gan,
               embedding_path, step):
  """Writes CKPT/gcn.json (atomically) describing how to rebuild the model."""
  fields = {
      "config": json.loads(config.to_json()),
      "feature_size": pipeline.stage.feature_size,
      "face_model_hash": pipeline.stage.face_model.source_hash,
      "num_vertices": list(pipeline.topology.num_vertices),
      "topology_digest": pipeline.topology.digest(),
      "gan": bool(gan),
      **path_fields(checkpoint_dir, coarse_checkpoint=coarse_checkpoint, sampling=sampling,
                    embedding_model=embedding_path),
  }
  return checkpointing.write_meta(checkpoint_dir, META_FILE, META_KIND, META_VERSION, step,
                                  fields)


def path_fields(checkpoint_dir, **paths):
  """gcn.json's fields for the `RECORDED_PATHS` given as keywords (None: not used).

  Returns {key: absolute path or None, ..., "relative_paths": {key: path
  relative to `checkpoint_dir`}}.
  """
  absolute = {key: _absolute(path) for key, path in paths.items()}
  folder = _absolute(checkpoint_dir)
  return {**absolute, "relative_paths": {key: os.path.relpath(path, folder)
                                         for key, path in absolute.items() if path}}


def recorded_path(meta, key, checkpoint_dir):
  """The path recorded under `key` (a `RECORDED_PATHS` key) that exists now, or None.

  The absolute path first; where it is gone, the same path relative to the
  checkpoint folder (a moved or copied output folder).

  Raises:
    InputError: a path was recorded but neither form exists (names the option
      that replaces it).
  """
  recorded = meta.get(key)
  if not recorded:
    return None
  candidates = [Path(recorded)]
  relative = (meta.get("relative_paths") or {}).get(key)
  if relative:
    candidates.append(Path(os.path.normpath(Path(checkpoint_dir) / relative)))
  for candidate in candidates:
    if candidate.exists():
      return str(candidate)
  where = f" (nor at {candidates[1]})" if len(candidates) > 1 else ""
  fail(recorded, f"recorded in {Path(checkpoint_dir) / META_FILE} but not found{where}; "
       f"pass {RECORDED_PATHS[key]}")


def find_meta(checkpoint_dir):
  """(meta dict, GCNConfig) of a folder, or None when it has no gcn.json."""
  meta = checkpointing.read_meta(checkpoint_dir, (META_FILE,), META_KIND, META_VERSION, WHAT)
  if meta is None:
    return None
  try:
    return meta, GCNConfig.from_json(json.dumps(meta["config"]))
  except (KeyError, TypeError, ValueError) as error:
    fail(Path(checkpoint_dir) / META_FILE, f"damaged 'config' ({type(error).__name__}: {error})")


def read_meta(checkpoint_dir):
  """Reads and checks CKPT/gcn.json; returns (meta dict, GCNConfig); InputError when absent."""
  if not Path(checkpoint_dir).is_dir():
    fail(checkpoint_dir, "GCN checkpoint folder not found")
  found = find_meta(checkpoint_dir)
  if found is None:
    fail(checkpoint_dir, f"not a GCN checkpoint folder (no {META_FILE}); train one with "
         "main.py --model gcn --mode train")
  return found


def check_resumable(meta, config, pipeline, checkpoint_dir):
  """InputError unless a run of `config` with `pipeline` can resume this checkpoint."""
  saved = GCNConfig.from_json(json.dumps(meta["config"]))
  if saved.name != config.name or saved.arch != config.arch:
    fail(checkpoint_dir, f"holds a '{saved.name}' ({saved.arch}) checkpoint; resume it with "
         f"--config {saved.name} --arch {saved.arch} or use a new --checkpoint folder")
  check_same_network(saved, config, checkpoint_dir)   # e.g. a --set of a channel count.
  if meta.get("face_model_hash") != pipeline.stage.face_model.source_hash:
    fail(checkpoint_dir, f"trained for face model {meta.get('face_model_hash')} but the coarse "
         f"stage uses {pipeline.stage.face_model.source_hash}")
  check_hierarchy(meta, pipeline.topology, checkpoint_dir)


def check_same_network(saved, config, checkpoint_dir):
  """InputError unless `config` builds the models of a checkpoint trained with `saved`."""
  differences = checkpointing.network_differences(saved, config, NETWORK_FIELDS)
  if differences:
    fail(checkpoint_dir, f"the checkpoint's network differs from this run's in "
         f"{', '.join(differences)}; use a new --checkpoint folder")


def check_hierarchy(meta, topology, checkpoint_dir):
  """InputError unless `topology` is the mesh hierarchy the checkpoint was trained on."""
  if list(meta.get("num_vertices") or []) != list(topology.num_vertices):
    fail(checkpoint_dir, f"trained on a hierarchy with {meta.get('num_vertices')} vertices per "
         f"level, this run's has {list(topology.num_vertices)}")
  saved = meta.get("topology_digest")
  current = None if saved is None else topology.digest()
  if saved != current:
    fail(checkpoint_dir, f"trained on another mesh hierarchy (digest {saved}) than this run's "
         f"({current}, {topology.path or 'built here'}); pass the sampling .npz it "
         "was trained with as --sampling, or train again")
