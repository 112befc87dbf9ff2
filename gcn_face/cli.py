"""`python main.py --model gcn --mode train|test|eval ...`: flags and dispatch only.

`main.py --model gcn --mode MODE --help` lists what MODE takes.

    train: --data FILE.bin --coarse-checkpoint DIR --checkpoint DIR [--config tiny|paper]
           [--arch normal|resnet] [--gan] [--steps N] [--batch-size B] [--learning-rate LR]
           [--sampling FILE.npz] [--embedding-model PATH] [--quiet]
           [--set NAME=VALUE ...] (any field of gcn_face/config.py's GCNConfig but name, arch)
           [--strategy default|mirrored|multiworker]  (docs/distributed.md)
           resumes from the latest checkpoint in DIR (README, "Training")
    test:  --checkpoint DIR --input IMAGE|DIR|FILE.bin --output DIR [--limit N]
           [--keep-occluders]
    eval:  --checkpoint DIR --data FILE.bin [--output REPORT.json] [--pictures DIR] [--limit N]
    test and eval: [--albedo-confidence E] (0: the GCN's albedo without the confidence blend)

test and eval reuse the coarse checkpoint, sampling file and embedding model
recorded at training time unless given again.
"""

import argparse
import json
import sys

from shared.cli import add_mode_groups, need, positive
from shared.errors import InputError
from shared.io.paths import check_output_file, check_output_folder

MODES = ("train", "test", "eval")


def add_train(group):
  group.add_argument("--data", help="a .bin of aligned crops (tools/create_bin.py)")
  group.add_argument("--coarse-checkpoint", help="MGC regressor checkpoint: the coarse stage")
  group.add_argument("--checkpoint",
                     help="output folder: checkpoints, gcn.json, logs/ (a run resumes from "
                          "the latest checkpoint there)")
  group.add_argument("--steps", type=int, default=None,
                     help="total steps (default: epochs x steps per epoch of the preset)")
  group.add_argument("--arch", choices=("normal", "resnet"), default=None,
                     help="U-Net-like refiner (the original code) or residual blocks (the "
                          "paper) (default: normal)")
  group.add_argument("--gan", action="store_true", help="add the WGAN-GP image critic")
  group.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
  group.add_argument("--learning-rate", type=float, default=None,
                     help="Adam learning rate (default: preset; paper 1e-4)")
  add_model_files(group)
  group.add_argument("--resume", action="store_true",
                     help=argparse.SUPPRESS)  # No-op: every run resumes (kept for old commands).
  group.add_argument("--quiet", action="store_true", help="no progress bar")
  from shared.config_overrides import add_set_argument
  from shared.train.distribute import add_strategy_argument
  add_set_argument(group, "the GCN preset (GCNConfig, gcn_face/config.py) but name "
                   "and arch", "epochs=20")
  add_strategy_argument(group)


def add_model_files(group):
  group.add_argument("--sampling", default=None,
                     help="mesh hierarchy .npz (tools/make_sampling.py; default: the cache, "
                          "or the one recorded at training time)")
  group.add_argument("--embedding-model", default=None,
                     help="face-embedding model (.keras or SavedModel) for the perception loss "
                          "and the decoder feature (test/eval: default the one recorded at "
                          "training time)")


def add_test(group):
  group.add_argument("--checkpoint", help="GCN checkpoint folder")
  group.add_argument("--input", help="an aligned 224x224 image, a photo, a folder or a .bin")
  group.add_argument("--output", help="output folder")
  group.add_argument("--keep-occluders", action="store_true",
                     help="photos: read the image under hair and other occluders too (by "
                          "default the face region that fails the skin colour test is not "
                          "read and its refined change is filled in from around it)")
  add_inference(group)


def add_eval(group):
  group.add_argument("--checkpoint", help="GCN checkpoint folder")
  group.add_argument("--data", help="a .bin of aligned crops with alpha (ground truth)")
  group.add_argument("--output", help="optional JSON report")
  group.add_argument("--pictures", default=None,
                     help="folder for one picture per image (input | coarse | refined | "
                          "ground truth, renders above, albedos below)")
  add_inference(group)


def add_inference(group):
  group.add_argument("--coarse-checkpoint",
                     help="MGC regressor checkpoint (default: the one used in training)")
  group.add_argument("--limit", type=int, default=None, help="at most N images")
  group.add_argument("--albedo-confidence", type=float, default=None, metavar="E",
                     help="keep the refined albedo's change in proportion min(1, irradiance / "
                          "E) per vertex; 0: the GCN's albedo as it is (default: the "
                          "checkpoint's config; tiny 1.5)")
  group.add_argument("--quiet", action="store_true", help="no progress bar")
  add_model_files(group)


ADDERS = {"train": add_train, "test": add_test, "eval": add_eval}
SET_FIXED = {"name": "--config", "arch": "--arch"}   # Fields --set leaves to their own flags.


def add_arguments(parser, modes=MODES):
  add_mode_groups(parser, modes, ADDERS, "gcn")


