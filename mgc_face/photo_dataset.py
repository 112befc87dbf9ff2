"""Real photos and videos to MGCNet's strip dataset (`mgc_face/data.py`), to train on them.

Input folder layout (`collect_sequences`):

    DIR/<sequence>/*.jpg ...   one person seen from several views, or frames of one
                               clip: the images of a sequence make multi-view
                               triplets (flag 2)
    DIR/<sequence>/*.mp4 ...   a video in a sequence folder adds its frames to it
    DIR/*.mp4 ...              a video on its own: one sequence of its frames
    DIR/*.jpg ...              a photo on its own: a monocular sample (flag 0)

Each image goes through the photo pipeline (`shared.photo.reconstruct.PhotoReconstructor`):
the largest face is detected, aligned to the 224 x 224 MGCNet crop and the face model is
fitted to its landmarks (the 468 mesh points where BlazeFace finds the face). The dataset
then holds, per sample (`mgc_face.data` formats):

- the strip source1 | target | source2 of aligned crops;
- the skin strip: the face region seen unoccluded (`shared.fit.skin.unoccluded_face`)
  inside the fitted face's render mask, in {0, 1};
- `_lm.txt`: the fitted face model's own 68 landmarks (`face_model.landmarks68`, the
  vertices the MGC landmark loss projects) in each crop's pixels: 3D-consistent at any
  pose, unlike a detector's outline;
- `_src.json`: where each view came from (file, video frame), its 2 x 3 alignment
  matrix (photo pixels to crop pixels) and its fitted yaw;
- no `_gt.npz`: there is no ground truth, so `main.py --model mgc --mode eval` (which
  scores shape against it) needs synthetic data; `--mode test` reads the held-out
  targets in `heldout/`.

Triplets (`choose_sources`): every usable image of a sequence is a target once; its two
sources are the images nearest in fitted yaw on either side that differ from it by at
least `min_source_yaw_gap` degrees where there are such (nearest overall otherwise), so
that the views see the face from different sides as in MGCNet's triplets.  A sequence
with two usable images uses the other one twice; one with a single usable image gives a
monocular sample.  Held-out sequences (`test_fraction`, seeded) go to `test.txt`.
"""

import dataclasses
import json
import re
from pathlib import Path

import numpy as np

from shared.errors import InputError, fail, fail_none_usable
from shared.io import image_io, video_io
from shared.io.video_io import VIDEO_SUFFIXES, is_video_file
from shared.io.fileio import write_text_atomic
from mgc_face import data as data_lib

DATASET_KIND = "face3d-mgc-photos"
FORMAT_VERSION = 1
SOURCE_SUFFIX = "_src.json"
MONO_FRAME = "mono"
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")   # List files split on white space.
MASK_COVERAGE = 0.5   # a crop pixel belongs to the fitted face's render where it covers more


@dataclasses.dataclass(frozen=True)
class PhotoDatasetConfig:
  """How photos become samples.

  test_fraction: share of the sequences held out (`test.txt`), at least one when
    there are two or more sequences, never all of them.
  frames_per_video: frames taken from each video, evenly spaced over its length.
  min_source_yaw_gap: degrees a source view should differ from its target in
    fitted yaw (MGCNet's triplets see the face from different sides).
  fit_batch: faces fitted together.
  """
  test_fraction: float = 0.1
  frames_per_video: int = 16
  min_source_yaw_gap: float = 5.0
  fit_batch: int = 8


@dataclasses.dataclass
class Sequence:
  """One person's media: image and video files (a photo on its own: one file)."""
  name: str
  files: list


@dataclasses.dataclass
class View:
  """One usable face: the aligned crop and what the fit gives."""
  label: str              # "file" or "file#frame"
  crop: np.ndarray        # uint8 [224, 224, 3]
  skin: np.ndarray        # float32 [224, 224] in {0, 1}
  landmarks: np.ndarray   # float32 [68, 2] crop pixels (the model's own 68)
  matrix: np.ndarray      # float64 [2, 3] photo pixels -> crop pixels
  yaw: float              # degrees


# ----------------------------------------------------------------------------- input

def video_frames(path, count, label=None):
  """Up to `count` frames of a video, evenly spaced, as (`label#frame`, uint8 RGB) pairs
  (`label`: default the file name).

  Raises:
    InputError: the file cannot be opened or holds no frame.
  """
  wanted = video_io.evenly_spaced(video_io.video_info(path).frames, count)
  return [(f"{label or Path(path).name}#{index}", frame)
          for index, frame in video_io.read_frames(path, wanted)]


def read_media(path, frames_per_video, label):
  """(label, uint8 RGB [H, W, 3]) pairs of one image or video file: `label` for an image,
  `label#frame` for a video's frames.

  Raises:
    InputError: the file cannot be read.
  """
  if is_video_file(path):
    return video_frames(path, frames_per_video, label)
  return [(label, image_io.read_image(path))]


