"""Runs the TFDS builder's declarative tests, which ship beside the builder."""

from keras_unet_sr.datasets.microscopy_sr.microscopy_sr_dataset_builder_test import (
    MicroscopySRPairedTiffTest,
    MicroscopySRSyntheticTest,
)

__all__ = ["MicroscopySRPairedTiffTest", "MicroscopySRSyntheticTest"]
