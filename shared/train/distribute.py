"""Data-parallel training on TensorFlow's own engine, `tf.distribute`.

    strategy = make_strategy("multiworker")       # or "default", "mirrored"
    with strategy.scope():                          # variables, optimiser, checkpoint
      ...
    dataset = distribute_dataset(strategy, make_dataset, global_batch_size)
    with peer_guard(strategy, checkpoint_dir):      # a dead peer -> one-line InputError
      strategy.run(step, args=(next(iterator),))

Strategies (`--strategy`):

* `default`: `tf.distribute.get_strategy()`, one replica, no collectives.
* `mirrored`: `MirroredStrategy` over all local GPUs (one CPU replica when
  there is none).
* `multiworker`: `MultiWorkerMirroredStrategy` on the cluster that the
  standard `TF_CONFIG` variable describes (one process per worker, each with
  its local GPUs or its CPU).  Collectives have a bounded timeout, and the
  coordination service's heartbeat notices a dead peer, so a lost worker
  ends every survivor with one line instead of a hang.

Conventions the trainers follow:

* Input is sharded by us, per worker, before shuffling and batching
  (`distribute_dataset`: auto-sharding OFF, `dataset.shard(num_workers,
  index)`), so within an epoch no worker reads a sample another one reads.
* Each replica's loss is divided by the GLOBAL batch size
  (`average_loss`), since the optimiser sums gradients over replicas.
* Only the chief writes checkpoints and summaries
  (`shared.train.checkpointing.CheckpointSaver`, `shared.train.train_loop.summary_writer`);
  the other workers take part in the save (it may need collectives) into a
  temporary folder that is deleted at once.
* Logged loss terms are averaged over replicas (`mean_terms`), and a NaN
  guard's verdict is agreed by all of them (`all_replicas`), so every
  worker prints the same numbers and takes the same branch.

Trying it on one machine: `free_ports(n)` and `local_cluster_config(ports,
rank)` give each process a `TF_CONFIG` on 127.0.0.1 (tests, bench/scaling.py).
"""

import contextlib
import json
import os
import re
import sys

import tensorflow as tf

from shared.train.checkpointing import checkpoint_step
from shared.errors import InputError

STRATEGIES = ("default", "mirrored", "multiworker")
TF_CONFIG_ENV = "TF_CONFIG"
TIMEOUT_ENV = "FACE3D_COLLECTIVE_TIMEOUT"
WAIT_ENV = "FACE3D_CLUSTER_WAIT"
# Seconds an all-reduce may wait for its peers before failing: a backstop for
# a peer that is alive but stuck (a dead one is noticed by the heartbeat).  It
# must cover the slowest worker's step, including the first, traced one.
DEFAULT_COLLECTIVE_TIMEOUT = 600.0
# Seconds all workers have to start and join the cluster.
DEFAULT_CLUSTER_WAIT = 300.0
# Seconds without a heartbeat before the coordination service declares a
# worker dead, and the shutdown barrier's limit.
HEARTBEAT_TIMEOUT = 10.0
SHUTDOWN_TIMEOUT = 30.0
WORKER_JOBS = ("chief", "worker")
DOCS = "docs/distributed.md"
# Errors a collective raises when a peer is gone or the wait timed out.
PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
               tf.errors.CancelledError, tf.errors.AbortedError, tf.errors.InternalError,
               tf.errors.FailedPreconditionError, tf.errors.UnknownError)
LOOPBACK = "127.0.0.1"
TASK_PATTERN = re.compile(r"/job:(chief|worker)/replica:\d+/task:(\d+)")

_joined_cluster = False  # True once this process runs multi-worker collectives.


# ----------------------------------------------------------------------------- TF_CONFIG

