"""Resolution estimates (decorrelation analysis, FRC) on images whose band
limit is set: the cutoff must come back within 5 %."""

from __future__ import annotations

import numpy as np
import pytest

from keras_unet_sr.quality.resolution import (
    Resolution,
    decorrelation_resolution,
    frc_resolution,
)

SIDE = 256


def band_limited(cutoff: float, rng: np.random.Generator) -> np.ndarray:
    """A random image with a flat spectrum up to `cutoff` (Nyquist = 1) and
    nothing above, cropped from a periodic one twice its size so that its
    edges are not periodic (as a real field of view)."""
    n = 2 * SIDE
    ky = np.fft.fftfreq(n)[:, np.newaxis] * 2
    kx = np.fft.fftfreq(n)[np.newaxis, :] * 2
    spectrum = np.fft.fft2(rng.standard_normal((n, n)))
    spectrum[np.hypot(ky, kx) >= cutoff] = 0
    image = np.real(np.fft.ifft2(spectrum))[SIDE // 2 : SIDE // 2 + SIDE, :SIDE]
    return 5.0 + image / image.std()


@pytest.mark.parametrize("cutoff", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("noise", [0.1, 0.3])
def test_decorrelation_finds_the_band_limit(cutoff, noise):
    rng = np.random.default_rng(int(cutoff * 100) + int(noise * 10))
    image = band_limited(cutoff, rng) + noise * rng.standard_normal((SIDE, SIDE))
    found = decorrelation_resolution(image)
    assert found.cutoff == pytest.approx(cutoff, rel=0.05)


@pytest.mark.parametrize("cutoff", [0.5, 0.7])
def test_frc_of_two_noisy_acquisitions_finds_the_band_limit(cutoff):
    rng = np.random.default_rng(7)
    clean = band_limited(cutoff, rng)
    first = clean + 0.3 * rng.standard_normal(clean.shape)
    second = clean + 0.3 * rng.standard_normal(clean.shape)
    assert frc_resolution(first, second).cutoff == pytest.approx(cutoff, rel=0.05)


def test_a_blurred_image_has_a_lower_resolution(rng):
    image = band_limited(0.8, rng) + 0.1 * rng.standard_normal((SIDE, SIDE))
    ky = np.fft.fftfreq(SIDE)[:, np.newaxis] * 2
    kx = np.fft.fftfreq(SIDE)[np.newaxis, :] * 2
    blurred = np.real(
        np.fft.ifft2(np.fft.fft2(image) * np.exp(-((np.hypot(ky, kx) / 0.3) ** 2)))
    ) + 0.01 * rng.standard_normal((SIDE, SIDE))
    sharp, soft = decorrelation_resolution(image), decorrelation_resolution(blurred)
    assert soft.cutoff < 0.75 * sharp.cutoff


def test_units():
    estimate = Resolution(cutoff=0.5)
    assert estimate.pixels == 4.0
    assert estimate.nanometres(30.0) == 120.0
    assert estimate.nanometres(None) is None
    assert Resolution(cutoff=0.0).pixels == float("inf")
