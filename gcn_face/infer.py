"""Refining textures with a trained GCN: the pipeline, checkpoints and test mode.

`TexturePipeline` chains the coarse stage (MGC regressor + synthesis), the
per-vertex inputs and the `TextureGCN`; training, evaluation and test mode
all use it.  A GCN checkpoint folder holds `gcn.json` (what to rebuild the
model with, `gcn_face.checkpoint`) and TensorFlow checkpoint files.

Test mode (`run_test`) writes, per image NAME (and scores inputs that have
an alpha channel, see `TestResult`):
  NAME_coarse.obj, NAME_refined.obj   model-space mesh (model units) with
                                      the coarse / refined albedo as vertex colours
  NAME_compare.png                    input | coarse render | refined render
  NAME_uv.png                         refined albedo in UV space (if the
                                      face model has UVs)

A face in a photo is refined from the part of it seen unoccluded
(`PhotoFrontEnd`, `TexturePipeline.coarse`'s `seen`, `TestStep`): hair over
the forehead is not read, and the refined change there is filled in from
around it (`shared.mesh.inpaint`; docs/gcn.md, "Session 33").
"""

import dataclasses
import re
from pathlib import Path

import numpy as np
import tensorflow as tf

from shared import quiet
from shared.io import export
from shared.model import lighting
from shared.render import renderer as render_lib
from shared.train.embedding import FaceEmbedder
from shared.errors import InputError, fail, fail_none_usable
from shared.io.fileio import write_text_atomic
from shared.io.image_io import IMAGE_SUFFIXES, list_images, output_stems
from gcn_face import checkpoint as checkpoint_lib
from gcn_face.binfile import record_stem
from gcn_face import coarse as coarse_lib
from gcn_face import confidence
from gcn_face import layers
from gcn_face import model as model_lib

UV_TEXTURE_SIZE = 512
HIDDEN_VISIBILITY = 0.5   # a vertex is seen at or above this visibility (`CoarseResult.hidden`)
HIDDEN_MIN_IRRADIANCE = 0.75   # only vertices lit at least this much can be hidden by `seen`
UINT8_MAX = 255


@dataclasses.dataclass
class CoarseResult:
  """The coarse stage for a batch, everything the GCN and its losses need.

  images [B, H, W, 3], alpha [B, H, W, 1], coeffs (`Coefficients`),
  features [B, F] (regressor feature, plus the embedding if any),
  synth (`Synthesis` with `render`), inputs [B, V, 7], projected [B, V, 3],
  visibility [B, V, 1], embedding [B, D] of the input or None, hidden [B, V, 1]
  (1 where a vertex the alpha shows is hidden by the `seen` region) or None.
  """
  images: tf.Tensor
  alpha: tf.Tensor
  coeffs: object
  features: tf.Tensor
  synth: object
  inputs: tf.Tensor
  projected: tf.Tensor
  visibility: tf.Tensor
  embedding: object = None
  hidden: object = None


@dataclasses.dataclass
class RefineResult:
  """albedo [B, V, 3] in [0, 1], lit [B, V, 3], render (`RenderOutput`)."""
  albedo: tf.Tensor
  lit: tf.Tensor
  render: object


