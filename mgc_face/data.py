"""MGCNet's on-disk training format and its tf.data pipeline.

Layout of a dataset folder DIR:

    DIR/train.txt, DIR/test.txt        lines "flag subfolder frame_id"
                                       (flag 2 = multi-view triplet, 0 = monocular)
    DIR/<subfolder>/<frame_id>.jpg     672x224 strip: source1 | target | source2
    DIR/<subfolder>/<frame_id>_skin.jpg  the matching skin-probability strip
    DIR/<subfolder>/<frame_id>_lm.txt  68 landmarks per view, target first
    DIR/<subfolder>/<frame_id>_gt.npz  ground truth (synthetic sets only)

Landmark file (`_lm.txt`, this toolkit's layout): optional `#` comment lines,
then for each view in the order target, source1, source2 a header line
`view <name>` followed by 68 lines `x,y` in pixels of that view's 224x224
crop (continuous coordinates, pixel centres at +0.5).  MGCNet's `_cam.txt`
(three lines of 9 intrinsics, then per view a header and 68 `x,y` lines) is
read as well when no `_lm.txt` exists: any line that is not exactly two
numbers is skipped, and exactly 3 x 68 points must remain.

A monocular sample (flag 0) still has a full strip; its three crops are used
by the single-view losses only.
"""

import dataclasses
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from shared.errors import InputError
from shared.io import image_io
from shared.io import landmark_file
from shared.io.fileio import write_text_atomic

VIEW_SIZE = 224
NUM_VIEWS = landmark_file.NUM_VIEWS
STRIP_WIDTH = VIEW_SIZE * NUM_VIEWS
NUM_LANDMARKS = landmark_file.NUM_LANDMARKS
VIEW_NAMES = landmark_file.VIEW_NAMES
STRIP_ORDER = (1, 0, 2)     # Strip panel index of target, source1, source2.
LANDMARK_SUFFIX = "_lm.txt"
CAM_SUFFIX = "_cam.txt"
SKIN_SUFFIX = "_skin.jpg"
IMAGE_SUFFIX = ".jpg"
GT_SUFFIX = "_gt.npz"
FLAG_MONO = 0
FLAG_MULTIVIEW = 2
VALID_FLAGS = (0, 1, 2)
UINT8_MAX = 255.0
JPEG_QUALITY = 95   # strips and skin strips
HELDOUT_DIR = "heldout"   # the held-out targets as 224 x 224 PNGs (`--mode test` input)
LANDMARK_HEADER = landmark_file.LANDMARK_HEADER


@dataclasses.dataclass(frozen=True)
class Record:
  """One list-file line."""
  flag: int
  subfolder: str
  frame_id: str

  def stem(self, root):
    return Path(root) / self.subfolder / self.frame_id

  def image_path(self, root):
    return Path(str(self.stem(root)) + IMAGE_SUFFIX)

  def skin_path(self, root):
    return Path(str(self.stem(root)) + SKIN_SUFFIX)

  def landmark_path(self, root):
    """`_lm.txt`, or MGCNet's `_cam.txt` when only that exists."""
    lm = Path(str(self.stem(root)) + LANDMARK_SUFFIX)
    cam = Path(str(self.stem(root)) + CAM_SUFFIX)
    return cam if (not lm.exists() and cam.exists()) else lm

  def gt_path(self, root):
    return Path(str(self.stem(root)) + GT_SUFFIX)


# ----------------------------------------------------------------------------- list files

_read_text = landmark_file.read_text


def read_list(path):
  """Parses a list file -> (records, problems) where problems are one-line strings."""
  path = Path(path)
  if not path.exists():
    raise InputError(f"{path}: list file not found; a dataset folder holds train.txt and "
                     "test.txt (tools/make_synthetic_dataset.py writes one)")
  records, problems = [], []
  for number, line in enumerate(_read_text(path, "list file").splitlines(), 1):
    fields = line.split()
    if not fields or line.lstrip().startswith("#"):
      continue
    if len(fields) != 3 or not fields[0].lstrip("-").isdigit() or \
        int(fields[0]) not in VALID_FLAGS:
      problems.append(f"{path}:{number}: expected 'flag subfolder frame_id' with flag in "
                      f"{VALID_FLAGS}, got '{line.strip()}'")
      continue
    records.append(Record(int(fields[0]), fields[1], fields[2]))
  return records, problems


def write_list(path, records):
  """Writes a list file atomically."""
  write_text_atomic(path, "".join(f"{r.flag} {r.subfolder} {r.frame_id}\n" for r in records))


