"""Faces followed through video frames and smoothed over time (`shared.photo.tracking`), and
the photo pipeline's use of it on a video."""

import json

import cv2
import numpy as np
import pytest
import skimage.data

from mgc_helpers import run_main
from shared.fit import fitter as fitting
from shared.io import video_io
from shared.photo import reconstruct, track_plot, tracking
from shared.photo.landmarks import Face

FPS = 25.0
SMOOTH = tracking.SmoothingConfig()       # the default: 0.12 s, local parabola
STILL_FRAMES = 12
STILL_NOISE = 6.0                          # grey levels


def _reference_weights(offsets, sigma, degree):
  """The value at 0 of numpy's weighted polynomial fit, as weights: fit each unit vector."""
  # polyfit minimises sum (w_i r_i)^2, so w = sqrt of the Gaussian weight.
  w = np.sqrt(np.exp(-0.5 * (np.asarray(offsets, np.float64) / sigma) ** 2))
  eye = np.eye(len(offsets))
  return np.array([np.polyval(np.polyfit(offsets, eye[i], degree, w=w), 0.0)
                   for i in range(len(offsets))])


@pytest.mark.parametrize("offsets,degree", [
    ([-5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5], 1),
    ([-5, -3, -1, 0, 2], 2),
    ([0, 1, 2, 3, 4, 5], 1),       # the clip's first frame: the window is one-sided
    ([-2, -1, 0], 0)])
def test_local_fit_weights_match_numpy_polyfit(offsets, degree):
  weights = tracking.local_fit_weights(offsets, 2.0, degree)
  np.testing.assert_allclose(weights, _reference_weights(offsets, 2.0, degree), atol=1e-10)
  assert weights.sum() == pytest.approx(1.0)


def test_local_fit_weights_keep_lines_and_lower_the_degree_for_few_samples():
  offsets = np.array([0.0, 1, 2, 3, 5])
  line = 3.0 - 0.7 * offsets
  assert tracking.local_fit_weights(offsets, 1.5, 1) @ line == pytest.approx(3.0)
  np.testing.assert_allclose(tracking.local_fit_weights([0.0], 2.0, 1), [1.0])
  np.testing.assert_allclose(tracking.local_fit_weights([-1.0, 0.0], 2.0, 2), [0.0, 1.0],
                             atol=1e-12)   # two samples: the line through both


def _face(centre, size=100.0, landmarks=None, dense=True):
  x, y = centre
  box = np.array([x - size / 2, y - size / 2, x + size / 2, y + size / 2], np.float32)
  if landmarks is None:
    landmarks = np.tile(np.array(centre, np.float32), (68, 1))
  points = np.tile(np.r_[centre, 0.0].astype(np.float32), (468, 1)) if dense else None
  return Face(box=box, landmarks68=np.asarray(landmarks, np.float32), score=1.0,
              detector="blazeface", dense=points, points68="mesh" if dense else "dlib")


def test_tracks_link_faces_by_overlap_and_start_new_ones():
  tracks = tracking.FaceTracks(SMOOTH, FPS)
  assert tracks.radius == 8               # ceil(2.5 x 0.12 s x 25 fps)
  assert tracks.add(0, [_face((100, 100)), _face((400, 100))]) == [0, 1]
  # Listed the other way round, moved a little: each keeps its track.
  assert tracks.add(1, [_face((405, 102)), _face((103, 98))]) == [1, 0]
  # A face far from both, and a face of another kind of points where track 0 is: new tracks.
  assert tracks.add(2, [_face((250, 400)), _face((104, 99), dense=False)]) == [2, 3]
  # Track 1 missed frame 2 and goes on in frame 3; two faces cannot share one track.
  assert tracks.add(3, [_face((410, 101)), _face((430, 115))]) == [1, 4]
  # Past the window, a face is not linked to a track last seen before it.
  assert tracks.add(3 + tracks.radius + 3, [_face((250, 400))]) == [5]


def test_box_shift_and_the_predicted_box():
  shift, ratio = tracking.box_shift([0, 0, 10, 40], [[30, 0, 40, 40], [0, 0, 20, 80]])
  np.testing.assert_allclose(shift, [30 / 20, np.hypot(5, 20) / np.sqrt(20 * 40)])
  np.testing.assert_allclose(ratio, [1.0, 2.0])
  np.testing.assert_allclose(tracking.predicted_box([0, 0, 10, 20], [2, -1], 3),
                             [6, -3, 16, 17])


