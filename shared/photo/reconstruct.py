"""Photos in, 3D faces out: the pipeline behind `--mode test --input PHOTO`.

    reconstruct_photos(inputs, face_model, output_dir, regressor=None,
                       fit_config=FitConfig(), log=print) -> summary dict

For every image (a file, a folder, or a list of them; videos too): read it
(`shared.io.image_io`), find all faces and their 68 landmarks
(`shared.photo.landmarks`), align each face to the 224 x 224 MGCNet crop
(`shared.photo.alignment`), regress coefficients with an optional network
(`regressor`), fit them to the landmarks and the photo (`shared.fit.fitter`),
and write per face, in ORIGINAL image coordinates where it applies:

    <stem>_face<k>.obj            mesh (model space, decimetres) with fitted lit
                                  vertex colours; `vt` + `.mtl` when the model has UVs
    <stem>_face<k>.mtl            material pointing at the texture
    <stem>_face<k>_texture.png    UV texture: photo colours where the face faces the
                                  camera, fitted model colours in the photo's tone
                                  elsewhere (models with UVs; `texture_colours`)
    <stem>_face<k>_coeffs.npz     coefficients, pose, boxes, transforms, landmarks
    <stem>_face<k>_lm2d.txt       68 fitted landmarks, original-image pixels (x y)
    <stem>_face<k>_lm3d.txt       68 landmarks in 3D, crop-camera space, model units
    <stem>_face<k>_overlay.png    the face rendered in the photo's frame (face region,
                                  blended), fitted landmarks
    <stem>_face<k>_depth.png      depth map in the photo's frame (overlay size; near =
                                  bright); the crop's raw depth is in the npz

plus `<stem>_overlay.png` with every face of the image, and one
`summary.json` per run.  A video (`shared.io.video_io.VIDEO_SUFFIXES`) is read
frame by frame (every `frame_step`-th): each frame's outputs as an image's, named
`<stem>_f<frame>` (`<stem>_f00012_face0.obj`, ...), `<stem>_overlay.mp4`, the
frames' overlays in order (frames without a face as they are), and `<stem>_tracks.npz`,
every face of every frame in one file (one row per face and frame: `frame`, `face`,
`track`, `person` (tracks of one person share it, `shared.photo.face_identity`), the
coefficients, `pose_degrees` (yaw, pitch, roll), `box`, `landmarks2d` in photo
pixels, `landmarks3d`, `fit_landmark_error_px`; `format_kind` "face3d-video-tracks") and
`<stem>_tracks.png`, their head pose and mouth opening over time (`track_plot`);
its summary entry lists the frames under `frames`.  In a video, each face's box and points
are smoothed over time before its fit (`shared.photo.tracking`: faces linked from frame
to frame by box overlap, a Gaussian-weighted local parabola through the frames within
0.3 s; `smoothing`), so the landmark model's frame-to-frame jitter does not reach the
outputs.  Every write is atomic.  `<stem>` is the file's stem, or `<stem>_<extension>`
where two inputs share a stem (`image_io.output_stems`), so no result overwrites another.

Pixel convention: continuous coordinates, pixel i's centre at i + 0.5 (as in
`shared.photo.landmarks` and `shared.photo.alignment`).  Fitted landmarks are mapped to
the photo with the inverse of the alignment similarity.  Overlays are drawn
on the photo downscaled to at most `OVERLAY_MAX_SIDE` pixels (an 8000 x 8000
photo gives a 2048 x 2048 overlay); landmark files are always full
resolution.

Head pose (degrees) is given in the ORIGINAL photo's camera frame: the
fitted rotation in the crop, composed with the in-plane rotation of the
alignment.  yaw > 0: the face turns towards image right; pitch > 0: it looks
down; roll > 0: it tilts counter-clockwise in the image.  Angles follow the
project's R = Rz(roll) Ry(yaw) Rx(pitch); the crop camera is a 224-pixel
pinhole (focal 1015), not the photo's real camera.

Per-image problems (unreadable or corrupt file, oversized image, no face)
print one line through `log` and are recorded in the summary; the run goes
on.  Grayscale, 16-bit and alpha images are converted (one note line).  HOG
detections scoring below `MIN_HOG_SCORE` are ignored (one note line, listed
in the summary as `weak_detections`).

Faces of one image are fitted together in a batch padded to a power of two
(at most `max_batch`), so the fitting functions compile for a few sizes
only.  One image is in memory at a time (of a video, the frames of one smoothing window).

One person (`same_person`): when every input shows the same person (a video, or photos of
one face), the pipeline first fits one identity jointly to the largest face of up to
`SAME_PERSON_FACES` images or frames spread evenly over the inputs, those of the person most
of them show by their face descriptors (`PhotoReconstructor.pool_identity`,
`shared.photo.face_identity.main_person`, `Fitter.fit(share_identity=...)`), then fits one
face of every image with that identity held fixed: the face's shape no longer changes from
frame to frame, only its expression and pose do.  That face is the one whose descriptor is
nearest the pooled faces' mean (`main_person_of`; the largest without dlib), so another,
larger face in the picture does not take the person's identity.  Other faces are left out
(counted in the summary as `other_faces`, with the chosen face's `person_distance`).
"""

import collections
import contextlib
import dataclasses
import functools
import itertools
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf

from shared.photo import alignment
from shared.photo import face_identity
from shared.photo import face_mesh
from shared.photo.blazeface import DetectorConfig

from shared.fit import dense as dense_fit

from shared.io import export

from shared.photo import photo_render
from shared.photo import track_plot
from shared.photo import tracking
from shared.model import camera as camera_lib
from shared.fit import fitter as fitting
from shared.fit.landmark_convention import ICT_BFM_LANDMARKS68, bfm_landmark_convention
from shared.fit.pose import euler_from_matrix
from shared.fit.skin import skin_from_landmarks
from shared.config_overrides import describe_changes
from shared.errors import InputError
from shared.io.fileio import savez_atomic, write_text_atomic
from shared.io import video_io
from shared.io.image_io import IMAGE_SUFFIXES, is_media_file, output_stems, read_image
from shared.io.video_io import VIDEO_SUFFIXES, is_video_file
from shared.mesh.inpaint import fill_change
from shared.mesh.sampling import vertex_adjacency
from shared.photo.landmarks import LANDMARK_MODES, detect_faces
from shared.render.face_image import FaceSynthesizer
from shared.render.texture import uv_texture_map