def collect_sequences(folder):
  """The sequences of `folder` (module docstring): photos and videos at its top level first,
  then one per sub-folder (its media, sub-folders included), each sorted by name.

  Raises:
    InputError: not a folder, or no image or video in it.
  """
  folder = Path(folder)
  if not folder.is_dir():
    fail(folder, "input folder not found" if not folder.exists() else "is not a folder")
  sequences = [Sequence(p.stem, [p])
               for p in sorted(folder.iterdir()) if p.is_file() and image_io.is_media_file(p)]
  for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
    files = sorted(p for p in sub.rglob("*") if p.is_file() and image_io.is_media_file(p))
    if files:
      sequences.append(Sequence(sub.name, files))
  if not sequences:
    fail(folder, "no images or videos found (images: " + ", ".join(image_io.IMAGE_SUFFIXES) +
         "; videos: " + ", ".join(VIDEO_SUFFIXES) + ")")
  return sequences


def safe_names(names):
  """List-file-safe subfolder names: white space and other odd characters become `_`, and a
  name already taken (ignoring case, as macOS and Windows do) gets `_2`, `_3`, ..."""
  taken, out = set(), []
  for name in names:
    base = SAFE_NAME.sub("_", name).strip("_") or "sequence"
    unique, number = base, 2
    while unique.casefold() in taken:
      unique, number = f"{base}_{number}", number + 1
    taken.add(unique.casefold())
    out.append(unique)
  return out


# ----------------------------------------------------------------------------- triplets

def choose_sources(yaws, min_gap):
  """The two source views of each target in one sequence.

  Args:
    yaws: [n] fitted yaws (degrees), n >= 2.
    min_gap: degrees a source should differ from its target.

  Returns:
    int [n, 2]: per target, the source on the lower-yaw side and the one on the
    higher-yaw side (the nearest at least `min_gap` away on each side; where a
    side has none, the nearest other view not already chosen, or the same one
    twice when n == 2).
  """
  yaws = np.asarray(yaws, np.float64)
  n = len(yaws)
  if n < 2:
    raise ValueError("choose_sources needs at least two views")
  out = np.zeros((n, 2), np.int64)
  for i in range(n):   # n is a sequence's image count (tens), not a hot path
    others = np.delete(np.arange(n), i)
    gap = yaws[others] - yaws[i]
    below, above = others[gap <= -min_gap], others[gap >= min_gap]
    by_distance = others[np.argsort(np.abs(gap), kind="stable")]
    low = below[np.argmax(yaws[below])] if below.size else None
    high = above[np.argmin(yaws[above])] if above.size else None
    if low is None:
      low = next((j for j in by_distance if j != high), by_distance[0])
    if high is None:
      high = next((j for j in by_distance if j != low), low)
    out[i] = low, high
  return out


def held_out(count, fraction, seed):
  """Boolean [count]: which sequences are held out (at least one of two or more, never all)."""
  chosen = np.zeros(count, bool)
  if count < 2 or fraction <= 0:
    return chosen
  k = min(count - 1, max(1, int(round(fraction * count))))
  chosen[np.random.default_rng(seed).permutation(count)[:k]] = True
  return chosen


# ----------------------------------------------------------------------------- faces

class PhotoViews:
  """Photos to `View`s through the photo pipeline (detection, alignment, fit)."""

  def __init__(self, face_model, config=PhotoDatasetConfig()):
    from shared.photo.reconstruct import PhotoReconstructor
    self.face_model = face_model
    self.config = config
    self.pipeline = PhotoReconstructor(face_model, max_batch=config.fit_batch)
    self.own_landmarks = np.asarray(face_model.landmarks68)

  def largest_face(self, label, image):
    """The `FaceJob` of the largest face in `image`; InputError when there is none."""
    job, _ = self.pipeline.largest_of(self.pipeline.drop_weak(self.pipeline.detect(image))[0])
    if job is None:
      fail(label, "no face found")
    return job

  def views(self, jobs_and_labels):
    """[(label, FaceJob)] -> [View] in the same order (fitted in batches)."""
    import tensorflow as tf
    from shared.fit.skin import unoccluded_face
    from shared.model import camera as camera_lib
    label_of = {id(job): label for label, job in jobs_and_labels}
    views = {}
    jobs = [job for _, job in jobs_and_labels]
    for chunk, crops, landmarks, dense in self.pipeline.padded_batches(jobs):
      _, result = self.pipeline.regress_and_fit(crops, landmarks, dense)
      syn = result.synthesis
      own = camera_lib.project(tf.gather(syn.posed, self.own_landmarks, axis=1),
                               self.pipeline.synthesizer.camera).numpy()
      mask = syn.render.mask.numpy()[..., 0] > MASK_COVERAGE
      seen = unoccluded_face(crops, landmarks)[..., 0]
      yaws = np.degrees(result.coeffs.rotation.numpy()[:, 1])
      for b, job in enumerate(chunk):
        views[id(job)] = View(label_of[id(job)], np.asarray(job.aligned.image[..., :3]),
                              (seen[b] * mask[b]).astype(np.float32), own[b].astype(np.float32),
                              np.asarray(job.aligned.matrix, np.float64), float(yaws[b]))
    return [views[id(job)] for job in jobs]


