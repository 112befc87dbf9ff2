"""The `.bin` image pack: aligned face crops with an alpha (skin) channel.

3D-Face-GCNs' `create_bin.py` wrote raw float32 [224, 224, 4] records with no
header, so one failed image silently shifted every later record.  This format
keeps the single-file, random-access idea and adds a header, a record index
and a trailer that names every record:

    offset  size  field (little-endian)
    0       8     magic b"F3DBIN\\0\\0"
    8       4     version (uint32, `VERSION`)
    12      4     dtype code (uint32): 1 = uint8 in [0, 255], 2 = float32 in [0, 1]
    16      8     count (uint64): number of records
    24      4     height (uint32)
    28      4     width (uint32)
    32      4     channels (uint32): 4 = RGBA (alpha 1 / 255 = face or skin)
    36      4     reserved (0)
    40      8     data offset (uint64): first record, `HEADER_SIZE`
    48      8     index offset (uint64): the record index
    56      8     trailer length (uint64): UTF-8 JSON after the index
    64      ...   records, each C-order [height, width, channels] of dtype
    index   16*N  per record: offset (uint64), CRC-32 of its bytes (uint32), 0 (uint32)
    trailer       JSON {"names": [...], "skipped": [[name, reason], ...], ...}

The trailer may also hold "landmarks": per record 68 (x, y) points in the
record's pixels (a list of 68 pairs) or null, e.g. the strip dataset's
detector-like `_lm.txt` landmarks that the GCN's landmark refit of the
coarse stage (`GCNConfig.coarse_fit_steps`) needs.  The key is optional, so
files written before it existed read as before (no landmarks) and the
version stays 1.

RGB is stored as is (not the original's [-1, 1]); uint8 records are 4x
smaller than the original's float32.  The file must be exactly as long as
the header says; anything else is refused with one line.

`BinWriter` writes atomically (temporary file, then rename).  `BinReader`
memory-maps the records and gives `len`, indexing and a `tf.data` pipeline
with shuffling and per-worker sharding.
"""

import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np

from shared.errors import fail
from shared.io.fileio import atomic_path

MAGIC = b"F3DBIN\0\0"
VERSION = 1
HEADER = struct.Struct("<8sIIQIIIIQQQ")
HEADER_SIZE = 64
INDEX_ENTRY = np.dtype([("offset", "<u8"), ("crc32", "<u4"), ("pad", "<u4")])
DTYPES = {1: np.dtype(np.uint8), 2: np.dtype("<f4")}
DTYPE_CODES = {np.dtype(np.uint8): 1, np.dtype("<f4"): 2}
DTYPE_SCALE = {1: 255.0, 2: 1.0}
RGB_CHANNELS = 3
# The original headerless float32 record: [224, 224, 4] float32.
LEGACY_RECORD_BYTES = 224 * 224 * 4 * 4
CREATE_HINT = "re-create it with tools/create_bin.py"
LANDMARK_KEY = "landmarks"   # Optional trailer list: per record [68, 2] pixels or null.
NUM_LANDMARKS = 68

assert HEADER.size == HEADER_SIZE


def record_bytes(height, width, channels, dtype):
  return int(height) * int(width) * int(channels) * np.dtype(dtype).itemsize


class BinWriter:
  """Writes records to a temporary file; `close()` finishes and renames it.

  Use as a context manager: on an exception nothing is left behind.

    with BinWriter(path, 224, 224, 4, np.uint8) as writer:
      writer.append(rgba, name)
  """

  def __init__(self, path, height, width, channels, dtype=np.uint8):
    self.path = Path(path)
    self.shape = (int(height), int(width), int(channels))
    self.dtype = np.dtype(dtype)
    if self.dtype not in DTYPE_CODES:
      raise ValueError(f"dtype must be uint8 or float32, got {self.dtype}")
    self.names, self.entries = [], []
    self.landmarks = []
    self.metadata = {}
    self._atomic = None
    self._file = None

  def __enter__(self):
    self._atomic = atomic_path(self.path)
    tmp = self._atomic.__enter__()
    self._file = open(tmp, "wb")
    self._file.write(b"\0" * HEADER_SIZE)
    return self

  def append(self, record, name, landmarks=None):
    """Adds one [H, W, C] record (dtype and shape must match the file), with
    optional [68, 2] landmarks in its pixels."""
    record = np.ascontiguousarray(record)
    if record.shape != self.shape or record.dtype != self.dtype:
      raise ValueError(f"{name}: record {record.shape} {record.dtype} does not match the file's "
                       f"{self.shape} {self.dtype}")
    if landmarks is not None:
      landmarks = np.asarray(landmarks, np.float64)
      if landmarks.shape != (NUM_LANDMARKS, 2) or not np.isfinite(landmarks).all():
        raise ValueError(f"{name}: landmarks must be {NUM_LANDMARKS} finite (x, y) points, got "
                         f"shape {landmarks.shape}")
      landmarks = [[round(float(x), 3), round(float(y), 3)] for x, y in landmarks]
    self.landmarks.append(landmarks)
    data = record.astype(self.dtype.newbyteorder("<"), copy=False).tobytes()
    self.entries.append((self._file.tell(), zlib.crc32(data)))
    self._file.write(data)
    self.names.append(str(name))

  def __exit__(self, kind, value, traceback):
    error = value
    if kind is None:
      try:
        self._finish()
      except BaseException as failure:  # Leave no file behind, then re-raise.
        error = failure
    self._file.close()
    if error is None:
      self._atomic.__exit__(None, None, None)  # Rename into place.
      return False
    self._atomic.__exit__(type(error), error, error.__traceback__)  # Remove the temporary.
    if error is not value:
      raise error
    return False

  def _finish(self):
    index = np.zeros(len(self.entries), INDEX_ENTRY)
    if self.entries:
      index["offset"], index["crc32"] = zip(*self.entries)
    index_offset = self._file.tell()
    self._file.write(index.tobytes())
    fields = {"names": self.names, **self.metadata}
    if any(points is not None for points in self.landmarks):
      fields[LANDMARK_KEY] = self.landmarks
    trailer = json.dumps(fields).encode("utf-8")
    self._file.write(trailer)
    header = HEADER.pack(MAGIC, VERSION, DTYPE_CODES[self.dtype], len(self.entries),
                         *self.shape, 0, HEADER_SIZE, index_offset, len(trailer))
    self._file.seek(0)
    self._file.write(header)
    self._file.flush()


