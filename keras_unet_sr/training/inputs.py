"""What `fit` and `tune` train on, prepared once: the data's frames and scale
checked against the config, the cached normalized images, the tile stream
and the fixed validation tiles.
"""

from __future__ import annotations

import dataclasses
import logging

import tensorflow as tf

from keras_unet_sr.config import FitConfig
from keras_unet_sr.data.pipeline import (
    TileSampler,
    prepare_images,
    training_tiles,
    validation_tiles,
)
from keras_unet_sr.data.sources import PairedImages, load_paired_images
from keras_unet_sr.errors import UserError
from keras_unet_sr.model.precision import resolve_precision
from keras_unet_sr.quality.registration import WARN_SHIFT_PIXELS
from keras_unet_sr.training.distribute import (
    per_replica_batch,
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
    augment: bool = True

    def train_tiles(
        self, batch_size: int, start_epoch: int = 0, seed_offset: int = 0
    ) -> tf.data.Dataset:
        """The infinite training tile stream; a resumed run draws a fresh,
        still deterministic, stream."""
        seed = self.seed + 7919 * start_epoch + seed_offset
        return training_tiles(
            self.train_images, self.sampler, batch_size, seed=seed, augment=self.augment
        )


def half_turn_augmentation(transforms: str, frames: int) -> bool:
    """Whether `--augment-transforms` (`auto` decided by the frame count)
    means the half turn only."""
    if transforms == "auto":
        return frames > 1
    return transforms == "half-turn"


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
    sampler = TileSampler(
        t.tile,
        scale,
        t.tiles_per_image,
        min_foreground=t.min_foreground,
        low_light=t.low_light,
        half_turn=half_turn_augmentation(t.augment_transforms, frames),
    )
    camera = (config.data.camera_offset, config.data.camera_gain)
    if t.low_light > 1 and not data.has_camera and None in camera:
        raise UserError(
            f"--low-light {t.low_light:g}: {data.description} records no camera "
            "noise model; give --camera-offset and --camera-gain"
        )
    percentiles = config.model.percentiles
    subset = config.data.frame_subset
    register = config.data.register
    report_offsets(data, register)
    train_images = prepare_images(
        data.images("train"), sampler, frames, subset, percentiles, register, camera
    )
    validation_split = data.split_or_fallback("validation")
    val_images = prepare_images(
        data.images(validation_split), sampler, frames, subset, percentiles, register
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
        t.augment,
    )


def report_offsets(data: PairedImages, register: bool) -> None:
    """One line on how far the targets sit from their inputs, and what is done."""
    offsets = data.offsets()
    if not offsets:
        return
    largest = max(max(abs(dy), abs(dx)) for dy, dx in offsets.values())
    listed = ", ".join(f"{n} ({dy:+.2f}, {dx:+.2f})" for n, (dy, dx) in offsets.items())
    action = (
        "targets are moved onto the input grid (--register)"
        if register
        else "consider --register"
        if largest > WARN_SHIFT_PIXELS
        else "aligned"
    )
    logging.getLogger(__name__).info(
        "Target offsets (dy, dx) in target px: %s; %s", listed, action
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
