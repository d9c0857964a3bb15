"""Low/high TIFF pairs matched by file name: finding, reading and checking them.

Every problem becomes a one-line `UserError` that starts with the file's path.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from keras_unet_sr.config import SCALES
from keras_unet_sr.data.frames import take_frames
from keras_unet_sr.errors import UserError
from keras_unet_sr.files.tiff_io import (
    list_tiffs,
    read_frames,
    read_tiff,
    unreadable_tiff_entries,
)


@dataclasses.dataclass(frozen=True)
class ImagePair:
    """A low/high TIFF pair matched by file name."""

    name: str
    low: Path
    high: Path


def find_pairs(folder: str | os.PathLike) -> list[ImagePair]:
    """Match `folder/low/*.tif` with `folder/high/*.tif` by file name.

    Raises:
        UserError: missing folders, no images, or an image without partner.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder")
    subfolders = {name: folder / name for name in ("low", "high")}
    for name, sub in subfolders.items():
        if not sub.is_dir():
            raise UserError(
                f"{folder}: expected subfolders low/ and high/ with TIFFs "
                f"matched by file name; {name}/ is missing"
            )
    # Training on silently fewer images is worse than stopping: name the first.
    skipped = [e for sub in subfolders.values() for e in unreadable_tiff_entries(sub)]
    if skipped:
        (entry, why), more = skipped[0], len(skipped) - 1
        raise UserError(
            f"{entry}: cannot be read: {why}" + (f" (and {more} more)" if more else "")
        )
    low = {p.stem: p for p in list_tiffs(subfolders["low"])}
    high = {p.stem: p for p in list_tiffs(subfolders["high"])}
    if not low and not high:
        raise UserError(f"{folder}: low/ and high/ contain no .tif/.tiff files")
    for path in [*low.values(), *high.values()]:
        try:
            path.name.encode("utf-8")
        except UnicodeEncodeError:  # TensorFlow and TFDS need UTF-8 names
            raise UserError(
                f"{os.fsencode(path)!r}: the file name is not valid UTF-8; rename it"
            ) from None
    for mine, theirs, side, other in (
        (low, high, "low", "high"),
        (high, low, "high", "low"),
    ):
        orphans = sorted(set(mine) - set(theirs))
        if orphans:
            raise UserError(
                f"{mine[orphans[0]]}: has no {other}/ partner of the same name"
                + (
                    f" (and {len(orphans) - 1} more {side} image(s))"
                    if len(orphans) > 1
                    else ""
                )
            )
    return [ImagePair(name, low[name], high[name]) for name in sorted(low)]


def infer_scale(low: np.ndarray, high: np.ndarray, pair_name: str) -> int:
    """Integer scale between `(H, W, F)` low and `(sH, sW, C)` high images."""
    (h, w), (hh, hw) = low.shape[:2], high.shape[:2]
    if hh % h or hw % w or hh // h != hw // w:
        raise UserError(
            f"{pair_name}: high image {hh}x{hw} is not an integer multiple "
            f"of the low image {h}x{w}"
        )
    if hh // h not in SCALES:
        raise UserError(
            f"{pair_name}: high image {hh}x{hw} is {hh // h}x the low image "
            f"{h}x{w}; the U-Net upsamples by {', '.join(map(str, SCALES))}"
        )
    return hh // h


def load_pair(
    pair: ImagePair, frames: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Read and check one pair: `(low (H, W, F), high (sH, sW, 1), scale)`."""
    low = take_frames(read_frames(pair.low), frames, pair.low)
    high = read_tiff(pair.high)
    if high.ndim != 2:
        raise UserError(
            f"{pair.high}: a high (target) image must be 2-D (H, W), "
            f"got shape {high.shape}"
        )
    scale = infer_scale(low, high[..., np.newaxis], str(pair.high))
    return low, high[..., np.newaxis], scale
