"""Reading and writing images with one-line errors for bad files.

Arrays are NumPy `uint8` in RGB(A) channel order, shape `[H, W, 3]` (or
`[H, W, 4]` from `read_image_rgba`), row-major: `image[y, x]`.

Pixel convention used across the project: continuous coordinates in which
pixel `(col i, row j)` covers `[i, i+1) x [j, j+1)` and has its centre at
`(i + 0.5, j + 0.5)`; the image spans `[0, W] x [0, H]`.

Conversions on reading:
- grayscale becomes 3 equal channels;
- 16-bit becomes 8-bit by `round(v * 255 / 65535)`;
- floating-point images (TIFF, EXR) are taken as linear [0, 1] and clipped;
- `read_image` drops an alpha channel; `read_image_rgba` keeps it (opaque 255
  where the file has none);
- the EXIF orientation tag (phone photos are often stored sideways with
  tag 6 or 8) is applied by both readers, by `apply_exif_orientation` from
  the tag Pillow reads in the header; OpenCV's own handling is switched off
  (it applied the tag for `IMREAD_COLOR` only, so the RGBA reader used by
  the GCN test mode and tools/create_bin.py read such files sideways:
  create_bin packed tagged crops turned; on photos the detector and the
  5-point alignment mostly undid the quarter turn).

`IMAGE_SUFFIXES` lists the file types OpenCV decodes; every command that
takes a folder of images lists it with `list_images` (one list for the
photo, MGC and GCN test modes and tools/create_bin.py).  OpenCV's own error
lines are silenced (see `shared.quiet`): a file it can't decode gives our
one-line `InputError` instead.

Images above `MAX_IMAGE_PIXELS` are refused before decoding (the header is
read with Pillow), so a huge or hostile file gives one line, not an
out-of-memory kill.  An 8000 x 8000 photo (64 MP, 192 MB as RGB) is allowed;
detection downsizes it itself (see `shared.photo.landmarks`).
"""

import collections
import warnings
from pathlib import Path

import cv2
import numpy as np

from shared import quiet
from shared.errors import fail
from shared.io.fileio import atomic_path
from shared.io.video_io import is_video_file

MAX_IMAGE_PIXELS = 100_000_000   # ~300 MB as RGB uint8; 10000 x 10000
UINT8_MAX = 255
UINT16_MAX = 65535
PNG_SUFFIX = ".png"
READ_FLAGS_RGB = cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION
READ_FLAGS_RGBA = cv2.IMREAD_UNCHANGED   # never applies the EXIF orientation
EXIF_ORIENTATION_TAG = 0x0112
# EXIF orientation -> (transpose rows and columns first, then np.rot90 count (counter-clockwise),
# then flip left-right); the result is the upright image a viewer shows (as PIL.ImageOps.exif_transpose).
EXIF_ORIENTATIONS = {1: (False, 0, False), 2: (False, 0, True), 3: (False, 2, False),
                     4: (False, 2, True), 5: (True, 0, False), 6: (False, 3, False),
                     7: (True, 2, False), 8: (False, 1, False)}
# Every type OpenCV 4 decodes (tests/test_image_io.py writes and reads each); GIF with the
# pinned OpenCV 4.12 (an animated GIF gives its first frame).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp",
                  ".ppm", ".pgm", ".pbm", ".pnm", ".pfm", ".sr", ".ras", ".hdr", ".pic", ".avif",
                  ".gif")

quiet.quiet_opencv()


def is_image_file(path):
  """True if `path`'s suffix (any case) is one of `IMAGE_SUFFIXES`."""
  return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_media_file(path):
  """True for an image (`IMAGE_SUFFIXES`) or a video (`video_io.VIDEO_SUFFIXES`) file name."""
  return is_image_file(path) or is_video_file(path)


def list_images(folder, recursive=False, skip_stem_suffixes=()):
  """The image files in `folder`, sorted by path.

  Args:
    folder: a folder.
    recursive: also look in sub-folders.
    skip_stem_suffixes: leave out files whose stem ends with one of these
      (e.g. the `_overlay` outputs of an earlier run).

  Returns:
    A sorted list of `Path`s whose suffix is in `IMAGE_SUFFIXES`.
  """
  folder = Path(folder)
  found = folder.rglob("*") if recursive else folder.iterdir()
  return sorted(p for p in found if p.is_file() and is_image_file(p) and
                not p.stem.endswith(tuple(skip_stem_suffixes)))


