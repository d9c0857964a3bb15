"""Camera model of the synthetic microscopy data: light level and noise.

Scales noise-free images to expected photons, then applies Poisson shot noise,
gain, offset and Gaussian read noise to give uint16 counts. The model and its
ranges are in ``README.md`` ("Physics of the synthetic configs").
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["MAX_ADU", "draw_peak_photons", "read_out", "to_photons"]

#: Largest camera value (16-bit ADC); counts are clipped to [0, MAX_ADU].
MAX_ADU = 65535


def draw_peak_photons(
    rng: np.random.Generator, peak_photons: tuple[float, float]
) -> float:
    """Draws the light level of one image, log-uniformly.

    Args:
        rng: Stream for the draw (one uniform).
        peak_photons: ``(low, high)`` range, ``0 < low <= high``.

    Returns:
        Photons per pixel and frame at the brightest in-focus structure.
    """
    lo, hi = peak_photons
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def to_photons(frames: np.ndarray, peak: float) -> np.ndarray:
    """Scales noise-free frames to expected photons per pixel.

    Args:
        frames: ``(frames, h, w)`` noise-free camera images, arbitrary units.
        peak: Photons at the brightest pixel of the frame average.

    Returns:
        Non-negative float64 expected photons, same shape as ``frames``.
    """
    # The frame average (for SIM, the widefield-equivalent image) sets the scale.
    reference = frames.mean(axis=0).max()
    return np.maximum(frames, 0.0) * (peak / reference)


def read_out(
    photons: np.ndarray,
    rng: np.random.Generator,
    *,
    gain: tuple[float, float],
    offset_adu: float,
    read_noise_adu: float,
) -> np.ndarray:
    """Poisson shot noise, gain, offset and read noise -> uint16 ADU.

    Args:
        photons: Expected photons per pixel (any shape).
        rng: Noise stream (gain, then shot noise, then read noise).
        gain: Range of the gain drawn for this image, ADU/photon.
        offset_adu: Camera offset (bias), ADU.
        read_noise_adu: Gaussian read-noise rms, ADU.

    Returns:
        Rounded camera counts clipped to ``[0, MAX_ADU]``, uint16.
    """
    g = rng.uniform(*gain)
    counts = rng.poisson(photons).astype(np.float64)
    adu = offset_adu + g * counts
    adu += rng.normal(0.0, read_noise_adu, size=photons.shape)
    return np.clip(np.rint(adu), 0, MAX_ADU).astype(np.uint16)
