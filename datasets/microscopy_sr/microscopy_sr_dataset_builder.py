"""microscopy_sr: paired low/high-resolution fluorescence microscopy images.

Configs:

* `sim9`, `sim3`, `confocal`, `widefield`: generated on the fly by
  `simulation.py` (no downloads, deterministic by seed).
* `paired_tiff`: the user's own TIFF pairs from `manual_dir` (`low/` and
  `high/` matched by file name, or `train/` and `test/` subfolders that each
  hold such a pair of folders). Use `paired_tiff_config()` for a frame subset,
  split fractions or named validation/test images.

Every example holds `low` `(H, W, frames)` float32 (raw camera values, not
normalized), `high` `(scale*H, scale*W, 1)` float32, the image `name`,
`camera`, the `(offset, gain, read noise)` estimated from the raw frames
(`keras_unet_sr.data.camera`), and `offset`, the `(dy, dx)` in target pixels
that moves the target onto the input's grid (sub-pixel cross-correlation,
`keras_unet_sr.quality.registration`; zero for the synthetic configs, which
are registered by construction).
`info.metadata` records `frames`, `scale` and, for paired TIFFs, each image's
offset. A folder of fewer than `regions.MIN_IMAGES_TO_SPLIT` pairs (without
named validation images) validates on a border strip of every image instead of
on whole images (`keras_unet_sr.data.regions`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from keras_unet_sr.data import pairs as image_pairs
from keras_unet_sr.data import regions
from keras_unet_sr.data.camera import estimate_camera_noise
from keras_unet_sr.errors import UserError
from keras_unet_sr.files import fingerprint, tiff_io
from keras_unet_sr.progress import track
from keras_unet_sr.quality.registration import WARN_SHIFT_PIXELS, pair_offset

from . import simulation

_SYNTHETIC_COUNTS = {"train": 240, "validation": 16, "test": 16}


@dataclasses.dataclass(eq=False)
class MicroscopySRConfig(tfds.core.BuilderConfig):
    """Config of `microscopy_sr`.

    Attributes:
        source: `"synthetic"` or `"paired_tiff"`.
        modality: Synthetic modality (a key of `simulation.MODALITIES`).
        low_size: Side of the synthetic low-resolution images.
        num_examples: Synthetic images per split.
        seed: Seed of the synthetic data and of the paired-TIFF split.
        frame_subset: Paired TIFFs: frames to keep (e.g. `(0, 5, 10)`).
        validation_fraction: Paired TIFFs: share of images for validation.
        test_fraction: Paired TIFFs: share of images for testing.
        validation_names: Paired TIFFs: these images (file stems) validate.
        test_names: Paired TIFFs: these images test.
    """

    source: str = "synthetic"
    modality: str = ""
    low_size: int = 128
    num_examples: dict[str, int] = dataclasses.field(
        default_factory=lambda: dict(_SYNTHETIC_COUNTS)
    )
    seed: int = 0
    frame_subset: tuple[int, ...] | None = None
    validation_fraction: float = 0.15
    test_fraction: float = 0.15
    validation_names: tuple[str, ...] = ()
    test_names: tuple[str, ...] = ()


def _synthetic_config(modality: str) -> MicroscopySRConfig:
    spec = simulation.MODALITIES[modality]
    return MicroscopySRConfig(
        name=modality,
        source="synthetic",
        modality=modality,
        description=f"Synthetic, generated: {spec.description}",
    )


def paired_tiff_config(
    manual_dir: str,
    frame_subset: Sequence[int] | None = None,
    validation_fraction: float = 0.15,
    test_fraction: float = 0.15,
    validation_names: Sequence[str] = (),
    test_names: Sequence[str] = (),
    seed: int = 0,
) -> MicroscopySRConfig:
    """A paired-TIFF config whose name fingerprints the folder and options.

    TFDS caches prepared data by config name, so the name changes when the
    folder, its TIFFs' names or contents (`keras_unet_sr.files.fingerprint`,
    links to folders followed) or the options do.
    """
    root = Path(manual_dir).expanduser().resolve()
    files = fingerprint.walk_files(root, tiff_io.is_tiff_name)
    options = (
        str(root),
        fingerprint.fingerprint(root, files),
        frame_subset,
        validation_fraction,
        test_fraction,
        tuple(validation_names),
        tuple(test_names),
        seed,
    )
    digest = hashlib.sha1(repr(options).encode()).hexdigest()[:12]
    return MicroscopySRConfig(
        name=f"paired_tiff_{digest}",
        source="paired_tiff",
        description=f"Paired TIFFs from {root}",
        frame_subset=None if frame_subset is None else tuple(frame_subset),
        validation_fraction=validation_fraction,
        test_fraction=test_fraction,
        validation_names=tuple(validation_names),
        test_names=tuple(test_names),
        seed=seed,
    )


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for paired low/high-resolution microscopy images."""

    # TFDS would locate README/CITATIONS/TAGS from the top-level package,
    # which is wrong when setuptools maps datasets/ into keras_unet_sr.
    pkg_dir_path = epath.Path(__file__).parent
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release.",
        "1.1.0": "Per-pair target offset; validation strips for small folders.",
    }
    BUILDER_CONFIGS = [
        *(_synthetic_config(m) for m in ("sim9", "sim3", "confocal", "widefield")),
        MicroscopySRConfig(
            name="paired_tiff",
            source="paired_tiff",
            description="The user's own paired TIFFs (manual_dir).",
        ),
    ]
    DEFAULT_CONFIG_NAME = "sim9"
    #: The config a --manual-dir folder replaces by its fingerprinted one, so
    #: two folders never share one prepared set (`datasets.build`).
    MANUAL_CONFIG_NAME = "paired_tiff"

    @staticmethod
    def config_for_manual_dir(manual_dir: str) -> MicroscopySRConfig:
        return paired_tiff_config(manual_dir)

    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Only for the paired_tiff configs. Put TIFF pairs matched by file name in
    `manual_dir/low/` (an (H, W) image or a (frames, H, W) stack of raw frames,
    any integer or float type) and `manual_dir/high/` (the (s*H, s*W) target),
    or such low/ and high/ folders under `manual_dir/train/` and
    `manual_dir/test/`. Pass `download_config=tfds.download.DownloadConfig(
    manual_dir=...)` or use `keras-unet-sr fit --data FOLDER`.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        frames = None
        metadata = tfds.core.MetadataDict()
        if config.source == "synthetic":
            spec = simulation.MODALITIES[config.modality]
            frames = spec.frames
            metadata.update(frames=spec.frames, scale=spec.scale)
        elif config.frame_subset is not None:
            frames = len(config.frame_subset)
        image = dict(dtype=np.float32, encoding=tfds.features.Encoding.ZLIB)
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "name": tfds.features.Text(),
                    "low": tfds.features.Tensor(shape=(None, None, frames), **image),
                    "high": tfds.features.Tensor(shape=(None, None, 1), **image),
                    "offset": tfds.features.Tensor(shape=(2,), dtype=np.float32),
                    "camera": tfds.features.Tensor(shape=(3,), dtype=np.float32),
                }
            ),
            supervised_keys=("low", "high"),
            homepage="https://github.com/keras-unet-sr/keras-unet-sr",
            metadata=metadata,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        config = self.builder_config
        if config.source == "synthetic":
            return {
                split: self._generate_examples(synthetic=(index, count))
                for index, (split, count) in enumerate(config.num_examples.items())
            }
        splits = _split_pairs(Path(dl_manager.manual_dir), config)
        first = next(pair for pairs, _ in splits.values() for pair in pairs)
        low, _, scale = image_pairs.load_pair(first, config.frame_subset)
        self.info.metadata.update(frames=int(low.shape[-1]), scale=int(scale))
        self.info.metadata["offsets"] = {}
        strips = splits.get("validation", (None, None))[1] == "validation"
        self.info.metadata["validation"] = "strips" if strips else "images"
        reference = (first, low.shape[-1], scale)
        return {
            split: self._generate_examples(pairs=(pairs, part), reference=reference)
            for split, (pairs, part) in splits.items()
        }

    def _generate_examples(self, synthetic=None, pairs=None, reference=None):
        """Yields `(key, example)`: generated, or read from TIFF pairs (checked
        against the `reference` pair's frame count and scale)."""
        if synthetic is not None:
            yield from self._generate_synthetic(*synthetic)
        else:
            yield from self._generate_pairs(*pairs, *reference)

    def _generate_synthetic(self, split_index: int, count: int):
        config = self.builder_config
        for i in track(range(count), "simulate", unit="pair", bar=False):
            low, high = simulation.simulate_pair(
                config.modality,
                seed=(config.seed, split_index, i),
                low_size=config.low_size,
            )
            yield (
                f"{split_index}_{i:06d}",
                {
                    "name": f"{config.modality}_{split_index}_{i:06d}",
                    "low": np.moveaxis(low, 0, -1).astype(np.float32),
                    "high": high[..., np.newaxis].astype(np.float32),
                    "offset": np.zeros(2, np.float32),
                    "camera": estimate_camera_noise(np.moveaxis(low, 0, -1)).as_array(),
                },
            )

    def _generate_pairs(self, pairs, part, reference, frames: int, scale: int):
        """Whole pairs (`part` None), or their training crops or validation
        strips (`part` "train" / "validation")."""
        subset = self.builder_config.frame_subset
        # TFDS shows its own bar on a terminal; this adds the lines of a log.
        for pair in track(pairs, f"prepare {part or 'images'}", unit="pair", bar=False):
            low, high, pair_scale = image_pairs.load_pair(pair, subset)
            if low.shape[-1] != frames:
                raise UserError(
                    f"{pair.low}: has {low.shape[-1]} frame(s), but {reference.low} "
                    f"has {frames}; all low images need the same frame count"
                )
            if pair_scale != scale:
                raise UserError(
                    f"{pair.high}: scale {pair_scale}, but {reference.high} has "
                    f"scale {scale}; all pairs need the same scale"
                )
            offset = self._offset(pair, low, high, scale)
            camera = estimate_camera_noise(low).as_array()  # the whole image
            if part is not None:
                try:
                    strip = regions.choose_strip(high, scale, low.shape[:2])
                except ValueError as error:
                    raise UserError(f"{pair.low}: {error}") from error
                low = strip.split(low)[part == "validation"]
                high = strip.split(high, scale)[part == "validation"]
            yield (
                pair.name,
                {
                    "name": pair.name,
                    "low": low.astype(np.float32),
                    "high": high.astype(np.float32),
                    "offset": np.asarray(offset, np.float32),
                    "camera": camera,
                },
            )

    def _offset(self, pair, low, high, scale: int) -> tuple[float, float]:
        """The pair's target offset, estimated once and reported."""
        known = self.info.metadata["offsets"]
        if pair.name not in known:
            dy, dx = pair_offset(low, high, scale)
            known[pair.name] = [round(dy, 3), round(dx, 3)]
            if max(abs(dy), abs(dx)) > WARN_SHIFT_PIXELS:
                logging.warning(
                    "%s: the target sits (%.2f, %.2f) px from the input frames; "
                    "fit --register aligns it",
                    pair.high,
                    dy,
                    dx,
                )
        return tuple(known[pair.name])


