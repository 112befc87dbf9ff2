#!/usr/bin/env python
"""Packs aligned face crops with an alpha (face / skin) channel into one .bin.

  python tools/create_bin.py --input DIR --output FILE.bin [--size 224]
                             [--split train|test] [--all-views] [--dtype uint8|float32]
                             [--face-model PATH]

Inputs (DIR):
* an MGC strip dataset (DIR/train.txt, DIR/test.txt with `flag subfolder
  frame` lines; DIR/<sub>/<frame>.jpg strips source1|target|source2 and
  <frame>_skin.jpg): the target view (middle third) with the skin strip's
  middle third as alpha.  --split picks the list (default train);
  --all-views packs the two source views too (three records per line).
  Each record also carries its view's 68 landmarks from <frame>_lm.txt
  (the dataset's detector-like noisy landmarks, in the view's pixels) when
  that file exists: the GCN's landmark refit of the coarse stage
  (`GCNConfig.coarse_fit_steps`) uses them.
* otherwise every image in DIR (png, jpg, bmp, webp, tif; sorted by path,
  sub-folders included).  RGBA images keep their alpha.  An image without
  alpha (or with an alpha that is opaque everywhere, which is no mask) takes the face model's projected skin region when a coefficients
  file sits beside it (NAME.npz, NAME_coeffs.npz or NAME_gt.npz with the
  named coefficient parts or one `coeffs` vector); otherwise it is refused.

All images must share one size unless --size resizes them (area filter when
shrinking, bilinear when enlarging).  Unreadable or refused inputs are
skipped and listed at the end with their reason (and in the file's
trailer).  The file is written atomically; see gcn_face/binfile.py for the
format.  Exit status 2 with one line when nothing can be packed or the
sizes differ.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.errors import InputError, fail, report  # noqa: E402
from shared.io.paths import check_output_file  # noqa: E402
from shared.io.image_io import IMAGE_SUFFIXES, list_images  # noqa: E402

COEFF_SUFFIXES = ("_coeffs.npz", ".npz", "_gt.npz")
COEFF_VECTOR_KEYS = ("coeffs", "coefficients")
SKIN_SUFFIX = "_skin"
STRIP_VIEWS = 3
TARGET_VIEW = 1          # Strip panels: source1 | target | source2.
STRIP_PANELS = (1, 0, 2)  # --all-views: target first, then the sources.
PANEL_LANDMARK_VIEW = {1: 0, 0: 1, 2: 2}  # Strip panel -> view in _lm.txt (target first).
LANDMARK_SUFFIX = "_lm.txt"
LIST_FIELDS = 3
UINT8_MAX = 255


class Skip(Exception):
  """An input that cannot be packed; the message is the reason."""


def read_image(path):
  """RGBA uint8 [H, W, 4] (alpha 255 where the file has none); Skip when unreadable."""
  from shared.io import image_io
  try:
    return image_io.read_image_rgba(path)
  except InputError as error:
    raise Skip(str(error).removeprefix(f"{path}: ")) from None


def has_mask(rgba):
  """An alpha that is opaque everywhere (or absent) is no face mask."""
  return bool((rgba[..., 3] < UINT8_MAX).any())


def resize(image, size):
  import cv2
  if image.shape[:2] == (size, size):
    return image
  shrink = size < max(image.shape[:2])
  out = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink
                   else cv2.INTER_LINEAR)
  return out if out.ndim == image.ndim else out[..., None]


# ---------------------------------------------------------------------------
# Sources: each yields (name, loader) where loader() -> (RGBA uint8, [68, 2]
# landmarks in its pixels or None) or raises Skip.


def strip_sources(folder, split, all_views=False):
  """The target views (or all views) of an MGC strip dataset with their skin masks."""
  list_file = folder / f"{split}.txt"
  if not list_file.is_file():
    fail(list_file, f"list file not found (an MGC dataset has {split}.txt)")
  for number, line in enumerate(list_file.read_text().splitlines(), 1):
    parts = line.split()
    if not parts:
      continue
    if len(parts) != LIST_FIELDS:
      yield f"{list_file.name}:{number}", _refuse(f"expected '{'flag subfolder frame'}', "
                                                 f"got {line!r}")
      continue
    _, sub, frame = parts
    for view in (STRIP_PANELS if all_views else (TARGET_VIEW,)):
      suffix = "" if view == TARGET_VIEW else f"#{view}"
      yield f"{sub}/{frame}{suffix}", _strip_loader(folder / sub, frame, view)


def _refuse(reason):
  def loader():
    raise Skip(reason)
  return loader


def _strip_loader(folder, frame, panel):
  def loader():
    strip_path = _find(folder, frame)
    skin_path = _find(folder, frame + SKIN_SUFFIX)
    if strip_path is None:
      raise Skip(f"strip image {folder / frame}.* not found")
    if skin_path is None:
      raise Skip(f"skin strip {folder / (frame + SKIN_SUFFIX)}.* not found")
    strip, skin = read_image(strip_path)[..., :3], read_image(skin_path)[..., :3]
    if strip.shape[:2] != skin.shape[:2]:
      raise Skip(f"strip {strip.shape[1]}x{strip.shape[0]} and skin strip "
                 f"{skin.shape[1]}x{skin.shape[0]} differ")
    width = strip.shape[1]
    if width % STRIP_VIEWS:
      raise Skip(f"strip width {width} is not a multiple of {STRIP_VIEWS}")
    view = slice(panel * width // STRIP_VIEWS, (panel + 1) * width // STRIP_VIEWS)
    alpha = skin[:, view].mean(axis=2, keepdims=True).round().astype(np.uint8)
    return np.concatenate([strip[:, view], alpha], axis=2), _strip_landmarks(folder, frame, panel)
  return loader


def _strip_landmarks(folder, frame, panel):
  """The panel's view of <frame>_lm.txt ([68, 2] pixels), None without a file; Skip if bad."""
  path = folder / (frame + LANDMARK_SUFFIX)
  if not path.is_file():
    return None
  from shared.io.landmark_file import read_landmarks
  try:
    return read_landmarks(path)[PANEL_LANDMARK_VIEW[panel]]
  except InputError as error:
    raise Skip(str(error).removeprefix(f"{path}: ")) from None