class TexturePipeline:
  """Coarse stage -> per-vertex inputs -> TextureGCN -> lit, rendered texture.

  Args:
    stage: `gcn_face.coarse.CoarseStage`.
    topology: `shared.mesh.topology.Topology` of the stage's face model.
    config: `GCNConfig`.
    embedding: optional `gcn_face.model.EmbeddingModel`, concatenated to
      the image feature (and used by the perception loss).
  """

  def __init__(self, stage, topology, config, embedding=None):
    if topology.num_vertices[0] != stage.face_model.num_vertices:
      raise InputError(f"{topology.path or 'mesh hierarchy'}: level 0 has "
                       f"{topology.num_vertices[0]} vertices but the face model has "
                       f"{stage.face_model.num_vertices}")
    self.stage = stage
    self.topology = topology
    self.config = config
    self.embedding = embedding
    self.synthesizer = stage.synthesizer
    if self.synthesizer.camera.image_size != config.image_size:
      raise InputError(f"the coarse stage renders {self.synthesizer.camera.image_size} px but "
                       f"the GCN config expects {config.image_size} px")
    self.gcn = model_lib.TextureGCN(topology, config, name="texture_gcn")
    self.skin = tf.constant(stage.face_model.skin_mask)
    levels = config.lowpass_levels if config.lowpass_weight > 0 else 0
    if levels > len(topology.D):
      raise InputError(f"config lowpass_levels {levels}: the hierarchy has {len(topology.D)} "
                       "pooling steps")
    self.lowpass_down = [layers.sparse_constant(d) for d in topology.D[:levels]]
    self.lowpass_up = [layers.sparse_constant(u) for u in topology.U[:levels]]
    self.fitter = None
    if config.coarse_fit_steps > 0 or config.coarse_fit_colour_steps > 0:
      from shared.fit.fitter import Fitter, FitConfig
      self.fitter = Fitter(self.synthesizer, FitConfig(
          landmark_steps=config.coarse_fit_steps,
          photometric_steps=config.coarse_fit_colour_steps,
          shape_weight=config.coarse_fit_shape_weight,
          expression_ratio=config.coarse_fit_expression_ratio))
    self.symmetry = tf.constant(np.asarray(topology.symmetry[0], np.int32).reshape(-1, 2))

  @property
  def feature_size(self):
    extra = self.embedding.output_size if self.embedding is not None else 0
    return self.stage.feature_size + extra

  def build(self):
    """Creates the GCN's variables (for checkpoint restore) with a dummy call."""
    v = self.stage.face_model.num_vertices
    self.gcn(tf.zeros([1, self.feature_size]),
             tf.zeros([1, v, model_lib.refiner_input_channels(self.config)]))

  def regress(self, images, landmarks=None, alpha=None):
    """The coarse regressor, then the landmark refit: (Coefficients, features [B, F]).

    Compiled jobs call this eagerly, outside their `tf.function`, and pass
    the result to `coarse`: the regressor is an external frozen model with
    its own compiled path (MGC freezes a graph per batch size on first use).

    With `config.coarse_fit_steps` > 0 and `landmarks` ([B, 68, 2] pixels of
    the crop; rows with NaN are left alone), the pose, identity and
    expression are refitted to the landmarks, then with
    `config.coarse_fit_colour_steps` the albedo and lighting to the image
    inside `alpha` ([B, H, W, 1], default: everywhere) (`fit_coarse`).
    """
    coeffs, features = self.stage(tf.convert_to_tensor(images, tf.float32))
    if self.fitter is not None and landmarks is not None:
      coeffs = self.fit_coarse(images, landmarks, coeffs, alpha)
    return coeffs, features

  def fit_coarse(self, images, landmarks, coeffs, alpha=None):
    """The batch's coefficients refitted to [B, 68, 2] landmarks (rows with NaN kept).

    One batched `Fitter.fit` started from `coeffs`: `config.coarse_fit_steps`
    landmark steps (pose, identity, expression), then
    `config.coarse_fit_colour_steps` colour steps (albedo, lighting; skin
    region `alpha`); without colour steps albedo and lighting stay the
    regressor's.
    """
    landmarks = np.asarray(landmarks, np.float32)
    rows = np.flatnonzero(np.isfinite(landmarks).all(axis=(1, 2)))
    if rows.size == 0:
      return coeffs
    images = tf.convert_to_tensor(images, tf.float32)
    init = type(coeffs)(*[tf.gather(part, rows) for part in coeffs])
    skin = None if alpha is None else tf.gather(tf.convert_to_tensor(alpha, tf.float32), rows)
    fitted = self.fitter.fit(tf.gather(images, rows), landmarks[rows], init=init, skin=skin,
                             render=False).coeffs
    if rows.size == landmarks.shape[0]:
      return type(coeffs)(*[tf.stop_gradient(part) for part in fitted])
    index = tf.constant(rows[:, None], tf.int32)
    return type(coeffs)(*[tf.stop_gradient(tf.tensor_scatter_nd_update(old, index, new))
                          for old, new in zip(coeffs, fitted)])

  def coarse(self, images, alpha=None, regressed=None, seen=None):
    """The coarse stage: synthesis, render and the refiner's inputs.

    Args:
      images: [B, H, W, 3] float32 in [0, 1].
      alpha: [B, H, W, 1] face / skin mask, or None to use the face model's
        projected skin region.
      regressed: `regress(images)` if already computed.
      seen: optional [B, H, W, 1] in [0, 1], where the face is seen unoccluded
        (a photo's `shared.fit.skin.unoccluded_face`).  Vertices lit at least
        `HIDDEN_MIN_IRRADIANCE` (mean RGB irradiance under the lighting) read
        the image under alpha x seen, so that those under hair or a hand count
        as unseen (`CoarseResult.hidden`); dimmer ones, whose colour test a
        shadow can fail, read it as without `seen` (the confidence blend keeps
        little of their change anyway).  The lighting is fitted under the
        alpha alone, as without it.

    Returns:
      `CoarseResult` (no gradients).
    """
    coeffs, features = self.regress(images) if regressed is None else regressed
    synth = self.synthesizer(coeffs, render=True)
    if alpha is None:
      alpha = coarse_lib.projected_skin_mask(self.synthesizer, coeffs)
    embedding = None
    if self.embedding is not None:
      embedding = tf.stop_gradient(self.embedding(images))
      features = tf.concat([features, embedding], axis=-1)
    sampled = model_lib.sample_vertices(images, alpha, synth, synth.render,
                                        self.synthesizer.camera, self.config)
    if self.config.relight:  # The refined render's lighting, fitted with the coarse albedo.
      coeffs = coeffs._replace(lighting=model_lib.refit_lighting(
          synth.albedo, synth.normals, *sampled, self.config.relight_ridge))
      # The coarse lit colours under it (the projection loss's target where unseen);
      # synth.render stays the regressor's coarse render.
      synth = dataclasses.replace(synth, colours=lighting.shade(synth.albedo, synth.normals,
                                                                coeffs.lighting))
    hidden = None
    if seen is not None:
      colours, shown = sampled
      _, unhidden = model_lib.sample_vertices(images, alpha * seen, synth, synth.render,
                                              self.synthesizer.camera, self.config)
      irradiance = lighting.irradiance(synth.normals, coeffs.lighting)
      lit = tf.reduce_mean(irradiance, -1, keepdims=True) >= HIDDEN_MIN_IRRADIANCE
      vis = tf.where(lit, unhidden, shown)
      sampled = colours, vis
      hidden = tf.cast((shown >= HIDDEN_VISIBILITY) & (vis < HIDDEN_VISIBILITY), tf.float32)
    inputs, projected, vis = model_lib.refine_inputs(images, alpha, synth, synth.render,
                                                     self.synthesizer.camera, self.config,
                                                     coeffs.lighting, sampled)
    return CoarseResult(images, alpha, coeffs, tf.stop_gradient(features), synth, inputs,
                        projected, vis, embedding, hidden)

  def refine(self, coarse, blend=False):
    """The GCN's albedo for a `CoarseResult`, lit and rendered on the coarse geometry.

    With `blend` (test and eval time; training uses the GCN's albedo as it is)
    and `config.albedo_confidence` > 0, the refined change over the coarse
    albedo is kept in proportion to each vertex's irradiance
    (`gcn_face.confidence`).
    """
    albedo = self.gcn(coarse.features, coarse.inputs)
    return self.shade_and_render(coarse, self.blend(coarse, albedo) if blend else albedo)

  @property
  def blends(self):
    """True when test and eval blend the refined albedo (`config.albedo_confidence` > 0)."""
    return self.config.albedo_confidence > 0

  def blend(self, coarse, albedo):
    """`confidence.confidence_blend` of a refined [B, V, 3] albedo with the coarse one,
    weighted by the irradiance under the coarse result's lighting (`albedo` if off)."""
    return confidence.confidence_blend(
        coarse.synth.albedo, albedo,
        lighting.irradiance(coarse.synth.normals, coarse.coeffs.lighting),
        self.config.albedo_confidence)

  def front(self, coarse):
    """[B, H, W, 1]: the pixels of a `CoarseResult`'s render that show the outer side of the
    mesh (`shared.render.renderer.front_facing`); the pictures show the input elsewhere."""
    return render_lib.front_facing(coarse.synth.posed, self.synthesizer.decoder.faces,
                                   coarse.synth.render.triangle_ids, self.synthesizer.camera)

  def shade_and_render(self, coarse, albedo):
    """Any per-vertex albedo [B, V, 3] lit by the coarse lighting and rendered on the
    coarse geometry -> `RefineResult` (the refined one, or the ground truth's)."""
    return self.render_albedo(coarse.synth.posed, coarse.synth.normals, coarse.coeffs.lighting,
                              albedo)

  def render_albedo(self, posed, normals, sh, albedo):
    """Per-vertex albedo [B, V, 3] on posed vertices [B, V, 3] with normals [B, V, 3], lit by
    SH lighting [B, 27] -> `RefineResult`."""
    lit = lighting.shade(albedo, normals, sh)
    return RefineResult(albedo, lit, self.synthesizer.render_attributes(posed, lit))