def read_tf_config(environ=None):
  """Parses and checks `TF_CONFIG` -> dict; InputError (one line) when unusable.

  The standard layout: {"cluster": {"worker": ["host:port", ...],
  optionally "chief": ["host:port"]}, "task": {"type": "worker", "index": 0}}.
  """
  environ = os.environ if environ is None else environ
  text = environ.get(TF_CONFIG_ENV, "").strip()
  if not text:
    raise InputError(f"--strategy multiworker needs the {TF_CONFIG_ENV} environment variable "
                     "(JSON with \"cluster\": {\"worker\": [\"host:port\", ...]} and "
                     f"\"task\": {{\"type\": \"worker\", \"index\": N}}); see {DOCS}")
  try:
    config = json.loads(text)
  except ValueError as error:
    raise InputError(f"{TF_CONFIG_ENV}: not valid JSON ({error})") from None
  if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
    raise InputError(f"{TF_CONFIG_ENV}: needs a \"cluster\" object mapping job names to "
                     "lists of host:port")
  cluster = config["cluster"]
  for job, addresses in cluster.items():
    if not isinstance(addresses, list) or not addresses or not all(
        isinstance(a, str) and a.rpartition(":")[2].isdigit() for a in addresses):
      raise InputError(f"{TF_CONFIG_ENV}: cluster job \"{job}\" must be a non-empty list of "
                       f"\"host:port\" strings, got {addresses!r}")
  if not any(job in cluster for job in WORKER_JOBS):
    raise InputError(f"{TF_CONFIG_ENV}: the cluster has no \"worker\" (or \"chief\") job")
  if len(cluster.get("chief", [])) > 1:
    raise InputError(f"{TF_CONFIG_ENV}: at most one \"chief\" address, got "
                     f"{len(cluster['chief'])}")
  task = config.get("task")
  if not isinstance(task, dict) or "type" not in task or "index" not in task:
    raise InputError(f"{TF_CONFIG_ENV}: needs a \"task\" object with \"type\" and \"index\"")
  kind, index = task["type"], task["index"]
  if kind not in WORKER_JOBS:
    raise InputError(f"{TF_CONFIG_ENV}: task type \"{kind}\" cannot train; use \"worker\" "
                     "(or \"chief\")")
  if kind not in cluster or not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
    raise InputError(f"{TF_CONFIG_ENV}: task {kind}:{index} is not in the cluster "
                     f"({kind}: {len(cluster.get(kind, []))} address(es))")
  return config


def free_ports(count, host=LOOPBACK):
  """`count` distinct free TCP ports on `host` (bound to port 0, then released)."""
  import socket
  sockets = [socket.socket() for _ in range(count)]
  try:
    for s in sockets:
      s.bind((host, 0))
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def local_cluster_config(ports, rank, host=LOOPBACK):
  """The `TF_CONFIG` JSON text of worker `rank` in a cluster of `host:port` workers.

  For trying multi-worker training on one machine (tests, bench/scaling.py).
  """
  return json.dumps({"cluster": {"worker": [f"{host}:{p}" for p in ports]},
                     "task": {"type": "worker", "index": int(rank)}})


def _ordered_tasks(cluster):
  """[(job, index, address)] with the chief (if any) first: worker rank order."""
  return [(job, i, address) for job in WORKER_JOBS for i, address in
          enumerate(cluster.get(job, []))]


def worker_info(environ=None):
  """(num_workers, worker_index) of this process; (1, 0) without `TF_CONFIG`.

  The chief, when the cluster has one, is worker 0; `worker` tasks follow.
  """
  environ = os.environ if environ is None else environ
  if not environ.get(TF_CONFIG_ENV, "").strip():
    return 1, 0
  config = read_tf_config(environ)
  tasks = _ordered_tasks(config["cluster"])
  me = (config["task"]["type"], config["task"]["index"])
  rank = [(job, i) for job, i, _ in tasks].index(me)
  return len(tasks), rank


def peer_addresses(environ=None):
  """{worker rank: "host:port"} from `TF_CONFIG` ({} without it)."""
  environ = os.environ if environ is None else environ
  if not environ.get(TF_CONFIG_ENV, "").strip():
    return {}
  tasks = _ordered_tasks(read_tf_config(environ)["cluster"])
  return {rank: address for rank, (_, _, address) in enumerate(tasks)}


# ----------------------------------------------------------------------------- strategies

def _seconds(env, default):
  text = os.environ.get(env, "")
  if not text:
    return default
  try:
    value = float(text)
  except ValueError:
    value = -1.0
  if not value > 0:
    raise InputError(f"{env}={text!r}: must be a positive number of seconds")
  return value


def collective_timeout():
  """Seconds an all-reduce may wait (`FACE3D_COLLECTIVE_TIMEOUT`, default 600)."""
  return _seconds(TIMEOUT_ENV, DEFAULT_COLLECTIVE_TIMEOUT)


def cluster_wait():
  """Seconds all workers have to join at start-up (`FACE3D_CLUSTER_WAIT`, default 300)."""
  return _seconds(WAIT_ENV, DEFAULT_CLUSTER_WAIT)


