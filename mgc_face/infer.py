"""Inference with a trained MGC regressor: loading, regression and test-mode exports.

Public contract (other packages code against it):

* `load_regressor(checkpoint_dir, face_model=None) -> Regressor` with
  `.face_model`, `.layout`, `.feature_size` and `__call__(images [B, 224,
  224, 3] float32 RGB in [0, 1]) -> (Coefficients, features [B, D])`;
* `regress(regressor, images) -> Coefficients`;
* `build_regressor(face_model, config) -> Regressor` (untrained).

Test mode (`reconstruct_folder`) takes already aligned 224x224 face images
(or 672x224 strips, of which the target view is used) and writes per image:
`NAME.obj` (model-space mesh with lit vertex colours), `NAME_coeffs.npz`,
`NAME_lm2d.txt` / `NAME_lm3d.txt`, `NAME_overlay.png` (input | render over
input with the 68 landmarks), `NAME_depth.png` and `NAME_poses.png` (the
reconstructed geometry, grey-shaded, from several yaws).
"""

import json
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from mgc_face import augment as augment_lib
from mgc_face import cascade as cascade_lib
from mgc_face import checkpoint as checkpoint_lib
from mgc_face import data as data_lib
from mgc_face import freeze
from mgc_face import model as model_lib
from shared import quiet
from shared.io import export
from shared.render import rasterizer
from shared.render import renderer as render_lib
from shared.errors import InputError, fail_none_usable
from shared.io.fileio import savez_atomic, write_text_atomic
from shared.io.image_io import IMAGE_SUFFIXES, list_images, output_stems
from shared.render.face_image import FaceSynthesizer

COEFFS_KIND = "face3d-mgc-coefficients"
COEFFS_VERSION = 1
SKIP_SUFFIXES = ("_skin", "_overlay", "_depth", "_poses")
POSE_YAWS = (-60.0, -30.0, 0.0, 30.0, 60.0)   # Degrees, multi-pose geometry render.
GEOMETRY_GREY = 0.75
GEOMETRY_LIGHT = {1: -0.2, 3: 0.25}          # SH band -> value (grey key light from the left).
NUM_SH_BANDS = 9
LANDMARK_COLOUR = (0.1, 1.0, 0.2)
LANDMARK_RADIUS = 1


class Regressor(model_lib.Regressor):
  """`mgc_face.model.Regressor` with a frozen, compiled inference path.

  Inference (`training=False`) runs a graph of the network with its batch
  norms folded into the convolutions and the weights as constants
  (`mgc_face.freeze`), one per batch size, so that Grappler fuses conv +
  bias + (residual add) + ReLU into single oneDNN convolutions.  The graph is
  a snapshot of the weights at its first use; call `refresh()` after
  changing them (training goes through `training=True`).

  When the checkpoint has a landmark cascade (`mgc_face.cascade`, CKPT/cascade.npz,
  trained for the checkpoint's step), inference refines the head's points with it
  (in NumPy, after the graph) and the coefficient layer reads the refined points
  (the cascade's reader, when it has one, reads its coefficients instead);
  `head_landmarks` then returns them.
  """

  def __init__(self, network, face_model, config):
    super().__init__(network, face_model, config)
    self._frozen = {}
    self._folded = None
    self.cascade = None     # `mgc_face.cascade.Cascade` of the checkpoint, if it has one.

  def refresh(self):
    """Forgets the frozen graphs (after the weights changed)."""
    self._frozen = {}
    self._folded = None

  def _inference(self, batch_size):
    if batch_size not in self._frozen:
      if self._folded is None:
        self._folded = freeze.fold_batch_norms(self.network)
      spec = tf.TensorSpec([batch_size, data_lib.VIEW_SIZE, data_lib.VIEW_SIZE, 3], tf.float32)
      self._frozen[batch_size] = freeze.freeze(self._folded, spec)
    return self._frozen[batch_size]

  def inference_outputs(self, images):
    """images [B, 224, 224, 3] float in [0, 1] -> the inference outputs as a list:
    coefficient vectors [B, C], pooled features [B, D] and, with a landmark head, points
    [B, 68, 2] px and heatmap logits.  With a landmark cascade the points are its refined
    ones (averaged with the mirror image's under `config.cascade_test_mirror`) and the
    coefficients those the coefficient layer (or the cascade's reader) reads from them."""
    images = tf.convert_to_tensor(images, tf.float32)
    outputs = list(self._inference(int(images.shape[0]))(images))
    if self.cascade is not None:
      points = self.refined_points(images, outputs[2].numpy())
      landmarks = points[:, :cascade_lib.LANDMARKS]
      outputs[2] = tf.constant(landmarks)
      shape = model_lib.normalise_landmarks(tf.constant(landmarks))
      outputs[0] = self.coefficients_from_shape(outputs[1], shape)
      if self.cascade.reader is not None:   # It reads every refined point, dense ones too.
        every = model_lib.normalise_landmarks(tf.constant(points)).numpy()
        yaw = np.degrees(self.layout.split(outputs[0]).rotation.numpy()[:, 1])
        outputs[0] = tf.constant(self.cascade.read(every, outputs[0].numpy(), yaw))
    return outputs

  def refined_points(self, images, head_points):
    """Every point the cascade refines, [B, K, 2] px (the 68 landmarks first, then its dense
    points), from images [B, 224, 224, 3] and the network's [B, 68, 2] on them; averaged
    with the mirror image's, mapped back, under `config.cascade_test_mirror`."""
    images = tf.convert_to_tensor(images, tf.float32)
    points = self.cascade.refine(images.numpy(), head_points)
    if self.config.cascade_test_mirror:
      mirrors = tf.reverse(images, [2])
      mirrored = self.cascade.refine(
          mirrors.numpy(), self._inference(int(images.shape[0]))(mirrors)[2].numpy())
      flip = augment_lib.FLIP_PERMUTATION if self.cascade.flip is None else self.cascade.flip
      points = 0.5 * (points + augment_lib.mirror_points(mirrored, int(images.shape[2]), flip))
    return points

  def __call__(self, images, training=False):
    """images [B, 224, 224, 3] float32 in [0, 1] -> (`Coefficients`, features [B, D])."""
    if training:
      return super().__call__(images, training=True)
    outputs = self.inference_outputs(images)
    return self.layout.split(outputs[0]), outputs[1]

  def head_landmarks(self, images, training=False):
    """As `mgc_face.model.Regressor.head_landmarks`; at inference the points are the
    cascade's when the checkpoint has one."""
    if training or self.cascade is None:
      return super().head_landmarks(images, training)
    outputs = self.inference_outputs(images)
    return self.layout.split(outputs[0]), tuple(outputs[2:4])


