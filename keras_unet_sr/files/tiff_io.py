"""Reading, checking and atomically writing microscopy TIFFs, and pairing them.

Every problem with a file becomes a one-line `UserError` that starts with the
file's path, so a facility running thousands of files learns which one is
bad and why.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import tifffile

from keras_unet_sr.errors import UserError

TIFF_SUFFIXES = (".tif", ".tiff")


def is_tiff_name(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in TIFF_SUFFIXES


def read_tiff(path: str | os.PathLike) -> np.ndarray:
    """Read a TIFF into a numpy array, with singleton leading axes squeezed.

    Raises:
        UserError: missing, unreadable, non-TIFF or truncated file, a
            non-numeric dtype, no pixels, or NaN/Inf pixels.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected a TIFF file")
    try:
        array = tifffile.imread(path)
    except tifffile.TiffFileError as error:
        raise UserError(f"{path}: not a TIFF file ({error})") from error
    except (OSError, ValueError, EOFError, IndexError, KeyError) as error:
        # tifffile reports truncation in many ways: short reads, bad offsets.
        raise UserError(
            f"{path}: unreadable TIFF, truncated or corrupt "
            f"({type(error).__name__}: {error})"
        ) from error
    array = np.asarray(array)
    if array.dtype.kind not in "uif":
        raise UserError(f"{path}: unsupported pixel type {array.dtype}")
    if array.size == 0:
        raise UserError(f"{path}: has no pixels (shape {array.shape})")
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise UserError(f"{path}: contains {bad} NaN/Inf pixels")
    return array


def as_frames_last(array: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """`(H, W)` or `(frames, H, W)` -> `(H, W, frames)`; anything else is an error."""
    if array.ndim == 2:
        return array[..., np.newaxis]
    if array.ndim == 3:
        return np.moveaxis(array, 0, -1)
    raise UserError(
        f"{path}: expected an image (H, W) or a stack of frames (frames, H, W), "
        f"got a {array.ndim}-D array of shape {array.shape}"
    )


def select_frames(
    image: np.ndarray, frames: Sequence[int] | None, path: str | os.PathLike
) -> np.ndarray:
    """Keep the listed frames of an `(H, W, F)` image (all when `None`)."""
    if frames is None:
        return image
    available = image.shape[-1]
    missing = [f for f in frames if not -available <= f < available]
    if missing:
        raise UserError(
            f"{path}: has {available} frame(s); cannot select frame(s) {missing}"
        )
    return image[..., list(frames)]


def write_tiff_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a TIFF so that `path` is either the old file or the complete new one.

    Writes to a hidden temporary file in the same folder, then renames it.
    """
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise UserError(f"{path}: output path is a folder")
    if not folder.is_dir():
        raise UserError(f"{folder}: output folder does not exist")
    try:
        handle, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".tmp", dir=folder
        )
    except OSError as error:
        raise UserError(f"{folder}: cannot write there ({error.strerror})") from error
    os.close(handle)
    try:
        # Uncompressed: zlib took 13 s for a 8192 x 8192 float32 image and
        # saved 17 %; SR output is noise-like and compresses poorly.
        tifffile.imwrite(tmp, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclasses.dataclass(frozen=True)
class ImagePair:
    """A low/high TIFF pair matched by file name."""

    name: str
    low: Path
    high: Path


def list_tiffs(folder: str | os.PathLike) -> list[Path]:
    """The TIFF files directly in `folder`, sorted by name (hidden files skipped)."""
    folder = Path(folder)
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and is_tiff_name(p) and not p.name.startswith(".")
    )


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
    low = {p.stem: p for p in list_tiffs(subfolders["low"])}
    high = {p.stem: p for p in list_tiffs(subfolders["high"])}
    if not low and not high:
        raise UserError(f"{folder}: low/ and high/ contain no .tif/.tiff files")
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
    return hh // h


def load_pair(
    pair: ImagePair, frames: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Read and check one pair: `(low (H, W, F), high (sH, sW, 1), scale)`."""
    low = select_frames(as_frames_last(read_tiff(pair.low), pair.low), frames, pair.low)
    high = read_tiff(pair.high)
    if high.ndim != 2:
        raise UserError(
            f"{pair.high}: a high (target) image must be 2-D (H, W), "
            f"got shape {high.shape}"
        )
    scale = infer_scale(low, high[..., np.newaxis], str(pair.high))
    return low, high[..., np.newaxis], scale


def check_consistent(values: Iterable[tuple[str, int]], what: str) -> int:
    """All `(name, value)` agree on `value`; return it or name the odd file."""
    first_name, first = None, None
    for name, value in values:
        if first is None:
            first_name, first = name, value
        elif value != first:
            raise UserError(
                f"{name}: {what} {value} differs from {what} {first} of {first_name}"
            )
    if first is None:
        raise UserError(f"no images to determine the {what} from")
    return first
