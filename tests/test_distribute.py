"""tf.distribute: TF_CONFIG checks, per-worker sharding, and real two-worker runs on 127.0.0.1.

The multi-worker tests start worker processes (this file run as a script:
`mgc-worker` runs the real MGC trainer, `mgc_face.train.train`, on the tiny
preset; `gcn-worker` the GCN trainer on a toy face) with their own
TF_CONFIG on free loopback ports, each under a hard time limit after which
it is killed, so a hang fails the test instead of blocking CI.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
if __name__ == "__main__":
  sys.path.insert(0, str(REPO))
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from shared.train.distribute import free_ports, local_cluster_config  # noqa: E402

WORKER_LIMIT_S = 420     # Hard limit per worker process (killed after).
SURVIVOR_LIMIT_S = 60    # A survivor must stop this soon after its peer is killed.


# ----------------------------------------------------------------------------- helpers

def worker_env(tf_config_json=None, **extra):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1",
             **{k: str(v) for k, v in extra.items()})
  env.pop("TF_CONFIG", None)
  if tf_config_json is not None:
    env["TF_CONFIG"] = tf_config_json
  return env


def start(args, env, log_path):
  log = open(log_path, "w")
  # A new session, so that a kill on time-out also reaches the process' children.
  return subprocess.Popen([sys.executable, *map(str, args)], cwd=REPO, env=env, stdout=log,
                          stderr=subprocess.STDOUT, start_new_session=True)


def finish(process, limit_s):
  """Waits up to `limit_s`; kills the process group on time-out. Returns (code, timed_out)."""
  try:
    return process.wait(timeout=limit_s), False
  except subprocess.TimeoutExpired:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return process.returncode, True


def result_line(log_path):
  """The last JSON line a worker printed."""
  for line in reversed(Path(log_path).read_text().splitlines()):
    if line.startswith("{"):
      return json.loads(line)
  raise AssertionError(f"no result line in {log_path}:\n" + tail(log_path))


def tail(log_path, lines=25):
  return "\n".join(Path(log_path).read_text().splitlines()[-lines:])


def run_cluster(tmp_path, make_args, num_workers=2, limit_s=WORKER_LIMIT_S, **env):
  """Runs `num_workers` workers to completion; returns their result dicts (by rank)."""
  ports = free_ports(num_workers)
  procs, logs = [], []
  for rank in range(num_workers):
    logs.append(tmp_path / f"worker{rank}.log")
    env_rank = worker_env(local_cluster_config(ports, rank), **env)
    procs.append(start(make_args(rank), env_rank, logs[-1]))
  outcomes = [finish(p, limit_s) for p in procs]
  for rank, (code, timed_out) in enumerate(outcomes):
    assert not timed_out, f"worker {rank} hit the {limit_s} s limit:\n{tail(logs[rank])}"
    assert code == 0, f"worker {rank} exited {code}:\n{tail(logs[rank])}"
  return [result_line(log) for log in logs]


# ----------------------------------------------------------------------------- TF_CONFIG

def test_tf_config_problems_are_one_line_input_errors():
  from shared.train import distribute
  from shared.errors import InputError
  cases = {
      "": "needs the TF_CONFIG environment variable",
      "{not json": "not valid JSON",
      '{"task": {"type": "worker", "index": 0}}': "needs a \"cluster\"",
      '{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}': "non-empty list",
      '{"cluster": {"worker": ["h:1"]}}': "needs a \"task\"",
      '{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 3}}':
          "task worker:3 is not in the cluster",
      '{"cluster": {"ps": ["h:1"]}, "task": {"type": "ps", "index": 0}}': "no \"worker\"",
      '{"cluster": {"worker": ["h:x"]}, "task": {"type": "worker", "index": 0}}': "host:port",
  }
  for text, expected in cases.items():
    with pytest.raises(InputError) as error:
      distribute.read_tf_config({"TF_CONFIG": text})
    assert expected in str(error.value) and "\n" not in str(error.value), text
  with pytest.raises(InputError, match="choose one of: default, mirrored, multiworker"):
    distribute.make_strategy("parameter-server")


def test_worker_info_orders_chief_first():
  from shared.train import distribute
  cluster = {"chief": ["a:1"], "worker": ["b:2", "c:3"]}
  ranks = []
  for kind, index in (("chief", 0), ("worker", 0), ("worker", 1)):
    env = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})}
    ranks.append(distribute.worker_info(env))
  assert ranks == [(3, 0), (3, 1), (3, 2)]
  assert distribute.worker_info({}) == (1, 0)
  env = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}})}
  assert distribute.peer_addresses(env) == {0: "a:1", 1: "b:2", 2: "c:3"}


def test_default_strategy_is_chief_and_one_replica():
  from shared.train import distribute
  strategy = distribute.make_strategy("default")
  assert strategy.num_replicas_in_sync == 1 and distribute.is_chief(strategy)
  assert not distribute.is_multi_worker(strategy)
  assert distribute.barrier(strategy) == 1
  from shared.errors import InputError
  with pytest.raises(InputError, match="does not split over"):
    distribute.per_replica_batch_size(type("S", (), {"num_replicas_in_sync": 2})(), 3)


# ----------------------------------------------------------------------------- sharding

def read_epoch(num_workers, count, batch=1):
  """Per worker, the sample ids of one epoch through `shard` + shuffle + batch."""
  import tensorflow as tf
  from shared.train import distribute
  out = []
  for index in range(num_workers):
    ds = distribute.shard(tf.data.Dataset.range(count), num_workers, index)
    ds = ds.shuffle(count, seed=index, reshuffle_each_iteration=True).batch(batch)
    out.append(np.concatenate([b.numpy() for b in ds]).tolist())
  return out


@pytest.mark.parametrize("num_workers", [1, 2, 3])
def test_shard_gives_disjoint_workers_covering_the_dataset(num_workers):
  shards = read_epoch(num_workers, 23, batch=2)
  every = [i for shard in shards for i in shard]
  assert len(every) == len(set(every)) == 23  # No sample twice within the epoch, none lost.
  assert sorted(every) == list(range(23))
  assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_distribute_dataset_shards_per_input_pipeline():
  """distribute_dataset passes (per-replica batch, pipelines, pipeline id); no auto-shard."""
  import tensorflow as tf
  from shared.train import distribute
  seen = []

  def make(batch, num_shards, index):
    seen.append((batch, num_shards, index))
    ds = distribute.shard(tf.data.Dataset.range(10), num_shards, index)
    return ds.batch(batch, drop_remainder=True)

  strategy = distribute.make_strategy("default")
  data = distribute.distribute_dataset(strategy, make, global_batch_size=4)
  batches = [b.numpy().tolist() for b in data]
  assert seen == [(4, 1, 0)] and batches == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_bin_reader_shards_are_disjoint_and_complete(tmp_path):
  from gcn_face.binfile import BinReader, write_bin
  records = [np.full((4, 4, 4), i, np.uint8) for i in range(11)]
  path = tmp_path / "tiny.bin"
  write_bin(path, records, [f"r{i}" for i in range(11)])
  reader = BinReader(path)
  shards = []
  for index in range(2):
    ds = reader.dataset(batch_size=2, shuffle=True, seed=index, num_workers=2,
                        worker_index=index)
    shards.append([int(i) for b in ds for i in b["index"].numpy()])
  every = shards[0] + shards[1]
  assert len(every) == len(set(every)) == 11 and sorted(every) == list(range(11))


# ----------------------------------------------------------------------------- losses

def test_average_loss_uses_the_global_batch():
  import tensorflow as tf
  from shared.train import distribute
  per_example = tf.constant([1.0, 2.0, 3.0])
  assert float(distribute.average_loss(per_example, 6)) == pytest.approx(1.0)
  assert float(distribute.replica_share(tf.constant(2.0))) == 2.0
  two = type("S", (), {"num_replicas_in_sync": 2})()
  assert float(distribute.replica_share(tf.constant(2.0), two)) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- chief-only output

def test_checkpoint_saver_on_the_chief_writes_the_folder(tmp_path):
  import tensorflow as tf
  from shared.train import checkpointing
  step = tf.Variable(3, dtype=tf.int64)
  saver = checkpointing.CheckpointSaver(tf.train.Checkpoint(step=step), tmp_path / "ckpt", 2)
  path, _ = saver.save(3)
  assert path.endswith("ckpt-3") and saver.latest_checkpoint == path
  assert checkpointing.checkpoint_step(path) == 3
  assert saver.save(3) == (path, "up to date")  # The latest checkpoint is not rewritten.


# ----------------------------------------------------------------------------- two workers

MGC_IDENTITIES = 5       # 4 training triplets: 2 per worker.
MGC_STEPS = 2
MGC_BATCH = 2            # Global: 1 triplet per worker.
MGC_LOSS_RTOL = 1e-3     # Reduction order differs (mean of replica means vs one mean).
MGC_WEIGHTS_RTOL = 1e-4
GCN_STEPS = 2
KILL_STEPS = 10000       # The kill test's run would go on for long...
KILL_AFTER = 2           # ...but worker 1 is killed once this step's checkpoint exists.




@pytest.fixture(scope="module")
def mgc_data(tmp_path_factory, ict_model):
  """A tiny synthetic MGC dataset: 4 training triplets (5 identities, 1 held out)."""
  from mgc_face import synthetic
  root = tmp_path_factory.mktemp("mgc_dist_data")
  synthetic.generate(ict_model, root, identities=MGC_IDENTITIES, test_identities=1, seed=5,
                     progress=False)
  return root


def test_mgc_shards_are_disjoint_and_complete(mgc_data):
  """make_dataset(num_shards=2): each worker reads its own records, together all of them."""
  from mgc_face import data as data_lib
  records, landmarks, _ = data_lib.scan(mgc_data, "train", report=False)
  seen = []
  for index in range(2):
    ds, count = data_lib.make_dataset(mgc_data, "train", 1, shuffle=True, repeat=False,
                                      report=False, num_shards=2, shard_index=index)
    rows = [b.landmarks.numpy()[0] for b in ds]
    assert count == len(rows) == len(records[index::2])
    seen.append({r.tobytes() for r in rows})
  assert not seen[0] & seen[1]
  assert seen[0] | seen[1] == {np.asarray(l).tobytes() for l in landmarks}


def mgc_args(data, out_dir, steps=MGC_STEPS, strategy="multiworker", checkpoint_every=None):
  args = [Path(__file__), "mgc-worker", "--strategy", strategy, "--steps", steps, "--data", data,
          "--checkpoint", out_dir / "ckpt", "--batch-size", MGC_BATCH]
  return args + (["--checkpoint-every", checkpoint_every] if checkpoint_every else [])


def test_main_refuses_multiworker_without_tf_config(monkeypatch, capsys, tmp_path):
  """Both trainers: --strategy multiworker without TF_CONFIG is one line, exit 2."""
  import main as main_module
  from gcn_face.binfile import write_bin
  from gcn_face.config import get_config
  size = get_config("tiny").image_size
  write_bin(tmp_path / "x.bin", [np.zeros((size, size, 4), np.uint8)] * 2, ["a", "b"])
  monkeypatch.delenv("TF_CONFIG", raising=False)
  for model, extra in (("mgc", ["--data", tmp_path]),
                       ("gcn", ["--data", tmp_path / "x.bin", "--coarse-checkpoint", tmp_path])):
    code = main_module.main(["--model", model, "--mode", "train", "--strategy", "multiworker",
                             "--checkpoint", str(tmp_path / "ckpt"), *map(str, extra)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "needs the TF_CONFIG environment variable" in err[0]


def wait_for(ready, process, limit_s):
  """Waits until `ready()` is true (False if the process ended or time ran out first)."""
  deadline = time.time() + limit_s
  while time.time() < deadline:
    if ready():
      return True
    if process.poll() is not None:
      return False
    time.sleep(0.5)
  return False


def checkpoint_reached(checkpoint_dir, step):
  """A check that some ckpt-N with N >= `step` exists (the manager deletes old ones, so
  ckpt-`step` itself may be gone before the next poll)."""
  def ready():
    steps = [int(p.name[len("ckpt-"):-len(".index")]) for p in Path(checkpoint_dir).glob(
        "ckpt-*.index")]
    return any(n >= step for n in steps)
  return ready


def assert_loadable(checkpoint_dir):
  """The latest checkpoint reads back completely; returns its step."""
  import tensorflow as tf
  latest = tf.train.latest_checkpoint(str(checkpoint_dir))
  assert latest is not None, f"no checkpoint in {checkpoint_dir}"
  reader = tf.train.load_checkpoint(latest)
  for name in reader.get_variable_to_shape_map():
    assert np.all(np.isfinite(reader.get_tensor(name))) if reader.get_variable_to_dtype_map()[
        name].is_floating else True
  return int(latest.rpartition("-")[2]), latest


@pytest.mark.parametrize("victim", [1])
def test_killing_a_worker_stops_the_other_with_one_line_then_resume(tmp_path, mgc_data, victim):
  """Real MGC trainer, kill -9 one worker mid-run: the survivor exits 2 soon with one line, the
  last checkpoint loads, and the same command on both workers resumes from it, in step with
  each other and with one worker resumed from the same checkpoint (one test, so that the
  suite starts four trainer processes less on a slow 2-core machine)."""
  ports = free_ports(2)
  ckpt = tmp_path / "run" / "ckpt"
  procs, logs = [], []
  for rank in range(2):
    logs.append(tmp_path / f"worker{rank}.log")
    procs.append(start(mgc_args(mgc_data, tmp_path / "run", steps=KILL_STEPS, checkpoint_every=1),
                       worker_env(local_cluster_config(ports, rank)), logs[-1]))
  try:
    assert wait_for(checkpoint_reached(ckpt, KILL_AFTER), procs[0], WORKER_LIMIT_S), \
        tail(logs[0])
    os.killpg(procs[victim].pid, signal.SIGKILL)
    killed_at = time.time()
    survivor = 1 - victim
    code, timed_out = finish(procs[survivor], SURVIVOR_LIMIT_S)
    took = time.time() - killed_at
  finally:
    for p in procs:
      if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
  assert not timed_out, f"survivor still running {SURVIVOR_LIMIT_S} s after the kill"
  lines = [l for l in Path(logs[survivor]).read_text().splitlines() if l.strip()]
  assert code == 2, "\n".join(lines[-20:])
  assert lines[-1].startswith(f"error: worker {survivor} of 2: worker {victim} "
                              f"(127.0.0.1:{ports[victim]}) stopped responding"), lines[-1]
  step, latest = assert_loadable(ckpt)
  assert step >= KILL_AFTER and f"the last checkpoint is {latest} (step {step})" in lines[-1], \
      lines[-1]
  print(f"survivor stopped {took:.1f} s after the kill: {lines[-1]}")
  # Resume: the same command on both workers continues from that checkpoint, and matches one
  # worker (default strategy) resumed from a copy of it on the same global batches.
  shutil.copytree(tmp_path / "run", tmp_path / "single")
  end = step + MGC_STEPS
  reference = start(mgc_args(mgc_data, tmp_path / "single", steps=end, strategy="default"),
                    worker_env(), tmp_path / "single.log")
  (tmp_path / "resume").mkdir()  # For the resumed workers' logs.
  results = run_cluster(tmp_path / "resume",
                        lambda rank: mgc_args(mgc_data, tmp_path / "run", steps=end))
  code, timed_out = finish(reference, WORKER_LIMIT_S)
  assert code == 0 and not timed_out, tail(tmp_path / "single.log")
  single = result_line(tmp_path / "single.log")
  assert [r["steps"] for r in results] == [end] * 2 == [single["steps"]] * 2
  assert len(results[0]["losses"]) == MGC_STEPS
  assert tf_latest(ckpt).endswith(f"ckpt-{end}")
  assert_two_workers_match_one(results, single, tmp_path / "run" / "ckpt", end)


def assert_two_workers_match_one(results, single, checkpoint_dir, step):
  """Two MGC workers' results: the same weights on both, the same losses as one worker; only
  the chief's checkpoint, which loads without a strategy."""
  assert results[0]["weights_sha256"] == results[1]["weights_sha256"]
  assert results[0]["chief"] and not results[1]["chief"]
  assert results[0]["replicas"] == 2 and single["replicas"] == 1
  assert results[0]["losses"] == results[1]["losses"]  # Averaged over replicas: one value.
  np.testing.assert_allclose(results[0]["losses"], single["losses"], rtol=MGC_LOSS_RTOL)
  np.testing.assert_allclose(results[0]["weights_abs_sum"], single["weights_abs_sum"],
                             rtol=MGC_WEIGHTS_RTOL)
  names = sorted(p.name for p in checkpoint_dir.iterdir())
  assert {"checkpoint", f"ckpt-{step}.index", "meta.json", "logs"} <= set(names), names
  assert len(json.loads((checkpoint_dir / "meta.json").read_text())) > 0
  from mgc_face import infer
  from shared.model.face_model import load_face_model
  assert infer.load_regressor(checkpoint_dir, load_face_model()) is not None


