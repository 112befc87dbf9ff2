"""68-point landmark evaluation of the raw detector on an AFLW2000-3D folder.

Protocol (3DDFA): NME = mean 2D point error / sqrt(w*h) of the GT landmark box,
in %.  The detector runs on the whole image (no GT box is given to it); if it
finds several faces the largest is scored; an image with no face is a
failure and is left out of the NME means (reported as a count and by name).
"""

import time

import numpy as np

from shared import metrics
from shared.image_io import read_image
from shared.landmarks import detect_faces

NAME_WIDTH = 16


def evaluate_detector(folder, detect=detect_faces, **detect_kwargs):
  """Runs `detect` on every AFLW2000-3D pair in `folder` and scores it.

  Args:
    folder: AFLW2000-3D style folder (see `metrics.load_aflw2000_folder`).
    detect: `image [H, W, 3] uint8 -> list of Face` (default `detect_faces`).
    **detect_kwargs: passed to `detect`.

  Returns:
    dict with `images`, `detected`, `failures` (names), `nme_percent` (mean
    over detected), `nme_median_percent`, `bins` (label -> images, detected,
    nme_percent or None), `seconds_per_image` (read + detect), and `per_image`
    (name, yaw, bin, detector or None, nme_percent or None).
  """
  samples = metrics.load_aflw2000_folder(folder)
  per_image, times = [], []
  for image_path, gt, yaw in samples:
    start = time.perf_counter()
    faces = detect(read_image(image_path), **detect_kwargs)
    times.append(time.perf_counter() - start)
    row = {"image": image_path.name, "yaw": round(yaw, 2), "bin": str(metrics.yaw_bins(yaw)),
           "detector": None, "nme_percent": None}
    if faces:
      nme = metrics.nme_68(faces[0].landmarks68[None], gt[None])[0]
      row.update(detector=faces[0].detector, nme_percent=float(nme * metrics.PERCENT))
    per_image.append(row)
  return summarize(per_image, folder=str(folder), seconds=times)


def _mean_or_none(values):
  return float(np.mean(values)) if values else None


def summarize(per_image, folder, seconds):
  """Builds the result dict of `evaluate_detector` from its per-image rows."""
  scored = [r["nme_percent"] for r in per_image if r["nme_percent"] is not None]
  bins = {}
  for label in metrics.YAW_BIN_LABELS:
    rows = [r for r in per_image if r["bin"] == label]
    values = [r["nme_percent"] for r in rows if r["nme_percent"] is not None]
    bins[label] = {"images": len(rows), "detected": len(values), "nme_percent": _mean_or_none(values)}
  return {
      "folder": folder,
      "images": len(per_image),
      "detected": len(scored),
      "failures": [r["image"] for r in per_image if r["nme_percent"] is None],
      "nme_percent": _mean_or_none(scored),
      "nme_median_percent": float(np.median(scored)) if scored else None,
      "bins": bins,
      "seconds_per_image": float(np.mean(seconds)) if seconds else None,
      "per_image": per_image,
  }


def _fmt(value, spec=".2f"):
  return "-" if value is None else format(value, spec)


def format_table(result, per_image=True):
  """Returns a plain-text table of an `evaluate_detector` result."""
  lines = []
  if per_image:
    lines.append(f"{'image':<{NAME_WIDTH}} {'yaw':>7} {'bin':>8} {'det':>4} {'NME %':>7}")
    for r in result["per_image"]:
      lines.append(f"{r['image']:<{NAME_WIDTH}} {r['yaw']:7.1f} {r['bin']:>8} "
                   f"{r['detector'] or 'none':>4} {_fmt(r['nme_percent']):>7}")
    lines.append("")
  lines.append(f"{'|yaw| bin':<{NAME_WIDTH}} {'images':>7} {'found':>7} {'NME %':>7}")
  for label, b in result["bins"].items():
    lines.append(f"{label:<{NAME_WIDTH}} {b['images']:7d} {b['detected']:7d} "
                 f"{_fmt(b['nme_percent']):>7}")
  lines.append(f"{'all':<{NAME_WIDTH}} {result['images']:7d} {result['detected']:7d} "
               f"{_fmt(result['nme_percent']):>7}")
  lines.append(f"median NME % {_fmt(result['nme_median_percent'])}; "
               f"failures: {', '.join(result['failures']) or 'none'}; "
               f"{_fmt(result['seconds_per_image'], '.3f')} s/image (read + detect)")
  return "\n".join(lines)