def build_regressor(face_model, config, backbone_weights=None):
  """An untrained `Regressor` (zero head: the mean face at the default pose)."""
  base = model_lib.build_regressor(face_model, config, backbone_weights)
  return Regressor(base.network, face_model, config)


def load_regressor(checkpoint_dir, face_model=None):
  """Loads the latest checkpoint in `checkpoint_dir`.

  Args:
    checkpoint_dir: a folder written by `mgc_face.train`.
    face_model: the `FaceModel` to use; None loads the default model.  Either
      way it must be the model the checkpoint was trained with.

  Raises:
    InputError: no checkpoint, or a checkpoint of another face model.
  """
  checkpoint_dir = Path(checkpoint_dir)
  if not checkpoint_dir.is_dir():
    raise InputError(f"{checkpoint_dir}: checkpoint folder not found")
  latest = tf.train.latest_checkpoint(str(checkpoint_dir))
  meta = checkpoint_lib.read_meta(checkpoint_dir)
  if latest is None or meta is None:
    missing = "no checkpoint" if latest is None else f"no {checkpoint_lib.META_FILE}"
    raise InputError(f"{checkpoint_dir}: {missing} (train one with --mode train)")
  if face_model is None:
    from shared.model.face_model import load_face_model
    face_model = load_face_model()
  checkpoint_lib.check_face_model(meta, face_model, checkpoint_dir)
  config = checkpoint_lib.saved_config(meta, checkpoint_dir)
  regressor = build_regressor(face_model, config)
  status = tf.train.Checkpoint(network=regressor.network).restore(latest)
  status.expect_partial()
  try:
    status.assert_existing_objects_matched()
  except AssertionError as error:
    raise InputError(f"{latest}: checkpoint does not match the '{config.name}' network "
                     f"({str(error).splitlines()[0][:120]})") from None
  regressor.steps = meta["step"]
  cascade = cascade_lib.load(checkpoint_dir)
  if cascade is not None and cascade.step != regressor.steps:
    print(f"{checkpoint_dir}: note: the landmark cascade was trained for step {cascade.step}, "
          f"the network is at step {regressor.steps}: not used (train again to refit it)",
          file=sys.stderr)
    cascade = None
  regressor.cascade = cascade
  return regressor


