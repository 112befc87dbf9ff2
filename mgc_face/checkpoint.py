"""What an MGC checkpoint folder says about its model: CKPT/meta.json.

    {"kind": "face3d-mgc-checkpoint", "format_version": 1, "step": N,
     "face_model_hash", "face_model_name", "config_name", "config", "layout",
     "multiview", "backbone_weights"}

Written and read by `shared.train.checkpointing` (atomic, one-line errors); files
of older versions of this toolkit (with "steps") are read too.  The folder's
layout and save policy: `shared.train.checkpointing`, `shared.train.train_loop`.
"""

from shared.train import checkpointing
from shared.model.coeffs import CoeffLayout
from shared.errors import InputError

META_FILE = "meta.json"
META_KIND = "face3d-mgc-checkpoint"
META_VERSION = 1
WHAT = "an MGC checkpoint"


def layout_dict(layout):
  return {"num_id": layout.num_id, "num_albedo": layout.num_albedo, "num_exp": layout.num_exp,
          "size": layout.size}


def read_meta(checkpoint_dir):
  """Reads CKPT/meta.json -> dict, or None when absent; InputError when invalid."""
  return checkpointing.read_meta(checkpoint_dir, (META_FILE,), META_KIND, META_VERSION, WHAT)


def write_meta(checkpoint_dir, face_model, config, step, multiview, backbone_weights=None):
  """Writes CKPT/meta.json atomically; returns the dict."""
  fields = {"face_model_hash": face_model.source_hash, "face_model_name": face_model.name,
            "config_name": config.name, "config": config.to_dict(),
            "layout": layout_dict(CoeffLayout.for_model(face_model)),
            "multiview": bool(multiview), "backbone_weights": backbone_weights}
  return checkpointing.write_meta(checkpoint_dir, META_FILE, META_KIND, META_VERSION, step,
                                  fields)


def check_face_model(meta, face_model, checkpoint_dir):
  """InputError (one line) when the checkpoint was trained on another face model."""
  if meta.get("face_model_hash") != face_model.source_hash:
    raise InputError(
        f"{checkpoint_dir}: checkpoint was trained with face model "
        f"'{meta.get('face_model_name')}' (hash {meta.get('face_model_hash')}), not "
        f"'{face_model.name}' (hash {face_model.source_hash}); pass the matching --face-model")
  if meta.get("layout") != layout_dict(CoeffLayout.for_model(face_model)):
    raise InputError(f"{checkpoint_dir}: checkpoint coefficient layout {meta.get('layout')} "
                     "does not match the face model")


# The config fields that decide the network's variables: a checkpoint resumes only with the
# values it was trained with.  A field newer than a checkpoint's meta.json takes its dataclass
# default there, which is what the network was built with before the field existed.
NETWORK_FIELDS = ("backbone", "input_size", "small_channels", "small_norm", "small_features",
                  "small_colour_pool", "coord_channels", "landmark_head", "heatmap_block",
                  "heatmap_channels", "heatmap_reduce", "landmark_hidden", "refine_blocks",
                  "refine_patch", "refine_hidden")


def saved_config(meta, checkpoint_dir):
  """The `MGCConfig` a checkpoint was trained with (InputError when damaged)."""
  from mgc_face.config import MGCConfig
  try:
    return MGCConfig.from_dict(meta["config"])
  except (KeyError, TypeError, ValueError) as error:
    raise InputError(f"{checkpoint_dir}/{META_FILE}: damaged 'config' "
                     f"({type(error).__name__}: {error})") from None


def check_resumable(meta, face_model, config, checkpoint_dir):
  """InputError unless a run of `config` on `face_model` can resume this checkpoint."""
  check_face_model(meta, face_model, checkpoint_dir)
  saved = saved_config(meta, checkpoint_dir)
  differences = checkpointing.network_differences(saved, config, NETWORK_FIELDS)
  if differences:
    raise InputError(f"{checkpoint_dir}: the checkpoint's network (config '{saved.name}') "
                     f"differs from config '{config.name}' in {', '.join(differences)}; "
                     + (f"resume with --config {saved.name} or " if saved.name != config.name
                        else "") + "use a new --checkpoint folder")
