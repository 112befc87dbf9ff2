"""Who is who in a video (`shared.photo.face_identity`): face descriptors, the tracks
grouped into persons, and the video pipeline's `person` numbers."""

import json

import cv2
import numpy as np
import pytest
import skimage.data

from shared.errors import InputError
from shared.fit import fitter as fitting
from shared.io import video_io
from shared.photo import face_identity, reconstruct
from shared.photo.landmarks import detect_faces

FPS = 25.0


def _unit(seed):
  vector = np.random.default_rng(seed).normal(size=face_identity.DESCRIPTOR_SIZE)
  return vector / np.linalg.norm(vector)


def test_group_tracks_merges_near_tracks_but_never_two_seen_together():
  a, b = _unit(0), _unit(1)          # about 1.4 apart: two people
  near = 0.2 / np.sqrt(face_identity.DESCRIPTOR_SIZE)       # 0.2 apart in all
  descriptors = {3: [a, a + near], 5: [a - near], 7: [b], 9: [a + near], 11: [b - near]}
  persons = face_identity.group_tracks(descriptors, together={(3, 9), (9, 3)})
  # 3 and 5 are one person; 9 is as near but was seen beside 3; 7 and 11 are the other.
  assert persons == {3: 0, 5: 0, 7: 1, 9: 2, 11: 1}
  # The threshold: a pair 0.4 apart merges at 0.41, not at 0.39.
  pair = {0: [a], 1: [a + 2 * near]}
  assert face_identity.group_tracks(pair, distance=0.41) == {0: 0, 1: 0}
  assert face_identity.group_tracks(pair, distance=0.39) == {0: 0, 1: 1}
  assert face_identity.group_tracks({}) == {}


def test_group_tracks_links_groups_by_their_mean_distance():
  """Average linkage: a chain 0 - 1 - 2 of steps 0.5 (ends 1.0 apart) does not become one
  person at 0.6, though each step is under it."""
  a, b = _unit(2), _unit(3)
  step = 0.5 * (b - a) / np.linalg.norm(b - a)
  chain = {0: [a], 1: [a + step], 2: [a + 2 * step]}
  persons = face_identity.group_tracks(chain, distance=0.6)
  assert persons[0] != persons[2] and len(set(persons.values())) == 2


def test_main_person_keeps_the_faces_most_of_them_share():
  a, b = _unit(4), _unit(5)
  near = 0.2 / np.sqrt(face_identity.DESCRIPTOR_SIZE)
  assert face_identity.main_person([b, a, a + near, b + near, a - near]) == [1, 2, 4]
  assert face_identity.main_person([b, a]) == [0]           # a tie: the first face's person
  assert face_identity.main_person([]) == []


def test_track_sampler_spaces_the_described_faces():
  sampler = face_identity.TrackSampler(face_identity.PersonConfig(), FPS)   # 3, 1 s apart
  wanted = [frame for frame in (0, 10, 25, 30, 50, 80) if sampler.wants(4, frame)]
  assert wanted == [0, 25, 50]
  assert sampler.wants(6, 80)             # each track its own


def test_descriptors_tell_the_astronaut_from_the_cameraman():
  describe = face_identity.FaceDescriber()
  astronaut = skimage.data.astronaut()
  mirrored = np.ascontiguousarray(astronaut[:, ::-1])
  cameraman = np.ascontiguousarray(np.repeat(skimage.data.camera()[..., None], 3, axis=-1))
  vectors = [describe(image, detect_faces(image)[0].landmarks68)
             for image in (astronaut, mirrored, cameraman)]
  assert all(v.shape == (face_identity.DESCRIPTOR_SIZE,) for v in vectors)
  same = np.linalg.norm(vectors[0] - vectors[1])
  other = min(np.linalg.norm(vectors[0] - vectors[2]), np.linalg.norm(vectors[1] - vectors[2]))
  limit = face_identity.PersonConfig().same_person_distance
  assert same < limit - 0.2 and other > limit + 0.1       # measured 0.21 and 0.83


def test_without_the_descriptor_model_the_tracks_stay_apart(monkeypatch):
  def missing(self, image, landmarks):
    raise InputError("dlib not installed")
  monkeypatch.setattr(face_identity.FaceDescriber, "__call__", missing)
  people = face_identity.PersonGrouping(face_identity.PersonConfig(), FPS)
  notes = []
  entries = [{"face": 0, "track": 0}, {"face": 1, "track": 1}]
  for frame in range(3):
    people.add(frame, None, [(entry, None, np.zeros((68, 2))) for entry in entries],
               notes.append)
  rows = [{"track": 0}, {"track": 1}]
  assert people.assign(rows) is None
  assert [row["person"] for row in rows] == [-1, -1] and entries[0]["person"] == -1
  assert notes == ["note: dlib not installed; the video's tracks are not grouped into persons"]