# ----------------------------------------------------------------------------- landmarks

# The `_lm.txt` reader and writer live in `shared.io.landmark_file` (no TensorFlow, so
# tools/create_bin.py can use them); re-exported here for the dataset code.
format_landmarks = landmark_file.format_landmarks
write_landmarks = landmark_file.write_landmarks
read_landmarks = landmark_file.read_landmarks


# ----------------------------------------------------------------------------- strips

def split_strip(strip):
  """[224, 672, C] strip -> [3, 224, 224, C] in the order target, source1, source2."""
  panels = [strip[:, k * VIEW_SIZE:(k + 1) * VIEW_SIZE] for k in range(NUM_VIEWS)]
  return np.stack([panels[k] for k in STRIP_ORDER])


def join_strip(views):
  """[3, 224, 224, C] (target, source1, source2) -> [224, 672, C] strip."""
  panels = [None] * NUM_VIEWS
  for view, k in zip(views, STRIP_ORDER):
    panels[k] = view
  return np.concatenate(panels, axis=1)


def image_size(path):
  """(width, height) from the image header (cheap), or InputError if unreadable."""
  from PIL import Image
  try:
    with Image.open(path) as image:
      return image.size
  except FileNotFoundError:
    raise InputError(f"{path}: not found") from None
  except Exception as error:  # noqa: BLE001
    raise InputError(f"{path}: not a readable image ({type(error).__name__})") from None


def read_image(path, grayscale=False):
  """Reads an image as float32 in [0, 1]: [H, W, 3] RGB or [H, W, 1] (luma).

  Through `shared.io.image_io.read_image` (one-line errors for bad files).
  """
  image = image_io.read_image(path)
  if grayscale:
    import cv2
    image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None]
  return image.astype(np.float32) / UINT8_MAX


