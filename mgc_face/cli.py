"""`python main.py --model mgc --mode train|test|eval ...`: flags and dispatch only.

`main.py --model mgc --mode MODE --help` lists what MODE takes.

    train: --data DIR --checkpoint DIR [--steps N] [--no-multiview] [--batch-size B]
           [--embedding-model MODEL] [--backbone-weights FILE] [--w-... weights]
           [--set NAME=VALUE ...] (any field of mgc_face/config.py's MGCConfig)
           [--strategy default|mirrored|multiworker]  (docs/distributed.md)
           resumes from the latest checkpoint in DIR (README, "Training")
    test:  [--checkpoint DIR] --input FILE_OR_DIR --output DIR [--input-kind auto|aligned|photo]
           [--fit-steps N] [--cnn-fallback] [--frame-step N] [--smoothing S] [--no-frame-files]
           [--same-person]
           (photos and videos)
           [--set NAME=VALUE ...] (photos: any field of shared/fit/fitter.py's FitConfig)
    eval:  --checkpoint DIR --data DIR [--split test] [--fit-steps N] [--self-fit-steps N]
           (landmark-fitting steps after the regression, default 200; test-time
           self-supervised fit steps, default 300, mgc_face.self_fit; 0: none)
"""

import argparse
import dataclasses
import json
import sys

from shared.cli import add_mode_groups, need
from shared.errors import InputError
from shared.io.paths import check_output_folder

MODES = ("train", "test", "eval")
INPUT_KINDS = ("auto", "aligned", "photo")
ALIGNED_SIZES = ((224, 224), (672, 224))  # An aligned crop, or an MGCNet strip.
WEIGHT_PREFIX = "w_"
EXTRA_WEIGHTS = ("landmark_detail_weight",)


def weight_fields():
  from mgc_face.config import MGCConfig
  return [f for f in dataclasses.fields(MGCConfig)
          if f.name.startswith(WEIGHT_PREFIX) or f.name in EXTRA_WEIGHTS]


def add_train(group):
  group.add_argument("--data", help="dataset folder (train.txt / test.txt, MGCNet strip format)")
  group.add_argument("--checkpoint",
                     help="output folder: checkpoints, meta.json, logs/ (a run resumes from "
                          "the latest checkpoint there)")
  group.add_argument("--steps", type=int, default=None, help="total steps (default: preset)")
  group.add_argument("--batch-size", type=int, default=None,
                     help="triplets per step (default: preset)")
  group.add_argument("--learning-rate", type=float, default=None,
                     help="Adam learning rate (default: preset; paper 1e-4)")
  group.add_argument("--no-multiview", action="store_true",
                     help="single-view losses only (the ablation baseline)")
  group.add_argument("--embedding-model", default=None,
                     help="face-embedding model (SavedModel folder or .keras; FaceNet input "
                          "scaling); enables the identity loss")
  group.add_argument("--identity-model", dest="embedding_model", default=None,
                     help=argparse.SUPPRESS)  # The old name of --embedding-model.
  group.add_argument("--backbone-weights", default=None,
                     help="ResNet-50 weights file to start from (nothing is downloaded)")
  from shared.config_overrides import add_set_argument
  from shared.train.distribute import add_strategy_argument
  add_set_argument(group, "the MGC preset (MGCConfig, mgc_face/config.py)",
                   "landmark_warmup_steps=1200")
  add_strategy_argument(group)
  add_quiet(group)
  for field in weight_fields():
    flag = "--" + field.name.replace("_", "-")
    group.add_argument(flag, type=float, default=None,
                       help=f"loss weight (default: preset; paper {field.default})")


def add_test(group):
  group.add_argument("--input", help="an aligned 224x224 image, a strip, a photo, or a folder")
  group.add_argument("--output", help="output folder")
  group.add_argument("--checkpoint",
                     help="trained checkpoint folder (optional for photos: fitting only)")
  group.add_argument("--input-kind", choices=INPUT_KINDS, default="auto",
                     help="'aligned' 224 crops/strips, or 'photo' (detect, align, fit, draw back "
                          "on the photo); auto = aligned when every input is 224x224 or 672x224")
  from shared.eval.landmark_eval import add_photo_arguments
  add_photo_arguments(group)
  group.add_argument("--frame-step", type=int, default=1,
                     help="videos: reconstruct every N-th frame (default 1: every frame)")
  group.add_argument("--smoothing", type=float, default=None, metavar="SECONDS",
                     help="videos: smooth each face's points over time with a Gaussian of "
                          "this width (default 0.12 s; 0: each frame on its own)")
  group.add_argument("--no-frame-files", action="store_true",
                     help="videos: write only the overlay video and <stem>_tracks.npz/.png "
                          "(every face's coefficients, pose and landmarks over time), not "
                          "each frame's files")
  group.add_argument("--same-person", action="store_true",
                     help="photos and videos of one person: fit one identity to up to 16 of "
                          "them, hold it in every fit, and reconstruct only the face of each "
                          "image or frame that looks most like them")
  add_quiet(group)


