"""Scoring a prediction against a reference the way the CARE paper does.

Weigert et al. 2018 (Nat. Methods 15, 1090): the reference (ground truth) is
percentile-normalized, and the prediction is given the scale and offset that
best fit it in the least-squares sense before PSNR/SSIM/NRMSE are computed.
Scores are therefore invariant to any affine change of the prediction's
intensities, so methods with different output units (a network, bicubic
interpolation, a SIM reconstruction) compare fairly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from keras_unet_sr.data.frames import select_frames
from keras_unet_sr.data.normalization import percentile_normalize
from keras_unet_sr.files.atomic import atomic_path
from keras_unet_sr.quality import image_quality
from keras_unet_sr.quality.registration import estimate_shift, shift_image
from keras_unet_sr.quality.resolution import decorrelation_resolution

REFERENCE_PERCENTILES = (0.1, 99.9)
METRICS = ("psnr", "ssim", "nrmse")
# Plain scores, and scores after moving the prediction onto the reference by
# its best sub-pixel shift (a method's grid offset is not a resolution error).
METHODS = ("model", "bicubic", "model_registered", "bicubic_registered")
# Images whose resolution is estimated (decorrelation analysis).
RESOLVED = ("model", "target", "bicubic")


def _as_hwc(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 2:
        image = image[..., np.newaxis]
    if image.ndim != 3:
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got {image.shape}")
    return image


def fit_affine(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """`a * prediction + b` with `a, b` minimizing the squared error to target."""
    x = prediction.ravel()
    t = target.ravel()
    x_mean, t_mean = x.mean(), t.mean()
    variance = np.mean((x - x_mean) ** 2)
    slope = np.mean((x - x_mean) * (t - t_mean)) / variance if variance > 0 else 0.0
    return slope * (prediction - x_mean) + t_mean


def evaluate_prediction(
    prediction: np.ndarray,
    reference: np.ndarray,
    percentiles: Sequence[float] = REFERENCE_PERCENTILES,
) -> dict[str, float]:
    """PSNR (dB), SSIM and NRMSE of one prediction against its reference.

    Args:
        prediction: `(H, W)` or `(H, W, C)` image in any units.
        reference: Same shape, the ground truth.
        percentiles: Reference percentiles mapped to 0 and 1.

    Returns:
        `{"psnr", "ssim", "nrmse"}`; PSNR and SSIM use a dynamic range of 1
        (the normalized reference range) and NRMSE is the RMSE in that unit.
    """
    prediction = _as_hwc(prediction)
    reference = _as_hwc(reference)
    if prediction.shape != reference.shape:
        raise ValueError(
            f"prediction shape {prediction.shape} != reference shape {reference.shape}"
        )
    target, _, _ = percentile_normalize(reference.astype(np.float32), percentiles)
    target = target.numpy().astype(np.float64)
    fitted = fit_affine(prediction, target)
    mse = float(np.mean((fitted - target) ** 2))
    batch = (
        tf.constant(fitted[np.newaxis], tf.float32),
        tf.constant(target[np.newaxis], tf.float32),
    )
    filter_size = min(11, *reference.shape[:2])
    return {
        "psnr": float(image_quality.psnr(*batch, max_val=1.0)[0]),
        "ssim": float(
            image_quality.ssim(*batch, max_val=1.0, filter_size=filter_size)[0]
        ),
        "nrmse": float(np.sqrt(mse)),
    }


def evaluate_registered(
    prediction: np.ndarray, reference: np.ndarray
) -> dict[str, float]:
    """`evaluate_prediction` after moving the prediction by its best sub-pixel
    shift onto the reference; a border of the shift's size plus 1 px is left
    out of both. Adds the shift `dy`, `dx` (pixels) to the scores."""
    prediction, reference = _as_hwc(prediction), _as_hwc(reference)
    dy, dx = estimate_shift(reference, prediction)
    aligned = shift_image(prediction, (dy, dx))
    crop = math.ceil(max(abs(dy), abs(dx))) + 1  # the Fourier shift wraps
    if min(reference.shape[:2]) <= 2 * crop + 8:
        crop = 0  # too small to crop: score it all
    inner = (
        slice(crop, reference.shape[0] - crop),
        slice(crop, reference.shape[1] - crop),
    )
    scores = evaluate_prediction(aligned[inner], reference[inner])
    return {**scores, "dy": round(dy, 3), "dx": round(dx, 3)}


def bicubic_baseline(image: np.ndarray, model) -> np.ndarray:
    """The classical answer: the mean of the model's frames, bicubic-resized.

    For raw SIM frames the mean is the widefield image.
    """
    frames = select_frames(
        tf.constant(image[np.newaxis], tf.float32), model.frames, model.frame_subset
    )
    mean = tf.reduce_mean(frames, axis=-1, keepdims=True)
    if model.scale > 1:
        size = tf.shape(mean)[1:3] * model.scale
        mean = tf.image.resize(mean, size, method="bicubic")
    return mean[0].numpy()


def resolution_row(images: Mapping[str, np.ndarray], pixel_nm: float | None) -> dict:
    """Decorrelation resolution of each image (first channel), in output
    pixels and in nm when the output pixel size is known (None: no peak)."""
    row = {}
    for method, image in images.items():
        estimate = decorrelation_resolution(_as_hwc(image)[..., 0])
        pixels = estimate.pixels if estimate.cutoff > 0 else None
        nm = pixels * pixel_nm if pixels is not None and pixel_nm else None
        row[method] = {"pixels": pixels, "nm": nm}
    return row


def score_model_and_baseline(
    predictor,
    named_images,
    pixel_size_nm: float | Mapping[str, float | None] | None = None,
) -> list[dict]:
    """Score a `Predictor` and the bicubic baseline on whole images.

    Args:
        predictor: A `keras_unet_sr.inference.predictor.Predictor`.
        named_images: Iterable of `(name, low (H, W, F), high (sH, sW, C))`.
        pixel_size_nm: The input pixel size, one for all or per image name
            (resolutions are then also given in nm).

    Returns:
        One row per image: `{"name", method: scores}` for each of `METHODS`,
        and `"resolution"`: `{image: {"pixels", "nm"}}` for each of `RESOLVED`.
    """
    rows = []
    scale = predictor.model.scale
    for name, low, high in named_images:
        prediction = predictor(low)
        baseline = bicubic_baseline(low, predictor.model)
        pixel = (
            pixel_size_nm.get(name)
            if isinstance(pixel_size_nm, Mapping)
            else pixel_size_nm
        )
        images = {"model": prediction, "target": high, "bicubic": baseline}
        rows.append(
            {
                "name": name,
                "model": evaluate_prediction(prediction, high),
                "bicubic": evaluate_prediction(baseline, high),
                "model_registered": evaluate_registered(prediction, high),
                "bicubic_registered": evaluate_registered(baseline, high),
                "resolution": resolution_row(images, pixel / scale if pixel else None),
                "output_pixel_nm": pixel / scale if pixel else None,
            }
        )
    return rows


def summarize_scores(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Mean scores per method over the rows of `score_model_and_baseline`."""
    return {
        method: {
            metric: float(np.mean([row[method][metric] for row in rows]))
            for metric in METRICS
        }
        for method in METHODS
        if all(method in row for row in rows)
    }


