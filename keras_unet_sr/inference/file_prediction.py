"""Predicting TIFF files, locally or through a TF-Serving server.

Inputs are files, folders (their TIFFs) or glob patterns. Each image is read
and checked (one clear line per bad file), predicted, and written as a
float32 TIFF of the same name in the output folder, atomically. A bad file
is skipped and listed at the end; the others still get predicted.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from keras_unet_sr.data.frames import check_model_frames
from keras_unet_sr.errors import UserError
from keras_unet_sr.files import tiff_io
from keras_unet_sr.files.folders import make_output_folder
from keras_unet_sr.progress import track

logger = logging.getLogger(__name__)


class LocalBackend:
    """Predicts in this process with a `model.keras`."""

    def __init__(
        self,
        model_path: str,
        tile: int | None = None,
        overlap: int | None = None,
        batch_size: int | None = None,
        precision: str = "float32",
        test_time_transforms: str | None = None,
    ):
        from keras_unet_sr.inference.predictor import Predictor, load_model

        model = load_model_checked(model_path, lambda path: load_model(path, precision))
        try:
            self.predictor = Predictor(
                model,
                tile=tile,
                overlap=overlap,
                batch_size=batch_size,
                test_time_transforms=test_time_transforms,
            )
        except ValueError as error:
            raise UserError(f"tiling: {error}") from error
        self.frames = model.frames
        self.frame_subset = model.frame_subset
        self.description = f"model {model_path}"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.predictor(image)


def load_model_checked(path: str, loader: Callable):
    """Load a model file, turning every way it can be wrong into one line."""
    from keras_unet_sr.model.unet import SuperResolutionUNet

    if not os.path.exists(path):
        raise UserError(f"{path}: no such model file")
    if os.path.isdir(path):
        raise UserError(f"{path}: is a folder; expected a model.keras file")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a .keras model file (not a zip archive)")
    try:
        model = loader(path)
    except Exception as error:  # zip, JSON, h5 and Keras errors all differ
        detail = str(error).strip().splitlines()
        raise UserError(
            f"{path}: not a loadable keras-unet-sr model "
            f"({type(error).__name__}: {detail[0][:200] if detail else ''})"
        ) from error
    if not isinstance(model, SuperResolutionUNet):
        raise UserError(
            f"{path}: is a {type(model).__name__}, not a keras-unet-sr "
            "SuperResolutionUNet model"
        )
    return model


def expand_inputs(inputs: Iterable[str]) -> tuple[list[Path], list[str]]:
    """Files, folders and globs -> (TIFF paths, problems found on the way)."""
    files: list[Path] = []
    problems: list[str] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found = tiff_io.list_tiffs(path)
            skipped = tiff_io.unreadable_tiff_entries(path)
            if not found and not skipped:
                problems.append(f"{path}: folder has no .tif/.tiff files")
            problems.extend(f"{entry}: skipped, {why}" for entry, why in skipped)
            files.extend(found)
        elif path.exists():
            files.append(path)
        elif glob.has_magic(item):
            matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(item)))
            if not matches:
                problems.append(f"{item}: no file matches this pattern")
            files.extend(p for p in matches if p.is_file())
            for match in matches:  # broken links, loops, folders
                why = None if match.is_file() else tiff_io.unreadable_reason(match)
                if why:
                    problems.append(f"{match}: skipped, {why}")
        else:
            problems.append(f"{path}: no such file or folder")
    return files, problems


@dataclasses.dataclass
class PredictionReport:
    written: list[Path]
    failed: list[str]


def _system_error(error: BaseException) -> str:
    if isinstance(error, MemoryError):
        return "not enough memory to predict it"
    where = f" ({error.filename})" if getattr(error, "filename", None) else ""
    return f"{error.strerror or error}{where}; nothing written for it"


def check_outputs_spare_inputs(files: list[Path], out: Path) -> None:
    """Refuse, before anything is written, an output that is an input:
    `out/<name>.tif` resolving (links followed) to any input file."""
    inputs = {os.path.realpath(path): path for path in files}
    for path in files:
        target = out / f"{path.stem}.tif"
        source = inputs.get(os.path.realpath(target))
        if source is not None:
            raise UserError(
                f"{target}: is the input {source}; predicting would overwrite it "
                "(choose another --out)"
            )


def predict_files(
    backend,
    inputs: Iterable[str],
    out_dir: str | os.PathLike,
    axes: str | None = None,
    pixel_size_nm: float | None = None,
) -> PredictionReport:
    """Predict every input TIFF into `out_dir/<name>.tif` (float32, ImageJ
    axes, the input's pixel size divided by the scale).

    `axes` (e.g. "YXC") overrides the files' axes metadata and the shape
    rule of `keras_unet_sr.files.tiff_io.read_frames`; `pixel_size_nm` is
    the input pixel size of files that state none.
    """
    files, failed = expand_inputs(inputs)
    check_outputs_spare_inputs(files, Path(out_dir).expanduser())
    out = make_output_folder(out_dir)
    names: dict[str, Path] = {}
    for path in files:
        other = names.setdefault(path.stem, path)
        if other != path:
            raise UserError(
                f"{path}: same output name as {other} ({out / (path.stem + '.tif')})"
            )
    written = []
    for path in track(files, "predict"):
        try:
            # One contiguous copy, the file's array freed: TF then uses it as it
            # is instead of holding a second copy during the prediction.
            image = np.ascontiguousarray(tiff_io.read_frames(path, axes))
            check_model_frames(image, backend.frames, backend.frame_subset, path)
            try:
                result = np.asarray(backend(image), np.float32)
            except UserError as error:  # e.g. the server went away: which file
                if str(error).startswith(str(path)):
                    raise
                raise UserError(f"{path}: {error}") from error
            if not np.all(np.isfinite(result)):
                raise UserError(
                    f"{path}: prediction has NaN/Inf values (intensities too "
                    "extreme for float32 arithmetic); nothing written"
                )
            if result.ndim == 3 and result.shape[-1] == 1:
                result = result[..., 0]
            elif result.ndim == 3:
                result = np.moveaxis(result, -1, 0)  # channels first, like the input
            target = out / f"{path.stem}.tif"
            size = tiff_io.pixel_size_nm(path) or pixel_size_nm
            scale = result.shape[-1] / image.shape[1]  # (..., sH, sW) from (H, W, F)
            output_size = size / scale if size else None
            tiff_io.write_tiff_atomic(target, result, pixel_size_nm=output_size)
        except UserError as error:
            failed.append(str(error))
            logger.error("skipped %s", error)
            continue
        except (OSError, MemoryError) as error:  # disk full, no memory: the next
            problem = f"{path}: {_system_error(error)}"  # file may still work
            failed.append(problem)
            logger.error("skipped %s", problem)
            continue
        written.append(target)
        logger.info("%s -> %s %s", path, target, result.shape)
    return PredictionReport(written, failed)