def output_stems(paths):
  """One output name per input file, unique within `paths`, so that no result overwrites another.

  A file's name is its stem, unless another file in the list has the same stem
  (`photo.jpg` and `photo.png` in one folder): then `<stem>_<extension>` for each
  of them (`photo_jpg`, `photo_png`).  Names still repeated (the same file name in
  two folders) get `_2`, `_3`, ... after the first, skipping names already taken.
  Names are compared ignoring case, as on macOS's and Windows' file systems
  (`Photo.jpg` and `photo.png` would otherwise write over each other there).

  Args:
    paths: a sequence of file paths (str or Path).

  Returns:
    A list of `str`, one per path, in order.
  """
  paths = [Path(p) for p in paths]
  stem_counts = collections.Counter(p.stem.casefold() for p in paths)
  names = [p.stem if stem_counts[p.stem.casefold()] == 1
           else f"{p.stem}_{p.suffix.lstrip('.').lower()}" for p in paths]
  taken = {name.casefold() for name in names}
  seen = set()
  unique = []
  for name in names:
    if name.casefold() in seen:
      number = 2
      while f"{name}_{number}".casefold() in taken:
        number += 1
      name = f"{name}_{number}"
      taken.add(name.casefold())
    seen.add(name.casefold())
    unique.append(name)
  return unique


def _check_readable(path):
  """Raises `InputError` if `path` is missing, a folder or too large to decode."""
  path = Path(path)
  if not path.exists():
    fail(path, "image file not found")
  if path.is_dir():
    fail(path, "is a folder, not an image file")
  if path.stat().st_size == 0:
    fail(path, "image file is empty")
  size, orientation = _header(path)
  if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
    fail(path, f"image is {size[0]}x{size[1]} pixels, more than the "
         f"{MAX_IMAGE_PIXELS:,}-pixel limit; downscale it first")
  return path, orientation


def _header(path):
  """`((width, height) or None, EXIF orientation 1-8)` from the file header (Pillow, no decode).

  The size is None where Pillow can't tell; the orientation is 1 (as stored) where the file
  has no valid tag.
  """
  try:
    from PIL import Image
  except ImportError:
    return None, 1
  try:
    with warnings.catch_warnings():   # e.g. "Corrupt EXIF data": OpenCV decides below.
      warnings.simplefilter("ignore")
      with Image.open(path) as im:
        size = im.size
        try:
          orientation = int(im.getexif().get(EXIF_ORIENTATION_TAG, 1))
        except Exception:  # noqa: BLE001 - a damaged EXIF block: keep the stored orientation.
          orientation = 1
        return size, orientation if orientation in EXIF_ORIENTATIONS else 1
  except Image.DecompressionBombError:
    return (MAX_IMAGE_PIXELS + 1, 1), 1
  except Exception:  # Not a format Pillow knows, or corrupt: OpenCV decides.
    return None, 1


def header_size(path):
  """`(width, height)` of the upright image (EXIF orientation applied) from the header, or None.

  Cheap (no decode); None where Pillow can't read the header.
  """
  size, orientation = _header(path)
  transpose, quarter_turns, _ = EXIF_ORIENTATIONS[orientation]
  if size is None or transpose == bool(quarter_turns % 2):   # width and height stay
    return size
  return size[1], size[0]


def apply_exif_orientation(image, orientation):
  """Turns an image as stored into the upright image a viewer shows.

  Args:
    image: `[H, W]` or `[H, W, C]` array, as decoded (rows as stored).
    orientation: EXIF orientation tag value 1-8 (1: as stored; other values: unchanged).

  Returns:
    The image transposed, rotated and flipped as the tag says (`[W, H, ...]` for 5-8).
  """
  transpose, quarter_turns, flip = EXIF_ORIENTATIONS.get(orientation, EXIF_ORIENTATIONS[1])
  if transpose:
    image = np.swapaxes(image, 0, 1)
  image = np.rot90(image, quarter_turns)
  if flip:
    image = image[:, ::-1]
  return np.ascontiguousarray(image)


def _decode(path, flags):
  """`cv2.imread` with an `InputError` when the file can't be decoded."""
  try:
    with quiet.native_stderr_silenced():  # libjpeg prints its own warnings.
      image = cv2.imread(str(path), flags)
  except cv2.error as e:
    fail(path, f"cannot decode image ({str(e).strip().splitlines()[-1]})")
  if image is None or image.size == 0:
    if is_video_file(path):
      fail(path, "a video, not an image (the photo test mode, main.py --mode test, reads "
                 "videos)")
    fail(path, "cannot decode image (corrupt file or unsupported format)")
  return image


