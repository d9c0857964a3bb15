"""Where a bioimage.io package's sample and descriptions come from: the
user's raw image (or a simulated one of the model's modality) and the run
folder next to the model file."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from keras_unet_sr.data.frames import check_model_frames, frames_needed, take_frames
from keras_unet_sr.errors import UserError
from keras_unet_sr.files import tiff_io

# Input side of a simulated sample, in camera pixels.
SIMULATED_SIDE = 128

# The method papers the architecture and the recipe follow.
DEFAULT_CITES = (
    (
        "Ronneberger et al., U-Net: Convolutional Networks for Biomedical "
        "Image Segmentation, MICCAI 2015",
        "10.1007/978-3-319-24574-4_28",
    ),
    (
        "Weigert et al., Content-aware image restoration: pushing the limits "
        "of fluorescence microscopy, Nature Methods 2018",
        "10.1038/s41592-018-0216-7",
    ),
)
DEFAULT_LICENSE = "CC-BY-4.0"


@dataclasses.dataclass(frozen=True)
class PackageInfo:
    """What a package says about itself beyond the model (from the flags).

    Attributes:
        name: Model name (5-128 letters, digits, `_+- ()`).
        description: One or two sentences.
        authors: `"Name"` or `"Name <email>"` each.
        license: SPDX identifier.
        cites: `(text, doi_or_url)` pairs.
        pixel_size_nm: Input pixel size, when known (axes get units).
        training_data: A sentence on the data the model was trained on.
        run: The run folder's `config`/`data`/`metrics` JSON, where found.
    """

    name: str
    description: str
    authors: Sequence[str] = ()
    license: str = DEFAULT_LICENSE
    cites: Sequence[tuple[str, str]] = DEFAULT_CITES
    pixel_size_nm: float | None = None
    training_data: str = ""
    run: dict = dataclasses.field(default_factory=dict)


def parse_cite(text: str) -> tuple[str, str]:
    """`"TEXT;DOI-or-URL"` -> `(text, doi_or_url)`, or one line naming the flag."""
    text_part, _, link = text.rpartition(";")
    if not text_part.strip() or not link.strip():
        raise UserError(
            f"--cite {text!r}: give TEXT;DOI or TEXT;URL (e.g. "
            "'Doe et al. 2026;10.1000/xyz')"
        )
    return text_part.strip(), link.strip()


def _simulated_raw(model) -> np.ndarray:
    """A raw `(H, W, F)` stack of the simulated modality with the model's
    frame count (the raw stack's, for a frame-subset model) and scale."""
    from keras_unet_sr.datasets.microscopy_sr.simulation import (
        MODALITIES,
        simulate_pair,
    )

    frames = frames_needed(model.frame_subset) or model.frames
    for name, modality in MODALITIES.items():
        if (
            modality.frames >= frames
            and modality.scale == model.scale
            and (model.frame_subset or modality.frames == model.frames)
        ):
            low, _ = simulate_pair(name, seed=(2026, 0), low_size=SIMULATED_SIDE)
            return np.moveaxis(low, 0, -1)
    raise UserError(
        f"no simulated modality has {model.frames} frame(s) at scale "
        f"{model.scale}; give a raw image of yours with --sample FILE.tif"
    )


def sample_image(
    model, path: str | os.PathLike | None = None, axes: str | None = None
) -> np.ndarray:
    """The package's sample as the `(H, W, F)` frames the model reads.

    Args:
        model: The model.
        path: A raw TIFF (read with its axes, as `predict` does); `None`
            simulates one.
        axes: Axes of `path` (e.g. `YXC`) when its metadata has none.
    """
    if path is None:
        image, where = _simulated_raw(model), "the simulated sample"
    else:
        image, where = tiff_io.read_frames(path, axes), path
    check_model_frames(image, model.frames, model.frame_subset, where)
    if image.shape[-1] != model.frames:
        image = take_frames(image, model.frame_subset, where)
    return image


def training_data_text(run: dict) -> str:
    """One sentence on the training data, from the run's config and data."""
    config = run.get("config", {})
    source = config.get("data", {}).get("source")
    prepared = run.get("data", {}).get("prepared")
    if not source:
        return ""
    if source.startswith("synthetic:"):
        text = (
            f"Simulated `{source.split(':', 1)[1]}` image pairs from "
            "keras-unet-sr's microscope simulator (camera noise, out-of-focus "
            "haze, illumination patterns); see the dataset's README."
        )
    elif Path(source).name:
        text = f"Paired raw/super-resolved TIFFs from the folder `{Path(source).name}`."
    else:
        text = f"The TFDS data set `{source}`."
    return text + (f" Prepared data set: `{prepared}`." if prepared else "")


def default_name(model) -> str:
    """A zoo-valid name saying what the model does."""
    return f"keras-unet-sr {model.frames}-frame x{model.scale} super-resolution"