def test_a_fast_face_keeps_its_track_and_a_far_one_starts_another():
  """Boxes 100 px wide moving 80 px a frame overlap by 0.11 (under `min_iou`): the face
  goes on in its track, by the shift pass and then by its velocity, also past a missed
  frame; a face 1.5 sizes away, or of twice the size, is another face."""
  tracks = tracking.FaceTracks(SMOOTH, FPS)
  assert SMOOTH.max_shift == 1.0 and SMOOTH.max_size_ratio == 1.5
  assert [tracks.add(k, [_face((100 + 80 * k, 200))])[0] for k in range(4)] == [0] * 4
  assert tracks.add(5, [_face((500, 200))]) == [0]                 # frame 4 missed
  # At frame 6 track 0 is predicted at x 580: a face there goes on, the others are new.
  assert tracks.add(6, [_face((580, 350)), _face((580, 200), size=200.0),
                        _face((580, 200))]) == [1, 2, 0]
  # Without the shift pass (max_shift 0), the same fast face starts a track each frame.
  strict = tracking.FaceTracks(tracking.SmoothingConfig(max_shift=0.0), FPS)
  assert [strict.add(k, [_face((100 + 80 * k, 200))])[0] for k in range(3)] == [0, 1, 2]


def test_a_cut_between_shots_ends_every_track():
  """The same box before and after a cut to another picture: two tracks; a frame that
  moves on within its shot (the astronaut shifted by 5 % and turned) keeps the track."""
  astronaut = skimage.data.astronaut()
  coffee = np.ascontiguousarray(skimage.data.coffee()[:, :, :3])
  moved = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((256.0, 256.0), 5.0, 1.0)
                         + np.float32([[0, 0, 25], [0, 0, 0]]), (512, 512))
  shots = [(astronaut, 200), (moved, 200), (astronaut, 200), (coffee, 210), (coffee, 210)]
  off = tracking.FaceTracks(tracking.SmoothingConfig(sigma_seconds=0.0), FPS)
  assert [off.add(k, [_face((x, 200))], image)[0]       # the tracks file's numbers, too
          for k, (image, x) in enumerate(shots)] == [0, 0, 0, 1, 1]
  tracks = tracking.FaceTracks(SMOOTH, FPS)
  ids = [tracks.add(k, [_face((x, 200))], image)[0] for k, (image, x) in enumerate(shots)]
  assert ids == [0, 0, 0, 1, 1]
  side = SMOOTH.thumbnail_side
  correlation = tracking.thumbnail(astronaut, side) @ tracking.thumbnail(moved, side)
  assert SMOOTH.cut_correlation < correlation < 1.0
  # Smoothing stays within each shot: nothing of the boxes before the cut (x 200) reaches
  # the faces after it (x 210), though the boxes overlap.
  assert [tracks.smoothed(k)[0].box[0] for k in (3, 4)] == [pytest.approx(160.0)] * 2
  assert tracks.smoothed(2)[0].box[0] == pytest.approx(150.0)


def test_smoothing_keeps_steady_motion_and_takes_out_jitter():
  rng = np.random.default_rng(0)
  frames = 40
  velocity = np.array([3.0, -1.5])                # px per frame
  true = np.array([200.0, 200.0]) + np.arange(frames)[:, None] * velocity
  base = rng.normal(0, 10, (68, 2))
  noisy = true[:, None] + base + rng.normal(0, 1.0, (frames, 68, 2))
  for points, tolerance in ((true[:, None] + base, 1e-3), (noisy, None)):
    tracks = tracking.FaceTracks(SMOOTH, FPS)
    for k in range(frames):
      tracks.add(k, [_face(true[k], landmarks=points[k])])
    smoothed = np.stack([tracks.smoothed(k)[0].landmarks68 for k in range(frames)])
    boxes = np.stack([tracks.smoothed(k)[0].box for k in range(frames)])
    np.testing.assert_allclose(boxes[:, :2], true - 50.0, atol=1e-3)   # lines are kept
    if tolerance is not None:
      # On a line, a local line is exact, at the clip's ends too.
      np.testing.assert_allclose(smoothed, points, atol=tolerance)
      continue
    raw_error = np.abs(points - true[:, None] - base).mean()
    error = np.abs(smoothed - true[:, None] - base).mean()
    second = np.abs(np.diff(smoothed, 2, axis=0)).mean()
    raw_second = np.abs(np.diff(points, 2, axis=0)).mean()
    assert error < 0.6 * raw_error          # about 1 / sqrt(effective samples)
    assert second < 0.2 * raw_second        # the frame-to-frame shake, mostly gone
  # 468 points and the 68 are smoothed alike; the fields keep their dtype.
  face = tracks.smoothed(10)[0]
  assert face.dense.dtype == np.float32 and face.landmarks68.dtype == np.float32
  np.testing.assert_allclose(face.dense[0, :2], face.box.reshape(2, 2).mean(0), atol=1e-3)


