"""BioImage Model Zoo packages (model RDF 0.5): `keras-unet-sr export
--format bioimageio`, validated by `bioimageio.core` before anything is kept.

What goes in the zip:

* `tf_saved_model_bundle.zip`: a SavedModel whose `serve` endpoint is our own
  tiling graph (`tiling.tiled_predict`, reflect-padded borders, exact
  overlap) on *normalized* `(batch, y, x, frames)` float32 tensors, so a
  consumer can give it any image size.
* Preprocessing `scale_range` with the model's percentiles over `y, x,
  channel` per sample: the same per-image mapping our predict applies (the
  zoo's formula adds `eps = 1e-6` to the range). The output stays in those
  normalized units (the 0..1 of the input's percentile range): the zoo has no
  step that maps back with the *input's* range, which our predict does.
* Test tensors computed by our predict, a sample input/output, a cover image
  (input | prediction), a README with the training data, metrics and limits.

The optional extra `pip install ".[bioimageio]"` brings the validators.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_unet_sr import __version__
from keras_unet_sr.errors import UserError
from keras_unet_sr.export import bioimageio_files
from keras_unet_sr.export.bioimageio_sources import PackageInfo
from keras_unet_sr.files.atomic import atomic_path
from keras_unet_sr.inference.predictor import Predictor
from keras_unet_sr.inference.tiling import tiled_predict
from keras_unet_sr.model.unet import SuperResolutionUNet

INPUT_ID = "raw_frames"
OUTPUT_ID = "sr_image"


class _NetworkModule:
    """The weights' graph: the tiled network on normalized tensors."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor

    def serve(self, tiles: tf.Tensor) -> dict[str, tf.Tensor]:
        model, plan = self.predictor.model, self.predictor.plan
        transforms = self.predictor.test_time_transforms
        output = tiled_predict(model, tiles, plan, None, transforms=transforms)
        return {OUTPUT_ID: output}


def check_package_path(out: str | os.PathLike) -> Path:
    """The absolute package path, or one line: not `.zip`, taken, no folder."""
    out = Path(out).expanduser().resolve()
    if out.suffix != ".zip":
        raise UserError(f"{out}: a bioimage.io package is a .zip file")
    if out.exists():
        raise UserError(f"{out}: exists; pick another --out (nothing is replaced)")
    if not out.parent.is_dir():
        raise UserError(f"{out.parent}: output folder does not exist")
    return out


def _saved_model_zip(predictor: Predictor, folder: Path) -> Path:
    """Write the weights' SavedModel, zipped (the zoo's multi-file form)."""
    model = predictor.model
    module = _NetworkModule(predictor)
    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = tf.TensorSpec((None, None, None, model.frames), tf.float32, name=INPUT_ID)
    archive.add_endpoint("serve", module.serve, [spec])
    saved = folder / "saved_model"
    archive.write_out(str(saved), verbose=False)
    target = folder / "tf_saved_model_bundle.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(saved.rglob("*")):
            if path.is_file():
                bundle.write(path, path.relative_to(saved).as_posix())
    shutil.rmtree(saved)
    return target