def folder_images(folder: str):
    """`(name, low, high)` for every TIFF pair of a `low/`+`high/` folder."""
    from keras_unet_sr.data import pairs as image_pairs

    for pair in image_pairs.find_pairs(folder):
        low, high, _ = image_pairs.load_pair(pair)
        yield pair.name, low, high


def folder_pixel_sizes(folder: str) -> dict[str, float | None]:
    """The input pixel size (nm) each pair's low image states, by name."""
    from keras_unet_sr.data import pairs as image_pairs
    from keras_unet_sr.files.tiff_io import pixel_size_nm

    return {
        pair.name: pixel_size_nm(pair.low) for pair in image_pairs.find_pairs(folder)
    }


def summarize_resolution(rows: list[dict]) -> dict[str, dict[str, float | None]]:
    """Mean resolution per image kind (pixels; nm where every image has it)."""
    summary = {}
    for method in RESOLVED:
        values = [row["resolution"][method] for row in rows if "resolution" in row]
        summary[method] = {
            unit: (
                float(np.mean([v[unit] for v in values]))
                if values and all(v[unit] is not None for v in values)
                else None
            )
            for unit in ("pixels", "nm")
        }
    return summary


def format_resolution_table(rows: list[dict]) -> str:
    """Per-image and mean resolution of model, target and bicubic."""
    rows = [row for row in rows if "resolution" in row]
    in_nm = bool(rows) and all(row.get("output_pixel_nm") for row in rows)
    unit = "nm" if in_nm else "output pixels"

    def line(name, resolution):
        values = [resolution[m]["nm" if in_nm else "pixels"] for m in RESOLVED]
        cells = [f"{v:9.1f}" if v is not None else f"{'-':>9}" for v in values]
        return f"{name[:24]:<24} " + " ".join(cells)

    header = f"{'image':<24} " + " ".join(f"{m:>9}" for m in RESOLVED)
    lines = [f"Resolution, decorrelation analysis ({unit}; smaller is finer)", header]
    lines += ["-" * len(header)] + [line(r["name"], r["resolution"]) for r in rows]
    lines += [
        "-" * len(header),
        line(f"mean ({len(rows)})", summarize_resolution(rows)),
    ]
    return "\n".join(lines)