# ---------------------------------------------------------------------------
# Checkpoint folders.


def load_topology_for(face_model, config, sampling=None, progress=True):
  """The hierarchy: `sampling` checked against the face model, else the cache (`progress`: a
  bar while it is built)."""
  from shared.mesh import topology as topology_lib
  if sampling:
    return topology_lib.load_topology(sampling, expected_source_hash=face_model.source_hash,
                                      expected_factors=config.factors)
  return topology_lib.get_or_build_topology(face_model, config.factors, progress=progress)


def load_pipeline(checkpoint_dir, coarse_checkpoint=None, sampling=None, face_model=None,
                  embedding_path=None, stage=None, topology=None, progress=True):
  """Rebuilds a trained `TexturePipeline` from a checkpoint folder.

  `coarse_checkpoint`, `sampling` and `embedding_path` default to the paths
  recorded at training time; an explicit `stage` (`CoarseStage`) or
  `topology` replaces loading them.  `progress`: a bar while the hierarchy is built.

  Raises:
    InputError: missing or foreign checkpoint, face model or hierarchy mismatch.
  """
  meta, config = checkpoint_lib.read_meta(checkpoint_dir)
  if stage is None:
    coarse_checkpoint = coarse_checkpoint or checkpoint_lib.recorded_path(
        meta, "coarse_checkpoint", checkpoint_dir)
    if not coarse_checkpoint:
      fail(checkpoint_dir, "no coarse checkpoint recorded; pass --coarse-checkpoint")
    stage = coarse_lib.load_coarse_stage(coarse_checkpoint, face_model)
  if stage.face_model.source_hash != meta["face_model_hash"]:
    fail(checkpoint_dir, f"trained for face model {meta['face_model_hash']} but the coarse "
         f"stage uses {stage.face_model.source_hash}")
  if stage.feature_size != meta["feature_size"]:
    fail(checkpoint_dir, f"trained on {meta['feature_size']}-d regressor features but the "
         f"coarse stage gives {stage.feature_size}-d")
  if topology is None:
    sampling = sampling or checkpoint_lib.recorded_path(meta, "sampling", checkpoint_dir)
    topology = load_topology_for(stage.face_model, config, sampling, progress)
  checkpoint_lib.check_hierarchy(meta, topology, checkpoint_dir)
  pipeline = build_pipeline(stage, config, topology=topology,
                            embedding_path=embedding_path or checkpoint_lib.recorded_path(
                                meta, "embedding_model", checkpoint_dir))
  pipeline.build()
  restore_generator(checkpoint_dir, pipeline.gcn)
  return pipeline