def _axes(model: SuperResolutionUNet, pixel_size_nm: float | None):
    from bioimageio.spec.model import v0_5

    unit = "micrometer" if pixel_size_nm else None
    pixel = pixel_size_nm / 1000.0 if pixel_size_nm else 1.0
    step = model.size_multiple
    s = model.scale
    halo = model.halo * s
    # The zoo wants outputs larger than their two halos.
    smallest = max(step, -(-(2 * halo + 1) // (s * step)) * step)
    subset = model.frame_subset or range(model.frames)
    inputs = [v0_5.BatchAxis()]
    outputs = [v0_5.BatchAxis()]
    for axis in ("y", "x"):
        inputs.append(
            v0_5.SpaceInputAxis(
                id=v0_5.AxisId(axis),
                size=v0_5.ParameterizedSize(min=smallest, step=step),
                scale=pixel,
                unit=unit,
            )
        )
        size = v0_5.SizeReference(
            tensor_id=v0_5.TensorId(INPUT_ID), axis_id=v0_5.AxisId(axis)
        )
        common = dict(id=v0_5.AxisId(axis), size=size, scale=pixel / s, unit=unit)
        outputs.append(
            v0_5.SpaceOutputAxisWithHalo(halo=halo, **common)
            if halo
            else v0_5.SpaceOutputAxis(**common)
        )
    inputs.append(v0_5.ChannelAxis(channel_names=[f"frame{i}" for i in subset]))
    names = (
        ["sr"]
        if model.out_channels == 1
        else [f"sr{i}" for i in range(model.out_channels)]
    )
    outputs.append(v0_5.ChannelAxis(channel_names=names))
    return inputs, outputs


def _tensors(model, files: bioimageio_files.PackageFiles, pixel_size_nm):
    from bioimageio.spec.model import v0_5

    in_axes, out_axes = _axes(model, pixel_size_nm)
    low, high = model.percentiles
    preprocessing = [
        v0_5.EnsureDtypeDescr(kwargs=v0_5.EnsureDtypeKwargs(dtype="float32")),
        v0_5.ScaleRangeDescr(
            kwargs=v0_5.ScaleRangeKwargs(
                axes=[v0_5.AxisId(a) for a in ("y", "x", "channel")],
                min_percentile=low,
                max_percentile=high,
            )
        ),
    ]
    subset = ", a subset of the raw stack" if model.frame_subset else ""
    inputs = v0_5.InputTensorDescr(
        id=v0_5.TensorId(INPUT_ID),
        description="raw frames as the camera gives them, frames last "
        f"({model.frames} frame(s){subset})",
        axes=in_axes,
        test_tensor=v0_5.FileDescr(source=files.test_input),
        sample_tensor=v0_5.FileDescr(source=files.sample_input),
        data=v0_5.IntervalOrRatioDataDescr(type="float32"),
        preprocessing=preprocessing,
    )
    outputs = v0_5.OutputTensorDescr(
        id=v0_5.TensorId(OUTPUT_ID),
        description=f"super-resolved image, {model.scale}x the input's sampling, "
        f"in the input's normalized units (its percentiles {low:g} and {high:g} "
        "mapped to 0 and 1)",
        axes=out_axes,
        test_tensor=v0_5.FileDescr(source=files.test_output),
        sample_tensor=v0_5.FileDescr(source=files.sample_output),
        data=v0_5.IntervalOrRatioDataDescr(type="float32"),
    )
    return inputs, outputs


def _author(text: str):
    from bioimageio.spec.model import v0_5

    name, _, email = text.partition("<")
    email = email.rstrip(">").strip() or None
    return v0_5.Author(name=name.strip(), email=email)


def _cite(text: str, link: str):
    from bioimageio.spec.model import v0_5

    if link.startswith(("http://", "https://")):
        return v0_5.CiteEntry(text=text, url=v0_5.HttpUrl(link))
    return v0_5.CiteEntry(text=text, doi=v0_5.Doi(link.removeprefix("doi:")))


def describe(
    model: SuperResolutionUNet,
    info: PackageInfo,
    files,
    weights: Path,
    model_config: dict | None = None,
):
    """The model RDF (a validated `bioimageio.spec` description);
    `model_config`: what the RDF records (default `model.get_config()`;
    `Predictor.model_config()` where export overrode the averaging)."""
    from bioimageio.spec.model import v0_5

    inputs, outputs = _tensors(model, files, info.pixel_size_nm)
    model_config = model.get_config() if model_config is None else model_config
    return v0_5.ModelDescr(
        name=info.name,
        description=info.description,
        authors=[_author(a) for a in info.authors]
        or [v0_5.Author(name="keras-unet-sr user")],
        cite=[_cite(text, link) for text, link in info.cites],
        license=v0_5.LicenseId(info.license),
        documentation=v0_5.FileDescr(source=files.readme),
        covers=[v0_5.FileDescr(source=files.cover)],
        tags=[
            "super-resolution",
            "fluorescence-light-microscopy",
            "2d",
            "unet",
            "keras-unet-sr",
            "tensorflow",
        ],
        inputs=[inputs],
        outputs=[outputs],
        weights=v0_5.WeightsDescr(
            tensorflow_saved_model_bundle=v0_5.TensorflowSavedModelBundleWeightsDescr(
                source=weights,
                tensorflow_version=v0_5.Version(tf.__version__),
                comment="keras-unet-sr's tiling graph around the U-Net, "
                "endpoint `serve`",
            )
        ),
        config=v0_5.Config(
            **{
                "keras_unet_sr": {
                    "version": __version__,
                    "model_config": json.loads(json.dumps(model_config)),
                    "halo": model.halo,
                    "size_multiple": model.size_multiple,
                }
            }
        ),
    )


def _checked_description(model, info, files, weights, out: Path, model_config: dict):
    """`describe`, with the spec's first complaint as one line."""
    import pydantic
    from bioimageio.spec.model import v0_5

    try:
        v0_5.LicenseId(info.license)
    except pydantic.ValidationError:
        raise UserError(
            f"--license {info.license}: not an SPDX license id the model zoo "
            "accepts (e.g. CC-BY-4.0, MIT, BSD-3-Clause)"
        ) from None
    try:
        return describe(model, info, files, weights, model_config)
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "description"
        raise UserError(
            f"{out}: not a valid bioimage.io description ({where}: {first['msg']})"
        ) from None


def _validation_failure(summary) -> str | None:
    """The first failed check of a `bioimageio.core` test summary, or None."""
    # "valid-format" means the RDF is fine but a weights test failed.
    if summary.status == "passed":
        return None
    for detail in summary.details:
        if detail.status == "failed":
            errors = [e.msg for e in getattr(detail, "errors", [])]
            return f"{detail.name}: {errors[0] if errors else 'failed'}"
    return f"status {summary.status}"


def export_bioimageio(
    model: SuperResolutionUNet,
    out: str | os.PathLike,
    info: PackageInfo,
    sample: np.ndarray,
    *,
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    test_time_transforms: str | None = None,
) -> Path:
    """Write a validated BioImage Model Zoo package to `out` (a new `.zip`).

    Args:
        model: The trained model (float32).
        out: The package path; must end in `.zip` and not exist.
        info: Name, authors, license, citations, pixel size.
        sample: A raw `(H, W, F)` image the model reads (its frames).
        tile: Tile side of the weights' graph.
        overlap: Tile overlap.
        batch_size: Tiles per model call.
        test_time_transforms: Test-time averaging inside the weights' graph
            (default: the model's).

    Returns:
        The package path. Nothing is written when validation fails.
    """
    try:
        from bioimageio.core import test_model
        from bioimageio.spec import save_bioimageio_package
    except ImportError as error:
        raise UserError(
            f"--format bioimageio needs bioimageio.core ({error.name} is missing): "
            'pip install "keras-unet-sr[bioimageio]"'
        ) from error
    out = check_package_path(out)
    predictor = Predictor(
        model,
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
        test_time_transforms=test_time_transforms,
    )
    with tempfile.TemporaryDirectory(prefix="bioimageio-") as tmp:
        folder = Path(tmp)
        files = bioimageio_files.write_files(predictor, sample, info, folder / "pkg")
        weights = _saved_model_zip(predictor, folder / "pkg")
        descr = _checked_description(
            model, info, files, weights, out, predictor.model_config()
        )
        package = save_bioimageio_package(descr, output_path=folder / "package.zip")
        # bioimageio.core unpacks the weights into the working folder.
        with contextlib.chdir(folder):
            summary = test_model(package)
        failure = _validation_failure(summary)
        if failure:
            raise UserError(
                f"{out}: the package failed bioimageio.core's test ({failure})"
            )
        with atomic_path(out, replace=False) as staging:
            shutil.copyfile(package, staging)
    return out
