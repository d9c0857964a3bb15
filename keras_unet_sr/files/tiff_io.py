"""Reading, checking and atomically writing microscopy TIFFs.

Every problem with a file becomes a one-line `UserError` that starts with the
file's path, so a facility running thousands of files learns which one is
bad and why.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import tifffile

from keras_unet_sr.errors import UserError
from keras_unet_sr.files.atomic import atomic_path

TIFF_SUFFIXES = (".tif", ".tiff")
logger = logging.getLogger(__name__)


def is_tiff_name(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in TIFF_SUFFIXES


def read_tiff(path: str | os.PathLike) -> np.ndarray:
    """Read a TIFF into a numpy array, with singleton leading axes squeezed.

    Raises:
        UserError: missing, unreadable, non-TIFF or truncated file, a
            non-numeric dtype, no pixels, or NaN/Inf pixels.
    """
    return read_with_axes(path).array


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux `MemAvailable`),
    or None where it cannot be told."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def check_fits_in_memory(path: Path, size: int) -> None:
    """Refuse, from the header alone, an image larger than the free memory
    (a compressed TIFF can decode to far more than its file size)."""
    free = available_memory()
    if free is not None and size > free:
        raise UserError(
            f"{path}: decodes to {_size(size)}, more than the {_size(free)} of "
            "memory available"
        )


def _size(count: int) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count >> 20} MiB"


class TiffImage(NamedTuple):
    array: np.ndarray
    #: From ImageJ or OME metadata, or samples per pixel ("YXS"), squeezed
    #: axes dropped; None without metadata (tifffile's guesses are none).
    axes: str | None
    #: A colour photograph (8-bit photometric RGB), not raw frames.
    rgb: bool


def read_with_axes(path: str | os.PathLike) -> TiffImage:
    """`read_tiff`, with the axes the file's metadata gives."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected a TIFF file")
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            if len(tif.series) > 1:
                logger.info(
                    "%s: %d image series; reading the first, %s %s",
                    path,
                    len(tif.series),
                    series.axes,
                    series.shape,
                )
            trusted = tif.is_imagej or tif.is_ome or series.axes.endswith("S")
            axes = series.axes if trusted else None
            # 8-bit RGB is a photograph; tifffile also tags a 16-bit or float
            # stack of 3 frames RGB (its default), and that is raw frames.
            rgb = (
                series.keyframe.photometric == tifffile.PHOTOMETRIC.RGB
                and np.dtype(series.dtype) == np.uint8
            )
            check_fits_in_memory(path, series.size * np.dtype(series.dtype).itemsize)
            array = np.asarray(series.asarray())
    except tifffile.TiffFileError as error:
        raise UserError(f"{path}: not a TIFF file ({error})") from error
    except (OSError, ValueError, EOFError, IndexError, KeyError) as error:
        # tifffile reports truncation in many ways: short reads, bad offsets.
        raise UserError(
            f"{path}: unreadable TIFF, truncated or corrupt "
            f"({type(error).__name__}: {error})"
        ) from error
    if array.dtype.kind not in "uif":
        raise UserError(f"{path}: unsupported pixel type {array.dtype}")
    if array.size == 0:
        raise UserError(f"{path}: has no pixels (shape {array.shape})")
    if axes is not None and len(axes) != array.ndim:
        axes = None
    if axes is not None:  # drop singleton axes, except the image plane's
        keep = [i for i, a in enumerate(axes) if array.shape[i] > 1 or a in "YX"]
        axes = "".join(axes[i] for i in keep)
        array = array.reshape([array.shape[i] for i in keep])
    while axes is None and array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise UserError(f"{path}: contains {bad} NaN/Inf pixels")
    return TiffImage(array, axes, rgb)


def read_frames(path: str | os.PathLike, axes: str | None = None) -> np.ndarray:
    """Read a raw image or stack as `(H, W, frames)`, never by guessing.

    The axes come from `axes` (e.g. `"YXC"`, one letter per axis of more
    than one pixel: `Y`, `X` and one frame axis), else from the file's
    metadata (ImageJ, OME, RGB samples), else from the rule: a 2-D image is
    `(H, W)`, a 3-D stack is `(frames, H, W)`, and a stack whose last axis is
    the shortest, which could be `(H, W, frames)`, is refused as ambiguous,
    as is a colour (RGB) photograph.
    """
    array, found, rgb = read_with_axes(path)
    if rgb and axes is None:
        raise UserError(
            f"{path}: is an RGB colour image, not raw frames (--axes YXC reads "
            "its three colours as frames)"
        )
    if axes is not None:
        letters = axes.upper()
        if len(letters) != array.ndim:
            squeezed = array.reshape([n for n in array.shape if n > 1] or [1, 1])
            if len(letters) != squeezed.ndim:
                raise UserError(
                    f"{path}: --axes {axes} has {len(letters)} letters but the "
                    f"image has shape {array.shape}"
                )
            array = squeezed
        return _frames_last(array, letters, path, "--axes")
    if found is not None:
        return _frames_last(array, found, path, "its metadata")
    if array.ndim == 3 and array.shape[-1] < min(array.shape[:2]):
        raise UserError(
            f"{path}: shape {array.shape} and no axes metadata: (frames, H, W) "
            f"or (H, W, frames)? give --axes (e.g. --axes YXC or --axes CYX)"
        )
    return as_frames_last(array, path)