def build_pipeline(stage, config, sampling=None, embedding_path=None, topology=None,
                   progress=True):
  """A fresh, untrained `TexturePipeline` for a coarse stage.

  The topology is `topology` if given, else read from `sampling` or the
  per-face-model cache (`progress`: a bar while it is built); `embedding_path` is an
  optional user face-embedding model (`shared.train.embedding.FaceEmbedder`).
  """
  if topology is None:
    topology = load_topology_for(stage.face_model, config, sampling, progress)
  embedding = FaceEmbedder(embedding_path, config.embedding_size) if embedding_path else None
  return TexturePipeline(stage, topology, config, embedding)


def restore_generator(checkpoint_dir, gcn):
  """Restores the latest generator weights from `checkpoint_dir`."""
  latest = tf.train.latest_checkpoint(str(checkpoint_dir))
  if latest is None:
    fail(checkpoint_dir, "no checkpoint files (gcn.json without weights)")
  status = tf.train.Checkpoint(generator=gcn).read(latest)
  try:
    status.assert_existing_objects_matched()
  except AssertionError as error:
    fail(latest, f"does not match this GCN architecture ({str(error).splitlines()[0][:200]})")
  status.expect_partial()  # Inference needs the generator only, not the optimizer's slots.
  return latest


# ---------------------------------------------------------------------------
# Test mode.


