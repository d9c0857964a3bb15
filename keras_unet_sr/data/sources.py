"""Resolving `--data` into a prepared TFDS builder of paired images.

`synthetic:<config>` is the generated `microscopy_sr` config, a folder is the
user's paired TIFFs (`microscopy_sr` with `manual_dir`), anything else is a
TFDS name whose examples have `low` and `high` features (or supervised keys).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import tensorflow as tf
import tensorflow_datasets as tfds

from keras_unet_sr.config import SCALES, DataConfig
from keras_unet_sr.data import pairs as image_pairs
from keras_unet_sr.datasets.microscopy_sr import microscopy_sr_dataset_builder as msr
from keras_unet_sr.datasets.microscopy_sr import simulation
from keras_unet_sr.errors import UserError

SYNTHETIC_PREFIX = "synthetic:"


@dataclasses.dataclass
class PairedImages:
    """A prepared dataset of `(low, high)` image pairs.

    Attributes:
        description: What the data is, for logs.
        builder: The prepared TFDS builder.
        frames: Frames per stored low image (before any frame subset).
        scale: High/low size ratio.
        low_key: Feature holding the low image.
        high_key: Feature holding the high image.
    """

    description: str
    builder: tfds.core.DatasetBuilder
    frames: int
    scale: int
    low_key: str = "low"
    high_key: str = "high"

    @property
    def splits(self) -> list[str]:
        return list(self.builder.info.splits)

    def split_or_fallback(self, wanted: str, fallback: str = "train") -> str:
        """`wanted` if the data has it, else `fallback` (with a warning)."""
        if wanted in self.builder.info.splits:
            return wanted
        logging.warning(
            "%s has no '%s' split; using '%s' instead",
            self.description,
            wanted,
            fallback,
        )
        return fallback

    def images(self, split: str) -> tf.data.Dataset:
        """`(low (H, W, F), high (sH, sW, C), offset (2,), camera (3,))`
        float32 of one split; `offset` moves the target onto the input grid
        (zero when the data set does not record one), `camera` is the raw
        frames' `(offset, gain, read noise)` (NaN when unknown)."""
        low_key, high_key = self.low_key, self.high_key
        dataset = self.builder.as_dataset(split=split, shuffle_files=False)

        def unpack(example):
            offset = example.get("offset", tf.zeros(2))
            # NaN: unknown camera (the config must then give it, to add noise).
            camera = example.get("camera", tf.fill([3], float("nan")))
            return (
                _hwc(tf.cast(example[low_key], tf.float32)),
                _hwc(tf.cast(example[high_key], tf.float32)),
                tf.cast(offset, tf.float32),
                tf.cast(camera, tf.float32),
            )

        return dataset.map(unpack, num_parallel_calls=tf.data.AUTOTUNE)

    @property
    def validation_strips(self) -> bool:
        """Whether the validation split holds strips of the training images."""
        return (self.builder.info.metadata or {}).get("validation") == "strips"

    @property
    def has_camera(self) -> bool:
        """Whether examples carry the raw frames' estimated camera noise model."""
        return "camera" in self.builder.info.features

    def offsets(self) -> dict[str, list[float]]:
        """Each paired image's estimated target offset `(dy, dx)`, target px."""
        return dict((self.builder.info.metadata or {}).get("offsets", {}))

    def named_images(self, split: str):
        """Iterate `(name, low, high)` numpy triples of one split."""
        dataset = self.builder.as_dataset(split=split, shuffle_files=False)
        for index, example in enumerate(tfds.as_numpy(dataset)):
            name = example.get("name", f"{split}_{index:05d}")
            if isinstance(name, bytes):
                name = name.decode()
            low = _hwc_numpy(example[self.low_key])
            yield name, low, _hwc_numpy(example[self.high_key])


def _hwc(image: tf.Tensor) -> tf.Tensor:
    return image[..., tf.newaxis] if image.shape.rank == 2 else image


def _hwc_numpy(image):
    return image[..., None] if image.ndim == 2 else image.astype("float32")


def _check_utf8(folder: Path) -> None:
    """TensorFlow opens files by UTF-8 names; a folder whose name is not
    UTF-8 (bytes from another system's encoding) cannot be read by it."""
    try:
        str(folder.resolve()).encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(
            f"{os.fsencode(folder)!r}: the folder's path is not valid UTF-8, which "
            "TensorFlow needs; rename it"
        ) from None


