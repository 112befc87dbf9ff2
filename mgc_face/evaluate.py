"""Evaluation on held-out synthetic identities (DIR/test.txt with `_gt.npz` files).

For every view of every held-out sample (3 per triplet) it regresses the
coefficients and reports, averaged over views:

* 3D vertex RMSE after rigid Procrustes alignment (rotation + translation,
  no scale) of the predicted model-space shape (identity + expression) to the
  ground truth, over the face region (`FaceModel.skin_mask`) and over all
  vertices, in model units and in mm (`mm_per_unit`);
* the face-region RMSE after similarity alignment (rotation, translation and
  one scale, Umeyama), as the NoW benchmark aligns: one image fixes a face's
  size only up to its distance (our synthetic depths vary by +-5 %, and the
  ICT model's first identity component is almost a pure scale, cosine -0.98
  with the centred mean shape, 38 % of the identity variance in the face
  region), so the rigid figure mostly charges the unobservable scale;
* 68-landmark NME (%) of the projected landmarks against the noise-free
  ground truth, normalised by sqrt(w h) of the ground-truth box
  (`shared.eval.metrics.nme_68`);
* the photometric error: mean per-pixel RGB L2 norm (colours in [0, 1]) of
  render vs image over the rendered skin region;
* both RMSEs for the mean face, as the reference a trained model must beat;
* which part of the shape the regressor reads (`shape_parts`), both
  similarity-aligned over the face region: `identity_sim_vs_mean_identity`,
  its identity with the true expression over the mean identity with the true
  expression, and `expression_sim_vs_neutral`, its expression with the true
  identity over the neutral expression with the true identity (below 1: the
  part beats predicting nothing);
* `by_yaw`: the similarity ratio and the NME per bin of each view's true
  |yaw| (`YAW_BIN_EDGES`, degrees; every view of a triplet is regressed on its
  own, so each counts as a target in its own bin).

With `fit_config` (default `LANDMARK_FIT`) it also reports both face RMSEs
after per-image landmark fitting (`shared.fit.fitter`, as the photo pipeline
runs after the regressor) started from the regression, against the strips'
`_lm.txt` landmarks: the noisy detector stand-in training uses, never the
ground truth.  Its shape prior is centred on the regressor's identity and
expression, not the mean face's (`EVAL_FIT_SHAPE_WEIGHT`, session 22).  The
regressor's own figures come first and stay separate.

With `self_fit_config` (default `SELF_FIT`) it also reports the shape and NME
after the test-time self-supervised fit (`mgc_face.self_fit`): the same
regression refined on each view's own image, skin mask and the network's own
landmark-head points, with no label at all (`self_fit_*` keys).
"""

import json

import numpy as np
import tensorflow as tf

from mgc_face import data as data_lib
from mgc_face import synthetic
from mgc_face.infer import Reconstructor
from mgc_face.self_fit import SelfFitConfig, SelfFitter
from shared.train import losses
from shared.errors import InputError
from shared.fit.fitter import FitConfig
from shared.eval.metrics import PERCENT, nme_68

SKIN_REGION = 0.5
# The fit reads the synthetic sets' labels (1 px noise).  Its shape prior is centred on the
# regressor's estimate (a regressor that reads more than 68 points would otherwise be pulled
# back to what 68 points say), with a weight chosen on the tuning set `out/std/probe_s1`
# (docs/mgc.md "Session 22": 3e-4 / 1e-3 / 3e-3 / 1e-2 gave tiny 0.706 / 0.707 / 0.721 /
# 0.741 and cpu_hour - / 0.541 / 0.528 / 0.527; centred on the mean face at session 14's 3e-5:
# 0.706 and 0.636, the regressors 0.808 and 0.556).
EVAL_FIT_SHAPE_WEIGHT = 1e-3
EVAL_FIT_EXPRESSION_RATIO = 0.8     # the photo fit's until session 41, when that one changed
# Landmark stage only (about a millisecond a step): the geometry, not the colours.
LANDMARK_FIT = FitConfig(landmark_steps=200, photometric_steps=0,
                         shape_weight=EVAL_FIT_SHAPE_WEIGHT,
                         expression_ratio=EVAL_FIT_EXPRESSION_RATIO, shape_prior_at_start=True)