def read_rgb_alpha(path, size=None):
  """Reads an image as (rgb [H, W, 3], alpha [H, W, 1] or None), float32 in [0, 1].

  The alpha is None when the file has none or it is opaque everywhere (no mask).
  """
  from shared.io import image_io
  rgba = image_io.read_image_rgba(path)
  if size is not None and rgba.shape[:2] != (size, size):
    fail(path, f"image is {rgba.shape[1]}x{rgba.shape[0]}, the GCN needs aligned "
         f"{size}x{size} crops")
  image = rgba.astype(np.float32) / UINT8_MAX
  alpha = image[..., 3:] if (rgba[..., 3] < UINT8_MAX).any() else None
  return image[..., :3], alpha


class PhotoFrontEnd:
  """Real photos to aligned crops and coarse fits through the photo pipeline's front end.

  `shared.photo.reconstruct.PhotoReconstructor.detect` finds every face and its 68
  landmarks (and 468 mesh points) and aligns it to the 224 x 224 MGCNet crop;
  weak HOG detections are dropped by the same `PhotoReconstructor.drop_weak`.
  Each crop comes with the region of its face seen unoccluded
  (`shared.fit.skin.unoccluded_face`), so that hair over the forehead is not
  read into the refined texture.
  Each face's coarse coefficients are then fitted as the photo pipeline fits
  them (the `refit` that `crops` returns): to the mesh points where it has
  them, with its colour stage, so that the coarse albedo and lighting follow
  the photo rather than the synthetic data the regressor was trained on.
  """

  def __init__(self, face_model):
    from shared.photo.reconstruct import PhotoReconstructor
    self.front = PhotoReconstructor(face_model)

  def crops(self, path, image):
    """uint8 [H, W, 3] photo -> list of (name suffix, rgb [224, 224, 3] float32 in [0, 1],
    the detector's 68 landmarks [68, 2] in crop pixels, `refit`: coefficients of the crop
    (batch 1) -> the photo pipeline's fit of it from them, the unoccluded face region
    [224, 224, 1] in {0, 1})."""
    from shared.fit.skin import unoccluded_face
    jobs, _ = self.front.drop_weak(self.front.detect(image))
    if not jobs:
      fail(path, "no face found")
    crops = []
    for k, job in enumerate(jobs):
      rgb = np.asarray(job.aligned.image[..., :3], np.float32) / UINT8_MAX
      landmarks = np.asarray(job.aligned.landmarks68, np.float32)
      seen = unoccluded_face(rgb[None], landmarks[None])
      crops.append((f"_face{k}", rgb, landmarks, self._refit(job), seen[0]))
    return crops

  def _refit(self, job):
    def refit(coeffs):
      crops, landmarks, dense = self.front.batch_inputs([job])
      result = self.front.fit(crops, landmarks, init=coeffs, dense=dense)
      return type(result.coeffs)(*[tf.stop_gradient(part) for part in result.coeffs])
    return refit


def test_inputs(input_path, size, face_model=None, on_skip=None, progress=False):
  """An iterator of (name, rgb, alpha or None, landmarks [68, 2] or None, refit or None,
  seen or None) for an image, a folder of images or a .bin.

  An image of `size` x `size` pixels is taken as an aligned crop (no
  landmarks); any other size as a photo: each face found in it
  (`PhotoFrontEnd`, which needs `face_model`) becomes one crop named
  STEM_faceK, without alpha, with the detector's landmarks, `refit`, the
  photo pipeline's fit of the coarse coefficients, and `seen`, the region of
  the face seen unoccluded (`PhotoFrontEnd.crops`).
  .bin records carry the landmarks the file holds.

  The input is checked (it exists, a .bin's header, a folder holds images)
  when this is called, before anything is written; the images are read as
  they are yielded.  In a folder, an image that cannot be read or holds no
  face is passed to `on_skip` (an `InputError`) and skipped, as the photo
  pipeline does; without `on_skip`, and for a single file, it raises.

  Args:
    progress: a tqdm bar over the files or records (when there are 2 or more).
  """
  path = Path(input_path)
  if not path.exists():
    fail(path, "input not found")
  if path.suffix.lower() == ".bin":
    from gcn_face.binfile import BinReader
    reader = BinReader(path)
    reader.require_size(size)
    return _bin_inputs(reader, progress)
  files = [path] if path.is_file() else list_images(path)
  if not files:
    fail(path, "no images found (" + ", ".join(IMAGE_SUFFIXES) + ")")
  return _image_inputs(files, size, face_model, None if path.is_file() else on_skip, progress)


