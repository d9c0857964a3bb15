"""The files of a bioimage.io package besides the weights: test and sample
tensors computed by our own predict, the cover image and the README."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import tensorflow as tf
import tifffile

from keras_unet_sr.data.normalization import percentile_range, safe_scale
from keras_unet_sr.errors import UserError
from keras_unet_sr.export.bioimageio_sources import PackageInfo
from keras_unet_sr.inference.predictor import Predictor
from keras_unet_sr.inference.transforms import TRANSFORMS

# Input sides (rounded down to the size multiple) of the test and sample crops.
TEST_SIDE = 96
SAMPLE_SIDE = 256


@dataclasses.dataclass(frozen=True)
class PackageFiles:
    test_input: Path
    test_output: Path
    sample_input: Path
    sample_output: Path
    cover: Path
    readme: Path


def center_crop(image: np.ndarray, side: int, multiple: int, what: str) -> np.ndarray:
    """The central `(h, w)` of `(H, W, F)`, each at most `side` and a multiple
    of `multiple` (the model's size rule)."""
    height, width = image.shape[:2]
    h = min(side, height) // multiple * multiple
    w = min(side, width) // multiple * multiple
    if not h or not w:
        raise UserError(
            f"{what}: {height} x {width} pixels is smaller than the model's size "
            f"multiple {multiple}"
        )
    top, left = (height - h) // 2, (width - w) // 2
    return image[top : top + h, left : left + w]


def predict_normalized(predictor: Predictor, crop: np.ndarray) -> np.ndarray:
    """Our predict on `crop`, in the input's normalized units (what the
    package's output is: the zoo applies the normalization, not the undo)."""
    prediction = predictor(crop.astype(np.float32))
    low, high = percentile_range(crop[np.newaxis], predictor.model.percentiles)
    scale = safe_scale(low, high)
    return ((prediction - low[0].numpy()) / scale[0].numpy()).astype(np.float32)


def _display(image: np.ndarray) -> np.ndarray:
    """A 2-D image as uint8, stretched between its 0.5th and 99.8th percentile."""
    low, high = np.percentile(image, (0.5, 99.8))
    scaled = (image - low) / max(high - low, 1e-12)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def _cover(crop: np.ndarray, prediction: np.ndarray, scale: int) -> np.ndarray:
    """Input (frames averaged, pixels repeated to the output grid) | prediction."""
    widefield = np.kron(crop.astype(np.float32).mean(-1), np.ones((scale, scale)))
    return np.concatenate([_display(widefield), _display(prediction[..., 0])], axis=1)


def write_files(
    predictor: Predictor, sample: np.ndarray, info: PackageInfo, folder: Path
) -> PackageFiles:
    """Write the tensors, cover and README for `sample` (`(H, W, F)`, the
    model's frames) into `folder` (created)."""
    import imageio.v3 as iio

    model = predictor.model
    folder.mkdir(parents=True)
    multiple, what = model.size_multiple, "the sample image"
    test = center_crop(sample, TEST_SIDE, multiple, what)
    shown = center_crop(sample, SAMPLE_SIDE, multiple, what)
    files = PackageFiles(
        test_input=folder / "test_input.npy",
        test_output=folder / "test_output.npy",
        sample_input=folder / "sample_input.tif",
        sample_output=folder / "sample_output.tif",
        cover=folder / "cover.png",
        readme=folder / "README.md",
    )
    np.save(files.test_input, test[np.newaxis].astype(np.float32))
    np.save(files.test_output, predict_normalized(predictor, test)[np.newaxis])
    shown_output = predict_normalized(predictor, shown)
    tifffile.imwrite(files.sample_input, shown[np.newaxis].astype(np.float32))
    tifffile.imwrite(files.sample_output, shown_output[np.newaxis])
    iio.imwrite(files.cover, _cover(shown, shown_output, model.scale))
    readme = readme_text(model, info, predictor.test_time_transforms)
    files.readme.write_text(readme, encoding="utf-8")
    return files


def run_summary(model_path: Path) -> dict:
    """`config.json`, `data.json` and `metrics.json` of the model's run
    folder, those that exist (the README quotes them)."""
    found = {}
    for name in ("config", "data", "metrics"):
        path = model_path.parent / f"{name}.json"
        try:
            found[name] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return found


def _metrics_lines(metrics: dict) -> list[str]:
    if not metrics:
        return ["No validation scores were found next to the model file."]
    model, bicubic = metrics.get("model", {}), metrics.get("bicubic", {})
    count = len(metrics.get("images", []))
    lines = [
        f"Whole-image scores on the `{metrics.get('split', '?')}` split "
        f"({count} images) after {metrics.get('epochs', '?')} epochs, against "
        "the training targets:",
        "",
        "| | PSNR (dB) | SSIM |",
        "|---|---|---|",
    ]
    for label, scores in (("this model", model), ("bicubic", bicubic)):
        if scores:
            lines.append(f"| {label} | {scores['psnr']:.2f} | {scores['ssim']:.4f} |")
    resolution = metrics.get("resolution", {})
    pixels = {k: v.get("pixels") for k, v in resolution.items()}
    if all(pixels.get(k) for k in ("model", "target", "bicubic")):
        lines += [
            "",
            "Resolution by decorrelation analysis (mean, output pixels): "
            f"model {pixels['model']:.2f}, target {pixels['target']:.2f}, "
            f"bicubic {pixels['bicubic']:.2f}.",
        ]
    return lines


def _averaging(transforms: str) -> str:
    calls = len(TRANSFORMS[transforms])
    if calls == 1:
        return "none (one network call per tile)"
    return (
        f"`{transforms}`: each tile is predicted in {calls} orientations "
        f"(flips/turns), turned back and averaged inside the graph ({calls} "
        "network calls per tile)"
    )


def readme_text(model, info: PackageInfo, test_time_transforms: str = "none") -> str:
    """The package's documentation: what it does, on what, how well, limits."""
    low, high = model.percentiles
    subset = model.frame_subset
    frames = (
        f"{model.frames} frames ({', '.join(map(str, subset))} of the raw stack)"
        if subset
        else f"{model.frames} frame(s)"
    )
    pixel = (
        f"{info.pixel_size_nm:g} nm input pixels ({info.pixel_size_nm / model.scale:g} "
        "nm output pixels)"
        if info.pixel_size_nm
        else "pixel size not recorded (axes carry no unit)"
    )
    lines = [
        f"# {info.name}",
        "",
        info.description,
        "",
        "## Model",
        "",
        f"A U-Net (depth {model.depth}, {model.filters} filters at the top, "
        f"{model.upsampling} upsampling) trained with keras-unet-sr. It reads "
        f"{frames} and writes the image on a {model.scale}x finer grid; "
        f"{pixel}.",
        "",
        f"- Input: `(batch, y, x, channel)` float32, y and x multiples of "
        f"{model.size_multiple}; preprocessing maps each image's {low:g}th "
        f"percentile to 0 and its {high:g}th to 1 (all frames together).",
        f"- Output: `(batch, {model.scale}y, {model.scale}x, channel)` in those "
        "normalized units; multiply by the input's percentile range and add its "
        "low percentile to get camera units (keras-unet-sr's own `predict` does).",
        f"- The weights' graph tiles any image inside (exact overlap, halo "
        f"{model.halo} input pixels), so whole images can be passed.",
        f"- Test-time averaging: {_averaging(test_time_transforms)}.",
        "",
        "## Training data",
        "",
        info.training_data or "Not recorded.",
        "",
        "## Validation",
        "",
        *_metrics_lines(info.run.get("metrics", {})),
        "",
        "To validate on your own data, put held-out raw stacks in `DIR/low/` "
        "and their reconstructions in `DIR/high/` and run `keras-unet-sr "
        "evaluate MODEL.keras --data DIR`: it reports PSNR, SSIM and the "
        "resolution (decorrelation analysis, in nm when the pixel size is "
        "known) of the model, the target and bicubic upsampling.",
        "",
        "## Limits",
        "",
        "- A model is valid for the microscope, labelling, pixel size and light "
        "level it was trained on; structures it never saw are rendered as the "
        "ones it did. Check predictions against a real reconstruction before "
        "drawing conclusions from fine detail.",
        "- The output is normalized per image; intensities are comparable "
        "within an image, not between images, unless mapped back as above.",
        "- Tested with bioimageio.core's model test (TensorFlow "
        f"{tf.__version__}); the SavedModel needs TensorFlow 2 (deepImageJ's "
        "TensorFlow 1 runtime cannot load it).",
        "",
    ]
    return "\n".join(lines)