def add_eval(group):
  group.add_argument("--checkpoint", help="trained checkpoint folder")
  group.add_argument("--data", help="dataset folder with the list file to evaluate")
  group.add_argument("--split", default="test", help="list file to evaluate (DIR/SPLIT.txt)")
  group.add_argument("--fit-steps", type=int, default=None,
                     help="landmark-fitting steps after the regression (default 200; 0: none)")
  group.add_argument("--self-fit-steps", type=int, default=None,
                     help="steps of the test-time self-supervised fit, no labels "
                          "(default 300; 0: none)")
  add_quiet(group)


def add_quiet(group):
  group.add_argument("--quiet", action="store_true", help="no progress bars")


ADDERS = {"train": add_train, "test": add_test, "eval": add_eval}


def add_arguments(parser, modes=MODES):
  add_mode_groups(parser, modes, ADDERS, "mgc")


def training_config(args):
  """The preset, or the checkpoint's own config when resuming (with the preset's values for
  fields newer than the checkpoint, but the network's as the checkpoint built it), plus
  `--set` and flag overrides (a flag wins over `--set` of the same field)."""
  from mgc_face import checkpoint as checkpoint_lib
  from mgc_face.config import get_config
  from shared.config_overrides import apply_overrides
  config = get_config(args.config)
  meta = checkpoint_lib.read_meta(args.checkpoint)
  if meta is not None:
    saved = checkpoint_lib.saved_config(meta, args.checkpoint)
    if saved.name != config.name:
      raise InputError(f"{args.checkpoint}: holds a '{saved.name}' checkpoint; resume it with "
                       f"--config {saved.name} or use a new --checkpoint folder")
    # Fields added to the config after the checkpoint was written take the preset's values,
    # except the network's: there the dataclass default is what the checkpoint was built with.
    newer = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
             if f.name not in meta["config"] and f.name not in checkpoint_lib.NETWORK_FIELDS}
    config = saved.replace(**newer)
  config = apply_overrides(config, args.set, log=print)
  changes = {f.name: getattr(args, f.name) for f in weight_fields()
             if getattr(args, f.name) is not None}
  if args.batch_size is not None:
    changes["batch_size"] = args.batch_size
  if args.learning_rate is not None:
    changes["learning_rate"] = args.learning_rate
  if args.batch_size is not None and args.batch_size < 1:
    raise InputError(f"--batch-size {args.batch_size}: must be at least 1")
  return config.replace(**changes)


def input_kind(args):
  """'aligned' or 'photo' for `--input-kind auto` from the input images' sizes (a video, or a
  folder holding one: 'photo')."""
  if args.input_kind != "auto":
    return args.input_kind
  from pathlib import Path
  from shared.io.video_io import is_video_file
  path = Path(args.input)
  if is_video_file(path) or (path.is_dir() and any(is_video_file(p) for p in path.iterdir())):
    return "photo"
  from mgc_face.infer import collect_inputs
  from shared.io.image_io import header_size
  sizes = {header_size(p) for p in collect_inputs(args.input)}
  return "aligned" if sizes <= set(ALIGNED_SIZES) else "photo"


def run_photo_mode(args, face_model):
  """Photos in: detect, align, regress (when a checkpoint is given), fit, export."""
  from shared.photo import reconstruct
  from shared.eval.landmark_eval import fit_config_from_args, select_mesh_model_from_args
  fit_config = fit_config_from_args(args, log=print)    # A bad --set: one line, nothing run.
  select_mesh_model_from_args(args)
  regressor = None
  if args.checkpoint:
    from mgc_face import infer
    regressor = infer.load_regressor(args.checkpoint, face_model)
  summary = reconstruct.reconstruct_photos(args.input, face_model, args.output,
                                           regressor=regressor,
                                           fit_config=fit_config,
                                           cnn_fallback=args.cnn_fallback,
                                           landmarks=getattr(args, "landmarks", "dense"),
                                           frame_step=args.frame_step,
                                           progress=not args.quiet,
                                           same_person=args.same_person,
                                           smoothing=reconstruct.smoothing_config(
                                               args.smoothing),
                                           frame_files=not args.no_frame_files)
  return 0 if summary["images_ok"] == summary["images"] else 1