def load_paired_images(config: DataConfig) -> PairedImages:
    """Prepare (generate, convert or reuse) the data a config names."""
    source = config.source
    if source.startswith(SYNTHETIC_PREFIX):
        builder = _synthetic_builder(source[len(SYNTHETIC_PREFIX) :], config)
        description = source
        download_config = None
    elif Path(source).expanduser().exists():
        folder = Path(source).expanduser()
        _check_utf8(folder)
        _check_pair_folder(folder)
        builder = msr.Builder(
            config=msr.paired_tiff_config(
                str(folder),
                validation_names=config.validation_names,
                test_names=config.test_names,
            ),
            data_dir=config.data_dir,
        )
        description = f"paired TIFFs in {folder}"
        download_config = tfds.download.DownloadConfig(manual_dir=str(folder))
    else:
        try:
            builder = tfds.builder(source, data_dir=config.data_dir)
        except (tfds.core.registered.DatasetNotFoundError, ValueError) as error:
            what = "no such folder" if _looks_like_path(source) else "unknown data"
            raise UserError(
                f"--data {source}: {what}; expected a folder with low/ and high/, "
                f"synthetic:<config> ({', '.join(simulation.MODALITIES)}) or a "
                "TFDS dataset name"
            ) from error
        description = f"TFDS {source}"
        download_config = None
    _prepare(builder, download_config)
    return _describe(builder, description)


def _prepare(builder: tfds.core.DatasetBuilder, download_config) -> None:
    """`download_and_prepare`, tolerating another process (e.g. the other
    workers of a multi-worker run) finishing the same data dir first: TFDS
    writes aside and renames, so the loser's rename fails on existing data."""
    try:
        builder.download_and_prepare(download_config=download_config)
    except (OSError, tf.errors.OpError):
        ready = tf.io.gfile.exists(f"{builder.data_dir}/dataset_info.json")
        if not ready:
            raise
        logging.info("%s was prepared by another process", builder.data_dir)


def _looks_like_path(source: str) -> bool:
    return source.startswith((".", "~", os.sep)) or source.count("/") > 1


def _synthetic_builder(name: str, config: DataConfig) -> tfds.core.DatasetBuilder:
    if name not in simulation.MODALITIES:
        raise UserError(
            f"--data synthetic:{name}: unknown synthetic config; choose one of "
            + ", ".join(simulation.MODALITIES)
        )
    if config.synthetic_images is None and config.synthetic_size is None:
        return msr.Builder(config=name, data_dir=config.data_dir)
    base = msr.MicroscopySRConfig(name=name, source="synthetic", modality=name)
    images = config.synthetic_images or base.num_examples["train"]
    size = config.synthetic_size or base.low_size
    shrunk = msr.MicroscopySRConfig(
        name=f"{name}_n{images}_s{size}",
        source="synthetic",
        modality=name,
        low_size=size,
        num_examples={
            "train": images,
            "validation": max(2, images // 4),
            "test": max(1, images // 8),
        },
        description=f"{name} with {images} training images of {size} px",
    )
    return msr.Builder(config=shrunk, data_dir=config.data_dir)


def _check_pair_folder(folder: Path) -> None:
    """Fail with one clear line before TFDS sees a bad folder."""
    if not folder.is_dir():
        raise UserError(
            f"{folder}: is a file; --data expects a folder with low/ and high/"
        )
    for root in (folder / "train", folder / "test"):
        if root.is_dir():
            image_pairs.find_pairs(root)
    if not (folder / "train").is_dir():
        image_pairs.find_pairs(folder)


def _describe(builder: tfds.core.DatasetBuilder, description: str) -> PairedImages:
    metadata = builder.info.metadata or {}
    features = builder.info.features
    keys = ("low", "high")
    if not all(k in features for k in keys):
        if builder.info.supervised_keys is None:
            raise UserError(
                f"{description}: needs 'low' and 'high' features or supervised keys"
            )
        keys = builder.info.supervised_keys
    if "frames" in metadata and "scale" in metadata:
        frames, scale = int(metadata["frames"]), int(metadata["scale"])
    else:
        split = next(iter(builder.info.splits))
        example = next(iter(tfds.as_numpy(builder.as_dataset(split=split).take(1))))
        low, high = _hwc_numpy(example[keys[0]]), _hwc_numpy(example[keys[1]])
        frames = low.shape[-1]
        scale = image_pairs.infer_scale(low, high, description)
    if scale not in SCALES:  # a set prepared before scales were checked
        raise UserError(
            f"{description}: prepared with scale {scale}; the U-Net upsamples by "
            f"{', '.join(map(str, SCALES))}"
        )
    return PairedImages(description, builder, frames, scale, *keys)