SELF_FIT = SelfFitConfig()
# |yaw| bins (degrees) of the per-view breakdown; the last bin is closed.
YAW_BIN_EDGES = (0.0, 20.0, 40.0, 90.0)


def yaw_bin_labels(edges=YAW_BIN_EDGES):
  """Bin names '[a,b)' ... '[y,z]' for consecutive edges."""
  last = len(edges) - 2
  return [f"[{edges[k]:g},{edges[k + 1]:g}{']' if k == last else ')'}" for k in range(last + 1)]


def yaw_bins(yaw_degrees, edges=YAW_BIN_EDGES):
  """Bin index of each |yaw| (degrees) [N] -> int [N]; values past the last edge go last."""
  inner = np.asarray(edges[1:-1], np.float64)
  return np.searchsorted(inner, np.abs(np.asarray(yaw_degrees, np.float64)), side="right")


def by_yaw(yaw_degrees, rmse_sim, rmse_sim_mean, nme, edges=YAW_BIN_EDGES):
  """Per |yaw| bin: views, similarity RMSE / mean face (ratio of the bin's means), NME %.

  All inputs are per view [N]; bins without views are left out.
  """
  index = yaw_bins(yaw_degrees, edges)
  rmse_sim, rmse_sim_mean, nme = (np.asarray(x, np.float64) for x in (rmse_sim, rmse_sim_mean,
                                                                       nme))
  out = {}
  for k, label in enumerate(yaw_bin_labels(edges)):
    sel = index == k
    if sel.any():
      out[label] = {"views": int(sel.sum()),
                    "rmse_sim_vs_mean_face": ratio(rmse_sim[sel].mean(), rmse_sim_mean[sel].mean()),
                    "nme_percent": float(nme[sel].mean())}
  return out


def rigid_align(source, target, with_scale=False):
  """Kabsch (Umeyama with `with_scale`): R, t (and s) minimising |s R x + t - y|^2.

  Args:
    source, target: [N, 3].
    with_scale: also fit one scale factor (a similarity transform).

  Returns:
    source aligned to target, [N, 3].
  """
  source = np.asarray(source, np.float64)
  target = np.asarray(target, np.float64)
  mu_s, mu_t = source.mean(0), target.mean(0)
  centred = source - mu_s
  u, singular, vt = np.linalg.svd(centred.T @ (target - mu_t))
  signs = np.array([1.0, 1.0, np.sign(np.linalg.det(vt.T @ u.T))])
  rotation = vt.T @ np.diag(signs) @ u.T
  scale = float(singular @ signs / np.sum(centred ** 2)) if with_scale else 1.0
  return scale * centred @ rotation.T + mu_t


def aligned_rmse(predicted, truth, region=None, with_scale=False):
  """RMSE (units of the input) after rigid (or similarity) alignment over `region` (bool [V])."""
  if region is not None:
    predicted, truth = predicted[region], truth[region]
  aligned = rigid_align(predicted, truth, with_scale)
  return float(np.sqrt(np.mean(np.sum((aligned - truth) ** 2, axis=1))))


def shape_parts(decoder, predicted, truth, vertices, region):
  """Similarity-aligned face RMSEs that split a shape error into identity and expression.

  Args:
    decoder: `FaceDecoder`; `shape(identity [N, I], expression [N, E])` -> [N, V, 3].
    predicted, truth: `Coefficients` of the same N views (the regressor's, the ground truth's).
    vertices: the ground-truth shape [V, 3] (model units) the truth's coefficients decode to.
    region: bool [V], the vertices scored.

  Returns:
    Dict of lists [N] (model units): "identity" (predicted identity, true expression),
    "mean_identity" (zero identity, true expression), "expression" (true identity, predicted
    expression), "neutral" (true identity, zero expression).
  """
  zero_identity = tf.zeros_like(truth.identity)
  zero_expression = tf.zeros_like(truth.expression)
  pairs = {"identity": (predicted.identity, truth.expression),
           "mean_identity": (zero_identity, truth.expression),
           "expression": (truth.identity, predicted.expression),
           "neutral": (truth.identity, zero_expression)}
  out = {}
  for name, (identity, expression) in pairs.items():
    shapes = decoder.shape(identity, expression).numpy()
    out[name] = [aligned_rmse(shape, vertices, region, True) for shape in shapes]
  return out


