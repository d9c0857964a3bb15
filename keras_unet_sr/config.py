"""The run configuration: every setting defined once, with its type, range and choices.

`FitConfig()` is the whole recipe of the README's quick start. Each field is
declared once, with `setting(...)`: its default, help, allowed values and
whether the tuner may vary it. From that one declaration come the JSON
validation (`FitConfig.from_dict`), the command-line flags
(`keras_unet_sr.cli.options`), the model's argument checks and the tuner's
hyperparameter names (`tunable_settings`). A run writes its config to
`OUT/config.json`; `keras-unet-sr fit --config that.json` repeats it. `smoke()`
shrinks any config to seconds for tests, like big_vision's `runlocal`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from typing import Any

from keras_unet_sr.errors import UserError
from keras_unet_sr.files.atomic import write_json
from keras_unet_sr.settings import Field, class_fields, setting

# The allowed choices, named once (the model, the flags and the tuner use these).
NORMALIZATIONS = ("none", "batch", "layer")
SCALES = (1, 2, 4)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
UPSAMPLINGS = ("subpixel", "input")
PIXEL_LOSSES = ("l1", "l2")
AUGMENT_TRANSFORMS = ("auto", "dihedral", "half-turn")
# Test-time averaging over flips and turns (`inference.transforms`).
TEST_TIME_TRANSFORMS = ("none", "half-turn", "turns", "dihedral")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
# The largest tile side of whole-image prediction (`inference.tiling`), in
# input pixels. Chosen by measurement (2-core AMD EPYC, AVX-512-BF16,
# float32): 640-pixel tiles one at a time predict 2048 x 2048 x 9 within
# 2-5 % of 768-pixel ones and keep `predict` on 4096 x 4096 x 9 at 2.58 GiB
# with the dihedral average (768: 3.28 GiB); 512 px cost 14 % in speed, and
# 256 px reached 0.65 of the untiled model against 768's 0.88
# (benchmarks/run.py --sweep). Larger batches of tiles were slower than one
# at a time (`inference.tiling.DEFAULT_TILE_BATCH`).
PREDICT_TILE = 640
STRATEGIES = ("default", "mirrored", "multiworker")


@dataclasses.dataclass
class DataConfig:
    """Where images come from."""

    source: str = setting(
        "synthetic:sim9",
        "synthetic:<sim9|sim3|confocal|widefield>, a folder with low/ and high/ "
        "TIFF pairs, or a TFDS dataset name",
        flag="data",
    )
    data_dir: str | None = setting(
        None, "TFDS data directory (default ~/tensorflow_datasets)"
    )
    frame_subset: list[int] | None = setting(
        None,
        "raw frames the model reads, e.g. 0,5,10 (SIM3 of 15)",
        minimum=0,
        flag=None,
    )
    validation_names: list[str] = setting(
        [], "paired TIFFs: comma-separated image names held out for validation"
    )
    test_names: list[str] = setting(
        [], "paired TIFFs: comma-separated image names held out for testing"
    )
    register: bool = setting(
        False,
        "move each target onto its input's grid by the offset estimated when "
        "the data was prepared (the model then predicts on the input's grid)",
    )
    camera_offset: float | None = setting(
        None, "camera offset in ADU (default: estimated per image)", minimum=0.0
    )
    camera_gain: float | None = setting(
        None, "camera gain in ADU per photon (default: estimated per image)", above=0.0
    )
    synthetic_images: int | None = setting(
        None, "synthetic: training images (default: the config's)", minimum=1
    )
    synthetic_size: int | None = setting(
        None, "synthetic: low-resolution image side", minimum=16
    )


@dataclasses.dataclass
class ModelConfig:
    """`SuperResolutionUNet` arguments (frames and scale come from the data)."""

    scale: int | None = setting(
        None, "expected scale factor (checked against the data)", choices=SCALES
    )
    frames: int | None = setting(
        None, "expected frame count after the frame subset", minimum=1, flag=None
    )
    depth: int = setting(
        2, "U-Net depth (number of 2x poolings)", minimum=0, maximum=6, tunable=True
    )
    filters: int = setting(32, "filters of the first level", minimum=1, tunable=True)
    kernel_size: int = setting(
        3, "convolution kernel size", minimum=1, odd=True, tunable=True
    )
    convs_per_level: int = setting(
        2, "convolutions per U-Net level", minimum=1, tunable=True
    )
    upsampling: str = setting(
        "subpixel",
        "where the grid gets finer (scale > 1): 'subpixel' runs the U-Net on "
        "the camera grid and refines at the end; 'input' interpolates the "
        "frames first and runs it on the output grid (scale^2 the compute)",
        choices=UPSAMPLINGS,
        tunable=True,
    )
    fine_convs: int = setting(
        1,
        "convolutions at the output resolution, after the sub-pixel upsampling",
        minimum=1,
        tunable=True,
    )
    fine_frames: bool = setting(
        True,
        "give the output-resolution convolutions the interpolated raw frames "
        "too (subpixel, scale > 1)",
        tunable=True,
    )
    normalization: str = setting(
        "none", "feature normalization", choices=NORMALIZATIONS, tunable=True
    )
    dropout: float = setting(
        0.0, "spatial dropout in the bottleneck", minimum=0.0, below=1.0, tunable=True
    )
    residual: bool = setting(
        False,
        "add the interpolated frame mean to the output, so the network learns "
        "a correction (off: measured better on the synthetic data sets)",
        tunable=True,
    )
    residual_interpolation: str = setting(
        "bicubic",
        "interpolation of the frames for the residual and the fine frames",
        choices=INTERPOLATIONS,
    )
    percentiles: list[float] = setting(
        [1.0, 99.8],
        "input normalization percentiles LOW,HIGH",
        minimum=0.0,
        maximum=100.0,
        length=2,
        increasing=True,
    )
    test_time_transforms: str = setting(
        "dihedral",
        "prediction averaged over flips and turns of each tile: 'dihedral' "
        "(8 model calls per tile), 'turns' (4), 'half-turn' (2) or 'none'. "
        "Stored with the model; predict and export can override it",
        choices=TEST_TIME_TRANSFORMS,
    )


@dataclasses.dataclass
class TrainConfig:
    """Optimization, tiles and callbacks."""

    tile: int = setting(
        64, "training tile side in input pixels (multiple of 2**depth)", minimum=1
    )
    batch: int = setting(8, "tiles per step (the global batch)", minimum=1)
    epochs: int = setting(12, "epochs of steps_per_epoch steps", minimum=1)
    steps_per_epoch: int = setting(100, "optimizer steps per epoch", minimum=1)
    lr: float = setting(2e-3, "peak learning rate", above=0.0, tunable=True)
    warmup_steps: int = setting(50, "linear warmup steps", minimum=0, tunable=True)
    loss_alpha: float = setting(
        0.84, "SSIM weight in the SSIM-L1 loss", minimum=0.0, maximum=1.0, tunable=True
    )
    pixel_loss: str = setting(
        "l1",
        "the loss's pixel term: 'l1' (absolute) or 'l2' (squared error; with "
        "--loss-alpha 0 the loss is the MSE that PSNR measures)",
        choices=PIXEL_LOSSES,
        tunable=True,
    )
    augment: bool = setting(
        True, "random flips and turns of the tiles (which: --augment-transforms)"
    )
    augment_transforms: str = setting(
        "dihedral",
        "what --augment draws from: 'dihedral' (the 8 flips and quarter turns), "
        "'half-turn' (identity or the 180-degree turn, which keeps every raw "
        "frame's stripe orientation), 'auto' (half-turn for multi-frame "
        "inputs, dihedral for one frame)",
        choices=AUGMENT_TRANSFORMS,
        tunable=True,
    )
    low_light: float = setting(
        1.0,
        "photon-noise augmentation: half the tiles as if taken with 1/k of the "
        "light, k log-uniform in [1, LOW_LIGHT] (1: off)",
        minimum=1.0,
    )
    multiscale_ssim: bool = setting(
        False, "MS-SSIM in the loss (output tiles >= 176 px)"
    )
    min_foreground: float = setting(
        0.05,
        "fraction of a training tile's target that must be signal (random tiles "
        "with that much are kept; the richest ones where too few have it)",
        minimum=0.0,
        maximum=1.0,
    )
    # 16, not 8: each draw decodes and normalizes an image once; measured
    # 858 vs 472 tiles/s during the first (uncached) pass over the data.
    tiles_per_image: int = setting(16, "tiles cut per image draw", minimum=1)
    validation_tiles: int = setting(
        64, "fixed validation tiles scored each epoch", minimum=1
    )
    early_stopping_patience: int = setting(
        6, "epochs without val_loss improvement before stopping (0: never)", minimum=0
    )
    panel_examples: int = setting(
        4, "validation tiles in the TensorBoard image panel", minimum=1
    )
    precision: str = setting(
        "auto",
        "auto (default): mixed_bfloat16 on CPUs with native BF16, mixed_float16 "
        "on GPUs, else float32",
        choices=PRECISIONS,
    )
    seed: int = setting(0, "seed of the tile stream and of the weights", minimum=0)


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
}


def fields(section: str | None = None) -> Iterator[Field]:
    """Every config field (of one section), with its type and `Setting`."""
    for name, cls in SECTIONS.items():
        if section not in (None, name):
            continue
        yield from class_fields(name, cls)


def field(key: str) -> Field:
    """The field `section.name`."""
    section, _, name = key.partition(".")
    for found in fields(section):
        if found.name == name:
            return found
    raise KeyError(key)


def tunable_settings() -> dict[str, Field]:
    """The fields a hyperparameter search may vary, by name."""
    return {f.name: f for f in fields() if f.spec.tunable}


@dataclasses.dataclass
class FitConfig:
    """Everything a `keras-unet-sr fit` run needs."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Any, origin: str = "config") -> FitConfig:
        """Build from nested dicts, validating every key's type and range.

        Raises:
            UserError: one line naming `origin`, the key and the allowed values.
        """
        if not isinstance(values, dict):
            raise UserError(f"{origin}: not a keras-unet-sr config (not an object)")
        unknown = set(values) - set(SECTIONS)
        if unknown:
            raise UserError(
                f"{origin}: unknown section(s) {sorted(unknown)}; "
                f"expected {sorted(SECTIONS)}"
            )
        built = {}
        for name, section_cls in SECTIONS.items():
            section = values.get(name, {})
            if not isinstance(section, dict):
                raise UserError(f"{origin}: '{name}' must be an object")
            known = {f.name: f for f in fields(name)}
            extra = set(section) - set(known)
            if extra:
                raise UserError(f"{origin}: unknown key(s) {sorted(extra)} in '{name}'")
            checked = {
                key: check_value(known[key], raw, origin)
                for key, raw in section.items()
            }
            built[name] = section_cls(**checked)
        return cls(**built)

    def copy(self) -> FitConfig:
        return FitConfig.from_dict(self.to_dict())


def check_value(found: Field, raw: Any, origin: str | None = None) -> Any:
    """`raw` converted and checked for `found`; a one-line `UserError` if not.

    Args:
        found: The field.
        raw: A JSON value or a flag's text.
        origin: The file the value comes from; `None` for a command-line flag.
    """
    try:
        return found.check(raw)
    except ValueError as error:
        where = f"{origin}: {found.key}" if origin else (found.flag or found.key)
        raise UserError(f"{where}: {error}") from None


def set_value(config: FitConfig, key: str, raw: Any, origin: str | None = None) -> None:
    """Set `section.name` in `config` to a checked value."""
    found = field(key)
    setattr(getattr(config, found.section), found.name, check_value(found, raw, origin))


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
    """Read and validate a `config.json` written by `fit` (or `tune`'s best config)."""
    return FitConfig.from_dict(read_json(path, str(path), "config"), origin=str(path))


def save_config(config: FitConfig, path: str | os.PathLike) -> None:
    """Write `config` as JSON, atomically."""
    write_json(path, config.to_dict())


def smoke(config: FitConfig) -> FitConfig:
    """Shrink a config to a seconds-long run (tests, CI, trying a setup)."""
    config = config.copy()
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
