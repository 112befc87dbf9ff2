"""Held-out evaluation: coarse vs refined texture renders against the input.

For every image the face region is the coarse render's coverage times the
image's alpha (the skin / face mask stored in the .bin); both renders share
the coarse geometry, so they are compared on the same pixels.  Per image:

* L1: mean absolute RGB difference over the face region (values in [0, 1]);
* PSNR: 10 log10(1 / MSE) with the MSE over the face region;
* SSIM: scikit-image's SSIM map (7x7 window, data range 1) averaged over
  the face region and the three channels.

Reported numbers are means over the images.
"""

import json
import time

import numpy as np
import tensorflow as tf

from gcn_face.binfile import BinReader
from shared.errors import fail
from shared.fileio import write_text_atomic

METRICS = ("l1", "psnr", "ssim")
STAGES = ("coarse", "refined")
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


def evaluate(pipeline, data_path, batch_size=None, limit=None):
  """Evaluates the coarse and refined renders on a held-out .bin.

  Args:
    pipeline: trained `gcn_face.infer.TexturePipeline`.
    data_path: the .bin of held-out crops (with alpha).
    batch_size: images per forward pass (default: the config's batch size).
    limit: evaluate at most this many images.

  Returns:
    dict: count, seconds, per stage the mean of each metric, and per_image.
  """
  reader = BinReader(data_path)
  reader.require_size(pipeline.config.image_size)
  count = len(reader) if limit is None else min(limit, len(reader))
  if count == 0:
    fail(data_path, "no records to evaluate")
  batch_size = batch_size or pipeline.config.batch_size

  @tf.function
  def renders(images, alpha, regressed):
    coarse = pipeline.coarse(images, alpha, regressed)
    refined = pipeline.refine(coarse)
    return (tf.clip_by_value(coarse.synth.render.image, 0, 1),
            tf.clip_by_value(refined.render.image, 0, 1), coarse.synth.render.mask * alpha)

  start = time.perf_counter()
  per_image = []
  dataset = reader.dataset(batch_size, shuffle=False).take(-(-count // batch_size))
  for batch in dataset:
    regressed = pipeline.regress(batch["image"])
    coarse, refined, mask = (t.numpy() for t in renders(batch["image"], batch["alpha"],
                                                        regressed))
    images = batch["image"].numpy()
    for k, index in enumerate(batch["index"].numpy()):
      if index >= count:
        break
      row = {"index": int(index), "name": reader.names[index]}
      for stage, render in zip(STAGES, (coarse, refined)):
        row[stage] = masked_metrics(images[k], render[k], mask[k])
      per_image.append(row)
  valid = [r for r in per_image if r["coarse"] is not None]
  if not valid:
    fail(data_path, "no image has a face region (render x alpha is empty everywhere)")
  summary = {stage: {m: float(np.mean([r[stage][m] for r in valid])) for m in METRICS}
             for stage in STAGES}
  return {"count": len(valid), "skipped_empty": len(per_image) - len(valid),
          "seconds": time.perf_counter() - start, **summary, "per_image": per_image}


def format_report(result):
  """A small table: metric rows, coarse / refined columns."""
  lines = [f"{'':8s}{'coarse':>10s}{'refined':>10s}"]
  for metric in METRICS:
    lines.append(f"{metric:8s}{result['coarse'][metric]:10.4f}{result['refined'][metric]:10.4f}")
  lines.append(f"({result['count']} held-out images; face region = render mask x alpha; "
               "L1 on [0, 1] RGB, lower is better; PSNR dB and SSIM, higher is better)")
  return "\n".join(lines)


def write_report(path, result):
  """Writes the result as JSON (atomically)."""
  write_text_atomic(path, json.dumps(result, indent=2) + "\n")