def tf_latest(checkpoint_dir):
  import tensorflow as tf
  return tf.train.latest_checkpoint(str(checkpoint_dir))


def test_two_gcn_workers_train_the_toy_face_in_step(tmp_path):
  """GCN trainer (toy face of test_gcn_pipeline) on 2 workers: same weights, chief-only output."""
  results = run_cluster(tmp_path, lambda rank: [Path(__file__), "gcn-worker", "--strategy",
                                                "multiworker", "--out", tmp_path / "run"])
  assert results[0]["weights_sha256"] == results[1]["weights_sha256"]
  assert results[0]["steps"] == results[1]["steps"] == GCN_STEPS
  assert results[0]["terms"] == results[1]["terms"]
  assert all(np.isfinite(v) for v in results[0]["terms"].values())
  assert results[0]["chief"] and not results[1]["chief"] and results[0]["replicas"] == 2
  names = {p.name for p in (tmp_path / "run" / "ckpt").iterdir()}
  assert {"gcn.json", "checkpoint", f"ckpt-{GCN_STEPS}.index"} <= names, names
  assert results[0]["checkpoint"].endswith(f"ckpt-{GCN_STEPS}") and results[1]["checkpoint"] == ""


# ----------------------------------------------------------------------------- the GCN worker

def gcn_worker(argv):
  """`gcn_face.train.train` on the toy face of tests/test_gcn_pipeline (run as a script)."""
  import argparse
  parser = argparse.ArgumentParser()
  parser.add_argument("--strategy", default="default")
  parser.add_argument("--out", required=True)
  args = parser.parse_args(argv)
  from shared.train import distribute
  strategy = distribute.make_strategy(args.strategy)  # Before the toy's TensorFlow work.

  def job():
    sys.path.insert(0, str(REPO / "tests"))
    import test_gcn_pipeline as toy_lib
    from gcn_face import binfile, infer
    from gcn_face import train as train_lib
    _, topology, stage, images, alpha, _ = toy_lib.toy.__wrapped__()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / f"toy-{distribute.worker_info()[1]}.bin"  # Same content on every worker.
    records = np.concatenate([images.numpy(), alpha.numpy()], -1)
    binfile.write_bin(data, [np.round(r * 255).astype(np.uint8) for r in records],
                      [f"{i}.png" for i in range(len(records))])
    pipeline = infer.TexturePipeline(stage, topology, toy_lib.TOY)
    result = train_lib.train(pipeline, toy_lib.TOY, data, out / "ckpt", "coarse-dir",
                             steps=GCN_STEPS, log=print, strategy=strategy)
    digest, _ = weights_digest(pipeline.gcn.trainable_variables)
    print(json.dumps({"steps": result.steps, "terms": result.terms, "weights_sha256": digest,
                      "checkpoint": result.checkpoint, "chief": distribute.is_chief(strategy),
                      "replicas": strategy.num_replicas_in_sync}), flush=True)
    return 0

  distribute.exit_process(distribute.run_to_exit(job) or 0)