def ratio(value, reference):
  return value / reference if reference > 0 else float("nan")


def evaluate(regressor, data_dir, split="test", batch_views=3, progress=True,
             fit_config=LANDMARK_FIT, self_fit_config=SELF_FIT):
  """Metrics dict over `split` (see the module docstring); `fit_config` None: no landmark fit;
  `self_fit_config` None (or 0 steps): no self-supervised fit."""
  from tqdm import tqdm
  model = regressor.face_model
  records, landmarks, problems = data_lib.scan(data_dir, split)
  if not records:
    raise InputError(f"{data_dir}/{split}.txt: no usable records")
  if not records[0].gt_path(data_dir).exists():
    raise InputError(f"{data_dir}: no ground truth ({records[0].gt_path(data_dir).name}); eval "
                     "scores shape against it, so it needs a synthetic set "
                     "(tools/make_synthetic_dataset.py); photo sets are for train and test")
  region = model.skin_mask > SKIN_REGION
  reconstructor = Reconstructor(regressor)
  mean_shape = model.mean_shape
  fitter = None
  if fit_config is not None and fit_config.steps > 0:
    from shared.fit.fitter import Fitter
    fitter = Fitter(reconstructor.synth, fit_config)
  rows = {k: [] for k in ("rmse_face", "rmse_all", "rmse_face_mean_shape", "rmse_face_sim",
                          "rmse_face_sim_mean_shape", "rmse_face_fit", "rmse_face_sim_fit", "nme",
                          "photometric", "yaw", "identity", "mean_identity", "expression",
                          "neutral")}
  self_fitter = None
  if self_fit_config is not None and self_fit_config.steps > 0:
    self_fitter = SelfFitter(reconstructor.synth, regressor.config, self_fit_config)
    self_fit = {k: [] for k in ("start", "images", "skins", "points", "truth", "landmarks")}
  for record, record_landmarks in tqdm(list(zip(records, landmarks)), desc="eval", unit="sample",
                                       disable=not progress):
    gt = synthetic.read_ground_truth(record.gt_path(data_dir))
    if str(gt["source_hash"]) != model.source_hash:
      raise InputError(f"{record.gt_path(data_dir)}: ground truth made with another face model "
                       f"(hash {gt['source_hash']}, model {model.source_hash})")
    images = data_lib.read_strip(record.image_path(data_dir))
    skins = data_lib.read_strip(record.skin_path(data_dir), grayscale=True)
    views = min(batch_views, len(images))
    result = reconstructor(images[:views])
    truth = gt["vertices"]
    true_coeffs = regressor.layout.split(tf.constant(gt["coefficients"][:batch_views], tf.float32))
    rows["yaw"].extend(np.degrees(true_coeffs.rotation.numpy()[:, 1]).tolist())
    parts = shape_parts(reconstructor.synth.decoder,
                        regressor.layout.split(tf.constant(result["coefficients"])), true_coeffs,
                        truth, region)
    for name, values in parts.items():
      rows[name].extend(values)
    for view in range(views):
      rows["rmse_face"].append(aligned_rmse(result["vertices"][view], truth, region))
      rows["rmse_all"].append(aligned_rmse(result["vertices"][view], truth))
      rows["rmse_face_mean_shape"].append(aligned_rmse(mean_shape, truth, region))
      rows["rmse_face_sim"].append(aligned_rmse(result["vertices"][view], truth, region, True))
      rows["rmse_face_sim_mean_shape"].append(aligned_rmse(mean_shape, truth, region, True))
    if fitter is not None:
      fitted = fitter.fit(images[:views], record_landmarks[:views],
                          init=regressor.layout.split(tf.constant(result["coefficients"])))
      shapes = fitter.decoder.shape(fitted.coeffs.identity, fitted.coeffs.expression).numpy()
      for view in range(views):
        rows["rmse_face_fit"].append(aligned_rmse(shapes[view], truth, region))
        rows["rmse_face_sim_fit"].append(aligned_rmse(shapes[view], truth, region, True))
    rows["nme"].extend(PERCENT * nme_68(result["landmarks2d"], gt["landmarks2d"][:batch_views]))
    if self_fitter is not None:
      head = regressor.head_landmarks(tf.constant(images[:views]))[1]
      self_fit["points"].append(result["landmarks2d"][:views] if head is None
                                else head[0].numpy())
      self_fit["start"].append(result["coefficients"][:views])
      self_fit["images"].append(images[:views])
      self_fit["skins"].append(skins[:views])
      self_fit["truth"].extend([truth] * views)
      self_fit["landmarks"].append(gt["landmarks2d"][:views])
    photo = losses.photometric_loss(tf.constant(result["image"]), tf.constant(result["mask"]),
                                    tf.constant(images[:batch_views]),
                                    tf.constant((skins[:batch_views] > SKIN_REGION)
                                                .astype(np.float32)), eps=0.0)
    rows["photometric"].extend(photo.numpy().tolist())
  mm = model.mm_per_unit
  rmse_face = float(np.mean(rows["rmse_face"]))
  mean_face = float(np.mean(rows["rmse_face_mean_shape"]))
  rmse_sim = float(np.mean(rows["rmse_face_sim"]))
  mean_face_sim = float(np.mean(rows["rmse_face_sim_mean_shape"]))
  metrics = {
      "samples": len(records), "views": len(rows["rmse_face"]), "bad_records": len(problems),
      "rmse_face_units": rmse_face, "rmse_face_mm": rmse_face * mm,
      "rmse_face_mm_std": float(np.std(rows["rmse_face"]) * mm),
      "rmse_all_units": float(np.mean(rows["rmse_all"])),
      "rmse_all_mm": float(np.mean(rows["rmse_all"]) * mm),
      "mean_face_rmse_face_mm": mean_face * mm,
      "rmse_vs_mean_face": ratio(rmse_face, mean_face),
      "rmse_face_sim_mm": rmse_sim * mm, "mean_face_rmse_face_sim_mm": mean_face_sim * mm,
      "rmse_sim_vs_mean_face": ratio(rmse_sim, mean_face_sim),
      "identity_sim_vs_mean_identity": ratio(np.mean(rows["identity"]),
                                             np.mean(rows["mean_identity"])),
      "expression_sim_vs_neutral": ratio(np.mean(rows["expression"]), np.mean(rows["neutral"])),
      "fit_landmark_steps": fit_config.landmark_steps if fitter is not None else 0,
      "nme_percent": float(np.mean(rows["nme"])),
      "photometric": float(np.mean(rows["photometric"])),
      "steps": int(getattr(regressor, "steps", 0)),
      "by_yaw": by_yaw(rows["yaw"], rows["rmse_face_sim"], rows["rmse_face_sim_mean_shape"],
                       rows["nme"]),
  }
  if self_fitter is not None:
    metrics.update(self_fit_metrics(self_fitter, self_fit, regressor, region, mean_face,
                                    mean_face_sim, progress))
  if fitter is not None:
    fit, fit_sim = float(np.mean(rows["rmse_face_fit"])), float(np.mean(rows["rmse_face_sim_fit"]))
    metrics.update({"fit_rmse_face_mm": fit * mm, "fit_rmse_vs_mean_face": ratio(fit, mean_face),
                    "fit_rmse_face_sim_mm": fit_sim * mm,
                    "fit_rmse_sim_vs_mean_face": ratio(fit_sim, mean_face_sim)})
  return metrics