def write_bin(path, records, names, metadata=None, landmarks=None):
  """Writes a list of equal-shape [H, W, C] records in one go (optional
  per-record [68, 2] landmarks or None)."""
  records = [np.asarray(r) for r in records]
  first = records[0]
  landmarks = [None] * len(records) if landmarks is None else landmarks
  with BinWriter(path, *first.shape, dtype=first.dtype) as writer:
    writer.metadata.update(metadata or {})
    for record, name, points in zip(records, names, landmarks):
      writer.append(record, name, points)


class BinReader:
  """Random access to a `.bin` file.

  Attributes:
    path, count, height, width, channels, dtype (numpy), names (list of str),
    skipped (list of (name, reason) recorded by create_bin), metadata (dict),
    landmarks ([count, 68, 2] float32 pixels, NaN for a record without; None
    when the file has none).
  """

  def __init__(self, path):
    self.path = Path(path)
    if not self.path.is_file():
      fail(self.path, "not found")
    size = self.path.stat().st_size
    with open(self.path, "rb") as f:
      head = f.read(HEADER_SIZE)
      self._check_magic(head, size)
      if len(head) < HEADER_SIZE:
        fail(self.path, f"truncated: {size} bytes, shorter than the {HEADER_SIZE}-byte header")
      (_, version, code, count, height, width, channels, _, data_offset, index_offset,
       trailer_length) = HEADER.unpack(head)
      if version != VERSION:
        fail(self.path, f".bin version {version}, this code reads version {VERSION}; "
             + CREATE_HINT)
      if code not in DTYPES:
        fail(self.path, f"unknown dtype code {code}; {CREATE_HINT}")
      self.count, self.height, self.width, self.channels = count, height, width, channels
      self.dtype = DTYPES[code]
      self.scale = DTYPE_SCALE[code]
      self.record_bytes = record_bytes(height, width, channels, self.dtype)
      expected = index_offset + count * INDEX_ENTRY.itemsize + trailer_length
      if (data_offset != HEADER_SIZE or
          index_offset != data_offset + count * self.record_bytes):
        fail(self.path, f"inconsistent header (data at {data_offset}, index at {index_offset} "
             f"for {count} records of {self.record_bytes} bytes); {CREATE_HINT}")
      if size != expected:
        fail(self.path, f"truncated or damaged: {size} bytes, the header promises {expected} "
             f"({count} records of {height}x{width}x{channels} {self.dtype.name}); "
             + CREATE_HINT)
      f.seek(index_offset)
      self.index = np.frombuffer(f.read(count * INDEX_ENTRY.itemsize), INDEX_ENTRY)
      try:
        self.metadata = json.loads(f.read(trailer_length).decode("utf-8"))
      except ValueError:
        fail(self.path, f"damaged trailer (not JSON); {CREATE_HINT}")
    want = data_offset + np.arange(count, dtype=np.uint64) * np.uint64(self.record_bytes)
    if not np.array_equal(self.index["offset"], want):
      fail(self.path, f"damaged record index; {CREATE_HINT}")
    self.names = list(self.metadata.get("names", []))
    if len(self.names) != count:
      fail(self.path, f"trailer names {len(self.names)} records, the header {count}; "
           + CREATE_HINT)
    self.skipped = [tuple(s) for s in self.metadata.get("skipped", [])]
    self.landmarks = self._read_landmarks()
    self._records = (np.memmap(self.path, self.dtype.newbyteorder("<"), "r", data_offset,
                               (count, height, width, channels)) if count else
                     np.zeros((0, height, width, channels), self.dtype))

  def _read_landmarks(self):
    """The trailer's optional landmarks -> [count, 68, 2] float32 (NaN: none) or None."""
    entries = self.metadata.get(LANDMARK_KEY)
    if entries is None:
      return None
    if not isinstance(entries, list) or len(entries) != self.count:
      found = len(entries) if isinstance(entries, list) else "no list of"
      fail(self.path, f"damaged trailer: landmarks for {found} records, the header has "
           f"{self.count}; {CREATE_HINT}")
    out = np.full((self.count, NUM_LANDMARKS, 2), np.nan, np.float32)
    for i, points in enumerate(entries):
      if points is None:
        continue
      try:
        points = np.asarray(points, np.float32)
      except (TypeError, ValueError):
        points = None
      if points is None or points.shape != (NUM_LANDMARKS, 2) or not np.isfinite(points).all():
        fail(self.path, f"damaged trailer: record {i} ({self.names[i]}) landmarks are not "
             f"{NUM_LANDMARKS} finite (x, y) points; {CREATE_HINT}")
      out[i] = points
    return out

  def has_landmarks(self, indices=None):
    """Whether every record (or every one of `indices`) has landmarks."""
    if self.landmarks is None:
      return False
    rows = self.landmarks if indices is None else self.landmarks[np.asarray(indices)]
    return bool(np.isfinite(rows).all())

  def _check_magic(self, head, size):
    if head[:len(MAGIC)] == MAGIC:
      return
    if size and size % LEGACY_RECORD_BYTES == 0:
      fail(self.path, "no F3DBIN header: this looks like a headerless 3D-Face-GCNs float32 "
           f"file; {CREATE_HINT}")
    fail(self.path, f"not a face3d .bin file (magic {head[:len(MAGIC)]!r}, expected "
         f"{MAGIC!r})")

  def __len__(self):
    return self.count

  def __getitem__(self, i):
    """Record `i` as stored: [H, W, C] numpy array of `dtype` (a copy)."""
    if not -self.count <= i < self.count:
      raise IndexError(f"record {i} out of range for {self.count} records")
    return np.array(self._records[i])

  def image_alpha(self, i):
    """Record `i` as float32 (rgb [H, W, 3], alpha [H, W, 1]) in [0, 1]."""
    record = self[i].astype(np.float32) / self.scale
    return record[..., :RGB_CHANNELS], record[..., RGB_CHANNELS:RGB_CHANNELS + 1]

  def verify(self):
    """Checks every record's CRC-32; raises `InputError` on the first mismatch."""
    for i in range(self.count):
      if zlib.crc32(self._records[i].tobytes()) != int(self.index["crc32"][i]):
        fail(self.path, f"record {i} ({self.names[i]}) is damaged (CRC mismatch); "
             + CREATE_HINT)

  def require_size(self, size):
    """Raises `InputError` unless the records are `size` x `size` RGBA."""
    if (self.height, self.width) != (size, size) or self.channels != RGB_CHANNELS + 1:
      fail(self.path, f"records are {self.height}x{self.width}x{self.channels}, this job needs "
           f"{size}x{size}x4 (RGBA); re-create it with tools/create_bin.py --size {size}")

  def dataset(self, batch_size=None, shuffle=True, seed=None, num_workers=1, worker_index=0,
              repeat=False, drop_remainder=False):
    """A `tf.data` pipeline of dicts {index, image [H, W, 3], alpha [H, W, 1]}
    and, when the file has landmarks, landmarks [68, 2] (NaN where a record has none).

    Indices are sharded first (`num_workers`, `worker_index`), then shuffled
    (a full shuffle of the indices, reshuffled each epoch), and records are
    read from the memory map in parallel.

    Args:
      batch_size: None for single records.
      shuffle, seed: index shuffling.
      num_workers, worker_index: this worker's shard of the records.
      repeat: cycle forever.
      drop_remainder: for static batch shapes.
    """
    import tensorflow as tf
    if not 0 <= worker_index < num_workers:
      raise ValueError(f"worker_index {worker_index} not in [0, {num_workers})")
    shape = (self.height, self.width)

    def read(i):
      return self.image_alpha(int(i))

    landmarks = None if self.landmarks is None else tf.constant(self.landmarks)

    def load(i):
      image, alpha = tf.numpy_function(read, [i], (tf.float32, tf.float32), stateful=False)
      image.set_shape(shape + (RGB_CHANNELS,))
      alpha.set_shape(shape + (self.channels - RGB_CHANNELS,))
      out = {"index": i, "image": image, "alpha": alpha}
      if landmarks is not None:
        out["landmarks"] = tf.gather(landmarks, i)
      return out

    ds = tf.data.Dataset.range(self.count).shard(num_workers, worker_index)
    if shuffle:
      ds = ds.shuffle(max(self.count, 1), seed=seed, reshuffle_each_iteration=True)
    if repeat:
      ds = ds.repeat()
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if batch_size:
      ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


def record_stem(name, index):
  """A file-name stem for a .bin record name: 'id7/000#2.png' -> 'id7_000_2'."""
  stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(Path(name).with_suffix(""))).strip("._")
  return stem or f"record{index:05d}"
