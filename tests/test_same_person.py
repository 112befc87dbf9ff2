"""Tests for the photo pipeline's one-person mode (`reconstruct_photos(same_person=True)`,
`main.py --mode test --same-person`): one identity fitted jointly over photos and video
frames, then held in every fit."""

import cv2
import numpy as np
import pytest

from mgc_helpers import run_main
from photo_helpers import shaded_render
from shared.fit import fitter as fitting
from shared.io import video_io
from shared.photo import reconstruct

FIT = fitting.FitConfig(landmark_steps=60, photometric_steps=4)   # few steps: speed
SIZE = 320


@pytest.fixture(scope="module")
def one_person(tmp_path_factory, ict_model):
  """A folder of one person: two photos, a two-frame video, and a photo where a smaller
  second face (another person) stands beside them; run with `same_person`."""
  folder = tmp_path_factory.mktemp("person")
  cv2.imwrite(str(folder / "a.png"), shaded_render(ict_model, 0.0, 1, SIZE, 1)[..., ::-1])
  cv2.imwrite(str(folder / "b.png"), shaded_render(ict_model, 30.0, 1, SIZE, 2)[..., ::-1])
  with video_io.video_writer(folder / "clip.mp4", 5.0, (SIZE, SIZE)) as write:
    for k, yaw in enumerate((-15.0, 15.0)):
      write(shaded_render(ict_model, yaw, 1, SIZE, 3 + k))
  other = cv2.resize(shaded_render(ict_model, -20.0, 9, SIZE), (SIZE * 2 // 3, SIZE * 2 // 3))
  beside = np.full((SIZE, SIZE, 3), 128, np.uint8)
  beside[:other.shape[0], :other.shape[1]] = other
  cv2.imwrite(str(folder / "pair.png"),
              np.concatenate([shaded_render(ict_model, -20.0, 1, SIZE, 5), beside], 1)[..., ::-1])
  out = tmp_path_factory.mktemp("out")
  lines = []
  summary = reconstruct.reconstruct_photos(folder, ict_model, out, fit_config=FIT,
                                           log=lines.append, progress=False, same_person=True)
  return out, summary, lines


def test_one_identity_is_fitted_over_photos_and_frames_and_held(one_person):
  out, summary, lines = one_person
  assert summary["same_person"] == {"faces_pooled": 5, "faces_left_out": 0}
  assert lines[0] == "same person: one identity fitted to 5 face(s), held in every fit"
  files = sorted(out.glob("*_coeffs.npz"))
  assert len(files) == 5                        # a, b, two frames, the pair's larger face
  identities = np.stack([np.load(f)["identity"] for f in files])
  np.testing.assert_array_equal(identities, np.tile(identities[:1], [len(files), 1]))
  expressions = np.stack([np.load(f)["expression"] for f in files])
  assert np.ptp(expressions, axis=0).max() > 0.05          # expression stays per image


def test_only_the_largest_face_of_an_image_is_kept(one_person):
  _, summary, _ = one_person
  pair = next(e for e in summary["results"] if e["image"].endswith("pair.png"))
  assert len(pair["faces"]) == 1 and pair["other_faces"] == 1
  assert pair["faces"][0]["box"][2] <= SIZE + 10          # the left face, the larger
  assert all("other_faces" not in e for e in summary["results"] if e is not pair)


def test_keyframes_spread_over_photos_and_the_frames_read(tmp_path):
  paths = []
  for name, level in (("p1.png", 200), ("p2.png", 250)):
    cv2.imwrite(str(tmp_path / name), np.full((40, 60, 3), level, np.uint8))
    paths.append(tmp_path / name)
  clip = tmp_path / "v.mp4"
  with video_io.video_writer(clip, 5.0, (64, 48)) as write:
    for k in range(7):
      write(np.full((48, 64, 3), 20 * k, np.uint8))
  files = [paths[0], clip, paths[1]]
  # Slots: p1, frames 0 2 4 6 (every 2nd), p2; three evenly spaced: p1, frame 2, p2.
  levels = [round(float(image.mean())) for image in reconstruct.keyframes(files, 2, 3)]
  assert len(levels) == 3
  assert abs(levels[0] - 200) <= 2 and abs(levels[1] - 40) <= 3 and abs(levels[2] - 250) <= 2
  broken = tmp_path / "broken.mp4"
  broken.write_bytes(b"not a video" * 20)
  assert len(list(reconstruct.keyframes([broken] + files, 1, 16))) == 9


def test_same_person_on_aligned_crops_is_refused(tmp_path, capsys):
  cv2.imwrite(str(tmp_path / "crop.png"), np.full((224, 224, 3), 128, np.uint8))
  code, _, err = run_main(["--model", "mgc", "--mode", "test", "--input",
                           str(tmp_path / "crop.png"), "--output", str(tmp_path / "o"),
                           "--same-person"], capsys)
  errors = [line for line in err.splitlines() if line.startswith("error:")]
  assert code == 2 and len(errors) == 1 and "--same-person" in errors[0]
  assert not (tmp_path / "o").exists()