def test_no_smoothing_returns_the_faces_as_found_and_forget_frees_them():
  tracks = tracking.FaceTracks(tracking.SmoothingConfig(sigma_seconds=0.0), FPS)
  assert tracks.radius == 0
  faces = [_face((100 + 3 * k, 100)) for k in range(4)]
  for k, face in enumerate(faces):
    tracks.add(k, [face])
    found = tracks.smoothed(k)[0]
    assert found.track == 0
    assert all(getattr(found, name) is getattr(face, name)
               for name in ("box", "landmarks68", "dense"))
    tracks.forget(k)
    assert list(tracks.frames) == []
  tracks = tracking.FaceTracks(SMOOTH, FPS)
  for k in range(12):
    tracks.add(k, [_face((100 + 3 * k, 100))])
  tracks.forget(8)
  assert min(tracks.frames) == 8 - tracks.radius + 1


@pytest.fixture(scope="module")
def still_clip(tmp_path_factory):
  """Twelve frames of the astronaut holding still, each with its own noise (std
  `STILL_NOISE` levels), coded: any motion of her fitted landmarks is jitter."""
  rng = np.random.default_rng(3)
  path = tmp_path_factory.mktemp("still") / "still.mp4"
  astronaut = skimage.data.astronaut().astype(np.float32)
  with video_io.video_writer(path, FPS, (512, 512)) as write:
    for _ in range(STILL_FRAMES):
      write(np.clip(astronaut + rng.normal(0, STILL_NOISE, astronaut.shape), 0, 255)
            .astype(np.uint8))
  return path


def test_the_pipeline_smooths_a_video_and_shakes_less(still_clip, tmp_path, ict_model):
  fit = fitting.FitConfig(landmark_steps=40, photometric_steps=0)
  shake = {}
  for name, smoothing in (("off", tracking.SmoothingConfig(sigma_seconds=0.0)),
                          ("on", reconstruct.DEFAULT_SMOOTHING)):
    out = tmp_path / name
    summary = reconstruct.reconstruct_photos(still_clip, ict_model, out, fit_config=fit,
                                             log=lambda line: None, progress=False,
                                             smoothing=smoothing)
    entry = summary["results"][0]
    assert [f["frame"] for f in entry["frames"]] == list(range(STILL_FRAMES))   # all, in order
    assert entry["video"]["smoothing_seconds"] == smoothing.sigma_seconds
    assert len(list(video_io.read_frames(out / "still_overlay.mp4"))) == STILL_FRAMES
    landmarks = np.stack([np.loadtxt(out / f"still_f{k:05d}_face0_lm2d.txt")
                          for k in range(STILL_FRAMES)])
    # One file of the video's faces over time, as the frames' own files have them.
    assert entry["video"]["tracks"] == "still_tracks.npz"
    with np.load(out / "still_tracks.npz") as tracks:
      assert str(tracks["format_kind"]) == reconstruct.TRACKS_KIND
      np.testing.assert_array_equal(tracks["frame"], np.arange(STILL_FRAMES))
      np.testing.assert_array_equal(tracks["track"], 0)
      np.testing.assert_allclose(tracks["landmarks2d"], landmarks, atol=1e-3)
      poses = [[f["faces"][0]["pose_degrees"][k] for k in ("yaw", "pitch", "roll")]
               for f in entry["frames"]]
      np.testing.assert_allclose(tracks["pose_degrees"], poses, atol=0.006)
      with np.load(out / "still_f00005_face0_coeffs.npz") as frame5:
        assert int(frame5["track"]) == entry["frames"][5]["faces"][0]["track"] == 0
        for part in ("expression", "rotation", "identity"):
          np.testing.assert_array_equal(tracks[part][5], frame5[part])
    # The shake: each point's second difference over frames (its acceleration), px.
    shake[name] = float(np.linalg.norm(np.diff(landmarks, 2, axis=0), axis=-1).mean())
  assert shake["on"] < 0.3 * shake["off"], shake   # measured 0.04 against 0.36 px


