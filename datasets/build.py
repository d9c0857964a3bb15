"""Prepare a TFDS dataset from its folder or name, the way `tfds build` does.

The `tfds` command line imports apache-beam at start-up; this does the same
job with `download_and_prepare` only, so the package never needs beam.
"""

from __future__ import annotations

import os
from pathlib import Path

import tensorflow_datasets as tfds

from keras_unet_sr.errors import UserError


def builder_class(dataset: str) -> type[tfds.core.DatasetBuilder]:
    """The builder class of a dataset folder (`<name>/<name>_dataset_builder.py`)
    or of a registered dataset name."""
    path = Path(dataset).expanduser()
    if path.is_dir():
        module = path.resolve() / f"{path.resolve().name}_dataset_builder.py"
        if not module.is_file():
            raise UserError(f"{path}: no {module.name} in this dataset folder")
        # Like `tfds build`: import as `<name>.<name>_dataset_builder` from
        # the parent folder, so the builder's relative imports work.
        with tfds.core.utils.add_sys_path(module.parent.parent):
            return tfds.core.community.builder_cls_from_module(
                f"{module.parent.name}.{module.stem}"
            )
    try:
        return tfds.builder_cls(dataset)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise UserError(
            f"{dataset}: neither a dataset folder nor a TFDS name"
        ) from error


def build_dataset(
    dataset: str,
    config: str | None = None,
    data_dir: str | os.PathLike | None = None,
    manual_dir: str | os.PathLike | None = None,
) -> tfds.core.DatasetBuilder:
    """Generate and write a dataset; returns the prepared builder."""
    if "/" in dataset and not Path(dataset).expanduser().exists() and config is None:
        dataset, config = dataset.split("/", 1)
    cls = builder_class(dataset)
    names = [c.name for c in cls.BUILDER_CONFIGS]
    if config is not None and names and config not in names:
        raise UserError(f"--config {config}: choose one of {', '.join(names)}")
    download_config = None
    if manual_dir is not None:
        if not Path(manual_dir).is_dir():
            raise UserError(f"{manual_dir}: --manual-dir is not a folder")
        download_config = tfds.download.DownloadConfig(manual_dir=str(manual_dir))
        # A fixed config name would let another folder reuse this prepared set.
        if config is not None and config == getattr(cls, "MANUAL_CONFIG_NAME", None):
            config = cls.config_for_manual_dir(str(manual_dir))
    builder = cls(config=config, data_dir=None if data_dir is None else str(data_dir))
    builder.download_and_prepare(download_config=download_config)
    return builder