def _split_pairs(
    root: Path, config: MicroscopySRConfig
) -> dict[str, list[image_pairs.ImagePair]]:
    """Deterministic train/validation/test split of the pairs under `root`:
    `{split: (pairs, part)}`, `part` naming the region of each image (None:
    whole images)."""
    if (root / "train").is_dir():
        pairs = image_pairs.find_pairs(root / "train")
        test = image_pairs.find_pairs(root / "test") if (root / "test").is_dir() else []
        test_fraction = 0.0
    else:
        pairs, test, test_fraction = image_pairs.find_pairs(root), [], None
    named = config.validation_names or config.test_names
    if len(pairs) < regions.MIN_IMAGES_TO_SPLIT and not named:
        # Few images: all of them train, on all but a strip that validates.
        splits = {
            "train": (pairs, "train"),
            "validation": (pairs, "validation"),
            "test": (test, None),
        }
    else:
        fraction = config.test_fraction if test_fraction is None else test_fraction
        train, validation, held = _assign(pairs, config, fraction)
        splits = {
            "train": (train, None),
            "validation": (validation, None),
            "test": (test or held, None),
        }
    # TFDS cannot write an empty split; the pipeline falls back to train.
    return {name: split for name, split in splits.items() if split[0]}


def _assign(pairs, config: MicroscopySRConfig, test_fraction: float):
    names = {p.name for p in pairs}
    for wanted in (*config.validation_names, *config.test_names):
        if wanted not in names:
            raise UserError(
                f"{wanted}: no image of that name (have: {', '.join(sorted(names))})"
            )
    # Hash order: adding an image does not reshuffle the others' splits.
    ordered = sorted(
        pairs,
        key=lambda p: hashlib.sha1(f"{config.seed}:{p.name}".encode()).hexdigest(),
    )
    validation = [p for p in ordered if p.name in config.validation_names]
    test = [p for p in ordered if p.name in config.test_names]
    rest = [p for p in ordered if p not in validation and p not in test]
    if not config.validation_names and not config.test_names:
        n = len(rest)
        n_test = round(n * test_fraction)
        n_val = max(1, round(n * config.validation_fraction)) if n >= 2 else 0
        while n_test and n - n_val - n_test < 1:
            n_test -= 1
        test, validation, rest = (
            rest[:n_test],
            rest[n_test : n_test + n_val],
            rest[n_test + n_val :],
        )
    if not rest:
        raise UserError("no images left for training after the validation/test split")
    return sorted(rest, key=lambda p: p.name), validation, test