def _progress(items, progress, unit):
  from tqdm import tqdm
  return tqdm(items, desc="test", unit=unit, disable=not progress or len(items) < 2)


def _bin_inputs(reader, progress=False):
  for i in _progress(range(len(reader)), progress, "record"):
    rgb, alpha = reader.image_alpha(i)
    landmarks = None
    if reader.landmarks is not None and np.isfinite(reader.landmarks[i]).all():
      landmarks = reader.landmarks[i]
    yield record_stem(reader.names[i], i), rgb, alpha, landmarks, None, None


def _image_inputs(files, size, face_model, on_skip=None, progress=False):
  front = None
  for f, stem in _progress(list(zip(files, output_stems(files))), progress, "image"):
    try:
      rgb, alpha = read_rgb_alpha(f)
      if rgb.shape[:2] == (size, size):
        crops = [("", rgb, alpha, None, None, None)]
      else:
        front = front or PhotoFrontEnd(face_model)
        crops = [(suffix, crop, None, landmarks, refit, seen)
                 for suffix, crop, landmarks, refit, seen
                 in front.crops(f, export.to_uint8(rgb))]
    except InputError as error:
      if on_skip is None:
        raise
      on_skip(error)
      continue
    for suffix, *rest in crops:
      yield (stem + suffix, *rest)


@dataclasses.dataclass
class TestResult:
  """files: written paths; metrics: per image with alpha, {name, coarse, refined}
  (face-region L1 / PSNR / SSIM, see `gcn_face.evaluate.masked_metrics`); skipped: one
  line per image of a folder that could not be used."""
  files: list
  metrics: list
  skipped: list = dataclasses.field(default_factory=list)

  def mean(self, stage, metric):
    values = [m[stage][metric] for m in self.metrics if m[stage] is not None]
    return float(np.mean(values)) if values else None


def run_test(pipeline, input_path, output_dir, limit=None, log=None, progress=False,
             occluders=True):
  """Refines every input and writes meshes, comparison and UV pictures.

  A face in a photo is refined from the region of it seen unoccluded
  (`PhotoFrontEnd`, `TestStep`) unless `occluders` is False.

  Inputs with an alpha channel (RGBA files, .bin records) are also scored:
  face-region metrics of the coarse and refined renders against the input.
  In a folder, images that cannot be read or hold no face are reported to `log`
  ("skipped: FILE: problem"; default: stderr) and skipped.

  Returns:
    `TestResult`.
  Raises:
    InputError: a single input file cannot be used, or no image of a folder can.
  """
  from gcn_face.evaluate import masked_metrics
  model = pipeline.stage.face_model
  result = TestResult([], [])
  log = log or quiet.log_line

  def skip(error):
    result.skipped.append(str(error))
    log(f"skipped: {error}")

  inputs = test_inputs(input_path, pipeline.config.image_size, model, on_skip=skip,
                       progress=progress)   # Checks before writing.
  output = Path(output_dir)   # Made once the first input has been read and refined.
  faces = model.faces
  step = TestStep(pipeline)
  for k, (name, rgb, alpha, landmarks, refit, seen) in enumerate(inputs):
    if limit is not None and k >= limit:
      break
    seen = seen if occluders else None
    images = tf.constant(rgb[None])
    if refit is not None:   # A face in a photo: fitted as the photo pipeline fits it.
      coeffs, features = pipeline.stage(images)
      regressed = refit(coeffs), features
    else:
      regressed = pipeline.regress(images, None if landmarks is None else landmarks[None],
                                   None if alpha is None else tf.constant(alpha[None]))
    out = step(images, alpha, regressed, seen)
    output.mkdir(parents=True, exist_ok=True)
    coarse_obj, refined_obj = output / f"{name}_coarse.obj", output / f"{name}_refined.obj"
    export.write_obj(coarse_obj, out["vertices"], faces, out["coarse_albedo"])
    if model.uv is None:
      export.write_obj(refined_obj, out["vertices"], faces, out["refined_albedo"])
    compare = output / f"{name}_compare.png"
    export.write_png(compare, export.grid([
        rgb, export.overlay(rgb, out["coarse_render"], out["mask"] * out["front"]),
        export.overlay(rgb, out["refined_render"], out["mask"] * out["front"])], columns=3))
    result.files += [coarse_obj, refined_obj, compare]
    if model.uv is not None:
      result.files += write_textured_obj(output, name, model, out["vertices"],
                                         out["refined_albedo"])
    if alpha is not None:
      face = out["mask"] * alpha
      result.metrics.append({"name": name,
                             "coarse": masked_metrics(rgb, out["coarse_render"], face),
                             "refined": masked_metrics(rgb, out["refined_render"], face)})
  if not result.files and result.skipped:
    fail_none_usable(input_path, result.skipped)
  return result