# ----------------------------------------------------------------------------- the MGC worker

def weights_digest(variables):
  """(sha256 of the float32 bytes, float64 sum of |w|) of a list of variables."""
  import hashlib
  weights = np.concatenate([v.numpy().ravel() for v in variables])
  return (hashlib.sha256(weights.tobytes()).hexdigest(),
          float(np.abs(weights.astype(np.float64)).sum()))


def mgc_worker(argv):
  """`mgc_face.train.train` on the tiny preset, single-view, without shuffling (run as a script).

  Without shuffling, global batch k is records (2k, 2k+1) on one worker and
  record 2k on worker 0 plus 2k+1 on worker 1 (the shards are i mod 2), so
  the two runs see the same global batches.  Prints one JSON line.
  """
  import argparse
  parser = argparse.ArgumentParser()
  parser.add_argument("--strategy", default="default")
  parser.add_argument("--steps", type=int, default=MGC_STEPS)
  parser.add_argument("--batch-size", type=int, default=MGC_BATCH)
  parser.add_argument("--checkpoint-every", type=int, default=None)
  parser.add_argument("--data", required=True)
  parser.add_argument("--checkpoint", required=True)
  args = parser.parse_args(argv)
  from shared.train import distribute
  strategy = distribute.make_strategy(args.strategy)

  def job():
    from mgc_face import train as train_lib
    from mgc_face.config import get_config
    from shared.model.face_model import load_face_model
    from mgc_face.config import NO_AUGMENT
    # Augmented views are seeded per element of each worker's shard, so they differ between
    # one and two workers; the equivalence checked here is of the training step itself.
    # No landmark cascade: what is compared is the training step (the cascade: test_mgc_cascade).
    config = get_config("tiny").replace(batch_size=args.batch_size, shuffle_buffer=1,
                                        checkpoint_every=args.checkpoint_every or args.steps,
                                        cascade_scales=(), **NO_AUGMENT)
    trainers, losses = [], []

    class Recording(train_lib.Trainer):
      """The real Trainer, remembered (for its weights) and its losses recorded."""

      def __init__(self, *a, **k):
        super().__init__(*a, **k)
        trainers.append(self)

      def train_step(self, batch):
        terms, applied, visuals = super().train_step(batch)
        losses.append(terms["total"])
        print(f"step {int(self.step.numpy())} loss {terms['total']:.6f}", flush=True)
        return terms, applied, visuals

    train_lib.Trainer = Recording
    result = train_lib.train(load_face_model(), config, args.data, args.checkpoint, args.steps,
                             multiview=False, progress=False, strategy=strategy)
    digest, abs_sum = weights_digest(trainers[0].variables)
    print(json.dumps({"losses": losses, "steps": result["steps"], "weights_sha256": digest,
                      "weights_abs_sum": abs_sum, "chief": distribute.is_chief(strategy),
                      "replicas": strategy.num_replicas_in_sync}), flush=True)
    return 0

  distribute.exit_process(distribute.run_to_exit(job) or 0)


WORKERS = {"mgc-worker": lambda argv: mgc_worker(argv), "gcn-worker": lambda argv: gcn_worker(argv)}

if __name__ == "__main__":
  if sys.argv[1:2] and sys.argv[1] in WORKERS:
    WORKERS[sys.argv[1]](sys.argv[2:])
  else:
    sys.exit(f"usage: {sys.argv[0]} {'|'.join(WORKERS)} ...")