@pytest.fixture(scope="module")
def shots_clip(tmp_path_factory):
  """The astronaut (3 frames), a cut to coffee (no face, 2), her mirror image (3), then the
  cameraman (3): three tracks, two persons."""
  astronaut = skimage.data.astronaut()
  coffee = np.zeros_like(astronaut)
  coffee[:400, :512] = skimage.data.coffee()[:400, :512]
  cameraman = np.repeat(skimage.data.camera()[..., None], 3, axis=-1)
  shots = [astronaut] * 3 + [coffee] * 2 + [astronaut[:, ::-1]] * 3 + [cameraman] * 3
  path = tmp_path_factory.mktemp("persons") / "shots.mp4"
  with video_io.video_writer(path, FPS, (512, 512)) as write:
    for frame in shots:
      write(np.ascontiguousarray(frame))
  return path


def test_a_person_seen_again_after_a_cut_keeps_the_number(shots_clip, tmp_path, ict_model):
  out = tmp_path / "out"
  reconstruct.reconstruct_photos(shots_clip, ict_model, out,
                                 fit_config=fitting.FitConfig(landmark_steps=10,
                                                              photometric_steps=0),
                                 log=lambda line: None, progress=False, frame_files=False)
  with np.load(out / "shots_tracks.npz") as tracks:
    np.testing.assert_array_equal(tracks["frame"], [0, 1, 2, 5, 6, 7, 8, 9, 10])
    np.testing.assert_array_equal(tracks["track"], [0, 0, 0, 1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(tracks["person"], [0, 0, 0, 0, 0, 0, 1, 1, 1])
  summary = json.loads((out / "summary.json").read_text())["results"][0]
  assert summary["video"]["persons"] == 2
  faces = [face for frame in summary["frames"] for face in frame["faces"]]
  assert [face["person"] for face in faces] == [0] * 6 + [1] * 3


def test_same_person_leaves_out_a_photo_of_someone_else(tmp_path, ict_model):
  """`--same-person` over the astronaut, her mirror image, a grey copy and the cameraman:
  the identity is fitted to her three faces; the cameraman is still reconstructed."""
  astronaut = skimage.data.astronaut()
  photos = {"a": astronaut, "b": astronaut[:, ::-1],
            "c": np.repeat(cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=-1),
            "d": np.repeat(skimage.data.camera()[..., None], 3, axis=-1)}
  for name, image in photos.items():
    cv2.imwrite(str(tmp_path / f"{name}.png"), np.ascontiguousarray(image[..., ::-1]))
  lines = []
  summary = reconstruct.reconstruct_photos(tmp_path, ict_model, tmp_path / "out",
                                           fit_config=fitting.FitConfig(landmark_steps=10,
                                                                        photometric_steps=0),
                                           log=lines.append, progress=False, same_person=True)
  assert summary["same_person"] == {"faces_pooled": 3, "faces_left_out": 1}
  assert lines[0] == ("same person: one identity fitted to 3 face(s), held in every fit; "
                      "1 face(s) that look like another person left out")
  assert summary["faces"] == 4


def test_same_person_takes_the_persons_face_not_the_largest(tmp_path, ict_model):
  """`--same-person` over three photos of the astronaut and one where the cameraman's face is
  larger than hers: that photo's reconstruction is her face (the one nearest the pooled
  faces' descriptor), not the largest one."""
  astronaut = skimage.data.astronaut()
  camera = np.repeat(skimage.data.camera()[..., None], 3, axis=-1)
  big, small = 600, 300
  both = np.full((big, big + small, 3), 128, np.uint8)
  both[:, :big] = cv2.resize(camera, (big, big), interpolation=cv2.INTER_AREA)
  both[:small, big:] = cv2.resize(astronaut, (small, small), interpolation=cv2.INTER_AREA)
  photos = {"a": astronaut, "b": astronaut[:, ::-1],
            "c": np.repeat(cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=-1),
            "d": both}
  for name, image in photos.items():
    cv2.imwrite(str(tmp_path / f"{name}.png"), np.ascontiguousarray(image[..., ::-1]))
  faces = detect_faces(both)
  assert len(faces) == 2 and faces[0].box[0] < big <= faces[1].box[0]   # his is the largest
  summary = reconstruct.reconstruct_photos(tmp_path, ict_model, tmp_path / "out",
                                           fit_config=fitting.FitConfig(landmark_steps=10,
                                                                        photometric_steps=0),
                                           log=lambda line: None, progress=False,
                                           same_person=True)
  entry = next(r for r in summary["results"] if r["image"].endswith("d.png"))
  assert entry["other_faces"] == 1 and len(entry["faces"]) == 1
  assert entry["faces"][0]["box"][0] >= big             # her face, on the right
  assert entry["person_distance"] < face_identity.PersonConfig().same_person_distance
