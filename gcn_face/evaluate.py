"""Held-out evaluation: coarse vs refined texture renders against the input.

For every image the face region is the coarse render's coverage times the
image's alpha (the skin / face mask stored in the .bin); both renders share
the coarse geometry, so they are compared on the same pixels.  Per image:

* L1: mean absolute RGB difference over the face region (values in [0, 1]);
* PSNR: 10 log10(1 / MSE) with the MSE over the face region;
* SSIM: scikit-image's SSIM map (7x7 window, data range 1) averaged over
  the face region and the three channels;
* albedo RMSE (when the .bin comes from a synthetic dataset whose `_gt.npz`
  files hold the per-vertex `albedo`): the root mean square difference, over
  the RGB channels of the visible vertices (the refiner's visibility > 0.5:
  front-facing, unoccluded, inside the eroded alpha), between the coarse or
  refined albedo and the true one.  Vertices correspond by index, so this
  compares textures even where the coarse geometry is off;
* scale-invariant albedo RMSE: the same after scaling the estimate by the one
  number per image that best fits the truth (least squares over the visible
  RGB values).  The image cannot tell a brighter albedo under dimmer light
  from the truth (docs/gcn.md, "Session 19"), so this is the part of the
  albedo error that an image can, in principle, correct: detail and colour.

With the confidence blend on (`GCNConfig.albedo_confidence` > 0, as in
`tiny`), "refined" is the blended output and a third stage, "gcn", scores the
GCN's own albedo before the blend.

Reported numbers are means over the images.  With `pictures`, one PNG per
image: top row input | coarse | refined | ground truth, each lit by the
coarse lighting on the coarse geometry and pasted over the input; bottom
row the input inside the coarse render's coverage, then the three albedos unlit.
"""

import json
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from gcn_face.binfile import BinReader, record_stem
from shared.io import export
from shared.errors import fail
from shared.io.fileio import write_text_atomic

METRICS = ("l1", "psnr", "ssim")
ALBEDO_METRIC = "albedo_rmse"
ALBEDO_SI_METRIC = "albedo_si_rmse"   # Scale-invariant: after the best brightness.
TRUTH_SUFFIX = "_gt.npz"       # The synthetic dataset's ground truth beside each strip.
VIEW_SEPARATOR = "#"           # create_bin names a source view 'id/frame#k'.
VISIBLE_THRESHOLD = 0.5
STAGES = ("coarse", "refined")
GCN_STAGE = "gcn"              # The GCN's own albedo, before the confidence blend.
MIN_FACE_PIXELS = 1
NUM_RGB = 3


def masked_metrics(image, render, mask):
  """Face-region L1, PSNR and SSIM of one render.

  Args:
    image, render: [H, W, 3] float in [0, 1].
    mask: [H, W] or [H, W, 1] weights in {0, 1}.

  Returns:
    dict l1, psnr, ssim (floats), or None when the mask is empty.
  """
  from skimage.metrics import structural_similarity
  mask = np.asarray(mask, np.float64).reshape(image.shape[:2])
  count = mask.sum()
  if count < MIN_FACE_PIXELS:
    return None
  diff = np.asarray(image, np.float64) - np.asarray(render, np.float64)
  l1 = float((np.abs(diff) * mask[..., None]).sum() / (NUM_RGB * count))
  mse = float((diff ** 2 * mask[..., None]).sum() / (NUM_RGB * count))
  psnr = float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))
  _, ssim_map = structural_similarity(np.asarray(image, np.float64),
                                      np.asarray(render, np.float64), channel_axis=-1,
                                      data_range=1.0, full=True)
  ssim = float((ssim_map * mask[..., None]).sum() / (NUM_RGB * count))
  return {"l1": l1, "psnr": psnr, "ssim": ssim}


def _visible_values(albedo, truth, visibility):
  """The [N, 3] float64 rows of albedo and truth at the visible vertices, or None."""
  visible = np.asarray(visibility).reshape(-1) > VISIBLE_THRESHOLD
  if not visible.any():
    return None
  return np.asarray(albedo, np.float64)[visible], np.asarray(truth, np.float64)[visible]


def albedo_rmse(albedo, truth, visibility):
  """RMSE over the RGB values of the visible vertices, or None if none is visible.

  Args:
    albedo, truth: [V, 3] in [0, 1].
    visibility: [V] or [V, 1]; a vertex counts when it exceeds VISIBLE_THRESHOLD.
  """
  values = _visible_values(albedo, truth, visibility)
  if values is None:
    return None
  a, t = values
  return float(np.sqrt(np.mean((a - t) ** 2)))