def _frames_last(array: np.ndarray, axes: str, path, source: str) -> np.ndarray:
    if axes.count("Y") != 1 or axes.count("X") != 1:
        raise UserError(f"{path}: axes {axes} (from {source}) need one Y and one X")
    others = [i for i, a in enumerate(axes) if a not in "YX"]
    if len(others) > 1:
        raise UserError(
            f"{path}: axes {axes} (from {source}) of shape {array.shape} hold "
            f"{len(others)} frame axes; expected one (e.g. CYX)"
        )
    order = [axes.index("Y"), axes.index("X"), *others]
    array = np.transpose(array, order)
    return array if others else array[..., np.newaxis]


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


def write_tiff_atomic(
    path: str | os.PathLike, array: np.ndarray, pixel_size_nm: float | None = None
) -> None:
    """Write a TIFF so that `path` is either the old file or the complete new one.

    Written as an ImageJ hyperstack (axes `YX`, or `CYX` for a channels-first
    3-D array) so Fiji and napari read the axes, with the pixel size in
    micrometres where one is given (Fiji shows the calibration).
    """
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise UserError(f"{path}: output path is a folder")
    if not folder.is_dir():
        raise UserError(f"{folder}: output folder does not exist")
    if not os.access(folder, os.W_OK):
        raise UserError(f"{folder}: cannot write there (not writable)")
    metadata: dict = {"axes": "YX" if array.ndim == 2 else "CYX"}
    extra = {}
    if pixel_size_nm:
        per_um = 1000.0 / pixel_size_nm
        metadata["unit"] = "um"
        extra["resolution"] = (per_um, per_um)
    imagej = array.dtype in (np.uint8, np.uint16, np.float32) and array.ndim <= 3
    with atomic_path(path) as tmp:
        # Uncompressed: zlib took 13 s for a 8192 x 8192 float32 image and
        # saved 17 %; SR output is noise-like and compresses poorly.
        if imagej:
            tifffile.imwrite(tmp, array, imagej=True, metadata=metadata, **extra)
        else:
            tifffile.imwrite(tmp, array)


_UNITS_NM = {"nm": 1.0, "um": 1e3, "µm": 1e3, r"\u00b5m": 1e3, "micron": 1e3}
_UNITS_NM.update({"micrometer": 1e3, "mm": 1e6, "millimeter": 1e6, "nanometer": 1.0})


def pixel_size_nm(path: str | os.PathLike) -> float | None:
    """The pixel size (x) the file states, in nanometres: OME `PhysicalSizeX`,
    ImageJ's resolution and unit, or the TIFF resolution tags (cm or inch);
    None where it states none."""
    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome and tif.ome_metadata:
                found = re.search(r'PhysicalSizeX="([^"]+)"', tif.ome_metadata)
                unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', tif.ome_metadata)
                if found:
                    factor = _UNITS_NM.get(unit.group(1).lower() if unit else "µm")
                    return float(found.group(1)) * factor if factor else None
            page = tif.pages.first
            tag = page.tags.get("XResolution")
            if tag is None:
                return None
            numerator, denominator = tag.value
            if not numerator or not denominator:
                return None
            per_unit = numerator / denominator  # pixels per unit
            if tif.is_imagej:
                unit = str((tif.imagej_metadata or {}).get("unit", "")).lower()
                factor = _UNITS_NM.get(unit)
            else:
                factor = {2: 2.54e7, 3: 1e7}.get(int(page.resolutionunit))
            return factor / per_unit if factor else None
    except (tifffile.TiffFileError, OSError, ValueError, KeyError, TypeError):
        return None


def parse_pixel_size(text: str) -> float:
    """`"65nm"`, `"0.065um"` or `"65"` (nm) -> nanometres."""
    match = re.fullmatch(r"\s*([0-9.]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Zµ]*)\s*", text)
    factor = _UNITS_NM.get((match.group(2) or "nm").lower()) if match else None
    if not match or factor is None or float(match.group(1)) <= 0:
        raise UserError(f"--pixel-size {text}: expected a size such as 65nm or 0.065um")
    return float(match.group(1)) * factor


def unreadable_reason(entry: Path) -> str | None:
    """Why a TIFF-named entry is not a readable file: a link loop, a broken
    link or a folder; None for a file."""
    try:
        os.stat(entry)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "a link loop"
        return f"a broken link (to {os.readlink(entry)})"
    return "a folder named like a TIFF" if entry.is_dir() else None


def unreadable_tiff_entries(folder: str | os.PathLike) -> list[tuple[Path, str]]:
    """Entries of `folder` named like TIFFs that `list_tiffs` leaves out,
    with why (`unreadable_reason`)."""
    entries = (
        entry
        for entry in sorted(Path(folder).iterdir())
        if is_tiff_name(entry) and not entry.name.startswith(".")
    )
    return [(e, reason) for e in entries if (reason := unreadable_reason(e))]


def list_tiffs(folder: str | os.PathLike) -> list[Path]:
    """The TIFF files directly in `folder`, sorted by name (hidden files skipped)."""
    folder = Path(folder)
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and is_tiff_name(p) and not p.name.startswith(".")
    )
