"""Checkpoint folders of both trainers: atomic saves, resume, one metadata file.

A checkpoint folder holds

    DIR/ckpt-N.index, ckpt-N.data-*   the `tf.train.Checkpoint` of step N
    DIR/checkpoint                    which ckpt-N is the latest
    DIR/<meta file>                   what the model is: kind, format_version,
                                      step and the model's own fields
                                      (`mgc_face.checkpoint`, `gcn_face.checkpoint`)
    DIR/logs/                         TensorBoard events and scalars.jsonl

Saves never leave a half-written checkpoint as the latest one: TensorFlow
writes ckpt-N's data and index first and only then replaces the small
`checkpoint` state file (atomically), so a crash or Ctrl-C during a save
leaves the previous ckpt-(N-1) as the latest, complete and readable; old
checkpoints are deleted only after the new one is recorded.  The metadata
file is written atomically (temporary file, then rename) after the
checkpoint.  A save at a step that already has the latest checkpoint is
skipped (it would rewrite the latest checkpoint's files in place), and a save
of non-finite weights is refused.

Under `tf.distribute` only the chief keeps checkpoints (`CheckpointSaver`);
the other workers save into a temporary folder that is deleted at once, as
TensorFlow's multi-worker guide recommends (a save may need collectives).
"""

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from shared.errors import InputError
from shared.io.fileio import write_text_atomic

LOG_DIR = "logs"


def checkpoint_step(path):
  """N of `.../ckpt-N` (None when it does not end in a number)."""
  tail = str(path).rpartition("-")[2]
  return int(tail) if tail.isdigit() else None


def all_finite(variables):
  """True when every value of every variable is finite."""
  return all(np.isfinite(v.numpy()).all() for v in variables)


class CheckpointSaver:
  """A `tf.train.CheckpointManager` that only the chief keeps; refuses NaN weights.

  Args:
    checkpoint: the `tf.train.Checkpoint` to save and restore.
    directory: the checkpoint folder (the chief's; every worker resumes from it).
    max_to_keep: checkpoints kept on disk.
    strategy: a `tf.distribute.Strategy` (None: the current one).
    watched: the variables that must be finite for a save (the trained
      weights).
  """

  def __init__(self, checkpoint, directory, max_to_keep, strategy=None, watched=()):
    self.checkpoint = checkpoint
    self.strategy = strategy or tf.distribute.get_strategy()
    self.chief = bool(self.strategy.extended.should_checkpoint)
    self.directory = Path(directory)
    self.watched = list(watched)
    if self.chief:
      self._scratch = None
      target = self.directory
    else:
      self._scratch = Path(tempfile.mkdtemp(prefix="face3d-worker-ckpt-"))
      target = self._scratch
    self.manager = tf.train.CheckpointManager(checkpoint, str(target), max_to_keep=max_to_keep)
    # Resuming reads the chief's folder on every worker (shared or copied storage).
    self.reader = self.manager if self.chief else tf.train.CheckpointManager(
        checkpoint, str(self.directory), max_to_keep=max_to_keep)

  @property
  def latest_checkpoint(self):
    return self.reader.latest_checkpoint

  def restore(self, describe="this model"):
    """Restores the latest checkpoint, if any; returns its path (None: nothing to resume).

    InputError (one line) when the checkpoint does not fit the objects.
    """
    latest = self.latest_checkpoint
    if latest is None:
      return None
    try:
      self.checkpoint.read(latest).assert_existing_objects_matched()
    except (AssertionError, ValueError) as error:
      detail = (str(error).strip().splitlines() or [""])[0][:200]
      raise InputError(f"{latest}: cannot resume, the checkpoint does not match {describe} "
                       f"({detail}); use a new checkpoint folder") from None
    return latest

  def save(self, step):
    """Saves checkpoint `step`; returns (path or None, why not).

    Every worker calls it (the weights are the same everywhere, so all take
    the same branch); the path is the chief's, None on the others.  Nothing
    is written when a watched weight is not finite ("non-finite weights") or
    when the latest checkpoint already is of `step` ("up to date").
    """
    step = int(step)
    if not all_finite(self.watched):
      return None, "non-finite weights"
    if checkpoint_step(self.manager.latest_checkpoint or "") == step:
      return (self.manager.latest_checkpoint if self.chief else None), "up to date"
    path = self.manager.save(checkpoint_number=step)
    if not self.chief:
      shutil.rmtree(self._scratch, ignore_errors=True)
      return None, ""
    return path, ""

  def close(self):
    if self._scratch is not None:
      shutil.rmtree(self._scratch, ignore_errors=True)


# ----------------------------------------------------------------------------- metadata

def network_differences(saved, config, fields):
  """['field (checkpoint A, now B)', ...] for the `fields` in which two configs differ.

  `fields`: the config fields that decide a model's variables, with which a
  checkpoint resumes only as it was trained.
  """
  return [f"{name} (checkpoint {getattr(saved, name)}, now {getattr(config, name)})"
          for name in fields if getattr(saved, name) != getattr(config, name)]


def write_meta(directory, name, kind, version, step, fields):
  """Writes DIR/`name` atomically: {kind, format_version, step, **fields}; returns the dict."""
  meta = {"kind": kind, "format_version": int(version), "step": int(step), **fields}
  write_text_atomic(Path(directory) / name, json.dumps(meta, indent=2) + "\n")
  return meta


def read_meta(directory, names, kind, version, what):
  """Reads the first of DIR/`names` that exists -> dict (None when none does).

  Checks `kind` and `version` (InputError, one line, naming the file).  Older
  files' keys are read too: `version` for `format_version`, `steps` for `step`.

  Args:
    names: the file name, then older names still read.
    what: the model, for messages ("an MGC checkpoint").
  """
  paths = [Path(directory) / n for n in names]
  path = next((p for p in paths if p.is_file()), None)
  if path is None:
    return None
  try:
    meta = json.loads(path.read_text())
  except (ValueError, UnicodeDecodeError) as error:
    raise InputError(f"{path}: not valid JSON ({error})") from None
  if not isinstance(meta, dict) or meta.get("kind") != kind:
    found = meta.get("kind") if isinstance(meta, dict) else None
    raise InputError(f"{path}: not the description of {what} (kind {found!r})")
  found = meta.get("format_version", meta.get("version"))
  if found != version:
    raise InputError(f"{path}: checkpoint format version {found}; this toolkit reads "
                     f"version {version}")
  meta["format_version"] = found
  step = meta.get("step", meta.get("steps", 0))
  meta["step"] = int(step) if isinstance(step, (int, float)) else 0
  return meta
