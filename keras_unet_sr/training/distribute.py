"""Choosing a tf.distribute strategy and the worker's role in it.

* `default`: one device (TensorFlow's default strategy).
* `mirrored`: `MirroredStrategy` over all local GPUs; without GPUs, over the
  logical CPU devices (`--cpu-replicas N` splits the CPU, for testing).
* `multiworker`: `MultiWorkerMirroredStrategy` configured by `TF_CONFIG`
  (one process per machine or per GPU set; see the README).

The batch size in the config is the *global* batch: each of the `R` replicas
gets `batch / R` tiles per step, so the optimization is the same as on one
device with that batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path

import tensorflow as tf

from keras_unet_sr.config import STRATEGIES
from keras_unet_sr.errors import UserError


def split_cpu(replicas: int) -> None:
    """Expose `replicas` logical CPU devices (must run before TF starts its
    runtime, i.e. before the first op)."""
    if replicas < 1:
        raise UserError(f"--cpu-replicas {replicas}: must be at least 1")
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * replicas
        )
    except RuntimeError as error:  # the runtime is already initialized
        current = len(tf.config.list_logical_devices("CPU"))
        if current != replicas:
            raise UserError(
                f"--cpu-replicas {replicas}: TensorFlow already runs with "
                f"{current} CPU device(s) in this process"
            ) from error


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy called `name` (see the module docstring)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multiworker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise UserError(f"--strategy {name}: choose one of {', '.join(STRATEGIES)}")


def _check_tf_config() -> None:
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise UserError(
            "--strategy multiworker: set TF_CONFIG, e.g. "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
            '"task": {"type": "worker", "index": 0}}'
        )
    try:
        config = json.loads(text)
        config["cluster"]
        config["task"]["type"]
        config["task"]["index"]
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(
            f"TF_CONFIG: not a valid cluster spec ({type(error).__name__}: {error})"
        ) from error


@dataclasses.dataclass(frozen=True)
class WorkerRole:
    """Where this process stands in the cluster.

    Attributes:
        is_chief: Writes the run's outputs (model, logs, metrics).
        index: Task index (0 on a single machine).
        task_type: `"chief"`, `"worker"` or `None` off-cluster.
    """

    is_chief: bool
    index: int
    task_type: str | None

    def run_dir(self, out_dir: Path) -> Path:
        """The chief writes to `out_dir`; every other worker to its own
        folder beside the outputs (it still saves checkpoints and backups,
        which multi-worker training needs on every worker)."""
        if self.is_chief:
            return out_dir
        return out_dir / f".worker-{self.task_type}-{self.index}"


def worker_role(strategy: tf.distribute.Strategy) -> WorkerRole:
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or (
        resolver is None
    ):
        return WorkerRole(True, 0, None)
    task_type, index = resolver.task_type, int(resolver.task_id)
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    is_chief = task_type == "chief" or (
        not has_chief and task_type == "worker" and index == 0
    )
    return WorkerRole(is_chief, index, task_type)


def per_replica_batch(strategy: tf.distribute.Strategy, global_batch: int) -> int:
    replicas = strategy.num_replicas_in_sync
    if global_batch % replicas:
        raise UserError(
            f"--batch {global_batch}: the global batch must be a multiple of the "
            f"{replicas} replicas"
        )
    return global_batch // replicas


def agree_on_minimum(strategy: tf.distribute.Strategy, value: int) -> int:
    """The smallest `value` over all workers (e.g. the epoch every worker
    has a backup of). Single-worker strategies return `value` itself."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return value

    def gather():
        context = tf.distribute.get_replica_context()
        return context.all_gather(tf.constant([value], tf.int64), axis=0)

    gathered = strategy.run(tf.function(gather))
    local = strategy.experimental_local_results(gathered)[0]
    return int(tf.reduce_min(local))


def fixes_for(strategy: tf.distribute.Strategy):
    """The Keras multi-worker workarounds for `strategy`, or nothing."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        from keras_unet_sr.training.multiworker_fixes import multi_worker_fixes

        return multi_worker_fixes()
    return contextlib.nullcontext()
