"""microscopy_sr: paired low/high-resolution fluorescence microscopy (TFDS)."""

from .microscopy_sr_dataset_builder import (
    Builder,
    MicroscopySRConfig,
    paired_tiff_config,
)

# The TFDS-style class name; TFDS itself registers `Builder` as "microscopy_sr".
MicroscopySR = Builder

__all__ = ["Builder", "MicroscopySR", "MicroscopySRConfig", "paired_tiff_config"]
