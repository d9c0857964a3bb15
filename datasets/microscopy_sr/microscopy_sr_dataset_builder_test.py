"""Declarative TFDS tests of the microscopy_sr builder (run from tests/)."""

from pathlib import Path

import tensorflow_datasets as tfds

from . import microscopy_sr_dataset_builder as builder_module

# Explicit, because TFDS infers it from the top-level package's location.
DUMMY_DATA = str(Path(__file__).parent / "dummy_data")


class MicroscopySRPairedTiffTest(tfds.testing.DatasetBuilderTestCase):
    """`paired_tiff` on `dummy_data/` (6 pairs of 5-frame 12x16 -> 24x32): each
    pair trains on its training crop and validates on its strip."""

    DATASET_CLASS = builder_module.Builder
    EXAMPLE_DIR = DUMMY_DATA
    BUILDER_CONFIG_NAMES_TO_TEST = ["paired_tiff"]
    SPLITS = {"train": 6, "validation": 6}  # fewer than 8 pairs: validation strips


class MicroscopySRSyntheticTest(tfds.testing.DatasetBuilderTestCase):
    """Every synthetic modality, shrunk to a few 32-pixel images."""

    DATASET_CLASS = builder_module.Builder
    EXAMPLE_DIR = DUMMY_DATA
    BUILDER_CONFIG_NAMES_TO_TEST = [
        builder_module.MicroscopySRConfig(
            name=f"{modality}_small",
            source="synthetic",
            modality=modality,
            low_size=32,
            num_examples={"train": 3, "validation": 2, "test": 1},
            description=f"{modality}, shrunk for tests",
        )
        for modality in ("sim9", "sim3", "confocal", "widefield")
    ]
    SPLITS = {"train": 3, "validation": 2, "test": 1}