SUMMARY_KIND = "face3d-photo-summary"
SUMMARY_VERSION = 1
COEFFS_KIND = "face3d-photo-coefficients"
COEFFS_VERSION = 1
OUTPUT_MARKER = "_face"            # files named <stem>_face<k>... are our outputs
OUTPUT_SUFFIXES = ("_overlay", "_tracks")   # a run's <stem>_overlay.png|.mp4, <stem>_tracks.png
VIDEO_OVERLAY_SUFFIX = "_overlay.mp4"   # a video's overlays, one frame per frame read
VIDEO_TRACKS_SUFFIX = "_tracks.npz"     # a video's faces over time, one row per face and frame
VIDEO_PLOT_SUFFIX = "_tracks.png"       # their pose and mouth opening over time (track_plot)
TRACKS_KIND = "face3d-video-tracks"
TRACKS_VERSION = 1
OVERLAY_MAX_SIDE = 2048
JPEG_END_MARKER = b"\xff\xd9"     # EOI: a JPEG without it at the end was cut short
JPEG_TAIL_BYTES = 64               # how much of the file's end is searched for it
OVERLAY_OPACITY = 0.75
LANDMARK_COLOUR = (40, 255, 40)    # fitted landmarks on overlays (RGB)
LANDMARK_DOT_PER_FACE = 1 / 50     # dot radius over the face's landmark extent (overlay pixels);
                                   # 0 (one pixel) on faces under 25 px, so small faces stay visible
TEXTURE_SIZE = 512
# The UV texture reads the photo where a vertex faces the camera: its weight rises from 0 to 1
# as the cosine between its normal and the direction to the camera goes from the first value
# to the second (at grazing angles one photo pixel is smeared over many texels).
TEXTURE_FACING = (0.2, 0.5)
DEFAULT_MAX_BATCH = 8
# `same_person`: the identity is fitted jointly to the largest face of at most this many
# images or frames, spread evenly over the inputs (one batch: its fit compiles once).
SAME_PERSON_FACES = 16
# dlib HOG margins: real faces in AFLW2000-16 score 0.12-2.8; the false
# positives seen (a mission patch on the astronaut JPEG, an upscaled
# astronaut) 0.04-0.09.  Weaker HOG detections are ignored (and listed).
MIN_HOG_SCORE = 0.1
SUMMARY_FILE = "summary.json"
# Videos: the faces' points smoothed over time (docs/photos.md, "Videos").
DEFAULT_SMOOTHING = tracking.SmoothingConfig()
DEFAULT_PERSONS = face_identity.PersonConfig()
DEFAULT_BACKEND = "mediapipe"      # shared.photo.landmarks backends
MAX_FACES = DetectorConfig().max_faces   # the most faces BlazeFace gives an image
LISTED_FACES = 8                   # a photo's line lists each face's yaw up to this many faces
FIT_POINTS = ("dense", "68")       # fit to the 468 mesh points or to the 68 landmarks
DEFAULT_FIT_POINTS = "dense"


@dataclasses.dataclass
class FaceJob:
  """One detected face on its way through the pipeline."""
  index: int
  face: object          # shared.photo.landmarks.Face
  aligned: object       # shared.photo.alignment.Aligned

  @property
  def crop_dense(self):
    """`float32 [468, 2]` the face's mesh points in crop pixels, or None."""
    if self.face.dense is None:
      return None
    return alignment.transform_points(self.face.dense[:, :2], self.aligned.matrix).astype(np.float32)


def collect_inputs(inputs):
  """Image and video files from a path, a folder (not recursive) or a list of them.

  Files named like our outputs (`*_face<k>*`, `*_overlay`, `*_tracks`) are skipped in
  folders, so a run can write into its input folder.  Returns sorted Paths
  (lists keep their order).

  Raises:
    InputError: a path that does not exist, or a folder without images.
  """
  items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
  files = []
  for item in items:
    path = Path(item)
    if path.is_dir():
      found = sorted(p for p in path.iterdir()
                     if p.is_file() and is_media_file(p) and not _is_output(p))
      if not found:
        raise InputError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) or videos "
                         f"({', '.join(VIDEO_SUFFIXES)}) in this folder")
      files.extend(found)
    elif path.exists() or len(items) > 1:
      files.append(path)      # a missing file in a list is reported per image
    else:
      raise InputError(f"{path}: input not found")
  return files


def _is_output(path):
  stem = path.stem
  if stem.endswith(OUTPUT_SUFFIXES):
    return True
  head, marker, tail = stem.rpartition(OUTPUT_MARKER)
  return bool(marker) and bool(head) and tail.split("_")[0].isdigit()


def _format_note(path):
  """A note for files that are not 8-bit RGB(A) or are truncated JPEGs, from the header and
  the file's last bytes (no decode)."""
  try:
    from PIL import Image
    with Image.open(path) as im:
      mode, kind = im.mode, im.format
  except Exception:  # noqa: BLE001 - Pillow can't tell: OpenCV decides later.
    return None
  notes = {"L": "8-bit grayscale", "LA": "8-bit grayscale with alpha", "P": "palette",
           "1": "1-bit", "I;16": "16-bit grayscale", "I;16B": "16-bit grayscale",
           "I;16L": "16-bit grayscale", "I": "32-bit integer", "F": "32-bit float",
           "RGBA": "RGBA", "CMYK": "CMYK"}
  found = []
  if mode in notes:
    found.append(f"{notes[mode]} image, converted to 8-bit RGB")
  if kind == "JPEG" and _jpeg_truncated(path):
    found.append("truncated JPEG (no end-of-image marker): the missing part decodes as grey")
  return f"{path}: note: {'; '.join(found)}" if found else None


def _jpeg_truncated(path):
  """True when a JPEG file lacks its end-of-image marker (ignoring trailing padding bytes)."""
  with open(path, "rb") as f:
    f.seek(0, 2)
    f.seek(max(0, f.tell() - JPEG_TAIL_BYTES))
    tail = f.read().rstrip(b"\x00\r\n ")
  return not tail.endswith(JPEG_END_MARKER)


def _batch_size(count, max_batch):
  """Smallest power of two >= count, capped at max_batch."""
  return min(max_batch, 1 << max(0, math.ceil(math.log2(max(count, 1)))))


def smoothing_config(seconds=None):
  """The videos' `tracking.SmoothingConfig`: `DEFAULT_SMOOTHING`, with its width set to
  `seconds` when given (`--smoothing`; 0: none)."""
  if seconds is None:
    return DEFAULT_SMOOTHING
  return dataclasses.replace(DEFAULT_SMOOTHING, sigma_seconds=float(seconds))


def pose_array(pose):
  """`float32 [3]` (yaw, pitch, roll) of a `crop_pose_to_photo` dict, as the npz files hold it."""
  return np.array([pose["yaw"], pose["pitch"], pose["roll"]], np.float32)


def crop_pose_to_photo(rotation, inverse):
  """Head pose in the photo's frame from the fitted crop rotation.

  The alignment is an image-plane similarity; rotating the image by angle a
  (image axes, y down) is a camera roll of -a (camera axes, y up).

  Args:
    rotation: [3] (pitch, yaw, roll) radians in the crop.
    inverse: [2, 3] crop -> photo similarity.

  Returns:
    dict yaw, pitch, roll in degrees (see the module doc for signs).
  """
  r_crop = camera_lib.rotation_matrix(tf.constant(np.asarray(rotation, np.float32)[None]))
  r_crop = r_crop.numpy()[0].astype(np.float64)
  a = math.atan2(inverse[1][0], inverse[0][0])
  c, s = math.cos(-a), math.sin(-a)
  roll_matrix = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
  pitch, yaw, roll = np.degrees(euler_from_matrix(roll_matrix @ r_crop))
  return {"yaw": float(yaw), "pitch": float(pitch), "roll": float(roll)}