def albedo_si_rmse(albedo, truth, visibility):
  """RMSE after the best single brightness scale, or None if no vertex is visible.

  With a and t the RGB values of the visible vertices, the scale is
  s = <a, t> / <a, a> (least squares) and the result RMSE(s a - t); it is the
  same for albedo and k x albedo (k > 0), so a global brightness error, which
  the light's intensity hides, does not count.  An all-zero estimate keeps
  s = 0.

  Args: as `albedo_rmse`.
  """
  values = _visible_values(albedo, truth, visibility)
  if values is None:
    return None
  a, t = values
  norm = float(np.sum(a * a))
  scale = float(np.sum(a * t)) / norm if norm > 0 else 0.0
  return albedo_rmse(scale * a, t, np.ones(len(a)))


def truth_albedo(reader, num_vertices):
  """The true per-vertex albedo of each record, from the synthetic `_gt.npz` files.

  A record named 'SUB/FRAME' or 'SUB/FRAME#k' (tools/create_bin.py on an MGC
  strip dataset) has its truth at SOURCE/SUB/FRAME_gt.npz, SOURCE being the
  folder recorded in the .bin; the albedo is the same in all views.

  Returns:
    list of [V, 3] float32 arrays or None (no file, no albedo, other mesh).
  """
  source = reader.metadata.get("source")
  out = []
  for name in reader.names:
    albedo = None
    path = Path(source) / (name.split(VIEW_SEPARATOR)[0] + TRUTH_SUFFIX) if source else None
    if path is not None and path.is_file():
      with np.load(path, allow_pickle=False) as data:
        if "albedo" in data.files and data["albedo"].shape == (num_vertices, NUM_RGB):
          albedo = data["albedo"].astype(np.float32)
    out.append(albedo)
  return out


def comparison_picture(image, mask, renders, albedos=None):
  """input | coarse | refined [| truth] over the input; a second row of albedos if given.

  Args:
    image: [H, W, 3]; mask: [H, W, 1] render coverage (where renders are pasted).
    renders: list of [H, W, 3] lit renders (coarse, refined, optional truth).
    albedos: optional list of unlit albedo renders, same order; the row starts
      with the input inside `mask`.
  """
  tiles = [image] + [export.overlay(image, r, mask) for r in renders]
  if albedos is not None:
    tiles += [image * mask] + [export.overlay(np.ones_like(image), a, mask) for a in albedos]
  return export.grid(tiles, columns=len(renders) + 1)


