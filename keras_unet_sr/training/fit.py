"""`fit`: train a super-resolution U-Net from a `FitConfig`.

Writes to the output folder:

* `config.json`: the full config (repeat the run with `fit --config`);
* `data.json`: the prepared data set's name, which fingerprints the input
  files' contents (a run does not resume on other data);
* `model.keras`: the best model by validation loss (safe-mode loadable);
* `logs/train`, `logs/validation`: TensorBoard scalars (loss, PSNR, SSIM,
  learning rate), `logs/images`: the input | prediction | target | error
  panel of fixed validation tiles, every epoch;
* `backup/`: the last epoch's training state; running the same command
  again continues from it;
* `metrics.json`: the final whole-image validation scores of the model and
  of the bicubic baseline.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import keras
import tensorflow as tf

from keras_unet_sr.config import FitConfig, load_config, save_config
from keras_unet_sr.errors import UserError
from keras_unet_sr.files.atomic import write_json
from keras_unet_sr.files.folders import check_can_create, make_output_folder
from keras_unet_sr.inference.predictor import Predictor, load_model
from keras_unet_sr.model.precision import resolve_precision
from keras_unet_sr.model.unet import SuperResolutionUNet
from keras_unet_sr.progress import format_duration
from keras_unet_sr.quality.evaluation import (
    score_model_and_baseline,
    summarize_resolution,
    summarize_scores,
)
from keras_unet_sr.quality.losses import SSIML1Loss
from keras_unet_sr.quality.metrics import PSNR, SSIM
from keras_unet_sr.training import callbacks as cb
from keras_unet_sr.training.distribute import (
    agree_on_minimum,
    fixes_for,
    per_replica_batch,
    worker_role,
)
from keras_unet_sr.training.inputs import (
    TrainingData,
    check_precision,
    distributed_tiles,
    load_training_data,
)


class TrainingDiverged(UserError):
    """The loss became NaN/Inf; the last good model is kept."""


@dataclasses.dataclass
class FitResult:
    """What a finished `fit` produced."""

    out_dir: Path
    model_path: Path
    epochs_run: int
    final_epoch: int
    scores: dict[str, dict[str, float]]


def build_model(config: FitConfig, frames: int, scale: int) -> SuperResolutionUNet:
    """The U-Net a config describes, for data with `frames` and `scale`.

    Every field of the model section is a `SuperResolutionUNet` argument, except
    `scale` and `frames`: those are what the config expects of the data (checked
    in `training.inputs`), and the data's own values build the model.
    """
    arguments = dataclasses.asdict(config.model)
    del arguments["scale"], arguments["frames"]
    return SuperResolutionUNet(
        frames=frames,
        scale=scale,
        frame_subset=config.data.frame_subset,
        dtype=resolve_precision(config.train.precision),
        **arguments,
    )


def compile_model(model: keras.Model, config: FitConfig, total_steps: int) -> None:
    """Adam with linear warmup + cosine decay, SSIM-L1 loss, PSNR/SSIM metrics."""
    t = config.train
    warmup = min(t.warmup_steps, max(total_steps - 1, 0))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=t.lr / 10 if warmup else t.lr,
        decay_steps=max(total_steps - warmup, 1),
        alpha=0.05,
        warmup_target=t.lr if warmup else None,
        warmup_steps=warmup,
    )
    optimizer = keras.optimizers.Adam(schedule)
    if resolve_precision(t.precision) == "mixed_float16":
        # float16 gradients underflow without loss scaling; Keras adds it
        # only for models whose own policy is mixed, and the U-Net sets the
        # policy per layer.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(
        optimizer=optimizer,
        loss=SSIML1Loss(
            alpha=t.loss_alpha, multiscale=t.multiscale_ssim, pixel=t.pixel_loss
        ),
        metrics=[PSNR(), SSIM()],
    )


def _check_run_folder(out_dir: Path, config: FitConfig) -> None:
    """A folder holding a different run is not silently reused or overwritten."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: --out exists and is not a folder")
    saved = out_dir / "config.json"
    if not saved.exists():
        return
    previous = load_config(saved).to_dict()
    current = config.to_dict()
    previous["train"].pop("epochs")
    current["train"].pop("epochs")
    if previous != current:
        changed = [
            f"{section}.{key}"
            for section in current
            for key in current[section]
            if previous[section].get(key) != current[section][key]
        ]
        raise UserError(
            f"{out_dir}: holds a run with a different config ({', '.join(changed)}); "
            "use another --out, or the same options to resume it"
        )