def training_config(args):
  """The preset, or the checkpoint's own config when resuming, plus `--set` and flag
  overrides (a flag wins over `--set` of the same field)."""
  from gcn_face import checkpoint as checkpoint_lib
  from gcn_face.config import get_config
  from shared.config_overrides import apply_overrides
  config = get_config(args.config, args.arch)
  found = checkpoint_lib.find_meta(args.checkpoint) if args.checkpoint else None
  if found is not None:
    saved = found[1]
    if (saved.name, saved.arch) != (config.name, args.arch or saved.arch):
      raise InputError(f"{args.checkpoint}: holds a '{saved.name}' ({saved.arch}) checkpoint; "
                       f"resume it with --config {saved.name} --arch {saved.arch} or use a new "
                       "--checkpoint folder")
    config = saved
  config = apply_overrides(config, args.set, fixed=SET_FIXED, log=print)
  changes = {}
  if args.batch_size is not None:
    changes["batch_size"] = args.batch_size
  if args.learning_rate is not None:
    if not args.learning_rate > 0:
      raise InputError(f"--learning-rate {args.learning_rate}: must be positive")
    changes["learning_rate"] = args.learning_rate
  return config.replace(**changes)


def load_face_model(args):
  """The --face-model, or None (the coarse checkpoint's own)."""
  if not args.face_model:
    return None
  from shared.model.face_model import load_face_model as load
  return load(args.face_model)


def load_pipeline(args, face_model):
  """The trained pipeline of --checkpoint for test and eval, with --albedo-confidence."""
  from gcn_face import infer
  pipeline = infer.load_pipeline(args.checkpoint, args.coarse_checkpoint, args.sampling,
                                 face_model, args.embedding_model, progress=not args.quiet)
  if args.albedo_confidence is not None:
    pipeline.config = pipeline.config.replace(albedo_confidence=args.albedo_confidence)
  return pipeline


def train_mode(args, config, strategy):
  """--mode train after the strategy is made: trains, prints one JSON line."""
  from gcn_face import coarse, train
  from gcn_face.infer import build_pipeline
  from shared.train.distribute import per_replica_batch_size
  per_replica_batch_size(strategy, config.batch_size)
  stage = coarse.load_coarse_stage(args.coarse_checkpoint, load_face_model(args))
  pipeline = build_pipeline(stage, config, args.sampling, args.embedding_model,
                            progress=not args.quiet)
  result = train.train(pipeline, config, args.data, args.checkpoint, args.coarse_checkpoint,
                       steps=args.steps, gan=args.gan, seed=args.seed, sampling=args.sampling,
                       embedding_path=args.embedding_model, strategy=strategy,
                       progress=not args.quiet)
  print(json.dumps({"steps": result.steps, "seconds": round(result.seconds, 1),
                    "checkpoint": result.checkpoint} | result.terms))
  return 0


def run(args):
  positive(args, "steps", "batch_size", "limit")
  if args.mode == "train":
    need(args, "data", "coarse_checkpoint", "checkpoint")
    check_output_folder(args.checkpoint)
    from gcn_face.binfile import BinReader
    from shared.train import distribute
    config = training_config(args)
    BinReader(args.data).require_size(config.image_size)  # Fail fast, before loading models.
    strategy = distribute.make_strategy(args.strategy)  # Before any other TensorFlow work.
    return distribute.run_to_exit(lambda: train_mode(args, config, strategy))
  face_model = load_face_model(args)
  from gcn_face import infer
  need(args, "checkpoint")
  if args.albedo_confidence is not None and not args.albedo_confidence >= 0:
    raise InputError(f"--albedo-confidence {args.albedo_confidence}: must be 0 or more")
  if args.mode == "test":
    need(args, "input", "output")
    check_output_folder(args.output)
    pipeline = load_pipeline(args, face_model)
    result = infer.run_test(pipeline, args.input, args.output, args.limit,
                            progress=not args.quiet, occluders=not args.keep_occluders)
    print(f"wrote {len(result.files)} files to {args.output}"
          + (f"; {len(result.skipped)} input(s) skipped" if result.skipped else ""))
    coarse, refined = result.mean("coarse", "l1"), result.mean("refined", "l1")
    if coarse is not None:
      print(f"face-region L1 over {len(result.metrics)} image(s) with alpha: coarse "
            f"{coarse:.4f}, refined {refined:.4f}")
    return 1 if result.skipped else 0
  need(args, "data")
  if args.pictures:
    check_output_folder(args.pictures)
  if args.output:
    check_output_file(args.output)
  from gcn_face import evaluate
  pipeline = load_pipeline(args, face_model)
  result = evaluate.evaluate(pipeline, args.data, limit=args.limit, pictures=args.pictures,
                             progress=not args.quiet)
  print(evaluate.format_report(result))
  if args.pictures:
    print(f"wrote {len(result['pictures'])} pictures to {args.pictures}")
  if args.output:
    evaluate.write_report(args.output, result)
    print(f"wrote {args.output}")
  sys.stdout.flush()
  return 0