# ----------------------------------------------------------------------------- writing

def write_sample(root, record, views):
  """Writes the strip, skin strip, `_lm.txt` and `_src.json` of (target, source1, source2)."""
  root = Path(root)
  data_lib.write_strips(root, record, np.stack([v.crop for v in views]),
                        np.stack([v.skin for v in views])[..., None],
                        np.stack([v.landmarks for v in views]))
  lines = [json.dumps({"name": name, "source": v.label, "yaw_degrees": round(v.yaw, 2),
                       "matrix": np.round(v.matrix, 6).tolist()})
           for name, v in zip(data_lib.VIEW_NAMES, views)]
  write_text_atomic(Path(str(record.stem(root)) + SOURCE_SUFFIX),
                    '{"views": [\n' + ",\n".join(lines) + "\n]}\n")


def sequence_records(name, views, config):
  """[(Record, (target, source1, source2) view indices)] of one sequence's usable views."""
  if len(views) == 1:
    return [(data_lib.Record(data_lib.FLAG_MONO, name, MONO_FRAME), (0, 0, 0))]
  sources = choose_sources([v.yaw for v in views], config.min_source_yaw_gap)
  return [(data_lib.Record(data_lib.FLAG_MULTIVIEW, name, f"{i:03d}"), (i, *sources[i]))
          for i in range(len(views))]


def build(face_model, input_folder, output, config=PhotoDatasetConfig(), seed=0, progress=True,
          log=print):
  """Packs `input_folder` into an MGC strip dataset at `output` (module docstring).

  Sequences are read, fitted and written one at a time.  A file that cannot be
  read, or an image or frame without a face, is skipped: one `skipped: FILE:
  problem` line through `log`, and the list in dataset.json.  The list files
  and dataset.json are written last, so an interrupted run leaves no dataset
  that `main.py` would read.

  Returns:
    dict with counts, as written to OUTPUT/dataset.json.

  Raises:
    InputError: no input, or no usable face in any of it (nothing is written; the one
      problem's line, or a count of them: `shared.errors.fail_none_usable`).
  """
  from tqdm import tqdm
  input_folder = Path(input_folder)
  sequences = collect_sequences(input_folder)
  names = safe_names([s.name for s in sequences])
  maker = None   # the photo pipeline, built with the first image that could be read
  root = Path(output)
  skipped, written, faces = [], [], 0

  def skip(error):
    skipped.append(str(error))
    log(f"skipped: {error}")

  files = sum(len(s.files) for s in sequences)
  with tqdm(total=files, desc="photos to strips", unit="file", disable=not progress) as bar:
    for sequence, name in zip(sequences, names):
      found = []
      for path in sequence.files:
        relative = str(path.relative_to(input_folder))
        try:
          media = read_media(path, config.frames_per_video, relative)
        except InputError as error:
          media = []
          skip(error)
        for label, image in media:
          maker = maker or PhotoViews(face_model, config)
          try:   # a photo without a face is named by its path, a frame by "video#frame"
            found.append((label, maker.largest_face(path if label == relative else label,
                                                    image)))
          except InputError as error:
            skip(error)
        bar.update()
      if not found:
        continue
      views = maker.views(found)
      faces += len(views)
      records = sequence_records(name, views, config)
      for record, (target, low, high) in records:
        write_sample(root, record, [views[target], views[low], views[high]])
      written.append([record for record, _ in records])
  if not written:
    fail_none_usable(input_folder, skipped)
  train, test = [], []
  for records, is_test in zip(written, held_out(len(written), config.test_fraction, seed)):
    (test if is_test else train).extend(records)
    for record in records if is_test else ():
      heldout = root / data_lib.HELDOUT_DIR / f"{record.subfolder}_{record.frame_id}.png"
      image_io.write_png(heldout, data_lib.read_strip_target(record.image_path(root)))
  data_lib.write_list(root / "train.txt", train)
  data_lib.write_list(root / "test.txt", test)
  info = {"format_version": FORMAT_VERSION, "kind": DATASET_KIND,
          "face_model_hash": face_model.source_hash, "input": str(input_folder), "seed": seed,
          "sequences": len(written), "test_sequences": len({r.subfolder for r in test}),
          "faces": faces, "train_samples": len(train), "test_samples": len(test),
          "view_order": list(data_lib.VIEW_NAMES), "landmark_file": data_lib.LANDMARK_SUFFIX,
          "config": dataclasses.asdict(config), "skipped": skipped}
  write_text_atomic(root / "dataset.json", json.dumps(info, indent=2) + "\n")
  return info