def format_table(rows: list[dict]) -> str:
    """Per-image and mean scores as an aligned text table."""

    def scores(values):
        return f"{values['psnr']:8.2f} {values['ssim']:7.4f} {values['nrmse']:7.4f}"

    def line(name, row):
        text = f"{name[:24]:<24} {scores(row['model'])} | {scores(row['bicubic'])}"
        if "model_registered" in row:
            registered = row["model_registered"]
            text += f" | {registered['psnr']:8.2f} {registered['ssim']:7.4f}"
        return text

    group = f"{'PSNR':>8} {'SSIM':>7} {'NRMSE':>7}"
    header = f"{'image':<24} {group} | {group} | {'PSNR':>8} {'SSIM':>7}"
    title = f"{'':<24} {'model':^24} | {'bicubic':^24} | {'model, registered':^16}"
    lines = [title, header, "-" * len(header)]
    lines += [line(r["name"], r) for r in rows]
    lines += ["-" * len(header), line(f"mean ({len(rows)})", summarize_scores(rows))]
    return "\n".join(lines)


def write_report(rows: list[dict], path: str) -> None:
    """Write scores as JSON (per image + mean) or CSV (one row per image),
    by the file's extension, atomically."""
    import csv
    import json

    with (
        atomic_path(path) as tmp,
        open(tmp, "w", newline="", encoding="utf-8") as stream,
    ):
        if str(path).lower().endswith(".csv"):
            writer = csv.writer(stream)
            methods = [m for m in METHODS if all(m in row for row in rows)]
            resolved = all("resolution" in row for row in rows)
            units = (
                [(m, u) for m in RESOLVED for u in ("pixels", "nm")] if resolved else []
            )
            writer.writerow(
                ["image"]
                + [f"{m}_{k}" for m in methods for k in METRICS]
                + [f"{m}_resolution_{u}" for m, u in units]
            )
            for row in rows:
                res = [row["resolution"][m][u] for m, u in units]
                writer.writerow(
                    [row["name"]]
                    + [f"{row[m][k]:.6g}" for m in methods for k in METRICS]
                    + ["" if v is None else f"{v:.6g}" for v in res]
                )
        else:
            mean = summarize_scores(rows)
            if all("resolution" in row for row in rows):
                mean["resolution"] = summarize_resolution(rows)
            json.dump({"mean": mean, "images": rows}, stream, indent=2)
