"""Where a prediction's error lies in spatial frequency, for `peers.py`.

PSNR says how large an error is, not which part of the image it is in. SIM
reconstruction has to bring in frequencies beyond the widefield band from the
moire sidebands, so the error of each system (after the same least-squares
affine fit the CARE-style evaluation uses) is split into rings of spatial
frequency and printed per ring relative to CARE's: a ratio above 1 in the
outer rings and near 1 in the inner ones says that what is missing is the
reconstruction, not the denoising.
"""

from __future__ import annotations

import itertools

import numpy as np

from keras_unet_sr.data.normalization import percentile_normalize
from keras_unet_sr.quality.evaluation import REFERENCE_PERCENTILES, fit_affine

# Ring edges, as fractions of the output grid's Nyquist frequency.
EDGES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)


def band_errors(prediction: np.ndarray, target: np.ndarray) -> list[float]:
    """Mean error power per frequency ring of `(H, W)` images, in the units of
    `evaluate_prediction` (the target percentile-normalized, the prediction
    affinely fitted to it)."""
    target = target.reshape(target.shape[:2]).astype(np.float32)
    target, _, _ = percentile_normalize(target[..., None], REFERENCE_PERCENTILES)
    target = target.numpy()[..., 0].astype(np.float64)
    prediction = prediction.reshape(target.shape).astype(np.float64)
    error = fit_affine(prediction, target) - target
    power = np.abs(np.fft.fft2(error)) ** 2 / error.size
    fy = np.fft.fftfreq(error.shape[0])[:, np.newaxis]
    fx = np.fft.fftfreq(error.shape[1])[np.newaxis, :]
    radius = np.hypot(fy, fx) / 0.5  # 1 at the Nyquist frequency
    return [
        float(power[(radius >= lo) & (radius < hi)].mean())
        for lo, hi in itertools.pairwise(EDGES)
    ]


def print_bands(mean: dict, indent: str) -> None:
    """One line per system: its mean ring error over CARE's."""
    care = np.asarray(mean["care"]["bands"])
    rings = " ".join(f"{lo:.1f}-{hi:.1f}" for lo, hi in itertools.pairwise(EDGES))
    print(f"{indent}error power by frequency ring (x Nyquist: {rings}), over CARE's:")
    for system, scores in mean.items():
        ratios = np.asarray(scores["bands"]) / care
        print(f"{indent}  {system:10s} " + " ".join(f"{r:7.2f}" for r in ratios))