def to_uint8(image):
  """Converts a `uint8`, `uint16`, float (in [0, 1], clipped) or boolean (0 / 255) image to
  `uint8`."""
  image = np.asarray(image)
  if image.dtype == np.uint8:
    return image
  if image.dtype == bool:
    return image.astype(np.uint8) * UINT8_MAX
  if image.dtype == np.uint16:
    scaled = image.astype(np.float32) * (UINT8_MAX / UINT16_MAX)
    return np.rint(scaled).astype(np.uint8)
  if np.issubdtype(image.dtype, np.floating):
    return np.rint(np.clip(image, 0.0, 1.0) * UINT8_MAX).astype(np.uint8)
  raise ValueError(f"unsupported image dtype {image.dtype}")


def read_image(path):
  """Reads an image file as RGB.

  Args:
    path: image file (anything OpenCV decodes: jpg, png, bmp, tiff, webp...).

  Returns:
    `np.uint8 [H, W, 3]` RGB.

  Raises:
    InputError: missing, empty, corrupt, unsupported or oversized file.
  """
  path, orientation = _check_readable(path)
  bgr = to_uint8(_decode(path, READ_FLAGS_RGB))
  return apply_exif_orientation(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), orientation)


def sample_image(name):
  """One of scikit-image's bundled sample pictures (offline) as RGB, converted as `read_image` does.

  Args:
    name: the loader's name in `skimage.data` ("astronaut", "camera", "rocket", ...).

  Returns:
    `np.uint8 [H, W, 3]` RGB: grey gets three equal channels, a binary picture becomes
    0 / 255, alpha is dropped.
  """
  import skimage.data
  image = to_uint8(getattr(skimage.data, name)())
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, -1)
  return np.ascontiguousarray(image[..., :3])


def read_image_rgba(path):
  """Reads an image file as RGBA, keeping its alpha channel.

  Returns:
    `np.uint8 [H, W, 4]` RGBA; alpha is 255 where the file has none.

  Raises:
    InputError: as `read_image`.
  """
  path, orientation = _check_readable(path)
  raw = to_uint8(_decode(path, READ_FLAGS_RGBA))
  if raw.ndim == 2:
    raw = raw[:, :, None]
  channels = raw.shape[2]
  if channels == 1:
    rgba = cv2.cvtColor(raw, cv2.COLOR_GRAY2RGBA)
  elif channels == 2:    # gray + alpha
    rgba = np.concatenate([np.repeat(raw[:, :, :1], 3, axis=2), raw[:, :, 1:]], axis=2)
  elif channels == 3:
    rgba = cv2.cvtColor(raw, cv2.COLOR_BGR2RGBA)
  elif channels == 4:
    rgba = cv2.cvtColor(raw, cv2.COLOR_BGRA2RGBA)
  else:
    fail(path, f"unsupported number of channels ({channels})")
  return apply_exif_orientation(rgba, orientation)


def write_png(path, image):
  """Writes an image as PNG, atomically (no half-written file on failure).

  Args:
    path: destination; must end in `.png`.
    image: `[H, W]` gray, `[H, W, 3]` RGB or `[H, W, 4]` RGBA; `uint8`, or
      `uint16` / float in [0, 1] (converted by `to_uint8`).

  Raises:
    ValueError: wrong suffix, dtype or shape (a programming error).
    InputError: OpenCV could not write the file (e.g. unwritable folder).
  """
  path = Path(path)
  if path.suffix.lower() != PNG_SUFFIX:
    raise ValueError(f"{path}: write_png needs a {PNG_SUFFIX} file name")
  image = to_uint8(image)
  if image.ndim == 2:
    out = image
  elif image.ndim == 3 and image.shape[2] == 3:
    out = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
  elif image.ndim == 3 and image.shape[2] == 4:
    out = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
  else:
    raise ValueError(f"write_png expects [H,W], [H,W,3] or [H,W,4], got {image.shape}")
  try:
    with atomic_path(path) as tmp:
      if not cv2.imwrite(str(tmp), out):
        raise OSError("OpenCV could not write the file")
  except (OSError, cv2.error) as e:
    fail(path, f"cannot write PNG ({e})")
