"""What tools/make_photo_dataset.py's labels cost: a synthetic MGC set packed as if it were photos.

Usage (from the repository root):
  python bench/photo_dataset.py --data out/std/d96 --work out/bench_photo_dataset [--pad 48]
      [--train] [--config tiny]

Writes every training view of the synthetic set `--data` as a photo (the 224 crop
padded by `--pad` pixels, reflected; one folder per identity), packs them with
`mgc_face.photo_dataset.build`, and scores the packed 68 points against the
generator's noise-free truth moved into the packed crops (pixels of the 224 crop, by
fitted |yaw|).  With `--train` it also trains `--config` on the packed set and on a
copy whose labels are that truth, and scores both with `main.py --mode eval` on
`--data`'s held-out identities (14 minutes for `tiny` on 2 cores, Zen 4).  Prints
tables, then one JSON line.
"""

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import common  # noqa: E402  (sets up quiet logging first)

REPO = Path(__file__).resolve().parent.parent
YAW_BINS = ((0, 15), (15, 30), (30, 90))
VIEW_TAG = "_v"
EVAL_KEYS = ("rmse_sim_vs_mean_face", "nme_percent", "fit_rmse_sim_vs_mean_face",
             "self_fit_rmse_sim_vs_mean_face")


def _parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", required=True, help="a synthetic MGC set (with _gt.npz files)")
  parser.add_argument("--work", required=True, help="folder for the photos, sets and checkpoints")
  parser.add_argument("--pad", type=int, default=48, help="pixels of reflected border per side")
  parser.add_argument("--train", action="store_true", help="also train and evaluate both sets")
  parser.add_argument("--config", default="tiny", help="MGC preset for --train")
  return parser.parse_args(argv)


def write_photos(data, folder, pad):
  """Each training view of `data` as `folder/<identity>/<frame>_v<k>.png`; returns the count."""
  import cv2
  from mgc_face import data as data_lib
  from shared.io import image_io
  records, _, _ = data_lib.scan(data, "train", report=False)
  count = 0
  for record in records:
    for k, view in enumerate(data_lib.read_strip(record.image_path(data))):
      image = cv2.copyMakeBorder(image_io.to_uint8(view), pad, pad, pad, pad,
                                 cv2.BORDER_REFLECT)
      image_io.write_png(folder / record.subfolder / f"{record.frame_id}{VIEW_TAG}{k}.png", image)
      count += 1
  return count


def truth_in_crops(data, packed, record, pad):
  """[3, 68, 2] the generator's noise-free landmarks of `record`'s packed views, in their crops,
  and their fitted yaws [3]."""
  import numpy as np
  from mgc_face import photo_dataset, synthetic
  from shared.photo import alignment
  views = json.loads((packed / record.subfolder /
                      f"{record.frame_id}{photo_dataset.SOURCE_SUFFIX}").read_text())["views"]
  points, yaws = [], []
  for view in views:
    frame, k = Path(view["source"]).stem.rsplit(VIEW_TAG, 1)
    truth = synthetic.read_ground_truth(data / record.subfolder / f"{frame}_gt.npz")
    points.append(alignment.transform_points(truth["landmarks2d"][int(k)] + pad,
                                             np.array(view["matrix"])))
    yaws.append(view["yaw_degrees"])
  return np.stack(points), np.array(yaws)


def label_errors(data, packed, pad, truth_copy=None):
  """Mean px error of each packed view's 68 points (each source photo once), its |yaw|; with
  `truth_copy`, also writes a copy of `packed` whose labels are the truth."""
  import numpy as np
  from mgc_face import data as data_lib
  records, _ = data_lib.read_list(packed / "train.txt")
  if truth_copy is not None:
    shutil.copytree(packed, truth_copy)
  seen, errors, yaws = set(), [], []
  for record in records:
    labels = data_lib.read_landmarks(record.landmark_path(packed))
    truth, view_yaws = truth_in_crops(data, packed, record, pad)
    if truth_copy is not None:
      data_lib.write_landmarks(record.landmark_path(truth_copy), truth)
    sources = json.loads((packed / record.subfolder / f"{record.frame_id}_src.json").read_text())
    for view, label, point, yaw in zip(sources["views"], labels, truth, view_yaws):
      if view["source"] not in seen:
        seen.add(view["source"])
        errors.append(float(np.linalg.norm(label - point, axis=1).mean()))
        yaws.append(abs(yaw))
  return np.array(errors), np.array(yaws)


def main_json(*args):
  """Runs main.py and returns its last output line's JSON object."""
  out = subprocess.run([sys.executable, str(REPO / "main.py"), *map(str, args), "--quiet"],
                       cwd=REPO, capture_output=True, text=True)
  if out.returncode != 0:
    raise SystemExit(out.stderr.strip().splitlines()[-1])
  return json.loads(out.stdout.strip().splitlines()[-1])


def run(args):
  import numpy as np
  from mgc_face import photo_dataset
  from shared.errors import fail
  from shared.model.face_model import load_face_model
  data, work = Path(args.data), Path(args.work)
  if not (data / "train.txt").exists():
    fail(data, "not an MGC dataset folder (no train.txt)")
  if work.exists():
    fail(work, "exists; choose a new --work folder")
  start = time.time()
  photos = write_photos(data, work / "photos", args.pad)
  packed = work / "packed"
  info = photo_dataset.build(load_face_model(), work / "photos", packed,
                             photo_dataset.PhotoDatasetConfig(test_fraction=0.0), progress=False,
                             log=lambda line: None)
  pack_seconds = time.time() - start
  truth_set = work / "packed_truth" if args.train else None
  errors, yaws = label_errors(data, packed, args.pad, truth_set)
  rows = [["all", len(errors), f"{errors.mean():.2f}", f"{np.median(errors):.2f}"]]
  by_yaw = {}
  for low, high in YAW_BINS:
    inside = (yaws >= low) & (yaws < high)
    by_yaw[f"[{low},{high})"] = float(errors[inside].mean()) if inside.any() else None
    rows.append([f"|yaw| [{low},{high})", int(inside.sum()),
                 f"{errors[inside].mean():.2f}" if inside.any() else "-", ""])
  print(f"{photos} photos, {info['faces']} faces packed in {pack_seconds:.0f} s")
  common.print_table(["fitted yaw", "views", "mean px", "median px"], rows)
  result = {"bench": "photo_dataset", "photos": photos, "faces": info["faces"],
            "pack_seconds": round(pack_seconds, 1), "label_error_px": float(errors.mean()),
            "label_error_px_by_yaw": by_yaw}
  if args.train:
    scores = {}
    for name, dataset in (("native", data), ("packed", packed), ("packed_truth", truth_set)):
      checkpoint = work / f"checkpoint_{name}"
      main_json("--model", "mgc", "--mode", "train", "--config", args.config, "--data", dataset,
                "--checkpoint", checkpoint)
      scores[name] = main_json("--model", "mgc", "--mode", "eval", "--checkpoint", checkpoint,
                               "--data", data)
      scores[name] = {k: scores[name][k] for k in EVAL_KEYS}
    common.print_table(["trained on"] + list(EVAL_KEYS),
                       [[name] + [f"{v[k]:.3f}" for k in EVAL_KEYS] for name, v in scores.items()])
    result["eval"] = scores
  common.print_json(result)


def main(argv=None):
  return common.run_reporting_input_errors(run, _parse_args(argv))


if __name__ == "__main__":
  sys.exit(main())