def test_no_frame_files_writes_the_overlay_video_and_the_tracks_only(still_clip, tmp_path,
                                                                    capsys):
  out = tmp_path / "out"
  code, stdout, _ = run_main(["--mode", "test", "--input", str(still_clip), "--output",
                              str(out), "--fit-steps", "10", "--no-frame-files", "--quiet"],
                             capsys)
  assert code == 0, stdout
  assert sorted(p.name for p in out.iterdir()) == ["still_overlay.mp4", "still_tracks.npz",
                                                   "still_tracks.png", "summary.json"]
  assert (f"-> {out / 'still_overlay.mp4'}, {out / 'still_tracks.npz'}, "
          f"{out / 'still_tracks.png'}") in stdout
  with np.load(out / "still_tracks.npz") as tracks:
    np.testing.assert_array_equal(tracks["frame"], np.arange(STILL_FRAMES))
  frames = json.loads((out / "summary.json").read_text())["results"][0]["frames"]
  assert all("files" not in f["faces"][0] and "overlay" not in f for f in frames)
  assert len(list(video_io.read_frames(out / "still_overlay.mp4"))) == STILL_FRAMES


def test_the_tracks_picture_draws_each_track(tmp_path):
  """Two faces over 2 s: the picture is written, and its pixels change where a track's
  line runs (the second track's pose differs from the first's)."""
  frames = np.arange(50)
  rows = {"frame": np.r_[frames, frames], "track": np.r_[np.zeros(50), np.ones(50)],
          "fps": np.array(FPS),
          "pose_degrees": np.r_[np.c_[20 * np.sin(frames / 8), 0 * frames, 0 * frames],
                                np.c_[-30 + 0 * frames, 5 + 0 * frames, 0 * frames]],
          "landmarks3d": np.zeros((100, 68, 3))}
  rows["landmarks3d"][:, 66, 1] = -np.r_[np.linspace(0, 0.2, 50), np.full(50, 0.1)]
  np.testing.assert_allclose(track_plot.mouth_opening_mm(rows["landmarks3d"][:2], 100.0),
                             [0.0, 0.2 / 49 * 100.0])
  one = dict(rows, **{k: v[:50] for k, v in rows.items() if k != "fps"})
  pictures = {}
  for name, arrays in (("one", one), ("two", rows)):
    track_plot.plot_tracks(tmp_path / f"{name}.png", arrays, 100.0, title="clip.mp4")
    pictures[name] = cv2.imread(str(tmp_path / f"{name}.png"))
  assert pictures["one"].shape == pictures["two"].shape == (550, 900, 3)
  assert (pictures["one"] < 128).mean() > 0.01         # lines and text, not a blank page
  assert np.abs(pictures["one"].astype(int) - pictures["two"]).mean() > 1.0


def test_two_faces_moving_apart_keep_their_tracks(tmp_path, ict_model):
  """Two faces (the astronaut and her mirror image) crossing a 900 px clip towards each
  other: each keeps one track number over the frames, in the tracks file and the picture."""
  astronaut = skimage.data.astronaut()[:330, 100:420]
  mirrored = np.ascontiguousarray(astronaut[:, ::-1])
  path = tmp_path / "two.mp4"
  with video_io.video_writer(path, FPS, (900, 400)) as write:
    for k in range(8):
      frame = np.full((400, 900, 3), 90, np.uint8)
      frame[30:360, 20 + 12 * k:340 + 12 * k] = astronaut          # moves right
      frame[40:370, 560 - 8 * k:880 - 8 * k] = mirrored           # moves left
      write(frame)
  reconstruct.reconstruct_photos(path, ict_model, tmp_path / "out",
                                 fit_config=fitting.FitConfig(landmark_steps=10,
                                                              photometric_steps=0),
                                 log=lambda line: None, progress=False, frame_files=False)
  with np.load(tmp_path / "out" / "two_tracks.npz") as tracks:
    assert sorted(set(tracks["track"].tolist())) == [0, 1]
    # One woman by her face, but two persons: both tracks are seen in the same frames.
    np.testing.assert_array_equal(tracks["person"], tracks["track"])
    for track in (0, 1):
      rows = tracks["track"] == track
      np.testing.assert_array_equal(tracks["frame"][rows], np.arange(8))
      centre = tracks["box"][rows][:, [0, 2]].mean(1)
      step = np.diff(centre)
      assert np.all(step > 0) or np.all(step < 0)      # one face, moving one way
  assert (tmp_path / "out" / "two_tracks.png").is_file()
