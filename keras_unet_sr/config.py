"""The run configuration: one small, explicit default, and a smoke shrink.

`FitConfig()` is the whole recipe of the README's quick start. A run writes
its config to `OUT/config.json`; `keras-unet-sr fit --config that.json`
repeats it (flags given on the command line override the file). `smoke()`
shrinks any config to seconds for tests, like big_vision's `runlocal`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from keras_unet_sr.errors import UserError


@dataclasses.dataclass
class DataConfig:
    """Where images come from.

    Attributes:
        source: `synthetic:<config>` (sim9, sim3, confocal, widefield), a
            folder of paired TIFFs (`low/`, `high/`), or a TFDS name.
        data_dir: TFDS data directory (default: TFDS's, `~/tensorflow_datasets`).
        frame_subset: Raw frames the model reads, e.g. `[0, 5, 10]` (SIM3 out
            of 15 frames); `None` = all.
        validation_names: Paired TIFFs: image names held out for validation.
        test_names: Paired TIFFs: image names held out for testing.
        synthetic_images: Synthetic: training images (None = the config's).
        synthetic_size: Synthetic: low-resolution image side.
    """

    source: str = "synthetic:sim9"
    data_dir: str | None = None
    frame_subset: list[int] | None = None
    validation_names: list[str] = dataclasses.field(default_factory=list)
    test_names: list[str] = dataclasses.field(default_factory=list)
    synthetic_images: int | None = None
    synthetic_size: int | None = None


@dataclasses.dataclass
class ModelConfig:
    """`SuperResolutionUNet` arguments (frames and scale come from the data).

    Attributes:
        scale: Expected scale factor; `None` = whatever the data has.
        frames: Expected frame count after `frame_subset`; `None` = any.
    """

    scale: int | None = None
    frames: int | None = None
    depth: int = 2
    filters: int = 32
    kernel_size: int = 3
    convs_per_level: int = 2
    normalization: str = "none"
    dropout: float = 0.0
    residual_interpolation: str = "bicubic"
    percentiles: list[float] = dataclasses.field(default_factory=lambda: [1.0, 99.8])


@dataclasses.dataclass
class TrainConfig:
    """Optimization, tiles and callbacks.

    Attributes:
        tile: Low-resolution training tile side (multiple of `2**depth`).
        batch: Tiles per step.
        epochs: Epochs (each `steps_per_epoch` steps).
        steps_per_epoch: Optimizer steps per epoch.
        lr: Peak learning rate of the warmup + cosine schedule.
        warmup_steps: Linear warmup steps.
        loss_alpha: SSIM weight of the SSIM-L1 loss.
        multiscale_ssim: Use MS-SSIM in the loss (tiles >= 176 output px).
        tiles_per_image: Tiles cut per image draw.
        validation_tiles: Fixed validation tiles scored each epoch.
        early_stopping_patience: Epochs without val_loss improvement
            before stopping (0 disables).
        panel_examples: Validation tiles in the TensorBoard image panel.
        precision: `"auto"` (the fastest for the machine, see
            `keras_unet_sr.model.precision`), `"float32"`, `"mixed_float16"` or
            `"mixed_bfloat16"`.
        seed: Seed of the tile stream and of the weights.
    """

    tile: int = 64
    batch: int = 8
    epochs: int = 12
    steps_per_epoch: int = 100
    lr: float = 2e-3
    warmup_steps: int = 50
    loss_alpha: float = 0.84
    multiscale_ssim: bool = False
    # 16, not 8: each draw decodes and normalizes an image once; measured
    # 858 vs 472 tiles/s during the first (uncached) pass over the data.
    tiles_per_image: int = 16
    validation_tiles: int = 64
    early_stopping_patience: int = 6
    panel_examples: int = 4
    precision: str = "auto"
    seed: int = 0


@dataclasses.dataclass
class FitConfig:
    """Everything a `keras-unet-sr fit` run needs."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], origin: str = "config") -> FitConfig:
        """Build from nested dicts, naming any unknown or misplaced key."""
        sections = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
        unknown = set(values) - set(sections)
        if unknown:
            raise UserError(
                f"{origin}: unknown section(s) {sorted(unknown)}; "
                f"expected {sorted(sections)}"
            )
        built = {}
        for name, section_cls in sections.items():
            section = values.get(name, {})
            if not isinstance(section, dict):
                raise UserError(f"{origin}: '{name}' must be an object")
            fields = {f.name for f in dataclasses.fields(section_cls)}
            extra = set(section) - fields
            if extra:
                raise UserError(f"{origin}: unknown key(s) {sorted(extra)} in '{name}'")
            built[name] = section_cls(**section)
        return cls(**built)


def read_json(path: str | os.PathLike, label: str, what: str = "file") -> Any:
    """A JSON file's content, or one line naming `label` and the problem."""
    try:
        with open(path, encoding="utf-8") as stream:
            return json.load(stream)
    except FileNotFoundError as error:
        raise UserError(f"{label}: no such file") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{label}: not a JSON {what} ({error})") from error


def load_config(path: str | os.PathLike) -> FitConfig:
    """Read a `config.json` written by `fit` (or `tune`'s best config)."""
    values = read_json(path, str(path), "config")
    if not isinstance(values, dict):
        raise UserError(
            f"{path}: not a keras-unet-sr config (top level is not an object)"
        )
    try:
        return FitConfig.from_dict(values, origin=str(path))
    except TypeError as error:
        raise UserError(f"{path}: {error}") from error


def save_config(config: FitConfig, path: str | os.PathLike) -> None:
    """Write `config` as JSON atomically (temporary file, then rename)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as stream:
        json.dump(config.to_dict(), stream, indent=2)
        stream.write("\n")
    os.replace(tmp, path)


def smoke(config: FitConfig) -> FitConfig:
    """Shrink a config to a seconds-long run (tests, CI, trying a setup)."""
    config = FitConfig.from_dict(config.to_dict())
    config.model.depth = min(config.model.depth, 1)
    config.model.filters = min(config.model.filters, 4)
    config.train.tile = 32
    config.train.batch = 4
    config.train.epochs = 2
    config.train.steps_per_epoch = 3
    config.train.warmup_steps = 1
    config.train.tiles_per_image = 2
    config.train.validation_tiles = 8
    config.train.panel_examples = 2
    if config.data.source.startswith("synthetic:"):
        config.data.synthetic_images = 4
        config.data.synthetic_size = 32
    return config