def _check_run_data(out_dir: Path, prepared: str) -> None:
    """A run folder resumes only on the data it was trained on: the prepared
    set's name fingerprints a folder's file contents."""
    try:
        before = json.loads((out_dir / "data.json").read_text())["prepared"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # a new run, or one from before data.json
    if before != prepared:
        raise UserError(
            f"{out_dir}: holds a run trained on other data ({before}; the data "
            f"now prepares as {prepared}); use another --out"
        )


def fit(
    config: FitConfig,
    out_dir: str | os.PathLike,
    *,
    strategy: tf.distribute.Strategy | None = None,
    verbose: int | str = "auto",
    print_fn: Callable[[str], None] = print,
) -> FitResult:
    """Train (or resume training) a model; see the module docstring for outputs.

    Args:
        config: The run's config (`config.train.batch` is the global batch).
        out_dir: Output folder; resumed if it holds this run's backup.
        strategy: A tf.distribute strategy (`keras_unet_sr.training.distribute`);
            default: one device.
        verbose: Keras verbosity (`"auto"`: progress bar on a terminal).
        print_fn: Where the run's summary lines go.
    """
    started = time.perf_counter()
    strategy = strategy or tf.distribute.get_strategy()
    role = worker_role(strategy)
    out_dir = Path(out_dir)
    run_dir = role.run_dir(out_dir)
    t = config.train
    check_precision(config)
    per_replica_batch(strategy, t.batch)
    _check_run_folder(run_dir, config)
    check_can_create(run_dir)
    if not role.is_chief:
        print_fn = _quiet

    with fixes_for(strategy):
        prepared = load_training_data(config)  # bad data fails before any write
        seconds = {"data": time.perf_counter() - started}
        _check_run_data(run_dir, prepared.data.builder.info.full_name)
        make_output_folder(run_dir)
        write_json(
            run_dir / "data.json", {"prepared": prepared.data.builder.info.full_name}
        )
        keras.utils.set_random_seed(t.seed)
        with strategy.scope():
            model = build_model(config, prepared.frames, prepared.scale)
            compile_model(model, config, t.epochs * t.steps_per_epoch)
        save_config(config, run_dir / "config.json")
        val, val_split = _validation_for(prepared, strategy)
        panel = next(iter(prepared.validation.unbatch().batch(t.panel_examples)))

        model_path = run_dir / "model.keras"
        best = cb.BestModelCheckpoint(model_path)
        stateful: list[cb.StatefulCallback] = [best]
        callbacks: list[keras.callbacks.Callback] = [
            keras.callbacks.TensorBoard(run_dir / "logs", write_graph=False),
            cb.ImagePanel(run_dir / "logs" / "images", *(x.numpy() for x in panel)),
            best,
        ]
        if t.early_stopping_patience > 0:
            stopping = cb.ResumableEarlyStopping(
                monitor="val_loss", patience=t.early_stopping_patience
            )
            stateful.append(stopping)
            callbacks.append(stopping)
        backup = cb.TrainingBackup(run_dir / "backup", stateful)
        guard = cb.NaNGuard(t.steps_per_epoch, backup)
        callbacks = [guard, *callbacks, backup]  # backup last: it saves their state

        # Every worker must resume at the same epoch.
        available = backup.epochs()
        initial_epoch = agree_on_minimum(strategy, available[-1] if available else 0)
        if initial_epoch and initial_epoch not in available:
            raise UserError(
                f"{run_dir / 'backup'}: no backup of epoch {initial_epoch}, "
                "which another worker resumes from"
            )
        with strategy.scope():
            initial_epoch = backup.restore(model, initial_epoch)
        if initial_epoch:
            print_fn(
                f"Resuming from the backup of epoch {initial_epoch} "
                f"in {run_dir / 'backup'}"
            )
        print_fn(f"TensorBoard: tensorboard --logdir {run_dir / 'logs'}")
        epochs_run = 0
        training_started = time.perf_counter()
        if initial_epoch < t.epochs:
            history = model.fit(
                distributed_tiles(prepared, strategy, t.batch, initial_epoch),
                epochs=t.epochs,
                initial_epoch=initial_epoch,
                steps_per_epoch=t.steps_per_epoch,
                validation_data=val,
                callbacks=callbacks,
                shuffle=False,  # the tile stream is shuffled (and seeded) already
                verbose=keras_verbosity(verbose) if role.is_chief else 0,
            )
            epochs_run = len(history.epoch)
        seconds["training"] = time.perf_counter() - training_started
    data = prepared.data
    if guard.failure:
        kept = (
            f"the last good model is {model_path} (epoch {best.best_epoch})"
            if model_path.exists()
            else "no model was saved before it"
        )
        raise TrainingDiverged(f"training diverged: {guard.failure}; {kept}")
    if not model_path.exists():
        raise UserError(f"{out_dir}: no finite validation loss; no model was saved")

    final_epoch = initial_epoch + epochs_run
    if not role.is_chief:  # the chief evaluates and reports
        return FitResult(run_dir, model_path, epochs_run, final_epoch, {})
    best_model = load_model(str(model_path))
    scores = score_model_and_baseline(
        Predictor(best_model), data.named_images(val_split)
    )
    summary = summarize_scores(scores)
    seconds["total"] = time.perf_counter() - started
    write_json(
        out_dir / "metrics.json",
        {
            "split": val_split,
            "epochs": final_epoch,
            "seconds": seconds,
            **summary,
            "resolution": summarize_resolution(scores),
            "images": scores,
        },
    )
    model_scores, bicubic = summary["model"], summary["bicubic"]
    what = "strips of the images" if data.validation_strips else "whole images"
    registered = summary["model_registered"]["psnr"]
    print_fn(
        f"Validation ({val_split}, {len(scores)} {what}): "
        f"model PSNR {model_scores['psnr']:.2f} dB ({registered:.2f} dB registered), "
        f"SSIM {model_scores['ssim']:.4f} | "
        f"bicubic PSNR {bicubic['psnr']:.2f} dB, SSIM {bicubic['ssim']:.4f} | "
        f"gain {model_scores['psnr'] - bicubic['psnr']:+.2f} dB"
    )
    resolution = summarize_resolution(scores)
    if all(resolution[k]["pixels"] for k in ("model", "target", "bicubic")):
        print_fn(
            "Resolution (decorrelation analysis, output pixels, smaller is finer): "
            + ", ".join(f"{k} {resolution[k]['pixels']:.2f}" for k in resolution)
        )
    print_fn(f"Model: {model_path} (best epoch {best.best_epoch})")
    print_fn(
        f"Elapsed: {format_duration(seconds['total'])} (data "
        f"{format_duration(seconds['data'])}, training "
        f"{format_duration(seconds['training'])}, setup and scoring "
        f"{format_duration(seconds['total'] - seconds['data'] - seconds['training'])})"
    )
    return FitResult(out_dir, model_path, epochs_run, final_epoch, summary)


def _validation_for(prepared: TrainingData, strategy: tf.distribute.Strategy):
    """Validation tiles; across workers, each evaluates its share of them."""
    validation = prepared.validation
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        options = tf.data.Options()
        policy = tf.data.experimental.AutoShardPolicy.DATA  # not per file
        options.experimental_distribute.auto_shard_policy = policy
        validation = validation.with_options(options)
    return validation, prepared.validation_split


def _quiet(_: str) -> None:
    """Non-chief workers print nothing."""


def keras_verbosity(verbose: int | str) -> int:
    """Keras `verbose` for `"auto"`: a progress bar on a terminal, one line per
    epoch in a log."""
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(verbose)
