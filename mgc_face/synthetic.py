"""A synthetic multi-view face dataset in MGCNet's on-disk format, with ground truth.

Each identity gets one random face (identity, expression, albedo) seen from
three cameras (target, source1, source2) with yaws spread over up to +-60
degrees, rendered with `shared.render.face_image` at 224x224 over varied backgrounds
(blurred colour noise, colour gradients, random crops of the images bundled
with scikit-image).  The lighting is fixed in the head frame (the SH are
applied to the unrotated normals), so a surface point has the same colour in
every view, as for a static head lit by fixed lamps and seen by several
cameras; the per-view `lighting` stored in the ground truth is that
head-frame SH vector.

Files (see `mgc_face.data` for the strip and landmark formats):

    DIR/train.txt, DIR/test.txt     test.txt holds the held-out identities
    DIR/<id>/<frame>.jpg            strip, <frame>_skin.jpg, <frame>_lm.txt
    DIR/<id>/<frame>_gt.npz         ground truth (see `write_ground_truth`)
    DIR/heldout/<id>_<frame>.png    target crops of the held-out identities
    DIR/dataset.json                format version, face model hash, seed, counts

Every random draw of identity i comes from `numpy.random.default_rng([seed,
i])`, so a dataset is a deterministic function of the seed and the model.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np

from mgc_face import data as data_lib
from shared.model import albedo_detail
from shared.io import export
from shared.errors import InputError
from shared.io.fileio import savez_atomic, write_text_atomic

FORMAT_VERSION = 1
GT_FORMAT_KIND = "face3d-mgc-synthetic-gt"
NUM_SH_BANDS = 9
BACKGROUND_KINDS = ("noise", "gradient", "image")
# scikit-image's bundled pictures without faces (astronaut and lfw are left out).
BACKGROUND_IMAGES = ("brick", "coffee", "chelsea", "grass", "gravel", "rocket", "hubble_deep_field",
                     "motorcycle_left", "colorwheel", "retina", "immunohistochemistry", "cell",
                     "camera", "moon", "page", "horse", "text", "coins", "clock", "logo")


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """Distributions of the synthetic faces (angles in degrees, lengths in model units)."""
  identity_std: float = 1.0
  albedo_std: float = 0.8
  max_active_expressions: int = 4       # Sparse non-negative expression weights.
  expression_max: float = 0.7
  target_yaw: float = 20.0              # |yaw| of the target view at most this.
  source_yaw_gap: float = 12.0          # Sources at least this far from the target's yaw.
  max_yaw: float = 60.0                 # All views within +-max_yaw.
  max_pitch: float = 12.0
  max_roll: float = 8.0
  max_shift: float = 0.12               # x, y translation.
  max_depth_shift: float = 0.5          # z translation (scale change of ~5%).
  sh_dc_std: float = 0.12               # Overall brightness change.
  sh_dc_colour_std: float = 0.04        # Per-channel tint.
  sh_linear_std: float = 0.2            # Directional light (bands 1-3), grey.
  sh_quadratic_std: float = 0.06        # Bands 4-8, grey.
  landmark_noise: float = 1.0           # Pixels (a detector's error) in the _lm.txt files.
  noise_blur_max: float = 12.0          # Background noise blur sigma (pixels) at most.
  mono_fraction: float = 0.0            # Extra monocular (flag 0) samples per identity.


def sample_identity(rng, layout, config):
  """Random shape and albedo coefficients: (identity [Ki], expression [Ke], albedo [Ka])."""
  identity = rng.standard_normal(layout.num_id) * config.identity_std
  expression = sample_expression(rng, layout.num_exp, config)
  albedo = rng.standard_normal(layout.num_albedo) * config.albedo_std
  return identity, expression, albedo


def sample_expression(rng, count, config):
  """[count] sparse non-negative expression weights: up to `max_active_expressions`
  blendshapes, each uniform in [0, `expression_max`], the rest 0."""
  expression = np.zeros(count)
  active = rng.integers(0, config.max_active_expressions + 1)
  picks = rng.choice(count, size=active, replace=False)
  expression[picks] = rng.uniform(0.0, config.expression_max, size=active)
  return expression


def sample_lighting(rng, config):
  """[27] SH coefficients (colour-major), mostly white light with one key direction."""
  sh = np.zeros((3, NUM_SH_BANDS))
  sh[:, 0] = rng.normal(0, config.sh_dc_std) + rng.normal(0, config.sh_dc_colour_std, 3)
  sh[:, 1:4] = rng.normal(0, config.sh_linear_std, 3)
  sh[:, 4:] = rng.normal(0, config.sh_quadratic_std, 5)
  return sh.reshape(-1)


def sample_poses(rng, config):
  """[3, 3] (pitch, yaw, roll) radians and [3, 3] translations, target first.

  The target's yaw is within +-target_yaw; one source looks from the left
  and one from the right of it, at least `source_yaw_gap` away and within
  +-max_yaw.
  """
  yaw_t = rng.uniform(-config.target_yaw, config.target_yaw)
  yaw_1 = rng.uniform(-config.max_yaw, yaw_t - config.source_yaw_gap)
  yaw_2 = rng.uniform(yaw_t + config.source_yaw_gap, config.max_yaw)
  yaws = np.array([yaw_t, yaw_1, yaw_2])
  pitch = rng.uniform(-config.max_pitch, config.max_pitch, 3)
  roll = rng.uniform(-config.max_roll, config.max_roll, 3)
  rotation = np.radians(np.stack([pitch, yaws, roll], -1))
  shift = rng.uniform(-config.max_shift, config.max_shift, (3, 2))
  depth = rng.uniform(-config.max_depth_shift, config.max_depth_shift, (3, 1))
  return rotation, np.concatenate([shift, depth], -1)


# ----------------------------------------------------------------------------- backgrounds

_BACKGROUND_CACHE = {}


def _bundled_images():
  """The scikit-image pictures available offline, as float RGB arrays."""
  if "images" not in _BACKGROUND_CACHE:
    import skimage.data
    from skimage.color import gray2rgb
    images = []
    for name in BACKGROUND_IMAGES:
      loader = getattr(skimage.data, name, None)
      if loader is None:
        continue
      try:
        image = np.asarray(loader())
      except Exception:  # noqa: BLE001 - a picture that needs a download is skipped.
        continue
      if image.ndim == 2:
        image = gray2rgb(image)
      image = image[..., :3].astype(np.float32)
      image /= max(float(image.max()), 1.0)
      if min(image.shape[:2]) >= data_lib.VIEW_SIZE // 2:
        images.append(image)
    _BACKGROUND_CACHE["images"] = images
  return _BACKGROUND_CACHE["images"]


def background(rng, size, config):
  """A random [size, size, 3] float background: noise, gradient or image crop."""
  import cv2
  kinds = list(BACKGROUND_KINDS) if _bundled_images() else list(BACKGROUND_KINDS[:2])
  kind = kinds[rng.integers(len(kinds))]
  if kind == "noise":
    noise = rng.uniform(0, 1, (size, size, 3)).astype(np.float32)
    sigma = rng.uniform(0.0, config.noise_blur_max)
    if sigma > 0.5:
      noise = cv2.GaussianBlur(noise, (0, 0), sigma)
      noise = (noise - noise.mean()) / (noise.std() + 1e-6) * rng.uniform(0.1, 0.3) + \
          rng.uniform(0.2, 0.8, 3)
    return np.clip(noise, 0, 1).astype(np.float32)
  if kind == "gradient":
    angle = rng.uniform(0, 2 * np.pi)
    v, u = np.mgrid[0:size, 0:size] / size
    t = (np.cos(angle) * u + np.sin(angle) * v)
    t = (t - t.min()) / (t.max() - t.min() + 1e-6)
    a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    out = a * (1 - t[..., None]) + b * t[..., None]
    out += rng.normal(0, 0.02, out.shape)
    return np.clip(out, 0, 1).astype(np.float32)
  images = _bundled_images()
  image = images[rng.integers(len(images))]
  scale = rng.uniform(0.5, 1.5)
  crop = int(min(min(image.shape[:2]), max(16, size * scale)))
  y = rng.integers(0, image.shape[0] - crop + 1)
  x = rng.integers(0, image.shape[1] - crop + 1)
  patch = cv2.resize(np.ascontiguousarray(image[y:y + crop, x:x + crop]), (size, size),
                     interpolation=cv2.INTER_AREA)
  if rng.uniform() < 0.5:
    patch = patch[:, ::-1]
  patch = patch * rng.uniform(0.6, 1.2, 3) + rng.uniform(-0.1, 0.1)
  return np.clip(patch, 0, 1).astype(np.float32)


# ----------------------------------------------------------------------------- rendering

class ViewRenderer:
  """Renders the 3 views of one identity in one batched call (tf.function, B = 3)."""

  def __init__(self, face_model, camera=None, detail_config=albedo_detail.DEFAULT):
    import tensorflow as tf
    from shared.model import lighting
    from shared.render import rasterizer
    from shared.render.face_image import FaceSynthesizer
    rasterizer.load()  # Build/load the kernel eagerly, not while tracing.
    self.synth = FaceSynthesizer(face_model, camera)
    self.layout = self.synth.layout
    synth = self.synth
    skin = tf.constant(face_model.skin_mask)[None, :, None]
    self.detail = albedo_detail.AlbedoDetail(face_model, detail_config)  # Beyond the basis.

    @tf.function(reduce_retracing=True)
    def render(coeffs, scale, offset):
      out = synth(coeffs, render=False)
      dec = synth.decoder
      head_normals = dec.normals(out.vertices)          # Lighting fixed to the head.
      albedo = albedo_detail.apply_detail(out.albedo, scale, offset)
      colours = lighting.shade(albedo, head_normals, coeffs.lighting)
      views = coeffs.identity.shape[0]
      attributes = tf.concat([colours, tf.tile(skin, [views, 1, 1])], -1)
      r = synth.render_attributes(out.posed, attributes)
      return (r.image[..., :3], r.image[..., 3:] * r.mask, r.mask, out.vertices, out.posed,
              out.landmarks2d, out.landmarks3d, albedo)

    self._render = render

  def __call__(self, coeffs, detail=None):
    """detail: (scale, offset) [V, 3] from `self.detail.sample(rng)`; None: no detail."""
    return [t.numpy() for t in self._render(coeffs, *(detail or self.detail.identity()))]


def coefficients(layout, identity, expression, albedo, rotation, translation, lighting):
  """Builds `Coefficients` for the views; 1-D parts are shared by all views."""
  import tensorflow as tf
  from shared.model.coeffs import Coefficients
  views = rotation.shape[0]

  def tile(x):
    x = np.asarray(x, np.float32)
    return tf.constant(x if x.ndim == 2 else np.tile(x[None], [views, 1]))

  return Coefficients(identity=tile(identity), albedo=tile(albedo), expression=tile(expression),
                      rotation=tf.constant(rotation, tf.float32),
                      translation=tf.constant(translation, tf.float32), lighting=tile(lighting))


def write_ground_truth(path, coeffs_vector, vertices, posed, landmarks2d, landmarks3d,
                       face_model, albedo=None):
  """Writes `_gt.npz`: coefficients [3, N] (layout order), vertices [V, 3] (model
  space, shared by the views), posed [3, V, 3], landmarks2d [3, 68, 2] (noise
  free), landmarks3d [3, 68, 3], the face model's source_hash, albedo [V, 3] (the
  per-vertex albedo with its detail, target view's; optional); views ordered
  target, source1, source2."""
  extra = {} if albedo is None else {"albedo": np.asarray(albedo, np.float32)}
  savez_atomic(path, format_kind=np.array(GT_FORMAT_KIND), format_version=np.array(FORMAT_VERSION),
               coefficients=np.asarray(coeffs_vector, np.float32),
               vertices=np.asarray(vertices, np.float32), posed=np.asarray(posed, np.float32),
               landmarks2d=np.asarray(landmarks2d, np.float32),
               landmarks3d=np.asarray(landmarks3d, np.float32),
               source_hash=np.array(face_model.source_hash),
               view_order=np.array(",".join(data_lib.VIEW_NAMES)), **extra)


def read_ground_truth(path):
  """Reads a `_gt.npz` -> dict; InputError for a missing file or another version."""
  path = Path(path)
  if not path.exists():
    raise InputError(f"{path}: ground-truth file not found")
  try:
    with np.load(path, allow_pickle=False) as data:
      out = {k: data[k] for k in data.files}
  except Exception as error:  # noqa: BLE001
    raise InputError(f"{path}: not a readable .npz ({type(error).__name__})") from None
  if str(out.get("format_kind", "")) != GT_FORMAT_KIND:
    raise InputError(f"{path}: not a synthetic ground-truth file")
  if int(out["format_version"]) != FORMAT_VERSION:
    raise InputError(f"{path}: ground-truth format version {int(out['format_version'])}; this "
                     f"toolkit reads version {FORMAT_VERSION}")
  return out


def render_sample(renderer, rng, config, shapes=None):
  """Renders one 3-view sample.

  Args:
    shapes: optional list of 3 (identity, expression, albedo) tuples, one per
      view (monocular samples); default: one random face for all views.

  Returns:
    dict with image [3, 224, 224, 3], skin [3, 224, 224, 1], coefficient
    vectors [3, N], vertices, posed, landmarks (clean and noisy).
  """
  layout = renderer.layout
  rotation, translation = sample_poses(rng, config)
  lighting = sample_lighting(rng, config)
  if shapes is None:
    shape = sample_identity(rng, layout, config)
  else:
    shape = [np.stack([s[k] for s in shapes]) for k in range(3)]
  coeffs = coefficients(layout, *shape, rotation, translation, lighting)
  detail = renderer.detail.sample(rng)  # Per-identity albedo detail, fixed to the head.
  colour, skin, mask, vertices, posed, lm2d, lm3d, albedo = renderer(coeffs, detail)
  size = colour.shape[1]
  backgrounds = np.stack([background(rng, size, config) for _ in range(3)])
  image = colour * mask + backgrounds * (1.0 - mask)
  noisy = lm2d + rng.normal(0, config.landmark_noise, lm2d.shape)
  vector = np.concatenate([np.asarray(c) for c in coeffs], -1)
  return dict(image=np.clip(image, 0, 1), skin=np.clip(skin, 0, 1), coefficients=vector,
              vertices=vertices, posed=posed, landmarks2d=lm2d, landmarks3d=lm3d,
              noisy_landmarks=noisy, albedo=albedo)


def write_sample(root, record, sample, face_model):
  root = Path(root)
  data_lib.write_strips(root, record, sample["image"], sample["skin"], sample["noisy_landmarks"])
  write_ground_truth(record.gt_path(root), sample["coefficients"], sample["vertices"][0],
                     sample["posed"], sample["landmarks2d"], sample["landmarks3d"], face_model,
                     albedo=sample["albedo"][0])


def generate(face_model, output, identities, test_identities, seed, views=3,
             config=SyntheticConfig(), progress=True):
  """Generates the dataset (see the module docstring).

  Returns:
    dict with counts, as written to DIR/dataset.json.
  """
  from tqdm import tqdm
  if views != data_lib.NUM_VIEWS:
    raise InputError(f"--views {views}: the MGCNet strip format holds exactly "
                     f"{data_lib.NUM_VIEWS} views")
  if identities < 2:
    raise InputError(f"--identities {identities}: need at least 2 (train and held-out)")
  if not 1 <= test_identities < identities:
    raise InputError(f"--test-identities {test_identities}: must be in [1, {identities - 1}]")
  root = Path(output)
  root.mkdir(parents=True, exist_ok=True)
  renderer = ViewRenderer(face_model)
  train, test = [], []
  first_test = identities - test_identities
  for i in tqdm(range(identities), desc="synthetic identities", disable=not progress,
                unit="id"):
    rng = np.random.default_rng([seed, i])
    subfolder = f"id{i:05d}"
    record = data_lib.Record(data_lib.FLAG_MULTIVIEW, subfolder, "000")
    sample = render_sample(renderer, rng, config)
    write_sample(root, record, sample, face_model)
    (test if i >= first_test else train).append(record)
    if i >= first_test:
      export.write_png(root / data_lib.HELDOUT_DIR / f"{subfolder}_{record.frame_id}.png",
                       sample["image"][0])
    elif config.mono_fraction > 0 and rng.uniform() < config.mono_fraction:
      shapes = [sample_identity(rng, renderer.layout, config) for _ in range(data_lib.NUM_VIEWS)]
      mono = data_lib.Record(data_lib.FLAG_MONO, subfolder, "mono")
      write_sample(root, mono, render_sample(renderer, rng, config, shapes), face_model)
      train.append(mono)
  data_lib.write_list(root / "train.txt", train)
  data_lib.write_list(root / "test.txt", test)
  info = {"format_version": FORMAT_VERSION, "kind": "face3d-mgc-synthetic",
          "face_model_hash": face_model.source_hash, "seed": seed, "identities": identities,
          "test_identities": test_identities, "views": views, "train_samples": len(train),
          "test_samples": len(test), "view_order": list(data_lib.VIEW_NAMES),
          "landmark_file": data_lib.LANDMARK_SUFFIX, "config": dataclasses.asdict(config)}
  write_text_atomic(root / "dataset.json", json.dumps(info, indent=2) + "\n")
  return info