def write_jpeg(path, image):
  """Writes a strip or skin strip as JPEG (`JPEG_QUALITY`), atomically.

  Args:
    image: [H, W, 3] RGB or [H, W] grey; uint8, or float in [0, 1].
  """
  import cv2
  from shared.io.fileio import atomic_path
  image = image_io.to_uint8(image)
  if image.ndim == 3 and image.shape[2] == 3:
    image = image[..., ::-1]
  with atomic_path(path) as tmp:
    if not cv2.imwrite(str(tmp), np.ascontiguousarray(image),
                       [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
      raise OSError(f"{path}: could not encode JPEG")


def write_strips(root, record, images, skins, landmarks):
  """Writes a sample's strip, skin strip and `_lm.txt` (the synthetic and photo sets alike).

  Args:
    images: [3, 224, 224, 3] RGB views, target first; uint8, or float in [0, 1].
    skins: [3, 224, 224, 1] skin probabilities in [0, 1] (or uint8).
    landmarks: [3, 68, 2] pixels of each view.
  """
  write_jpeg(record.image_path(root), join_strip(images))
  write_jpeg(record.skin_path(root), join_strip(skins)[..., 0])
  write_landmarks(Path(str(record.stem(root)) + LANDMARK_SUFFIX), landmarks)


def check_strip_size(path, width, height):
  if (width, height) != (STRIP_WIDTH, VIEW_SIZE):
    raise InputError(f"{path}: strip is {width}x{height}, expected {STRIP_WIDTH}x{VIEW_SIZE} "
                     "(source1 | target | source2, 224x224 each)")


def read_strip(path, grayscale=False):
  """Reads a strip -> [3, 224, 224, C] float32 in [0, 1] (target first)."""
  image = read_image(path, grayscale)
  check_strip_size(path, image.shape[1], image.shape[0])
  return split_strip(image)


def read_strip_target(path):
  """The target view of a strip as a [224, 224, 3] float32 RGB image in [0, 1]."""
  return read_strip(path)[0]


def read_skin_target(path):
  """The target view of a `_skin.jpg` strip as [224, 224, 1] float32 in [0, 1]."""
  return read_strip(path, grayscale=True)[0]


# ----------------------------------------------------------------------------- validation

def check_record(root, record):
  """Returns None for a usable record, else a one-line problem."""
  try:
    for path, what in ((record.image_path(root), "strip"), (record.skin_path(root), "skin strip")):
      if not path.exists():
        return f"{path}: {what} not found"
      width, height = image_size(path)
      check_strip_size(path, width, height)
    read_landmarks(record.landmark_path(root))
  except InputError as error:
    return str(error)
  return None


def scan(root, split, report=True):
  """Reads DIR/<split>.txt and validates every record.

  Returns:
    (records that are usable, [landmarks [3, 68, 2] per record], problems).
  Bad records are reported on stderr (one line each) and skipped.
  """
  root = Path(root)
  if not root.is_dir():
    raise InputError(f"{root}: dataset folder not found")
  records, problems = read_list(root / f"{split}.txt")
  good, landmarks = [], []
  for record in records:
    problem = check_record(root, record)
    if problem:
      problems.append(problem)
      continue
    good.append(record)
    landmarks.append(read_landmarks(record.landmark_path(root)))
  if report:
    for problem in problems:
      print(f"warning: skipping bad record: {problem}", file=sys.stderr)
    if problems:
      print(f"warning: {len(problems)} bad record(s) skipped in {root / (split + '.txt')}; "
            f"{len(good)} usable", file=sys.stderr)
  return good, landmarks, problems


# ----------------------------------------------------------------------------- tf.data

def _decode_strip(path, channels):
  # INTEGER_ACCURATE matches OpenCV's decoder exactly (used by test and eval).
  image = tf.io.decode_jpeg(tf.io.read_file(path), channels=channels,
                            dct_method="INTEGER_ACCURATE")
  image = tf.ensure_shape(image, [VIEW_SIZE, STRIP_WIDTH, channels])
  image = tf.cast(image, tf.float32) / UINT8_MAX
  panels = tf.split(image, NUM_VIEWS, axis=1)
  return tf.stack([panels[k] for k in STRIP_ORDER])


def make_dataset(root, split, batch_size, shuffle=True, repeat=True, seed=0, shuffle_buffer=256,
                 report=True, num_shards=1, shard_index=0, augment=None):
  """tf.data pipeline of `mgc_face.model.Batch` tuples with a static batch size.

  Records that fail validation are reported and skipped; a JPEG that fails
  to decode later is dropped by `ignore_errors` with a logged warning.

  With `num_shards` > 1 (one shard per worker, `shared.train.distribute`), this
  pipeline reads only the usable records i with i mod num_shards ==
  shard_index, chosen before shuffling: within an epoch no record is read by
  two workers, and together they read all of them.

  `augment`: an `MGCConfig` whose `augment_*` fields transform every view
  (`mgc_face.augment.augment_views`, seeded by (seed, element index)); for
  the landmark head's warm-up only, whose terms read no skin masks: its
  batches' `skins` are empty ([B, views, 0, 0, 1]), which saves decoding and
  warping them.

  Returns:
    (dataset, number of usable records in this shard).
  Raises:
    InputError: no usable records, or fewer than one batch (in this shard).
  """
  from mgc_face.objective import Batch
  records, landmarks, _ = scan(root, split, report)
  list_file = Path(root) / f"{split}.txt"
  if not records:
    raise InputError(f"{list_file}: no usable records")
  records, landmarks = records[shard_index::num_shards], landmarks[shard_index::num_shards]
  where = f" in shard {shard_index} of {num_shards}" if num_shards > 1 else ""
  if len(records) < batch_size:
    raise InputError(f"{list_file}: {len(records)} usable record(s){where}, fewer than the batch "
                     f"size {batch_size}" + (" per worker" if num_shards > 1 else ""))
  root = Path(root)
  images = tf.constant([str(r.image_path(root)) for r in records])
  skins = tf.constant([str(r.skin_path(root)) for r in records])
  flags = tf.constant([float(r.flag) for r in records], tf.float32)
  ds = tf.data.Dataset.from_tensor_slices((images, skins, np.stack(landmarks), flags))
  if shuffle:
    ds = ds.shuffle(min(shuffle_buffer, len(records)), seed=seed, reshuffle_each_iteration=True)
  if repeat:
    ds = ds.repeat()

  def load(image_path, skin_path, lms, flag):
    # The warm-up (augmented) batches carry no skin masks: an empty [views, 0, 0, 1] tensor.
    skins = tf.zeros([NUM_VIEWS, 0, 0, 1]) if augment is not None else _decode_strip(skin_path, 1)
    return Batch(_decode_strip(image_path, 3), skins, lms, flag)

  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.ignore_errors(log_warning=True)
  if augment is not None:
    from mgc_face import augment as augment_lib

    def jitter(index, batch):
      seed_pair = tf.stack([tf.constant(seed, tf.int64), index])
      images, _, points = augment_lib.augment_views(augment, batch.images, None,
                                                    batch.landmarks, seed_pair)
      return Batch(images, batch.skins, points, batch.flags)

    ds = ds.enumerate().map(jitter, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(batch_size, drop_remainder=True)
  return ds.prefetch(tf.data.AUTOTUNE), len(records)