def _find(folder, stem):
  for suffix in IMAGE_SUFFIXES:
    path = folder / (stem + suffix)
    if path.is_file():
      return path
  return None


def folder_sources(folder, skin_from_coefficients):
  """Every image under `folder`, with alpha from the file or from coefficients."""
  files = list_images(folder, recursive=True)
  if not files:
    fail(folder, "no images found (" + ", ".join(IMAGE_SUFFIXES) + ")")
  for path in files:
    yield str(path.relative_to(folder)), _image_loader(path, skin_from_coefficients)


def _image_loader(path, skin_from_coefficients):
  def loader():
    image = read_image(path)
    if has_mask(image):
      return image, None
    coeff_file = next((path.with_name(path.stem + s) for s in COEFF_SUFFIXES
                       if path.with_name(path.stem + s).is_file()), None)
    if coeff_file is None:
      raise Skip("no alpha channel and no coefficients file ("
                 + ", ".join(path.stem + s for s in COEFF_SUFFIXES) + ") to project the "
                 "skin region from")
    alpha = skin_from_coefficients(coeff_file, image.shape[:2])
    return np.concatenate([image[..., :3], alpha], axis=2), None
  return loader


class SkinProjector:
  """Alpha from a coefficients file: the face model's skin region rendered.

  Loads TensorFlow and the face model on first use only.
  """

  def __init__(self, face_model_path):
    self.face_model_path = face_model_path
    self.synthesizer = None

  def __call__(self, coeff_file, shape):
    if self.synthesizer is None:
      from shared.model.face_model import load_face_model
      from shared.render.face_image import FaceSynthesizer
      self.synthesizer = FaceSynthesizer(load_face_model(self.face_model_path))
    if shape != (self.synthesizer.camera.image_size,) * 2:
      size = self.synthesizer.camera.image_size
      raise Skip(f"no alpha channel; coefficients project to {size}x{size} crops but the "
                 f"image is {shape[1]}x{shape[0]}")
    coeffs = load_coefficients(coeff_file, self.synthesizer.layout)
    from gcn_face.coarse import projected_skin_mask
    mask = projected_skin_mask(self.synthesizer, coeffs).numpy()[0]
    return (mask * UINT8_MAX).astype(np.uint8)


def load_coefficients(path, layout):
  """One image's coefficients from an npz -> `Coefficients` with batch 1."""
  import tensorflow as tf
  from shared.model.coeffs import Coefficients
  try:
    with np.load(path, allow_pickle=False) as data:
      arrays = {k: data[k] for k in data.files}
  except Exception as error:  # noqa: BLE001 - any parse failure is a bad file.
    raise Skip(f"{path.name}: not a readable .npz ({type(error).__name__})") from None
  vector_key = next((k for k in COEFF_VECTOR_KEYS if k in arrays), None)
  if vector_key is not None:
    vector = np.asarray(arrays[vector_key], np.float32).reshape(-1)
    if vector.size != layout.size:
      raise Skip(f"{path.name}: '{vector_key}' has {vector.size} values, the face model's "
                 f"layout needs {layout.size}")
    return layout.split(tf.constant(vector[None]))
  parts = []
  for name, size in zip(Coefficients._fields, layout.sizes):
    if name not in arrays:
      raise Skip(f"{path.name}: no '{name}' array (nor a 'coeffs' vector)")
    part = np.asarray(arrays[name], np.float32).reshape(-1)
    if part.size != size:
      raise Skip(f"{path.name}: '{name}' has {part.size} values, expected {size}")
    parts.append(tf.constant(part[None]))
  return Coefficients(*parts)