def regress(regressor, images):
  """[B, 224, 224, 3] (or [224, 224, 3]) float images in [0, 1] -> `Coefficients`."""
  images = np.asarray(images, np.float32)
  if images.ndim == 3:
    images = images[None]
  if images.shape[1:] != (data_lib.VIEW_SIZE, data_lib.VIEW_SIZE, 3):
    raise InputError(f"images must be [B, {data_lib.VIEW_SIZE}, {data_lib.VIEW_SIZE}, 3], got "
                     f"{list(images.shape)}")
  return regressor(images)[0]


# ----------------------------------------------------------------------------- reconstruction

class Reconstructor:
  """Regress, decode and render in one graph call per batch size."""

  OUTPUTS = ("coefficients", "vertices", "posed", "colours", "landmarks2d", "landmarks3d",
             "image", "mask", "depth", "front")

  def __init__(self, regressor):
    rasterizer.load()  # Build/load the kernel eagerly, not while tracing.
    self.regressor = regressor
    self.face_model = regressor.face_model
    self.synth = FaceSynthesizer(regressor.face_model)
    synth = self.synth
    layout = regressor.layout

    # Decoding has no custom op, so it compiles with XLA (about 2x faster than
    # the plain graph for one image), in two parts: the rasterizer needs only
    # the geometry, so it runs while the appearance (albedo, normals, light)
    # is computed.
    @tf.function(jit_compile=True, reduce_retracing=True)
    def geometry(vector):
      return synth.geometry(layout.split(vector))

    @tf.function(jit_compile=True, reduce_retracing=True)
    def appearance(vector, vertices):
      return synth.appearance(layout.split(vector), vertices)[2]

    def decode_and_render(vector):
      vertices, posed, landmarks3d, landmarks2d = geometry(vector)
      colours = appearance(vector, vertices)
      r = synth.render_attributes(posed, colours)
      front = render_lib.front_facing(posed, synth.decoder.faces, r.triangle_ids, synth.camera)
      return vertices, posed, colours, landmarks2d, landmarks3d, r.image, r.mask, r.depth, front

    # The frozen regressor graph (`Regressor._inference`) is called inside the
    # same graph: one dispatch per image instead of one per stage.  One trace
    # per batch size (the frozen graph has a static batch).
    @tf.function
    def reconstruct(images):
      vector = regressor._inference(int(images.shape[0]))(images)[0]
      return (vector,) + decode_and_render(vector)

    self._decode_and_render = tf.function(decode_and_render, reduce_retracing=True)
    self._reconstruct = reconstruct

  def __call__(self, images):
    """images [B, 224, 224, 3] -> dict of numpy arrays: coefficients, vertices,
    posed, colours, landmarks2d, landmarks3d, image, mask, depth, front (the pixels
    that show the outer side of the mesh, `shared.render.renderer.front_facing`)."""
    images = tf.convert_to_tensor(images, tf.float32)
    if self.regressor.cascade is not None:  # Its HOG stages run in NumPy, outside the graph.
      vector = self.regressor.inference_outputs(images)[0]
      outs = (vector,) + tuple(self._decode_and_render(vector))
    else:
      self.regressor._inference(int(images.shape[0]))  # Freeze eagerly, not while tracing.
      outs = self._reconstruct(images)
    return {k: v.numpy() for k, v in zip(self.OUTPUTS, outs)}

  def geometry_views(self, coefficients):
    """Grey-shaded renders of one reconstruction from `POSE_YAWS`, [N, H, W, 3]."""
    layout = self.regressor.layout
    n = len(POSE_YAWS)
    coeffs = layout.split(tf.constant(np.tile(coefficients[None], [n, 1]), tf.float32))
    sh = np.zeros((n, 3 * NUM_SH_BANDS), np.float32)
    for band, value in GEOMETRY_LIGHT.items():
      sh[:, [band, band + NUM_SH_BANDS, band + 2 * NUM_SH_BANDS]] = value
    rotation = np.zeros((n, 3), np.float32)
    rotation[:, 1] = np.radians(POSE_YAWS)
    coeffs = coeffs._replace(rotation=tf.constant(rotation), translation=tf.zeros([n, 3]),
                             lighting=tf.constant(sh))
    grey = tf.fill([n, self.face_model.num_vertices, 3], GEOMETRY_GREY)
    out = self.synth(coeffs, vertex_colours=grey)
    r = render_lib.drop_back_faces(out.render, out.posed, self.face_model.faces, self.synth.camera)
    return (r.image * r.mask + (1.0 - r.mask)).numpy()


