"""`fit`: train a super-resolution U-Net from a `FitConfig`.

Writes to the output folder:

* `config.json`: the full config (repeat the run with `fit --config`);
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
import os
import sys
from collections.abc import Callable
from pathlib import Path

import keras
import tensorflow as tf

from keras_unet_sr.config import FitConfig, load_config, save_config
from keras_unet_sr.data.pipeline import (
    TileSampler,
    prepare_images,
    training_tiles,
    validation_tiles,
)
from keras_unet_sr.data.sources import PairedImages, load_paired_images
from keras_unet_sr.errors import UserError
from keras_unet_sr.files.atomic import write_json
from keras_unet_sr.files.folders import check_can_create, make_output_folder
from keras_unet_sr.inference.predictor import Predictor, load_model
from keras_unet_sr.model.precision import resolve_precision
from keras_unet_sr.model.unet import SuperResolutionUNet
from keras_unet_sr.quality.evaluation import score_model_and_baseline, summarize_scores
from keras_unet_sr.quality.losses import SSIML1Loss
from keras_unet_sr.quality.metrics import PSNR, SSIM
from keras_unet_sr.training import callbacks as cb
from keras_unet_sr.training.distribute import (
    agree_on_minimum,
    fixes_for,
    per_replica_batch,
    worker_role,
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
    """The U-Net a config describes, for data with `frames` and `scale`."""
    m = config.model
    return SuperResolutionUNet(
        frames=frames,
        scale=scale,
        depth=m.depth,
        filters=m.filters,
        kernel_size=m.kernel_size,
        convs_per_level=m.convs_per_level,
        normalization=m.normalization,
        dropout=m.dropout,
        residual_interpolation=m.residual_interpolation,
        percentiles=m.percentiles,
        frame_subset=config.data.frame_subset,
        dtype=resolve_precision(config.train.precision),
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
        loss=SSIML1Loss(alpha=t.loss_alpha, multiscale=t.multiscale_ssim),
        metrics=[PSNR(), SSIM()],
    )


def resolve_frames_and_scale(config: FitConfig, data: PairedImages) -> tuple[int, int]:
    """The model's frame count and scale, checked against what the config asks."""
    subset = config.data.frame_subset
    if subset is not None:
        too_high = [f for f in subset if f >= data.frames]
        if too_high:
            raise UserError(
                f"--frames {','.join(map(str, subset))}: {data.description} has "
                f"{data.frames} frame(s); frame(s) {too_high} do not exist"
            )
    frames = data.frames if subset is None else len(subset)
    wanted = config.model.frames
    if wanted is not None and wanted != frames:
        hint = ""
        if wanted < data.frames and subset is None:
            example = ",".join(str(i * data.frames // wanted) for i in range(wanted))
            hint = f"; pick {wanted} of them with e.g. --frames {example}"
        raise UserError(
            f"--frames {wanted}: {data.description} has {frames} frame(s){hint}"
        )
    if config.model.scale is not None and config.model.scale != data.scale:
        raise UserError(
            f"--scale {config.model.scale}: {data.description} has scale {data.scale} "
            "(high images are that many times the low ones)"
        )
    return frames, data.scale


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


@dataclasses.dataclass
class TrainingData:
    """Everything `fit` and `tune` train on, prepared once.

    Attributes:
        data: The paired images.
        frames: Frames the model reads (after any frame subset).
        scale: Scale factor.
        sampler: How tiles are cut.
        train_images: Normalized, cached training images.
        validation: Fixed validation tiles (batched).
        validation_split: The split they come from.
        seed: The config's seed.
    """

    data: PairedImages
    frames: int
    scale: int
    sampler: TileSampler
    train_images: tf.data.Dataset
    validation: tf.data.Dataset
    validation_split: str
    seed: int

    def train_tiles(
        self, batch_size: int, start_epoch: int = 0, seed_offset: int = 0
    ) -> tf.data.Dataset:
        """The infinite training tile stream; a resumed run draws a fresh,
        still deterministic, stream."""
        seed = self.seed + 7919 * start_epoch + seed_offset
        return training_tiles(self.train_images, self.sampler, batch_size, seed=seed)


def check_precision(config: FitConfig) -> None:
    resolve_precision(config.train.precision)


def load_training_data(config: FitConfig) -> TrainingData:
    """Prepare the data a config trains on (generating it if needed)."""
    t = config.train
    data = load_paired_images(config.data)
    frames, scale = resolve_frames_and_scale(config, data)
    multiple = 2**config.model.depth
    if t.tile % multiple:
        raise UserError(f"--tile {t.tile}: must be a multiple of {multiple} (2**depth)")
    sampler = TileSampler(t.tile, scale, t.tiles_per_image)
    percentiles = config.model.percentiles
    subset = config.data.frame_subset
    train_images = prepare_images(
        data.images("train"), sampler, frames, subset, percentiles
    )
    validation_split = data.split_or_fallback("validation")
    val_images = prepare_images(
        data.images(validation_split), sampler, frames, subset, percentiles
    )
    validation = validation_tiles(
        val_images, sampler, t.batch, t.validation_tiles, seed=t.seed
    )
    return TrainingData(
        data,
        frames,
        scale,
        sampler,
        train_images,
        validation,
        validation_split,
        t.seed,
    )


def distributed_tiles(
    prepared: TrainingData,
    strategy: tf.distribute.Strategy,
    global_batch: int,
    start_epoch: int = 0,
):
    """The training stream, one seeded pipeline per worker.

    Tiles are random draws, so instead of splitting one stream (which needs
    as many data files as workers) each worker draws its own stream with a
    seed offset by its pipeline id, batched per replica.
    """
    if strategy.num_replicas_in_sync == 1:
        return prepared.train_tiles(global_batch, start_epoch)
    per_replica = per_replica_batch(strategy, global_batch)

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        offset = 104729 * context.input_pipeline_id
        return prepared.train_tiles(per_replica, start_epoch, seed_offset=offset)

    return strategy.distribute_datasets_from_function(dataset_fn)


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
        make_output_folder(run_dir)
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
    write_json(
        out_dir / "metrics.json",
        {"split": val_split, "epochs": final_epoch, **summary, "images": scores},
    )
    model_scores, bicubic = summary["model"], summary["bicubic"]
    print_fn(
        f"Validation ({val_split}, {len(scores)} whole images): "
        f"model PSNR {model_scores['psnr']:.2f} dB, SSIM {model_scores['ssim']:.4f} | "
        f"bicubic PSNR {bicubic['psnr']:.2f} dB, SSIM {bicubic['ssim']:.4f} | "
        f"gain {model_scores['psnr'] - bicubic['psnr']:+.2f} dB"
    )
    print_fn(f"Model: {model_path} (best epoch {best.best_epoch})")
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