# ---------------------------------------------------------------------------


def pack(input_dir, output, size=None, split="train", dtype="uint8", face_model=None,
         all_views=False):
  """Packs `input_dir` into `output`; returns (count, skipped [(name, reason)]).

  Raises:
    InputError: missing input, mixed sizes without `size`, nothing packable.
  """
  from gcn_face.binfile import BinWriter
  folder = Path(input_dir)
  if not folder.is_dir():
    fail(folder, "input folder not found")
  strips = (folder / "train.txt").is_file() or (folder / "test.txt").is_file()
  sources = (strip_sources(folder, split, all_views) if strips else
             folder_sources(folder, SkinProjector(face_model)))
  skipped, first = [], None
  store = np.dtype(np.uint8 if dtype == "uint8" else np.float32)
  with _LazyWriter(output, store, BinWriter) as lazy:
    for name, loader in sources:
      try:
        record, landmarks = loader()
      except Skip as reason:
        skipped.append((name, str(reason)))
        continue
      if size is not None:
        if landmarks is not None:  # Pixel centres at +0.5: coordinates scale exactly.
          landmarks = landmarks * (np.array([size, size]) / np.array(record.shape[1::-1]))
        record = resize(record, size)
      elif first is not None and record.shape != first[1]:
        fail(output, f"images of mixed sizes: {name} is {record.shape[1]}x{record.shape[0]} "
             f"but {first[0]} is {first[1][1]}x{first[1][0]}; pass --size N to resize all")
      if first is None:
        first = (name, record.shape)
      if store == np.float32:
        record = record.astype(np.float32) / UINT8_MAX
      lazy.append(record, name, landmarks)
    if lazy.writer is None:
      reason = f"; first: {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
      fail(folder, f"no image could be packed ({len(skipped)} refused){reason}")
    lazy.writer.metadata.update(skipped=skipped, source=str(folder.resolve()),
                                split=split if strips else None)
    count = len(lazy.writer.names)
  return count, skipped


class _LazyWriter:
  """Opens the `BinWriter` once the first record fixes the shape."""

  def __init__(self, path, dtype, writer_class):
    self.path, self.dtype, self.writer_class = path, dtype, writer_class
    self.writer = None

  def __enter__(self):
    return self

  def append(self, record, name, landmarks=None):
    if self.writer is None:
      self.writer = self.writer_class(self.path, *record.shape, dtype=self.dtype).__enter__()
    self.writer.append(record, name, landmarks)

  def __exit__(self, kind, value, traceback):
    if self.writer is not None:
      return self.writer.__exit__(kind, value, traceback)
    return False


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--input", required=True, help="folder of images or an MGC strip dataset")
  parser.add_argument("--output", required=True, help="the .bin file to write")
  parser.add_argument("--size", type=int, default=None,
                      help="resize every image to SIZE x SIZE (default: keep; sizes must match)")
  parser.add_argument("--split", default="train",
                      help="strip datasets: which list to pack (train or test)")
  parser.add_argument("--all-views", action="store_true",
                      help="strip datasets: pack the source views too, not only the target")
  parser.add_argument("--dtype", choices=("uint8", "float32"), default="uint8",
                      help="record type: uint8 RGBA (4x smaller) or float32 in [0, 1]")
  parser.add_argument("--face-model", default=None,
                      help="face model for masks from coefficients (default: ICT)")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  if args.size is not None and args.size < 1:
    return report(f"--size must be positive, got {args.size}")
  start = time.perf_counter()
  try:
    check_output_file(args.output)
    count, skipped = pack(args.input, args.output, args.size, args.split, args.dtype,
                          args.face_model, args.all_views)
  except InputError as error:
    return report(error)
  from gcn_face.binfile import BinReader
  reader = BinReader(args.output)
  print(f"wrote {args.output}: {count} records of {reader.height}x{reader.width}x"
        f"{reader.channels} {reader.dtype.name} ({time.perf_counter() - start:.1f} s)")
  if skipped:
    print(f"skipped {len(skipped)} input(s):")
    for name, reason in skipped:
      print(f"  {name}: {reason}")
  return 0


if __name__ == "__main__":
  from shared import quiet
  quiet.setup()  # Before TensorFlow is imported; FACE3D_VERBOSE=1 keeps library logs.
  sys.exit(main())