def self_fit_metrics(self_fitter, collected, regressor, region, mean_face, mean_face_sim,
                     progress=False):
  """The `self_fit_*` metrics of `self_fitter` (a `SelfFitter`) on the views `evaluate`
  collected."""
  join = np.concatenate
  vectors = self_fitter(regressor.layout, join(collected["start"]), join(collected["images"]),
                        join(collected["skins"]), join(collected["points"]), progress=progress)
  shapes, _, _, landmarks2d = self_fitter.objective.synth.geometry(
      regressor.layout.split(tf.constant(vectors)))
  shapes = shapes.numpy()
  truth = collected["truth"]
  rigid = [aligned_rmse(shape, t, region) for shape, t in zip(shapes, truth)]
  sim = [aligned_rmse(shape, t, region, True) for shape, t in zip(shapes, truth)]
  nme = PERCENT * nme_68(landmarks2d.numpy(), join(collected["landmarks"]))
  mm = regressor.face_model.mm_per_unit
  return {"self_fit_steps": self_fitter.config.steps,
          "self_fit_rmse_face_mm": float(np.mean(rigid)) * mm,
          "self_fit_rmse_vs_mean_face": ratio(np.mean(rigid), mean_face),
          "self_fit_rmse_face_sim_mm": float(np.mean(sim)) * mm,
          "self_fit_rmse_sim_vs_mean_face": ratio(np.mean(sim), mean_face_sim),
          "self_fit_nme_percent": float(np.mean(nme))}