def _configure_coordination(config, heartbeat, register, shutdown):
  """Sets the coordination service up before the strategy would (private API).

  MultiWorkerMirroredStrategy configures TensorFlow's coordination service
  with its defaults only when nothing is configured yet.  Configuring it
  first bounds the start-up wait (a registration barrier with a deadline:
  otherwise a worker that never starts makes the others wait forever) and
  the time a dead peer goes unnoticed (heartbeats).
  """
  try:
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.eager import context
  except ImportError:  # Another TensorFlow layout: keep the strategy's defaults.
    return False
  ctx = context.context()
  if ctx.coordination_service is not None:
    return False
  cluster = config["cluster"]
  leader_job = "chief" if "chief" in cluster else "worker"
  jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=len(cluster[job]))
          for job in WORKER_JOBS if job in cluster]
  ctx.configure_coordination_service(
      service_type="standalone", service_leader=f"/job:{leader_job}/replica:0/task:0",
      enable_health_check=True, cluster_register_timeout_in_ms=int(register * 1000),
      heartbeat_timeout_in_ms=int(heartbeat * 1000),
      shutdown_barrier_timeout_in_ms=int(shutdown * 1000), coordinated_jobs=jobs)
  service = ctx.coordination_service
  if "cluster_register_with_barrier" in service.DESCRIPTOR.fields_by_name:
    service.cluster_register_with_barrier = True
  return True


def make_strategy(name, timeout_seconds=None, heartbeat_seconds=HEARTBEAT_TIMEOUT,
                  wait_seconds=None):
  """Returns the `tf.distribute.Strategy` called `name` (see the module doc).

  "multiworker" must be made before any other TensorFlow work in the process
  (the collective runtime is set up once), and returns only when every
  worker in `TF_CONFIG` has joined.

  Args:
    name: "default", "mirrored" or "multiworker".
    timeout_seconds: all-reduce timeout (default `collective_timeout()`).
    heartbeat_seconds: silence after which a peer counts as dead.
    wait_seconds: how long to wait for all workers at start-up (default
      `cluster_wait()`).

  Raises:
    InputError: unknown name, missing or invalid `TF_CONFIG`, or not all
      workers joined in time.
  """
  global _joined_cluster
  if name not in STRATEGIES:
    raise InputError(f"--strategy {name}: choose one of: {', '.join(STRATEGIES)}")
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy([d.name for d in gpus] or ["/cpu:0"])
  config = read_tf_config()
  timeout = collective_timeout() if timeout_seconds is None else float(timeout_seconds)
  wait = cluster_wait() if wait_seconds is None else float(wait_seconds)
  _configure_coordination(config, heartbeat_seconds, wait, SHUTDOWN_TIMEOUT)
  options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
  resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
  _joined_cluster = True  # From here on the runtime may hang at interpreter exit.
  try:
    strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver,
                                                         communication_options=options)
  except PEER_ERRORS as error:
    missing = _named_tasks(error) or "a worker"
    raise InputError(f"the cluster in {TF_CONFIG_ENV} did not form within {wait:.0f} s "
                     f"({missing} did not join); start every worker listed there, or raise "
                     f"{WAIT_ENV}") from None
  except (ValueError, RuntimeError) as error:
    raise InputError(f"{TF_CONFIG_ENV}: {first_line(error)}") from None
  return strategy


def add_strategy_argument(parser):
  """The `--strategy` flag of both trainers' command lines."""
  parser.add_argument("--strategy", choices=STRATEGIES, default="default",
                      help="default = one process; mirrored = all local GPUs; "
                           f"multiworker = the cluster in {TF_CONFIG_ENV} (see {DOCS})")


def is_default(strategy):
  """True for TensorFlow's default (no-op) strategy: the single-process code path."""
  return strategy is None or type(strategy).__name__ == "_DefaultDistributionStrategy"


def is_multi_worker(strategy):
  """True for a MultiWorkerMirroredStrategy over more than one worker."""
  return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and \
      worker_info()[0] > 1


def is_chief(strategy=None):
  """True where checkpoints and summaries are written (every non-multi-worker run)."""
  strategy = strategy or tf.distribute.get_strategy()
  return bool(strategy.extended.should_checkpoint)


def describe(strategy):
  """One line: strategy, workers, replicas and this worker's rank."""
  count, rank = worker_info() if is_multi_worker(strategy) else (1, 0)
  return (f"{type(strategy).__name__}: {count} worker(s), {strategy.num_replicas_in_sync} "
          f"replica(s) in sync, this is worker {rank}{' (chief)' if is_chief(strategy) else ''}")


def barrier(strategy):
  """Waits until every replica gets here (an all-reduce of 1; bounded by the timeout)."""
  if strategy.num_replicas_in_sync == 1:
    return 1

  @tf.function
  def count():
    return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)),
                           axis=None)

  return int(count().numpy())


