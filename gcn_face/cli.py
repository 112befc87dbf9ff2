"""`python main.py --model gcn --mode train|test|eval ...`: flags and dispatch only.

    train: --data FILE.bin --coarse-checkpoint DIR --checkpoint DIR [--config tiny|paper]
           [--arch normal|resnet] [--gan] [--steps N] [--batch-size B] [--learning-rate LR]
           [--sampling FILE.npz] [--embedding-model PATH] [--resume]
           [--strategy default|mirrored|multiworker]  (docs/distributed.md)
    test:  --checkpoint DIR --input IMAGE|DIR|FILE.bin --output DIR [--limit N]
    eval:  --checkpoint DIR --data FILE.bin [--output REPORT.json] [--pictures DIR] [--limit N]

test and eval reuse the coarse checkpoint, sampling file and embedding model
recorded at training time unless given again.
"""

import json
import sys

from shared.errors import InputError

MODES = ("train", "test", "eval")


def add_arguments(parser):
  group = parser.add_argument_group("gcn")
  group.add_argument("--data", help="train/eval: a .bin of aligned crops (tools/create_bin.py)")
  group.add_argument("--checkpoint", help="GCN checkpoint folder")
  group.add_argument("--coarse-checkpoint",
                     help="MGC regressor checkpoint: the coarse stage (test/eval: default "
                          "the one used in training)")
  group.add_argument("--input", help="test: an aligned 224x224 image, a folder or a .bin")
  group.add_argument("--output", help="test: output folder; eval: optional JSON report")
  group.add_argument("--steps", type=int, default=None,
                     help="train: total steps (default: epochs x steps per epoch of the preset)")
  group.add_argument("--arch", choices=("normal", "resnet"), default=None,
                     help="train: U-Net-like refiner (the original code) or residual blocks "
                          "(the paper) (default: normal)")
  group.add_argument("--gan", action="store_true", help="train: add the WGAN-GP image critic")
  group.add_argument("--batch-size", type=int, default=None, help="train: default the preset's")
  group.add_argument("--learning-rate", type=float, default=None,
                     help="train: Adam learning rate (default: preset; paper 1e-4)")
  group.add_argument("--sampling", default=None,
                     help="mesh hierarchy .npz (tools/make_sampling.py; default: the cache)")
  group.add_argument("--embedding-model", default=None,
                     help="train: face-embedding model (.keras or SavedModel) for the "
                          "perception loss and the decoder feature")
  group.add_argument("--resume", action="store_true",
                     help="train: continue from the checkpoint folder")
  group.add_argument("--limit", type=int, default=None, help="test/eval: at most N images")
  group.add_argument("--pictures", default=None,
                     help="eval: folder for one picture per image (input | coarse | refined | "
                          "ground truth, renders above, albedos below)")
  from shared.train.distribute import add_strategy_argument
  add_strategy_argument(group)


def need(args, *names):
  for name in names:
    if getattr(args, name) in (None, ""):
      raise InputError(f"--mode {args.mode} needs --{name.replace('_', '-')}")


def positive(args, *names):
  for name in names:
    value = getattr(args, name)
    if value is not None and value < 1:
      raise InputError(f"--{name.replace('_', '-')} {value}: must be at least 1")


def training_config(args):
  from gcn_face.config import get_config
  config = get_config(args.config, args.arch)
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


def train_mode(args, config, strategy):
  """--mode train after the strategy is made: trains, prints one JSON line."""
  from gcn_face import coarse, train
  from gcn_face.infer import build_pipeline
  from shared.train.distribute import per_replica_batch_size
  per_replica_batch_size(strategy, config.batch_size)
  stage = coarse.load_coarse_stage(args.coarse_checkpoint, load_face_model(args))
  pipeline = build_pipeline(stage, config, args.sampling, args.embedding_model)
  result = train.train(pipeline, config, args.data, args.checkpoint, args.coarse_checkpoint,
                       steps=args.steps, gan=args.gan, seed=args.seed, sampling=args.sampling,
                       embedding_path=args.embedding_model, resume=args.resume,
                       strategy=strategy)
  print(json.dumps({"steps": result.steps, "seconds": round(result.seconds, 1),
                    "checkpoint": result.checkpoint} | result.terms))
  return 0


def run(args):
  if args.mode not in MODES:
    raise InputError(f"--model gcn has no mode '{args.mode}'; choose one of: {', '.join(MODES)}")
  positive(args, "steps", "batch_size", "limit")
  if args.mode == "train":
    need(args, "data", "coarse_checkpoint", "checkpoint")
    from gcn_face.binfile import BinReader
    from shared.train import distribute
    config = training_config(args)
    BinReader(args.data).require_size(config.image_size)  # Fail fast, before loading models.
    strategy = distribute.make_strategy(args.strategy)  # Before any other TensorFlow work.
    return distribute.run_to_exit(lambda: train_mode(args, config, strategy))
  face_model = load_face_model(args)
  from gcn_face import infer
  need(args, "checkpoint")
  if args.mode == "test":
    need(args, "input", "output")
    pipeline = infer.load_pipeline(args.checkpoint, args.coarse_checkpoint, args.sampling,
                                   face_model, args.embedding_model)
    result = infer.run_test(pipeline, args.input, args.output, args.limit)
    print(f"wrote {len(result.files)} files to {args.output}")
    coarse, refined = result.mean("coarse", "l1"), result.mean("refined", "l1")
    if coarse is not None:
      print(f"face-region L1 over {len(result.metrics)} image(s) with alpha: coarse "
            f"{coarse:.4f}, refined {refined:.4f}")
    return 0
  need(args, "data")
  from gcn_face import evaluate
  pipeline = infer.load_pipeline(args.checkpoint, args.coarse_checkpoint, args.sampling,
                                 face_model, args.embedding_model)
  result = evaluate.evaluate(pipeline, args.data, limit=args.limit, pictures=args.pictures)
  print(evaluate.format_report(result))
  if args.pictures:
    print(f"wrote {len(result['pictures'])} pictures to {args.pictures}")
  if args.output:
    evaluate.write_report(args.output, result)
    print(f"wrote {args.output}")
  sys.stdout.flush()
  return 0