def load_input_image(path):
  """An aligned face as [224, 224, 3] float32; a 672x224 strip gives its target view."""
  width, height = data_lib.image_size(path)
  if (width, height) == (data_lib.STRIP_WIDTH, data_lib.VIEW_SIZE):
    return data_lib.read_strip_target(path)
  if (width, height) != (data_lib.VIEW_SIZE, data_lib.VIEW_SIZE):
    raise InputError(f"{path}: image is {width}x{height}; test mode expects an aligned "
                     f"{data_lib.VIEW_SIZE}x{data_lib.VIEW_SIZE} face crop (or a "
                     f"{data_lib.STRIP_WIDTH}x{data_lib.VIEW_SIZE} strip)")
  return data_lib.read_image(path)


def collect_inputs(path):
  """Image files under `path` (a file or a folder, not recursive), sorted."""
  path = Path(path)
  if path.is_file():
    return [path]
  if not path.is_dir():
    raise InputError(f"{path}: input not found")
  files = list_images(path, skip_stem_suffixes=SKIP_SUFFIXES)
  if not files:
    raise InputError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
  return files


def draw_landmarks(image, points):
  """Marks points [68, 2] (continuous pixels) on a float image copy."""
  out = np.array(image, np.float32)
  h, w = out.shape[:2]
  for x, y in np.floor(points).astype(int):  # 68 points: not a hot path.
    out[max(y - LANDMARK_RADIUS, 0):min(y + LANDMARK_RADIUS + 1, h),
        max(x - LANDMARK_RADIUS, 0):min(x + LANDMARK_RADIUS + 1, w)] = LANDMARK_COLOUR
  return out


def write_reconstruction(out_dir, name, image, result, index, reconstructor):
  """Writes all per-image outputs for batch item `index` of `result`."""
  out_dir = Path(out_dir)
  model = reconstructor.face_model
  layout = reconstructor.regressor.layout
  vector = result["coefficients"][index]
  coeffs = layout.split(tf.constant(vector[None]))
  export.write_obj(out_dir / f"{name}.obj", result["vertices"][index], model.faces,
                   np.clip(result["colours"][index], 0, 1))
  savez_atomic(out_dir / f"{name}_coeffs.npz", format_kind=np.array(COEFFS_KIND),
               format_version=np.array(COEFFS_VERSION), coefficients=vector,
               layout=np.array(json.dumps(checkpoint_lib.layout_dict(layout))),
               face_model_hash=np.array(model.source_hash),
               **{k: np.asarray(v)[0] for k, v in coeffs._asdict().items()})
  write_text_atomic(out_dir / f"{name}_lm2d.txt", "".join(
      f"{x:.3f} {y:.3f}\n" for x, y in result["landmarks2d"][index]))
  write_text_atomic(out_dir / f"{name}_lm3d.txt", "".join(
      f"{x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in result["landmarks3d"][index]))
  shown = result["mask"][index] * result["front"][index]   # Not the mesh's back through its holes.
  overlay = export.overlay(image, result["image"][index], shown)
  overlay = draw_landmarks(overlay, result["landmarks2d"][index])
  export.write_png(out_dir / f"{name}_overlay.png", export.grid([image, overlay], 2))
  export.write_png(out_dir / f"{name}_depth.png",
                   export.depth_image(result["depth"][index], shown))
  views = reconstructor.geometry_views(vector)
  export.write_png(out_dir / f"{name}_poses.png", export.grid(list(views), len(views)))


def reconstruct_folder(regressor, input_path, output_dir, log=None, progress=True):
  """Test mode over a file or folder.  Bad images are reported and skipped.

  Returns:
    (number written, list of one-line problems).
  Raises:
    InputError: when no image could be processed.
  """
  from tqdm import tqdm
  log = log or quiet.log_line
  files = collect_inputs(input_path)
  reconstructor = Reconstructor(regressor)
  output_dir = Path(output_dir)   # Made with the first reconstruction, as GCN test does.
  written, problems = 0, []
  for path, stem in tqdm(list(zip(files, output_stems(files))), desc="test", unit="image",
                         disable=not progress or len(files) < 2):
    try:
      image = load_input_image(path)
    except InputError as error:
      problems.append(str(error))
      log(f"skipped: {error}")
      continue
    result = reconstructor(image[None])
    output_dir.mkdir(parents=True, exist_ok=True)
    write_reconstruction(output_dir, stem, image, result, 0, reconstructor)
    written += 1
  if not written:
    fail_none_usable(input_path, problems)
  return written, problems