TABLE_ROWS = (
    ("3D RMSE, face region (model units)", "rmse_face_units", "{:.4f}"),
    ("3D RMSE, face region (mm)", "rmse_face_mm", "{:.2f}"),
    ("3D RMSE, all vertices (mm)", "rmse_all_mm", "{:.2f}"),
    ("mean face RMSE, face region (mm)", "mean_face_rmse_face_mm", "{:.2f}"),
    ("RMSE / mean-face RMSE", "rmse_vs_mean_face", "{:.3f}"),
    ("3D RMSE, face, similarity-aligned (mm)", "rmse_face_sim_mm", "{:.2f}"),
    ("mean face, similarity-aligned (mm)", "mean_face_rmse_face_sim_mm", "{:.2f}"),
    ("similarity RMSE / mean-face", "rmse_sim_vs_mean_face", "{:.3f}"),
    ("  identity part / mean identity", "identity_sim_vs_mean_identity", "{:.3f}"),
    ("  expression part / neutral", "expression_sim_vs_neutral", "{:.3f}"),
    ("+ landmark fit: 3D RMSE, face (mm)", "fit_rmse_face_mm", "{:.2f}"),
    ("+ landmark fit: RMSE / mean-face", "fit_rmse_vs_mean_face", "{:.3f}"),
    ("+ landmark fit: similarity RMSE (mm)", "fit_rmse_face_sim_mm", "{:.2f}"),
    ("+ landmark fit: similarity / mean-face", "fit_rmse_sim_vs_mean_face", "{:.3f}"),
    ("+ self-fit, no labels: RMSE / mean-face", "self_fit_rmse_vs_mean_face", "{:.3f}"),
    ("+ self-fit: similarity RMSE (mm)", "self_fit_rmse_face_sim_mm", "{:.2f}"),
    ("+ self-fit: similarity / mean-face", "self_fit_rmse_sim_vs_mean_face", "{:.3f}"),
    ("+ self-fit: 68-landmark NME (%)", "self_fit_nme_percent", "{:.2f}"),
    ("68-landmark NME (%)", "nme_percent", "{:.2f}"),
    ("photometric error (RGB L2)", "photometric", "{:.4f}"),
    ("held-out samples (views)", None, None),
)


def format_report(metrics):
  """A table, then the metrics as one JSON object on the last line."""
  lines = []
  for label, key, fmt in TABLE_ROWS:
    if key is not None and key not in metrics:
      continue
    value = (f"{metrics['samples']} ({metrics['views']})" if key is None
             else fmt.format(metrics[key]))
    lines.append(f"{label:<40} {value:>12}")
  for label, row in metrics.get("by_yaw", {}).items():
    lines.append(f"{'|yaw| ' + label + ': sim / mean, NME %':<40} "
                 f"{row['rmse_sim_vs_mean_face']:>6.3f} {row['nme_percent']:>5.2f} "
                 f"({row['views']} views)")
  lines.append(json.dumps(metrics, sort_keys=True))
  return "\n".join(lines)