def write_textured_obj(output, name, model, vertices, albedo):
  """NAME_refined.obj with vertex colours, UVs and a material naming NAME_uv.png
  (the albedo in UV space), plus NAME_refined.mtl; returns [uv png, mtl].

  The OBJ and MTL text come from the photo pipeline (`shared.photo.reconstruct`).
  """
  from shared.photo.reconstruct import mtl_text, obj_with_uv
  from shared.render.texture import uv_texture_map
  uv, mtl = output / f"{name}_uv.png", output / f"{name}_refined.mtl"
  export.write_png(uv, uv_texture_map(model.uv, model.faces, albedo, UV_TEXTURE_SIZE))
  write_text_atomic(mtl, mtl_text(uv.name))
  write_text_atomic(output / f"{name}_refined.obj",
                    obj_with_uv(vertices, model.faces, albedo, model.uv, mtl.name))
  return [uv, mtl]


class TestStep:
  """One input of test mode: coarse stage, refinement and the fill under occluders.

  Called with images [1, H, W, 3], alpha [H, W, 1] or None, `regressed`
  (coefficients, features) and seen [H, W, 1] or None, it returns numpy arrays
  without the batch axis: vertices, coarse_albedo, refined_albedo [V, 3];
  coarse_render, refined_render [H, W, 3] in [0, 1]; mask [H, W, 1]; front [H, W, 1] (the
  pixels that show the outer side of the mesh, as the pictures show it); hidden [V]
  bool (vertices `seen` hides); posed, normals [V, 3]; lighting [27].  Where
  `seen` hides vertices, the refined change there is filled in from around
  them (`shared.mesh.inpaint`) and the refined render redrawn with it.
  """

  def __init__(self, pipeline):
    self.pipeline = pipeline
    self._step = tf.function(lambda images, alpha, regressed, seen: _test_batch(
        pipeline, images, alpha, regressed, seen))   # traced once per None-ness of alpha, seen
    self._render = tf.function(lambda posed, normals, sh, albedo: pipeline.render_albedo(
        posed, normals, sh, albedo).render.image)

  def __call__(self, images, alpha, regressed, seen=None):
    out = self._step(images, None if alpha is None else tf.constant(alpha[None]), regressed,
                     None if seen is None else tf.constant(seen[None]))
    out = {key: value.numpy()[0] for key, value in out.items()}
    if out["hidden"].any():   # Hair or a hand over the face: its refined change filled in.
      out.update(self._fill_hidden(out))
    return out

  def _fill_hidden(self, out):
    """The refined albedo and render with the refined change on the hidden vertices filled
    harmonically from the vertices around them (`shared.mesh.inpaint`)."""
    from shared.mesh.inpaint import fill_change
    albedo = fill_change(out["coarse_albedo"], out["refined_albedo"], ~out["hidden"],
                         self.pipeline.topology.A[0])
    albedo = np.clip(albedo, 0.0, 1.0).astype(np.float32)
    image = self._render(*[tf.constant(out[key][None]) for key in ("posed", "normals", "lighting")],
                         tf.constant(albedo[None]))
    return {"refined_albedo": albedo, "refined_render": np.clip(image.numpy()[0], 0.0, 1.0)}


def _test_batch(pipeline, images, alpha, regressed, seen=None):
  coarse = pipeline.coarse(images, alpha, regressed, seen)
  refined = pipeline.refine(coarse, blend=True)
  render = coarse.synth.render
  hidden = tf.zeros_like(coarse.visibility) if coarse.hidden is None else coarse.hidden
  return {"vertices": coarse.synth.vertices, "coarse_albedo": coarse.synth.albedo,
          "refined_albedo": refined.albedo, "coarse_render": tf.clip_by_value(render.image, 0, 1),
          "refined_render": tf.clip_by_value(refined.render.image, 0, 1), "mask": render.mask,
          "front": pipeline.front(coarse),
          "hidden": hidden[..., 0] > 0, "posed": coarse.synth.posed,
          "normals": coarse.synth.normals, "lighting": coarse.coeffs.lighting}