def evaluate(pipeline, data_path, batch_size=None, limit=None, pictures=None, progress=False):
  """Evaluates the coarse and refined renders on a held-out .bin.

  Args:
    pipeline: trained `gcn_face.infer.TexturePipeline`.
    data_path: the .bin of held-out crops (with alpha).
    batch_size: images per forward pass (default: the config's batch size).
    limit: evaluate at most this many images.
    pictures: optional folder for one comparison PNG per image.
    progress: a tqdm bar over the batches.

  Returns:
    dict: count, seconds, per stage the mean of each metric (albedo_rmse over
    the images with a true albedo, when any has one), per_image, and the
    written pictures.
  """
  reader = BinReader(data_path)
  reader.require_size(pipeline.config.image_size)
  count = len(reader) if limit is None else min(limit, len(reader))
  if count == 0:
    fail(data_path, "no records to evaluate")
  batch_size = batch_size or pipeline.config.batch_size
  num_vertices = pipeline.stage.face_model.num_vertices
  truths = truth_albedo(reader, num_vertices)
  has_truth = any(t is not None for t in truths)
  stages = STAGES + ((GCN_STAGE,) if pipeline.blends else ())
  renders = tf.function(lambda images, alpha, regressed, truth: _eval_batch(
      pipeline, images, alpha, regressed, truth, pictures is not None))

  start = time.perf_counter()
  per_image, written = [], []
  from tqdm import tqdm
  batches = -(-count // batch_size)
  dataset = reader.dataset(batch_size, shuffle=False).take(batches)
  for batch in tqdm(dataset, desc="eval", unit="batch", total=batches,
                    disable=not progress or batches < 2):
    indices = batch["index"].numpy()
    truth = None
    if has_truth:
      truth = tf.constant(np.stack([np.zeros((num_vertices, NUM_RGB), np.float32)
                                    if truths[i] is None else truths[i] for i in indices]))
    regressed = pipeline.regress(batch["image"], batch.get("landmarks"), batch["alpha"])
    out = {k: v.numpy() for k, v in renders(batch["image"], batch["alpha"], regressed,
                                            truth).items()}
    images = batch["image"].numpy()
    for k, index in enumerate(indices):
      if index >= count:
        break
      row = {"index": int(index), "name": reader.names[index]}
      for stage in stages:
        row[stage] = masked_metrics(images[k], out[stage][k], out["face"][k])
        if row[stage] is not None and truths[index] is not None:
          for metric, score in ((ALBEDO_METRIC, albedo_rmse), (ALBEDO_SI_METRIC, albedo_si_rmse)):
            row[stage][metric] = score(out[f"{stage}_albedo"][k], truths[index],
                                       out["visibility"][k])
      per_image.append(row)
      if pictures is not None:
        written.append(_write_picture(pictures, reader.names[index], index, images[k], out, k,
                                      truths[index] is not None))
  valid = [r for r in per_image if r["coarse"] is not None]
  if not valid:
    fail(data_path, "no image has a face region (render x alpha is empty everywhere)")
  summary = {stage: {m: float(np.mean([r[stage][m] for r in valid])) for m in METRICS}
             for stage in stages}
  scored = [r for r in valid if r["coarse"].get(ALBEDO_METRIC) is not None]
  for stage in stages:
    for metric in (ALBEDO_METRIC, ALBEDO_SI_METRIC) if scored else ():
      summary[stage][metric] = float(np.mean([r[stage][metric] for r in scored]))
  return {"count": len(valid), "skipped_empty": len(per_image) - len(valid),
          "albedo_confidence": pipeline.config.albedo_confidence,
          "albedo_count": len(scored), "seconds": time.perf_counter() - start, **summary,
          "per_image": per_image, "pictures": [str(p) for p in written]}


def _eval_batch(pipeline, images, alpha, regressed, truth, unlit):
  """Renders and albedos of one batch (a dict of tensors) for `evaluate`."""
  coarse = pipeline.coarse(images, alpha, regressed)
  gcn = pipeline.refine(coarse)
  refined = gcn
  render = coarse.synth.render
  out = {}
  if pipeline.blends:
    refined = pipeline.shade_and_render(coarse, pipeline.blend(coarse, gcn.albedo))
    out.update({GCN_STAGE: gcn.render.image, f"{GCN_STAGE}_albedo": gcn.albedo})
  out.update({"coarse": render.image, "refined": refined.render.image,
              "coarse_albedo": coarse.synth.albedo, "refined_albedo": refined.albedo})
  albedos = [coarse.synth.albedo, refined.albedo]
  if truth is not None:
    out["truth"] = pipeline.shade_and_render(coarse, truth).render.image
    albedos.append(truth)
  if unlit:
    for name, albedo in zip(("coarse_unlit", "refined_unlit", "truth_unlit"), albedos):
      out[name] = pipeline.synthesizer.render_attributes(coarse.synth.posed, albedo).image
  out = {k: tf.clip_by_value(v, 0.0, 1.0) for k, v in out.items()}
  out.update(face=render.mask * alpha, mask=render.mask * pipeline.front(coarse),  # pictures only
             visibility=coarse.visibility)
  return out


def _write_picture(folder, name, index, image, out, k, truth):
  """Writes the comparison PNG of record `index`; returns its path."""
  stages = list(STAGES) + (["truth"] if truth else [])
  picture = comparison_picture(image, out["mask"][k], [out[s][k] for s in stages],
                               [out[f"{s}_unlit"][k] for s in stages])
  path = Path(folder) / f"{record_stem(name, index)}_eval.png"
  path.parent.mkdir(parents=True, exist_ok=True)
  export.write_png(path, picture)
  return path


def format_report(result):
  """A small table: metric rows, coarse / refined columns (and the GCN's own
  albedo before the confidence blend, when the result has it)."""
  gcn = GCN_STAGE in result
  lines = [f"{'':15s}{'coarse':>10s}{'refined':>10s}{'change':>9s}"
           + (f"{'gcn alone':>11s}{'change':>9s}" if gcn else "")]
  for metric in METRICS + (ALBEDO_METRIC, ALBEDO_SI_METRIC):
    if metric not in result["coarse"]:
      continue
    before = result["coarse"][metric]
    line = f"{metric:15s}{before:10.4f}"
    for stage in ("refined",) + ((GCN_STAGE,) if gcn else ()):
      after = result[stage][metric]
      change = f"{100.0 * (after - before) / before:+8.1f}%" if before else " " * 9
      line += f"{after:{10 if stage == 'refined' else 11}.4f} {change}"
    lines.append(line)
  lines.append(f"({result['count']} held-out images; face region = render mask x alpha; "
               "L1 on [0, 1] RGB, lower is better; PSNR dB and SSIM, higher is better")
  if ALBEDO_METRIC in result["coarse"]:
    lines.append(f" albedo_rmse: per-vertex albedo vs the ground truth on the visible "
                 f"vertices, {result['albedo_count']} images, lower is better;"
                 "\n albedo_si_rmse: the same after the best brightness scale per image)")
  else:
    lines[-1] += "; no ground-truth albedo found)"
  if gcn:
    lines.append(" refined: the GCN's change kept in proportion to each vertex's irradiance "
                 f"(albedo_confidence {result.get('albedo_confidence', 0):g}); gcn alone: before that")
  return "\n".join(lines)


def write_report(path, result):
  """Writes the result as JSON (atomically)."""
  write_text_atomic(path, json.dumps(result, indent=2) + "\n")