class PhotoReconstructor:
  """The pipeline's state: face model, synthesizer, fitter, optional regressor.

  Build once, then call `process_image` per image (or use
  `reconstruct_photos`).
  """

  def __init__(self, face_model, regressor=None, fit_config=fitting.FitConfig(),
               cnn_fallback=False, max_batch=DEFAULT_MAX_BATCH, bfm_landmarks=True,
               min_hog_score=MIN_HOG_SCORE, backend=DEFAULT_BACKEND, fit_points=DEFAULT_FIT_POINTS,
               mesh_bias=False):
    self.min_hog_score = float(min_hog_score)
    self.mesh_bias = None
    self.face_model = bfm_landmark_convention(face_model) if bfm_landmarks else face_model
    self.synthesizer = FaceSynthesizer(self.face_model)
    self.fitter = fitting.Fitter(self.synthesizer, fit_config)
    self.backend = backend
    self.dense_fitter = None
    self.dense_note = None
    self.output_landmarks = np.asarray(self.face_model.landmarks68)
    if fit_points == "dense" and backend == "mediapipe":
      self._setup_dense(face_model, fit_config, bfm_landmarks, mesh_bias)
    self.fit_config = fit_config
    self.regressor = regressor
    self.cnn_fallback = cnn_fallback
    self.max_batch = int(max_batch)
    self.timings = {"read": [], "detect": [], "align": [], "regress": [], "fit": [], "write": []}
    # One person (`pool_identity`): the identity every fit holds fixed ([Ki], None: each
    # face its own), and (`largest_only`) only one face of an image is reconstructed: the
    # one nearest the pooled faces' mean descriptor (`main_descriptor`; None: not known,
    # e.g. no dlib, and then the largest face).
    self.fixed_identity = None
    self.largest_only = False
    self.main_descriptor = None

  def _setup_dense(self, face_model, fit_config, bfm_landmarks, mesh_bias):
    """The dense fitter (468 points, `shared.fit.dense`), the 68 output
    vertices and, with `mesh_bias`, the mesh points' yaw bias
    (`dense_fit.MeshBias`; off by default: it helps on synthetic renders but
    not on AFLW2000-16, docs/photos.md; fitted without it when the model has
    none); both files are those measured with the mesh model in use
    (`face_mesh.select_mesh_model`, before this is built);
    without a correspondence for this model (e.g. BFM), the fit follows the
    68 points read off the mesh and `dense_note` says so."""
    try:
      vertices, weights = dense_fit.load_correspondence(
          self.face_model, dense_fit.correspondence_file(face_mesh.mesh_model()))
    except InputError as error:
      self.dense_note = f"note: {error}; fitting the 68 points read off the mesh"
      return
    if mesh_bias:
      try:
        self.mesh_bias = dense_fit.load_bias(self.face_model,
                                             dense_fit.bias_file(face_mesh.mesh_model()))
      except InputError as error:
        self.dense_note = f"note: {error}; mesh points used uncorrected"
    if bfm_landmarks:
      self.output_landmarks = np.asarray(bfm_landmark_convention(
          face_model, interior=True).landmarks68)
    dense_synth = FaceSynthesizer(dense_fit.dense_model(self.face_model, vertices))
    self.dense_fitter = fitting.Fitter(dense_synth, fit_config, point_weights=weights)

  # -- stages -------------------------------------------------------------------------------

  def detect(self, image):
    """[H, W, 3] uint8 -> list of `FaceJob` (aligned crops)."""
    return self.align(image, self.find_faces(image))

  def find_faces(self, image):
    """[H, W, 3] uint8 -> list of `shared.photo.landmarks.Face`, largest first."""
    start = time.perf_counter()
    faces = detect_faces(image, cnn_fallback=self.cnn_fallback, backend=self.backend)
    self.timings["detect"].append(time.perf_counter() - start)
    return faces

  def align(self, image, faces):
    """`FaceJob`s of `faces` (their 224 crops of `image`, from their 68 landmarks)."""
    start = time.perf_counter()
    jobs = [FaceJob(k, f, alignment.align_224(image, f.landmarks68)) for k, f in enumerate(faces)]
    self.timings["align"].append(time.perf_counter() - start)
    return jobs

  def drop_weak(self, jobs):
    """Splits `FaceJob`s into (kept, renumbered 0..; weak HOG detections below
    `min_hog_score`), the ones a true face can lose to (docs/photos.md)."""
    weak = [j for j in jobs if j.face.detector == "hog" and j.face.score < self.min_hog_score]
    kept = [dataclasses.replace(j, index=k) for k, j in enumerate(
        j for j in jobs if not any(j is w for w in weak))]
    return kept, weak

  def regress(self, crops):
    """The network's `Coefficients` for [B, 224, 224, 3] crops, or None without one."""
    if self.regressor is None:
      return None
    start = time.perf_counter()
    out = self.regressor(tf.constant(crops))
    coeffs = out[0] if isinstance(out, tuple) else out
    coeffs = fitting.Coefficients(*[tf.convert_to_tensor(v, tf.float32) for v in coeffs])
    self.timings["regress"].append(time.perf_counter() - start)
    return coeffs

  def batch_inputs(self, jobs):
    """(crops [B, 224, 224, 3] float32 in [0, 1], 68 landmarks [B, 68, 2] and
    dense points [B, 468, 2] or None, in crop pixels) of a padded batch."""
    crops = np.stack([j.aligned.image for j in jobs]).astype(np.float32) / 255.0
    landmarks = np.stack([j.aligned.landmarks68 for j in jobs])
    dense = None
    if all(self.fits_dense(j) for j in jobs):
      dense = np.stack([j.crop_dense for j in jobs])
    return crops, landmarks, dense

  def fits_dense(self, job):
    """Whether `job`'s face is fitted to its 468 points (else to its 68)."""
    return (self.dense_fitter is not None and job.face.dense is not None and
            getattr(job.face, "points68", "mesh") == "mesh")

  def groups(self, jobs):
    """`jobs` split into those fitted densely and the rest (each kind is
    fitted in its own batches); empty groups left out."""
    dense = [j for j in jobs if self.fits_dense(j)]
    rest = [j for j in jobs if not self.fits_dense(j)]
    return [g for g in (dense, rest) if g]

  def padded_batches(self, jobs, batch_size=None):
    """Yields (chunk, crops, landmarks, dense) per batch of `jobs`: dense and
    68-point faces in their own batches of at most `max_batch` (`chunk`, the
    real jobs), each padded with its last job to `batch_size` (None: the
    smallest power of two, so the fit compiles for a few static sizes);
    `crops, landmarks, dense` as `batch_inputs` of the padded batch."""
    for group in self.groups(jobs):
      for k in range(0, len(group), self.max_batch):
        chunk = group[k:k + self.max_batch]
        size = batch_size or _batch_size(len(chunk), self.max_batch)
        padded = chunk + [chunk[-1]] * (size - len(chunk))   # static batch sizes
        yield (chunk, *self.batch_inputs(padded))

  def regress_and_fit(self, crops, landmarks, dense=None):
    """(init, result): the network's `Coefficients` (None without one) and the
    fit from them (`fit`)."""
    init = self.regress(crops)
    return init, self.fit(crops, landmarks, init, dense)

  def fit(self, crops, landmarks, init=None, dense=None, share_identity=None):
    """Fits one padded batch from `init` (None: the posed mean face), with
    `fixed_identity` when set.

    Args:
      crops: [B, 224, 224, 3] float32 in [0, 1].  landmarks: [B, 68, 2] crop pixels.
      init: optional `Coefficients` (e.g. from `regress`).
      dense: optional [B, 468, 2] mesh points in crop pixels: then the fit
        follows them (`shared.fit.dense`) and the 68 landmarks serve only the
        skin mask; the result's landmarks are the model's 68 all the same.
      share_identity: optional [B] weights: fit one identity to the faces of weight > 0
        (`Fitter.fit`), instead of `fixed_identity`.

    Returns:
      `fitting.FitResult`.
    """
    start = time.perf_counter()
    skin = None
    if self.fit_config.photometric_steps > 0:
      skin = skin_from_landmarks(crops, landmarks)
    identity = ({"share_identity": share_identity} if share_identity is not None else
                {"fixed_identity": self.fixed_identity} if self.fixed_identity is not None
                else {})
    if dense is not None and self.dense_fitter is not None:
      retarget = None
      if self.mesh_bias is not None:
        def retarget(rotation):   # the yaw of the closed-form start (or `init`) picks the bias
          return dense + self.mesh_bias.at(np.degrees(rotation[:, 1]))
      result = self.dense_fitter.fit(crops, dense, init=init, skin=skin, retarget=retarget,
                                     **identity)
      result.synthesis = self.with_model_landmarks(result.synthesis)
    else:
      result = self.fitter.fit(crops, landmarks, init=init, skin=skin, **identity)
    self.timings["fit"].append(time.perf_counter() - start)
    return result

  @staticmethod
  def largest_of(jobs):
    """(the job of the largest face by box area, renumbered 0; how many others), or
    (None, 0) for no jobs."""
    if not jobs:
      return None, 0
    return dataclasses.replace(max(jobs, key=lambda job: job.face.size), index=0), len(jobs) - 1

  def pool_identity(self, images, log=print):
    """`pool_identity_of` the largest face of each image, those of the person most of
    them show (`face_identity.main_person`: a face that looks like someone else is left
    out, so a stray photo does not enter the identity).

    Args:
      images: an iterable of uint8 [H, W, 3] arrays (e.g. `keyframes`; each is detected
        as it comes, and only its largest face's crop is kept).
      log: where a note goes when the faces cannot be told apart (dlib missing).

    Returns:
      (how many faces the identity was fitted to, how many were left out as another
      person's).
    """
    jobs, vectors = [], []
    describe = face_identity.FaceDescriber()
    for image in images:
      job = self.largest_of(self.drop_weak(self.detect(image))[0])[0]
      if job is None:
        continue
      jobs.append(job)
      if vectors is not None:
        try:
          vectors.append(describe(image, job.face.landmarks68))
        except InputError as error:
          log(f"note: {error}; every image's face is taken as the same person's")
          vectors = None
    kept = (range(len(jobs)) if vectors is None
            else face_identity.main_person(vectors, DEFAULT_PERSONS.same_person_distance))
    if vectors is not None and len(kept):
      self.main_descriptor = np.mean([vectors[k] for k in kept], axis=0)
    return self.pool_identity_of([jobs[k] for k in kept]), len(jobs) - len(kept)

  def main_person_of(self, image, jobs):
    """(the job of the face that looks most like the pooled person, renumbered 0; how many
    others; its descriptor distance, or None): the face whose descriptor is nearest
    `main_descriptor`, or the largest (`largest_of`) when that is not known."""
    if self.main_descriptor is None:
      return (*self.largest_of(jobs), None)
    describe = face_identity.FaceDescriber()
    distances = [float(np.linalg.norm(describe(image, job.face.landmarks68)
                                      - self.main_descriptor)) for job in jobs]
    best = int(np.argmin(distances))
    return dataclasses.replace(jobs[best], index=0), len(jobs) - 1, distances[best]

  def pool_identity_of(self, jobs):
    """One identity for the person whose faces `jobs` are, fitted to all of them at once
    (`Fitter.fit(share_identity=...)`; one batch per kind of fit, padded to a power of two,
    the padding at weight 0).  Sets `fixed_identity` and `largest_only`.

    Returns:
      How many faces the identity was fitted to (0: no jobs; then no identity is set).
    """
    identities, counts = [], []
    for group in self.groups(jobs):
      size = max(len(group), _batch_size(len(group), SAME_PERSON_FACES))
      padded = group + [group[-1]] * (size - len(group))
      crops, landmarks, dense = self.batch_inputs(padded)
      weights = np.r_[np.ones(len(group)), np.zeros(size - len(group))]
      result = self.fit(crops, landmarks, self.regress(crops), dense, share_identity=weights)
      identities.append(result.coeffs.identity.numpy()[0])
      counts.append(len(group))
    self.largest_only = True
    if counts:
      self.fixed_identity = np.average(identities, axis=0, weights=counts).astype(np.float32)
    return int(sum(counts))

  def with_model_landmarks(self, synthesis):
    """`synthesis` with its landmarks replaced by the model's 68 output
    landmarks (posed and projected) after a fit to the dense points: all 68
    in BFM's convention (`ICT_BFM_LANDMARKS68`) for ICT."""
    landmarks3d = tf.gather(synthesis.posed, self.output_landmarks, axis=1)
    return dataclasses.replace(synthesis, landmarks3d=landmarks3d,
                               landmarks2d=camera_lib.project(landmarks3d, self.synthesizer.camera))

  def reconstruct(self, jobs):
    """Fits all `jobs` of one image; returns a list of per-face numpy dicts (with `pose`,
    `crop_pose_to_photo`'s degrees in the photo's frame)."""
    records = []
    for chunk, crops, landmarks, dense in self.padded_batches(jobs):
      _, result = self.regress_and_fit(crops, landmarks, dense)
      syn, r = result.synthesis, result.synthesis.render
      arrays = {name: np.asarray(value) for name, value in (
          ("vertices", syn.vertices), ("posed", syn.posed), ("colours", syn.colours),
          ("normals", syn.normals),
          ("landmarks2d", syn.landmarks2d), ("landmarks3d", syn.landmarks3d),
          ("image", r.image), ("mask", r.mask), ("depth", r.depth),
          ("triangle_ids", r.triangle_ids))}
      coeffs = {name: np.asarray(v) for name, v in result.coeffs._asdict().items()}
      for b, job in enumerate(chunk):
        record = {k: v[b] for k, v in arrays.items()}
        record["coeffs"] = {k: v[b] for k, v in coeffs.items()}
        record["crop"] = crops[b]
        record["landmark_error_px"] = float(result.losses["landmark_error_px"][b])
        record["job"] = job
        record["pose"] = crop_pose_to_photo(record["coeffs"]["rotation"], job.aligned.inverse)
        records.append(record)
    return sorted(records, key=lambda r: r["job"].index)

  # -- outputs ------------------------------------------------------------------------------

  def texture_colours(self, record):
    """Per-vertex colours for the UV texture, [V, 3] in [0, 1].

    Where a visible vertex faces the camera (`TEXTURE_FACING`), the crop
    sampled at its projection; elsewhere the fitted lit colour plus the
    change (photo - fitted) carried harmonically from the vertices the photo
    shows well (`shared.mesh.inpaint`), so the hidden sides take the photo's
    tone without a seam; in between, a blend of the two.
    """
    model = self.face_model
    fitted = np.clip(record["colours"], 0.0, 1.0).astype(np.float64)
    ids = record["triangle_ids"]
    visible = np.zeros(model.num_vertices, bool)
    visible[model.faces[np.unique(ids[ids >= 0])].ravel()] = True
    posed = record["posed"]
    uv = camera_lib.project(tf.constant(posed[None]), self.synthesizer.camera)
    uv = uv.numpy()[0] - alignment.PIXEL_CENTER          # OpenCV: centres at integers
    sampled = cv2.remap(record["crop"], uv[:, 0:1].astype(np.float32),
                        uv[:, 1:2].astype(np.float32), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)[:, 0, :].astype(np.float64)
    cosine = camera_lib.facing_cosine(tf.constant(posed[None]),
                                      tf.constant(record["normals"][None]),
                                      self.synthesizer.camera).numpy()[0]
    weight = np.where(visible, texture_weight(cosine), 0.0)
    return blend_texture(fitted, sampled, weight, self.vertex_adjacency)

  @functools.cached_property
  def vertex_adjacency(self):
    """[V, V] scipy sparse: the face model's mesh edges (for the texture's fill)."""
    return vertex_adjacency(self.face_model.faces, self.face_model.num_vertices)

  def write_face(self, output_dir, stem, record):
    """Writes the files of one face (all but the overlay).

    Returns:
      (summary entry dict, fitted landmarks [68, 2] in photo pixels).
    """
    model = self.face_model
    job = record["job"]
    entry, lm2d = self.face_entry(stem, record)
    name = entry["name"]
    out = Path(output_dir)
    inverse = job.aligned.inverse
    pose = record["pose"]
    files = {}
    colours = np.clip(record["colours"], 0.0, 1.0)
    if model.uv is not None:
      texture = uv_texture_map(model.uv, model.faces, self.texture_colours(record), TEXTURE_SIZE)
      export.write_png(out / f"{name}_texture.png", texture)
      write_text_atomic(out / f"{name}.mtl", mtl_text(f"{name}_texture.png"))
      write_text_atomic(out / f"{name}.obj",
                        obj_with_uv(record["vertices"], model.faces, colours, model.uv,
                                     f"{name}.mtl"))
      files.update(obj=f"{name}.obj", mtl=f"{name}.mtl", texture=f"{name}_texture.png")
    else:
      export.write_obj(out / f"{name}.obj", record["vertices"], model.faces, colours)
      files.update(obj=f"{name}.obj")
    savez_atomic(out / f"{name}_coeffs.npz", **self.npz_header(COEFFS_KIND, COEFFS_VERSION),
                 **record["coeffs"], box=job.face.box,
                 detector_landmarks=job.face.landmarks68, landmarks2d=lm2d.astype(np.float32),
                 landmarks3d=record["landmarks3d"], crop_landmarks2d=record["landmarks2d"],
                 align_matrix=job.aligned.matrix, align_inverse=inverse,
                 pose_degrees=pose_array(pose),
                 depth=record["depth"][..., 0].astype(np.float32),
                 **({} if job.face.track is None else {"track": np.array(job.face.track)}))
    write_text_atomic(out / f"{name}_lm2d.txt", "".join(f"{x:.3f} {y:.3f}\n" for x, y in lm2d))
    write_text_atomic(out / f"{name}_lm3d.txt", "".join(
        f"{x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in record["landmarks3d"]))
    if "photo" in record:     # depth in the photo's frame (`photo_layers`)
      layers = record["photo"]
      export.write_png(out / f"{name}_depth.png",
                       export.depth_image(layers.depth, (layers.alpha > 0.5) &
                                          (layers.rgb[..., 3:] > 0)))
    else:
      export.write_png(out / f"{name}_depth.png",
                       export.depth_image(record["depth"], record["mask"]))
    files.update(coeffs=f"{name}_coeffs.npz", lm2d=f"{name}_lm2d.txt",
                 lm3d=f"{name}_lm3d.txt", depth=f"{name}_depth.png",
                 overlay=f"{name}_overlay.png")
    return {**entry, "files": files}, lm2d

  @staticmethod
  def face_entry(stem, record):
    """(the summary entry of one face, without its files; its fitted landmarks [68, 2] in
    photo pixels)."""
    job = record["job"]
    lm2d = alignment.transform_points(record["landmarks2d"], job.aligned.inverse)
    pose = record["pose"]
    return {"face": job.index, "name": f"{stem}{OUTPUT_MARKER}{job.index}",
            **({} if job.face.track is None else {"track": int(job.face.track)}),
            "box": [round(float(v), 2) for v in job.face.box],
            "detector": job.face.detector, "score": round(float(job.face.score), 4),
            "pose_degrees": {k: round(v, 2) for k, v in pose.items()},
            "fit_landmark_error_px": round(record["landmark_error_px"], 3)}, lm2d

  @staticmethod
  def overlay_base(image):
    """(the photo downscaled to at most OVERLAY_MAX_SIDE as float [0, 1],
    [2, 3] photo -> overlay scale map)."""
    height, width = image.shape[:2]
    factor = min(1.0, OVERLAY_MAX_SIDE / max(height, width))
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    base = image if factor == 1.0 else cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    scale = np.array([[size[0] / width, 0, 0], [0, size[1] / height, 0]])
    return base.astype(np.float32) / 255.0, scale

  def photo_layers(self, record, scale, size):
    """The fitted face rendered in the overlay frame (`overlay_base`'s
    `scale` of the photo, `size = (w, h)`): `photo_render.PhotoLayers` whose
    `rgb` holds the lit colours and the face-region weight (4 channels)."""
    to_photo = alignment.compose_affine(scale, record["job"].aligned.inverse)
    attributes = np.concatenate([np.clip(record["colours"], 0.0, 1.0),
                                 self.region[:, None]], axis=-1)
    return photo_render.render_in_photo(record["posed"], self.face_model.faces, attributes,
                                        self.synthesizer.camera, to_photo, size)

  @functools.cached_property
  def region(self):
    """[V] face-region blend weights of the overlay (`photo_render.region_weights`)."""
    return photo_render.region_weights(self.face_model)

  def overlay(self, base, scale, records, landmarks):
    """Fitted faces and landmarks of `records` drawn onto `base` (from
    `overlay_base`): each face rendered in the photo's frame, face region
    only, blended at `OVERLAY_OPACITY` with soft edges; uint8 [h, w, 3]."""
    size = (base.shape[1], base.shape[0])
    out = base
    for record in records:
      layers = record.get("photo") or self.photo_layers(record, scale, size)
      out = export.overlay(out, layers.rgb[..., :3], layers.alpha * layers.rgb[..., 3:],
                           OVERLAY_OPACITY)
    out = export.to_uint8(out)
    for lm in landmarks:
      points = alignment.transform_points(lm, scale)
      radius = int(round(np.ptp(points, axis=0).max() * LANDMARK_DOT_PER_FACE))
      for x, y in points:
        cv2.circle(out, (int(x), int(y)), radius, LANDMARK_COLOUR, -1, cv2.LINE_AA)
    return out

  def process_image(self, path, output_dir, log=print, image=None, read_seconds=0.0,
                    stem=None, on_overlay=None, faces=None, on_faces=None,
                    write_files=True):
    """Runs the pipeline on one file (`image`: its pixels when already read, which took
    `read_seconds`; `stem`: the outputs' name, the file's stem by default, see
    `image_io.output_stems`; `on_overlay`: called with the image's overlay, uint8
    [h, w, 3], when it has faces; `faces`: the image's faces when already found, e.g.
    smoothed over a video's frames; `on_faces`: called with the list of (summary entry,
    record, landmarks in photo pixels) of the faces fitted; `write_files` False: no file
    is written, the overlay only drawn, e.g. for a video's overlay video).  Returns its
    summary entry (never raises `InputError`: problems go to `log` and the entry)."""
    path = Path(path)
    stem = path.stem if stem is None else stem
    entry = {"image": str(path), "status": "ok", "faces": []}
    start = time.perf_counter()
    try:
      note = _format_note(path) if path.is_file() and not is_video_file(path) else None
      image = read_image(path) if image is None else image
    except InputError as error:
      log(f"skipped: {error}")
      return {**entry, "status": "error", "error": str(error)}
    self.timings["read"].append(time.perf_counter() - start + read_seconds)
    if note:
      log(note)
      entry["note"] = note
    entry["size"] = [int(image.shape[1]), int(image.shape[0])]
    try:
      jobs = self.align(image, self.find_faces(image) if faces is None else faces)
    except MemoryError:
      message = f"{path}: out of memory during detection"
      log(f"skipped: {message}")
      return {**entry, "status": "error", "error": message}
    jobs, weak = self.drop_weak(jobs)
    if faces is None and self.backend != "dlib" and len(jobs) >= MAX_FACES:
      entry["faces_capped"] = MAX_FACES
      log(f"{path}: note: {MAX_FACES} faces found, the detector's most (the most confident "
          "are kept; blazeface.DetectorConfig.max_faces)")
    if self.largest_only and len(jobs) > 1:
      chosen, others, distance = self.main_person_of(image, jobs)
      entry["other_faces"] = others
      if distance is not None:
        entry["person_distance"] = round(distance, 3)
      jobs = [chosen]
    if weak:
      entry["weak_detections"] = [{"box": [round(float(v), 2) for v in j.face.box],
                                   "score": round(float(j.face.score), 4)} for j in weak]
      log(f"{path}: note: ignored {len(weak)} weak detection(s) (HOG score < "
          f"{self.min_hog_score})")
    if not jobs:
      message = f"{path}: no face found"
      log(f"skipped: {message}")
      return {**entry, "status": "no-face", "error": message}
    records = self.reconstruct(jobs)
    start = time.perf_counter()
    base, scale = self.overlay_base(image)
    del image
    all_landmarks = []
    for record in records:
      record["photo"] = self.photo_layers(record, scale, (base.shape[1], base.shape[0]))
      if not write_files:
        face_entry, lm2d = self.face_entry(stem, record)
      else:
        face_entry, lm2d = self.write_face(output_dir, stem, record)
        export.write_png(Path(output_dir) / face_entry["files"]["overlay"],
                         self.overlay(base, scale, [record], [lm2d]))
      entry["faces"].append(face_entry)
      all_landmarks.append(lm2d)
    if on_faces is not None:
      on_faces(list(zip(entry["faces"], records, all_landmarks)))
    overlay = self.overlay(base, scale, records, all_landmarks)
    if write_files:
      export.write_png(Path(output_dir) / f"{stem}_overlay.png", overlay)
      entry["overlay"] = f"{stem}_overlay.png"
    if on_overlay is not None:
      on_overlay(overlay)
    self.timings["write"].append(time.perf_counter() - start)
    yaws = [round(f["pose_degrees"]["yaw"]) + 0 for f in entry["faces"]]
    poses = (", ".join(f"face{f['face']} yaw {y:d}" for f, y in zip(entry["faces"], yaws))
             if len(yaws) <= LISTED_FACES else f"yaw {min(yaws):d} to {max(yaws):d}")
    log(f"{path}: {len(records)} face(s) ({poses}) -> {Path(output_dir) / stem}_face*")
    return entry

  def process_video(self, path, output_dir, log=print, stem=None, frame_step=1,
                    progress=True, smoothing=DEFAULT_SMOOTHING, frame_files=True,
                    persons=DEFAULT_PERSONS):
    """Runs the pipeline on every `frame_step`-th frame of a video file: each frame's
    outputs as an image's, named `<stem>_f<frame>` (frame numbers from 0, five digits),
    and `<stem>_overlay.mp4`, the frames' overlays at `fps / frame_step` (frames without a
    face as they are).  The faces' points are smoothed over time first (`smoothing`, a
    `tracking.SmoothingConfig`; each frame is then fitted once the frames within its
    window are detected).  Every face of every frame also goes to `<stem>_tracks.npz` and
    `<stem>_tracks.png` (`tracks_arrays`, `track_plot`), with the person each track shows
    (`persons`, a `face_identity.PersonConfig`, or None: not grouped; also each face's
    summary entry's `person`).  `frame_files` False: the
    frames' own files are not written, only those and the overlay video.  One line per
    video through `log`; frames without a face are counted, not listed.  Returns its
    summary entry, with one image entry per frame under `frames` (never raises
    `InputError`)."""
    from tqdm import tqdm
    path = Path(path)
    stem = path.stem if stem is None else stem
    entry = {"image": str(path), "status": "ok", "faces": [], "frames": []}
    try:
      info = video_io.video_info(path)
    except InputError as error:
      log(f"skipped: {error}")
      return {**entry, "status": "error", "error": str(error)}
    video_name = f"{stem}{VIDEO_OVERLAY_SUFFIX}"
    lines = []
    total = -(-info.frames // frame_step) if info.frames else None
    tracks = tracking.FaceTracks(smoothing, info.fps)
    pending = collections.deque()     # (frame number, pixels, faces) detected, not yet fitted
    rows = []                         # `track_row` of each face written
    people = None if persons is None else face_identity.PersonGrouping(persons, info.fps)
    try:
      with contextlib.ExitStack() as stack:
        writer = []

        def finish_oldest():
          index, frame, found = pending.popleft()
          faces = None if found is None else tracks.smoothed(index)
          shown = []

          def on_faces(written):     # [(summary entry, record, landmarks [68, 2] photo px)]
            rows.extend(self.track_row(index, *face) for face in written)
            if people is not None:
              people.add(index, frame, written, log)

          frame_entry = self.process_image(
              f"{path}#{index}", output_dir, lines.append, image=frame,
              stem=f"{stem}_f{index:05d}", on_overlay=shown.append, faces=faces,
              write_files=frame_files, on_faces=on_faces)
          picture = shown[0] if shown else export.to_uint8(self.overlay_base(frame)[0])
          if not writer:
            writer.append(stack.enter_context(video_io.video_writer(
                Path(output_dir) / video_name, info.fps / frame_step, picture.shape[1::-1])))
          writer[0](picture)
          entry["frames"].append({**frame_entry, "frame": index})
          tracks.forget(index)

        for index, frame in tqdm(video_io.read_frames(path, step=frame_step), total=total,
                                 desc=path.name, unit="frame", disable=not progress,
                                 leave=False):
          try:
            faces = self.find_faces(frame)
            tracks.add(index, faces, frame)
          except MemoryError:      # process_image detects again and reports it
            faces = None
          pending.append((index, frame, faces))
          while pending and index - pending[0][0] >= tracks.radius:   # window detected
            finish_oldest()
        while pending:
          finish_oldest()
    except InputError as error:
      log(f"skipped: {error}")
      return {**entry, "status": "error", "error": str(error)}
    for line in lines:      # a frame's problems other than "no face found"
      if line.startswith("skipped: ") and not line.endswith(": no face found"):
        log(line)
    with_faces = sum(f["status"] == "ok" for f in entry["frames"])
    entry["video"] = {"fps": info.fps, "frame_step": frame_step,
                      "smoothing_seconds": smoothing.sigma_seconds,
                      "frames_read": len(entry["frames"]), "frames_with_faces": with_faces,
                      "overlay": video_name}
    if rows:
      if people is not None:
        entry["video"]["persons"] = people.assign(rows)
      arrays = self.tracks_arrays(rows, info.fps)
      tracks_name = f"{stem}{VIDEO_TRACKS_SUFFIX}"
      savez_atomic(Path(output_dir) / tracks_name, **arrays)
      plot_name = f"{stem}{VIDEO_PLOT_SUFFIX}"
      track_plot.plot_tracks(Path(output_dir) / plot_name, arrays, self.face_model.mm_per_unit,
                             title=path.name)
      entry["video"].update(tracks=tracks_name, tracks_plot=plot_name)
    if not with_faces:
      message = f"{path}: no face found in {len(entry['frames'])} frame(s)"
      log(f"skipped: {message}")
      return {**entry, "status": "no-face", "error": message}
    written = [f"{Path(output_dir) / stem}_f*_face*"] if frame_files else []
    written += [str(Path(output_dir) / video_name),
                str(Path(output_dir) / entry["video"]["tracks"]),
                str(Path(output_dir) / entry["video"]["tracks_plot"])]
    log(f"{path}: {len(entry['frames'])} frame(s), faces in {with_faces} -> "
        + ", ".join(written))
    return entry


  @staticmethod
  def track_row(frame, entry, record, landmarks):
    """One face's row of a video's `<stem>_tracks.npz` (`tracks_arrays`): its small
    arrays only, so that a long video's rows stay small."""
    job, pose = record["job"], record["pose"]
    return {"frame": frame, "face": entry["face"], "track": entry.get("track", -1),
            **record["coeffs"],
            "pose_degrees": pose_array(pose),
            "box": np.asarray(job.face.box, np.float32),
            "landmarks2d": np.asarray(landmarks, np.float32),
            "landmarks3d": np.asarray(record["landmarks3d"], np.float32),
            "fit_landmark_error_px": np.float32(record["landmark_error_px"])}

  def npz_header(self, kind, version):
    """The fields every `.npz` the pipeline writes starts with: its format and the face
    model its coefficients are for."""
    return {"format_kind": np.array(kind), "format_version": np.array(version),
            "face_model": np.array(self.face_model.name),
            "face_model_hash": np.array(self.face_model.source_hash)}

  def tracks_arrays(self, rows, fps):
    """The arrays of a video's `<stem>_tracks.npz`: each of `rows` (`track_row`, in frame
    order) stacked, plus the format, the face model and the video's rate."""
    return {**self.npz_header(TRACKS_KIND, TRACKS_VERSION),
            "fps": np.array(fps, np.float64),
            **{name: np.stack([np.asarray(row[name]) for row in rows]) for name in rows[0]}}


def keyframes(files, frame_step=1, count=SAME_PERSON_FACES):
  """Yields up to `count` images (uint8 RGB [H, W, 3]) spread evenly over the photos of
  `files` and the frames a run reads of its videos (every `frame_step`-th), in order; files
  that cannot be read are passed over (the run reports them)."""
  slots = []
  for path in files:
    if not is_video_file(path):
      slots.append((path, None))
      continue
    try:
      frames = video_io.video_info(path).frames
    except InputError:
      continue
    slots += [(path, k) for k in range(0, max(frames, 1), frame_step)]
  chosen = [slots[k] for k in video_io.evenly_spaced(len(slots), count)] if slots else []
  for path, group in itertools.groupby(chosen, key=lambda slot: slot[0]):
    wanted = [k for _, k in group]
    try:
      if wanted[0] is None:
        yield read_image(path)
      else:
        for _, frame in video_io.read_frames(path, wanted=wanted):
          yield frame
    except InputError:
      continue


def texture_weight(cosine, facing=TEXTURE_FACING):
  """How much the UV texture trusts the photo at each vertex: [V] in [0, 1].

  Args:
    cosine: [V] between each vertex normal and the direction to the camera
      (`shared.model.camera.facing_cosine`).
    facing: the cosines at which the weight leaves 0 and reaches 1.
  """
  return np.clip((np.asarray(cosine, np.float64) - facing[0]) / (facing[1] - facing[0]),
                 0.0, 1.0)


def blend_texture(fitted, sampled, weight, adjacency):
  """Per-vertex texture colours from the photo where it is trusted, the fitted colours in
  the photo's tone elsewhere.

  Args:
    fitted: [V, 3] the fitted model's lit colours.
    sampled: [V, 3] the photo at each vertex's projection.
    weight: [V] in [0, 1], how much the photo is trusted (`texture_weight`, 0 where hidden).
    adjacency: [V, V] scipy sparse mesh edges.

  Returns:
    [V, 3] float32 in [0, 1]: `sampled` where the weight is 1; elsewhere
    fitted + c, c the change (sampled - fitted) of the weight-1 vertices
    filled harmonically over the rest (`shared.mesh.inpaint`), blended with
    `sampled` by the weight.
  """
  weight = np.asarray(weight, np.float64)
  sampled = np.asarray(sampled, np.float64)
  filled = fill_change(fitted, sampled, weight >= 1.0, adjacency)
  colours = filled + weight[:, None] * (sampled - filled)
  return np.clip(colours, 0.0, 1.0).astype(np.float32)


def mtl_text(texture_name):
  """MTL text of one material `face` whose diffuse map is `texture_name`."""
  return f"newmtl face\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nmap_Kd {texture_name}\n"


def obj_with_uv(vertices, faces, colours, uv, mtl_name):
  """OBJ text with vertex colours, per-vertex texture coordinates and a material."""
  corners = np.repeat(np.asarray(faces) + 1, 2, axis=1)     # f a/a b/b c/c
  return (f"mtllib {mtl_name}\n" + export.obj_vertex_text(vertices, colours)
          + export.rows_text("vt %.6f %.6f", np.asarray(uv, np.float64)) + "usemtl face\n"
          + export.rows_text("f %d/%d %d/%d %d/%d", corners))


def reconstruct_photos(inputs, face_model, output_dir, regressor=None,
                       fit_config=fitting.FitConfig(), log=print, cnn_fallback=False,
                       landmarks="dense",
                       max_batch=DEFAULT_MAX_BATCH, frame_step=1, progress=True,
                       same_person=False, smoothing=DEFAULT_SMOOTHING, frame_files=True):
  """Reconstructs every face in every image and video frame; see the module doc for outputs.

  Args:
    inputs: an image file, a folder of images, or a list of files.
    face_model: `shared.model.face_model.FaceModel` (ICT gets BFM jaw landmarks,
      `bfm_landmark_convention`).
    output_dir: folder for the outputs (created).
    regressor: optional callable `images [B, 224, 224, 3] float32 in [0, 1] ->
      Coefficients` or `(Coefficients, features)` for `face_model`, e.g.
      `mgc_face.infer.load_regressor(...)`; None starts fitting from the mean
      face, posed from the landmarks.
    fit_config: `fitting.FitConfig`; `fit_config.with_steps(0)` disables fitting.
    log: called with one line per image (and per problem).
    cnn_fallback: try dlib's slow CNN detector when no other detector finds a face.
    landmarks: `"dense"` (default), `"mesh68"` or `"dlib"` (see
      `shared.photo.landmarks.LANDMARK_MODES`).
    max_batch: faces fitted together at most.
    frame_step: of a video, every `frame_step`-th frame is read (1: every frame).
    progress: a progress bar over each video's frames.
    same_person: the inputs show one person: one identity, fitted jointly to up to
      `SAME_PERSON_FACES` of them (`keyframes`), is held fixed in every fit, and only one
      face of each image or frame is reconstructed, the one that looks most like the
      pooled faces (module doc).
    smoothing: `tracking.SmoothingConfig` of the videos' face points over time
      (`SmoothingConfig(sigma_seconds=0)`: each frame on its own).
    frame_files: False: of a video, write only the overlay video, `<stem>_tracks.npz` and
      `<stem>_tracks.png`, not each frame's files.

  Returns:
    The summary dict that is also written to `output_dir/summary.json`.

  Raises:
    InputError: `inputs` does not exist or is an empty folder, or is one image file that
      cannot be read (then nothing is written; in a folder or list, an unreadable file is
      skipped and reported in the summary).
  """
  files = collect_inputs(inputs)
  if landmarks not in LANDMARK_MODES:
    raise InputError(f"--landmarks {landmarks}: choose from {', '.join(LANDMARK_MODES)}")
  if int(frame_step) < 1:
    raise InputError(f"--frame-step {frame_step}: must be at least 1")
  if not (np.isfinite(smoothing.sigma_seconds) and smoothing.sigma_seconds >= 0):
    raise InputError(f"--smoothing {smoothing.sigma_seconds:g}: must be 0 (none) or more "
                     "seconds")
  started = time.perf_counter()
  single = isinstance(inputs, (str, Path)) and Path(inputs).is_file()
  first = None
  if single and is_video_file(files[0]):
    video_io.video_info(files[0])                     # one video: a bad one stops here
  elif single:
    first = read_image(files[0])                      # one image: likewise
  first_seconds = time.perf_counter() - started
  output_dir = Path(output_dir)
  output_dir.mkdir(parents=True, exist_ok=True)
  backend, fit_points = LANDMARK_MODES[landmarks]
  pipeline = PhotoReconstructor(face_model, regressor, fit_config, cnn_fallback, max_batch,
                                backend=backend, fit_points=fit_points)
  if pipeline.dense_note:
    log(pipeline.dense_note)
  pooled, left_out = None, 0
  if same_person:
    pooled, left_out = pipeline.pool_identity(keyframes(files, int(frame_step)), log)
    log(f"same person: one identity fitted to {pooled} face(s), held in every fit"
        + (f"; {left_out} face(s) that look like another person left out" if left_out else "")
        if pooled else "same person: no face found to fit an identity to")
  images = []
  for k, (path, stem) in enumerate(zip(files, output_stems(files))):
    if is_video_file(path):
      images.append(pipeline.process_video(path, output_dir, log, stem=stem,
                                           frame_step=int(frame_step), progress=progress,
                                           smoothing=smoothing, frame_files=frame_files))
    elif k == 0 and first is not None:
      images.append(pipeline.process_image(path, output_dir, log, image=first,
                                           read_seconds=first_seconds, stem=stem))
    else:
      images.append(pipeline.process_image(path, output_dir, log, stem=stem))
  faces = sum(len(entry["faces"]) + sum(len(f["faces"]) for f in entry.get("frames", ()))
              for entry in images)
  t = pipeline.timings
  summary = {
      "format_kind": SUMMARY_KIND, "format_version": SUMMARY_VERSION,
      "face_model": pipeline.face_model.name,
      # The 468-point mesh model that read the faces (None: dlib's 68 only).
      "mesh_model": None if pipeline.backend == "dlib" else face_mesh.mesh_model(),
      "regressor": None if regressor is None else type(regressor).__name__,
      "fit": {"landmark_steps": fit_config.landmark_steps,
              "photometric_steps": fit_config.photometric_steps,
              "changed": describe_changes(fitting.FitConfig(), fit_config, None)},
      "same_person": None if pooled is None else {"faces_pooled": pooled,
                                                  "faces_left_out": left_out},
      "images": len(files),
      "images_ok": sum(entry["status"] == "ok" for entry in images),
      "faces": faces,
      "seconds": round(time.perf_counter() - started, 3),
      "seconds_per_stage": {k: round(float(np.sum(v)), 3) for k, v in t.items()},
      "pose_convention": "degrees in the photo's frame; yaw > 0 turns to image right, "
                         "pitch > 0 looks down, roll > 0 counter-clockwise",
      "results": images,
  }
  write_text_atomic(output_dir / SUMMARY_FILE, json.dumps(summary, indent=1) + "\n")
  log(f"{faces} face(s) from {summary['images_ok']}/{len(files)} file(s) -> "
      f"{output_dir / SUMMARY_FILE}")
  return summary
