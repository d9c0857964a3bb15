"""Reading, checking and atomically writing microscopy TIFFs.

Every problem with a file becomes a one-line `UserError` that starts with the
file's path, so a facility running thousands of files learns which one is
bad and why.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tifffile

from keras_unet_sr.errors import UserError
from keras_unet_sr.files.atomic import atomic_path

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


def write_tiff_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a TIFF so that `path` is either the old file or the complete new one."""
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise UserError(f"{path}: output path is a folder")
    if not folder.is_dir():
        raise UserError(f"{folder}: output folder does not exist")
    if not os.access(folder, os.W_OK):
        raise UserError(f"{folder}: cannot write there (not writable)")
    with atomic_path(path) as tmp:
        # Uncompressed: zlib took 13 s for a 8192 x 8192 float32 image and
        # saved 17 %; SR output is noise-like and compresses poorly.
        tifffile.imwrite(tmp, array)


def list_tiffs(folder: str | os.PathLike) -> list[Path]:
    """The TIFF files directly in `folder`, sorted by name (hidden files skipped)."""
    folder = Path(folder)
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and is_tiff_name(p) and not p.name.startswith(".")
    )