def check_same_step(strategy, step, checkpoint_dir):
  """InputError unless every worker restored the same step (an all-gather of the steps).

  Only the chief writes checkpoints, so a restarted worker that cannot see
  the chief's folder would silently start from scratch.
  """
  if strategy.num_replicas_in_sync == 1:
    return
  value = tf.constant([float(step)], tf.float32)  # Exact below 2**24 steps.

  @tf.function
  def gather():
    return strategy.gather(strategy.run(lambda: tf.identity(value)), axis=0)

  steps = sorted({int(s) for s in gather().numpy()})
  if len(steps) > 1:
    raise InputError(f"{checkpoint_dir}: the workers resumed at different steps "
                     f"({', '.join(map(str, steps))}); every worker must read the chief's "
                     "checkpoint folder (shared storage, or a copy on each machine before the "
                     "restart)")


def exit_process(code):
  """Ends the process with `code`.

  After joining a multi-worker cluster, TensorFlow's runtime (gRPC server,
  coordination service) can take from seconds to minutes to tear down at
  interpreter exit; there, output is flushed and the process ends at once.
  Call `barrier` first on a normal finish so that no peer still needs us.
  """
  if _joined_cluster:
    import logging
    for stream in (sys.stdout, sys.stderr):
      with contextlib.suppress(Exception):
        stream.flush()
    logging.shutdown()
    os._exit(code)
  sys.exit(code)


def run_to_exit(job):
  """Runs `job()` -> exit code; in a multi-worker process, also ends the process.

  Outside a multi-worker cluster this is just `job()` (errors propagate to
  main.py).  Inside one it reports as main.py does (`error: ...`, 2;
  `interrupted`, 130; a traceback, 1) and then calls `exit_process`, so a
  worker never lingers in TensorFlow's teardown after its last word.
  """
  if not _joined_cluster:
    return job()
  import traceback
  try:
    code = job() or 0
  except InputError as error:
    print(f"error: {error}", file=sys.stderr)
    code = 2
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    code = 130
  except Exception:  # noqa: BLE001 - a bug: show it, then still end at once.
    traceback.print_exc()
    code = 1
  exit_process(code)


# ----------------------------------------------------------------------------- input

def per_replica_batch_size(strategy, global_batch_size):
  """Global batch / replicas; InputError when it does not divide."""
  replicas = strategy.num_replicas_in_sync
  if global_batch_size % replicas:
    raise InputError(f"batch size {global_batch_size} does not split over {replicas} replicas; "
                     f"use a multiple of {replicas}")
  return global_batch_size // replicas


def shard(dataset, num_shards, index):
  """`dataset.shard(num_shards, index)`: call it on the list of samples, BEFORE shuffling.

  Sharding before the shuffle gives every worker a fixed, disjoint slice of
  the samples (element i goes to worker i mod num_shards), so within an
  epoch no sample is read twice; sharding after it would not.
  """
  if not 0 <= index < num_shards:
    raise ValueError(f"shard index {index} not in [0, {num_shards})")
  return dataset if num_shards == 1 else dataset.shard(num_shards, index)


def no_autoshard(dataset):
  """Turns tf.distribute's auto-sharding off: we shard ourselves (`shard`)."""
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
  return dataset.with_options(options)


def distribute_dataset(strategy, dataset_fn, global_batch_size):
  """A distributed dataset whose per-worker pipelines read disjoint shards.

  Args:
    strategy: a `tf.distribute.Strategy`.
    dataset_fn: `(batch_size, num_shards, shard_index) -> tf.data.Dataset`
      batched by `batch_size` (per replica) with `drop_remainder`, that calls
      `shard(samples, num_shards, shard_index)` before shuffling.
    global_batch_size: samples per step over all replicas.

  Returns:
    `tf.distribute.DistributedDataset`; iterate it and pass each element to
    `strategy.run`.
  """
  per_replica_batch_size(strategy, global_batch_size)

  def fn(context):
    batch = context.get_per_replica_batch_size(global_batch_size)
    return no_autoshard(dataset_fn(batch, context.num_input_pipelines,
                                   context.input_pipeline_id))

  return strategy.distribute_datasets_from_function(fn)


# ----------------------------------------------------------------------------- losses

def average_loss(per_example_loss, global_batch_size):
  """sum(per-example loss) / global batch: the per-replica share of the mean loss."""
  return tf.nn.compute_average_loss(per_example_loss, global_batch_size=global_batch_size)


