"""Workarounds for two Keras 3.15 defects under MultiWorkerMirroredStrategy.

Active only inside `multi_worker_fixes()`, which `fit`/`tune` enter for
`--strategy multiworker` runs; single-device and MirroredStrategy runs use
Keras unmodified. Each patch replaces one function of Keras' TensorFlow
trainer and is undone on exit. Remove this module once Keras fixes them
(the tests in tests/test_distribute.py show whether they are still needed).

1. `TensorFlowTrainer._maybe_symbolic_build` reduces the first distributed
   input batch with `strategy.reduce("MEAN", batch, axis=None)` before
   building the model's metrics and optimizer. Under MultiWorkerMirrored the
   result is still a `PerReplica`, and building fails with "Attempt to
   convert a value (PerReplica ...) to a Tensor" (reported e.g. in
   keras-team/keras#20329 and ray-project/ray#47464). Building only needs
   shapes and dtypes, so the fix builds from this worker's first local
   replica batch.
2. `reduce_per_replica(..., reduction="auto"/"mean")` reduces multi-worker
   values with `strategy.reduce("MEAN", v, axis=0)`. Loss and metric
   results are scalars, which have no axis 0: "Invalid reduction dimension 0
   for input with 0 dimensions" (tensorflow/tensorflow#72388). The fix
   averages scalars across replicas only (`axis=None`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import tensorflow as tf
from keras import tree
from keras.src.backend.tensorflow import trainer as tf_trainer

_original_symbolic_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
_original_reduce = tf_trainer.reduce_per_replica


def _first_local(value):
    if isinstance(value, tf.distribute.DistributedValues):
        return value.values[0]
    return value


def _maybe_symbolic_build(self, iterator=None, data_batch=None):
    if self._distribute_strategy is None:
        return
    if iterator is not None:
        for _, _, it in iterator:
            data_batch = tree.map_structure(_first_local, next(it))
            break
    with self.distribute_strategy.scope():
        self._symbolic_build(data_batch=data_batch)


def _is_multi_worker(strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def _reduce_per_replica(values, strategy, reduction):
    if reduction not in ("auto", "mean") or not _is_multi_worker(strategy):
        return _original_reduce(values, strategy, reduction)

    def reduce(value):
        rank = _first_local(value).shape.rank
        return strategy.reduce("MEAN", value, axis=0 if rank else None)

    return tree.map_structure(reduce, values)


@contextlib.contextmanager
def multi_worker_fixes() -> Iterator[None]:
    """Apply both workarounds for the duration of a multi-worker run."""
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    tf_trainer.reduce_per_replica = _reduce_per_replica
    try:
        yield
    finally:
        tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _original_symbolic_build
        tf_trainer.reduce_per_replica = _original_reduce