def train_mode(args, config, strategy):
  """--mode train after the strategy is made: trains, prints a line then a JSON line."""
  from mgc_face import train as train_lib
  from shared.train.distribute import per_replica_batch_size
  from shared.model.face_model import load_face_model
  per_replica_batch_size(strategy, config.batch_size)
  face_model = load_face_model(args.face_model)
  embedder = None
  if args.embedding_model:
    from shared.train.embedding import FaceEmbedder
    embedder = FaceEmbedder(args.embedding_model)
  result = train_lib.train(face_model, config, args.data, args.checkpoint, args.steps,
                           multiview=not args.no_multiview, embedder=embedder,
                           backbone_weights=args.backbone_weights, seed=args.seed,
                           progress=not args.quiet, strategy=strategy)
  terms = ", ".join(f"{k} {v:.4g}" for k, v in sorted(result["terms"].items()))
  rate = result["images_per_second"]
  speed = "" if rate is None else f", {rate:.1f} images/s"
  print(f"trained to step {result['steps']} ({result['skipped']} skipped) in "
        f"{result['seconds']:.0f} s{speed}" + (f"; {terms}" if terms else ""))
  print(json.dumps({k: v for k, v in result.items() if k != "terms"} | result["terms"]))
  return 0


def eval_fit_config(fit_steps):
  """The eval's landmark fit for `--fit-steps` (None: the default schedule; 0: no fit)."""
  from mgc_face import evaluate
  if fit_steps is None:
    return evaluate.LANDMARK_FIT
  return dataclasses.replace(evaluate.LANDMARK_FIT, landmark_steps=fit_steps) if fit_steps else None


def eval_self_fit_config(steps):
  """The eval's self-supervised fit for `--self-fit-steps` (None: the default; 0: none)."""
  from mgc_face import evaluate
  if steps is not None and steps < 0:
    raise InputError(f"--self-fit-steps {steps}: must be non-negative")
  return evaluate.SELF_FIT if steps is None else dataclasses.replace(evaluate.SELF_FIT, steps=steps)


def run(args):
  from shared.model.face_model import load_face_model
  if args.mode == "train":
    need(args, "data", "checkpoint")
    check_output_folder(args.checkpoint)
    from shared.train import distribute
    if args.steps is not None and args.steps < 0:
      raise InputError(f"--steps {args.steps}: must be non-negative")
    config = training_config(args)
    strategy = distribute.make_strategy(args.strategy)  # Before any other TensorFlow work.
    return distribute.run_to_exit(lambda: train_mode(args, config, strategy))
  if args.mode == "test":
    need(args, "input", "output")
    check_output_folder(args.output)
    from mgc_face import infer
    face_model = load_face_model(args.face_model)
    if input_kind(args) == "photo":
      return run_photo_mode(args, face_model)
    for flag, given in (("--set", args.set), ("--same-person", args.same_person)):
      if given:
        raise InputError(f"{flag}: changes the photo fit, and aligned crops are not fitted "
                         "(--input-kind photo fits them)")
    need(args, "checkpoint")
    regressor = infer.load_regressor(args.checkpoint, face_model)
    written, problems = infer.reconstruct_folder(regressor, args.input, args.output,
                                                 progress=not args.quiet)
    print(f"wrote {written} reconstruction(s) to {args.output}"
          + (f"; {len(problems)} input(s) skipped" if problems else ""))
    return 0 if not problems else 1
  need(args, "checkpoint", "data")
  from mgc_face import evaluate, infer
  face_model = load_face_model(args.face_model)
  regressor = infer.load_regressor(args.checkpoint, face_model)
  metrics = evaluate.evaluate(regressor, args.data, args.split, progress=not args.quiet,
                              fit_config=eval_fit_config(args.fit_steps),
                              self_fit_config=eval_self_fit_config(args.self_fit_steps))
  print(evaluate.format_report(metrics))
  sys.stdout.flush()
  return 0