def replica_share(batch_mean_loss, strategy=None):
  """A loss that is a mean over this replica's batch -> its share of the global mean.

  Every replica gets the same number of samples (`per_replica_batch_size`),
  so this is loss / replicas; for per-example terms it equals
  `average_loss`, and on one replica it is the loss itself.
  """
  strategy = strategy or tf.distribute.get_strategy()
  replicas = strategy.num_replicas_in_sync
  return batch_mean_loss if replicas == 1 else batch_mean_loss / float(replicas)


def regularization_share(loss):
  """A loss that does not depend on the batch (weight decay), divided by the replicas."""
  return tf.nn.scale_regularization_loss(loss)


def map_local(strategy, fn, value, *more):
  """`fn` called eagerly (outside `strategy.run`) on each local replica's part of `value`
  (and of each of `more`, passed as further arguments, replica by replica).

  For work that must stay out of the compiled replica step (e.g. a frozen
  model with its own compiled path).  Returns `fn`'s result as is with one
  local replica, else a distributed value of the per-replica results.
  """
  parts = zip(*[strategy.experimental_local_results(v) for v in (value,) + more])
  results = [fn(*args) for args in parts]
  if len(results) == 1:
    return results[0]
  return strategy.experimental_distribute_values_from_function(
      lambda context: results[context.replica_id_in_sync_group % len(results)])


def mean_terms(strategy, terms):
  """A dict of per-replica scalars -> the same dict averaged over replicas (one all-reduce).

  Call it where `strategy.reduce` may be called (cross-replica context).
  """
  names = sorted(terms)
  stacked = strategy.run(lambda t: tf.stack([t[k] for k in names]), args=(terms,))
  mean = strategy.reduce(tf.distribute.ReduceOp.MEAN, stacked, axis=None)
  return dict(zip(names, tf.unstack(mean, num=len(names))))


def reduce_sum(strategy, value):
  """Sum over replicas of a per-replica scalar (the global loss from `average_loss`)."""
  return strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)


def all_replicas(strategy, flag):
  """A per-replica boolean -> a boolean tensor, true only if true on every replica.

  (`tf.distribute.ReduceOp` has SUM and MEAN only: counts the replicas where
  it is false.)  Call it where `strategy.reduce` may be called.
  """
  failed = strategy.run(lambda f: 1.0 - tf.cast(f, tf.float32), args=(flag,))
  return strategy.reduce(tf.distribute.ReduceOp.SUM, failed, axis=None) < 0.5


# ----------------------------------------------------------------------------- peer failure

def first_line(error):
  text = getattr(error, "message", None) or str(error)
  return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def _named_tasks(error, exclude_rank=None):
  """'worker 1 (host:port)' for the tasks an error message names (or "")."""
  tasks = _ordered_tasks(read_tf_config()["cluster"]) if os.environ.get(TF_CONFIG_ENV) else []
  ranks = {(job, i): rank for rank, (job, i, _) in enumerate(tasks)}
  text = getattr(error, "message", None) or str(error)
  addresses = {address: rank for rank, (_, _, address) in enumerate(tasks)}
  found = {ranks[(job, int(i))] for job, i in TASK_PATTERN.findall(text) if (job, int(i)) in ranks}
  found |= {rank for address, rank in addresses.items() if address in text}
  found.discard(exclude_rank)
  return ", ".join(f"worker {r} ({tasks[r][2]})" for r in sorted(found))


def peer_failure_message(checkpoint_dir=None, error=None):
  """The one line printed when the cluster lost a worker."""
  count, rank = worker_info()
  who = _named_tasks(error, exclude_rank=rank) if error is not None else ""
  if not who:
    others = [f"worker {r} ({a})" for r, a in sorted(peer_addresses().items()) if r != rank]
    who = "one of " + ", ".join(others) if len(others) > 1 else (others[0] if others else "a peer")
  latest = tf.train.latest_checkpoint(str(checkpoint_dir)) if checkpoint_dir else None
  where = (f"the last checkpoint is {latest} (step {checkpoint_step(latest)})" if latest else
           "no checkpoint was written yet")
  kind = f" ({type(error).__name__})" if error is not None else ""
  return (f"worker {rank} of {count}: {who} stopped responding{kind}; {where}; restart all "
          "workers with the same command to resume")


@contextlib.contextmanager
def peer_guard(strategy, checkpoint_dir=None):
  """Turns a collective failure during multi-worker training into one InputError line.

  Elsewhere (one worker) the errors pass through unchanged.
  """
  try:
    yield
  except PEER_ERRORS as error:
    if not is_multi_worker(strategy):
      raise
    raise InputError(peer_failure_message(checkpoint_dir, error)) from None
