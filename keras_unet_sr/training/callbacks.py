"""Training callbacks: crash-safe backups, best model, early stopping,
TensorBoard image panels and NaN detection.

Files are replaced atomically (written aside, then renamed), so a run killed
at any moment, even by SIGKILL, leaves either the previous or the new
version of every file, never a torn one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_unet_sr.files.atomic import atomic_path, ensure_room, remove_leftovers

_BACKUP_PREFIX = "epoch-"


class StatefulCallback(keras.callbacks.Callback):
    """A callback whose counters survive a restart via the backup."""

    state_key: str = ""

    def get_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def set_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError


def saved_size(model: keras.Model) -> int:
    """About how many bytes a save of `model` (with its optimizer) takes."""
    variables = list(model.weights)
    if model.optimizer is not None:
        variables += list(model.optimizer.variables)
    data = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)
    return int(data * 1.2) + (256 << 10)  # HDF5 and zip overhead, the config


def _atomic_save_model(model: keras.Model, path: Path) -> None:
    ensure_room(path, saved_size(model))
    with atomic_path(path) as tmp:
        model.save(tmp)


class BestModelCheckpoint(StatefulCallback):
    """Saves the model to `path` whenever `monitor` improves (atomically).

    Args:
        path: The `.keras` file to write.
        monitor: Quantity to watch.
        mode: `"min"` or `"max"`.
    """

    state_key = "best_model"

    def __init__(
        self, path: str | os.PathLike, monitor: str = "val_loss", mode: str = "min"
    ):
        super().__init__()
        self.path = Path(path)
        self.monitor = monitor
        self.sign = 1.0 if mode == "min" else -1.0
        self.best = math.inf
        self.best_epoch: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(value):
            return
        if self.sign * value < self.best:
            self.best = self.sign * value
            self.best_epoch = epoch + 1
            _atomic_save_model(self.model, self.path)

    def get_state(self):
        return {"best": self.best, "best_epoch": self.best_epoch}

    def set_state(self, state):
        self.best = state["best"]
        self.best_epoch = state["best_epoch"]


class ResumableEarlyStopping(keras.callbacks.EarlyStopping, StatefulCallback):
    """`keras.callbacks.EarlyStopping` whose patience counter survives restarts."""

    state_key = "early_stopping"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._pending: dict[str, Any] | None = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)  # resets the counters, then we restore
        if self._pending is not None:
            self.wait = self._pending["wait"]
            self.best = self._pending["best"]
            self._pending = None

    def get_state(self):
        best = self.best
        return {"wait": self.wait, "best": None if best is None else float(best)}

    def set_state(self, state):
        self._pending = state


class TrainingBackup(keras.callbacks.Callback):
    """Backs up the training state at every epoch end; restores it on restart.

    Each backup is a folder `epoch-NNNNN/` holding the weights (with the
    optimizer state, hence the learning-rate schedule position) and
    `state.json` (epoch and the stateful callbacks' counters). It is written
    under a temporary name and renamed when complete; all but the two newest
    are then deleted (two, so the workers of a multi-worker run killed
    mid-save can agree on an epoch all of them have). A restart restores
    the newest complete backup, or a given epoch's.

    Args:
        backup_dir: Folder for the backups.
        stateful: Callbacks whose `get_state()` is saved with each backup.
    """

    def __init__(self, backup_dir: str | os.PathLike, stateful: list[StatefulCallback]):
        super().__init__()
        self.backup_dir = Path(backup_dir)
        self.stateful = stateful
        self.skip_reason: str | None = None

    def epochs(self) -> list[int]:
        """Epochs with a complete backup, oldest first."""
        if not self.backup_dir.is_dir():
            return []
        prefix = len(_BACKUP_PREFIX)
        return sorted(
            int(p.name[prefix:])
            for p in self.backup_dir.iterdir()
            if p.is_dir()
            and p.name.startswith(_BACKUP_PREFIX)
            and p.name[prefix:].isdigit()
        )

    def restore(self, model: keras.Model, epoch: int | None = None) -> int:
        """Load the backup of `epoch` (default: the newest) into `model`;
        returns the epoch to start at (0 without a backup)."""
        # The run owns the folder now: a kill mid-save left a temporary.
        remove_leftovers(self.backup_dir)
        available = self.epochs()
        if epoch is None:
            epoch = available[-1] if available else 0
        if epoch == 0:
            return 0
        backup = self.backup_dir / f"{_BACKUP_PREFIX}{epoch:05d}"
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(backup / "weights.weights.h5")
        state = json.loads((backup / "state.json").read_text())
        for callback in self.stateful:
            if callback.state_key in state["callbacks"]:
                callback.set_state(state["callbacks"][callback.state_key])
        return int(state["epoch"])

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or not math.isfinite(loss) or self.skip_reason:
            return  # never back up a diverged state
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        final = self.backup_dir / f"{_BACKUP_PREFIX}{epoch + 1:05d}"
        ensure_room(final, saved_size(self.model))
        with atomic_path(final, folder=True) as tmp:
            self.model.save_weights(tmp / "weights.weights.h5")
            state = {
                "epoch": epoch + 1,
                "callbacks": {c.state_key: c.get_state() for c in self.stateful},
            }
            (tmp / "state.json").write_text(json.dumps(state, indent=2))
        for older in self.epochs()[:-2]:
            shutil.rmtree(self.backup_dir / f"{_BACKUP_PREFIX}{older:05d}")


class NaNGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss and remembers where.

    Args:
        steps_per_epoch: To report the global step.
        backup: The backup callback, told not to save the diverged state.
    """

    def __init__(self, steps_per_epoch: int, backup: TrainingBackup | None = None):
        super().__init__()
        self.steps_per_epoch = steps_per_epoch
        self.backup = backup
        self.failure: str | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            step = self._epoch * self.steps_per_epoch + batch + 1
            self.failure = (
                f"loss became {float(loss)} at epoch {self._epoch + 1}, "
                f"step {batch + 1} (global step {step})"
            )
            if self.backup is not None:
                self.backup.skip_reason = self.failure
            self.model.stop_training = True


class ImagePanel(keras.callbacks.Callback):
    """Writes `input | prediction | target | error` panels to TensorBoard.

    The input panel is the mean of the input frames, nearest-upsampled to the
    output grid; each panel is clipped to the target's [0, 1] range (the
    normalized units), and the error is `|prediction - target|`.

    Args:
        log_dir: Event-file folder (e.g. `OUT/logs/images`).
        low: Fixed validation input tiles `(n, t, t, F)`.
        high: Their targets `(n, s*t, s*t, C)`.
    """

    def __init__(self, log_dir: str | os.PathLike, low: np.ndarray, high: np.ndarray):
        super().__init__()
        self.log_dir = str(log_dir)
        self.low = low
        self.high = high
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        # A direct call, not predict(): no cross-worker collectives involved.
        prediction = self.model(self.low, training=False)
        panel = make_panel(self.low, prediction, self.high)
        with self._writer.as_default():
            tf.summary.image(
                "validation/input_prediction_target_error",
                panel,
                step=epoch + 1,
                max_outputs=len(panel),
                description="input (frame mean) | prediction | target | |error|",
            )
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def make_panel(low: np.ndarray, prediction: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Side-by-side `(n, H, 4*W, 1)` panels in [0, 1]."""
    scale = high.shape[1] // low.shape[1]
    mean = low.mean(axis=-1, keepdims=True).repeat(scale, 1).repeat(scale, 2)
    target = high[..., :1]
    prediction = np.asarray(prediction)[..., :1]
    parts = [mean, prediction, target, np.abs(prediction - target)]
    return np.clip(np.concatenate(parts, axis=2), 0.0, 1.0).astype(np.float32)
