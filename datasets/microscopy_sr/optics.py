"""Optics of the synthetic microscopy data: transfer functions, blur, binning.

Microscope constants, the circular-pupil OTFs and the confocal/ISM PSFs, FFT
blur on a periodic canvas, camera-pixel binning and the SIM illumination. The
model and its numbers are explained in ``README.md`` ("Physics of the synthetic
configs"). Frequencies are in cycles per fine pixel.
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = [
    "CAMERA_BINNING",
    "CANVAS_MARGIN",
    "CUTOFF",
    "EMISSION_WAVELENGTH_NM",
    "EXCITATION_WAVELENGTH_NM",
    "FINE_PIXEL_NM",
    "NUMERICAL_APERTURE",
    "OUT_OF_FOCUS_SIGMA_NM",
    "PINHOLE_AIRY_UNITS",
    "SR_CUTOFF_FACTOR",
    "bin_pixels",
    "blur",
    "canvas_size",
    "sim_illumination",
    "transfer_function",
]

#: Objective numerical aperture (oil immersion).
NUMERICAL_APERTURE = 1.4
#: Emission (detection) wavelength in nm (GFP/Alexa 488 emission).
EMISSION_WAVELENGTH_NM = 520.0
#: Excitation wavelength in nm; only the confocal excitation PSF uses it.
EXCITATION_WAVELENGTH_NM = 488.0
#: Fine (rendering and SIM-target) pixel size in the sample plane, nm.
FINE_PIXEL_NM = 32.0
#: Camera pixel / fine pixel: camera images are 2x2 sums of the fine grid.
CAMERA_BINNING = 2
#: Widefield OTF cutoff 2 NA / lambda_em in cycles per fine pixel (~0.172).
CUTOFF = 2.0 * NUMERICAL_APERTURE / EMISSION_WAVELENGTH_NM * FINE_PIXEL_NM
#: SIM / widefield-SR target cutoff in units of CUTOFF (k_c + nominal |k_p|).
SR_CUTOFF_FACTOR = 1.85
#: Confocal pinhole diameter in Airy units (1 AU = 1.22 lambda_em / NA).
PINHOLE_AIRY_UNITS = 1.0
#: Sigma of the out-of-focus haze blur, nm.
OUT_OF_FOCUS_SIGMA_NM = 500.0
#: Minimum canvas margin around the field, fine pixels (~2 Airy radii).
CANVAS_MARGIN = 16


def canvas_size(field: int) -> int:
    """Smallest 2,3,5-smooth size >= field + 2 margins (fast FFTs).

    Args:
        field: Side of the fine-grid field of view, fine pixels.

    Returns:
        The side of the square, periodic rendering canvas.
    """
    size = field + 2 * CANVAS_MARGIN
    while True:
        rest = size
        for p in (2, 3, 5):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return size
        size += 1


@functools.lru_cache(maxsize=16)
def _radial_frequency(canvas: int) -> np.ndarray:
    """|k| in cycles per fine pixel on the rfft2 grid of a square canvas."""
    ky = np.fft.fftfreq(canvas)[:, None]
    kx = np.fft.rfftfreq(canvas)[None, :]
    k = np.hypot(ky, kx)
    k.setflags(write=False)
    return k


def _pupil_otf(canvas: int, cutoff: float) -> np.ndarray:
    """Incoherent OTF of a circular pupil (DC = 1), cutoff in cycles/pixel."""
    rho = np.minimum(_radial_frequency(canvas) / cutoff, 1.0)
    return (2.0 / np.pi) * (np.arccos(rho) - rho * np.sqrt(1.0 - rho * rho))


def _psf_from_otf(canvas: int, otf: np.ndarray) -> np.ndarray:
    """Non-negative PSF (origin at [0, 0], periodic) from an rfft2 OTF."""
    return np.maximum(np.fft.irfft2(otf, s=(canvas, canvas)), 0.0)


def _otf_from_psf(psf: np.ndarray) -> np.ndarray:
    otf = np.fft.rfft2(psf)
    return otf / otf[0, 0].real


@functools.lru_cache(maxsize=16)
def transfer_function(canvas: int, kind: str) -> np.ndarray:
    """Cached rfft2-grid OTF of one imaging path (read-only).

    Args:
        canvas: Side of the square canvas, fine pixels.
        kind: ``"widefield"``, ``"sim"`` (SIM target), ``"haze"``
            (out-of-focus blur), ``"confocal"`` (1 AU pinhole) or ``"ism"``
            (closed pinhole).

    Returns:
        The OTF, normalized to 1 at DC, of shape ``(canvas, canvas // 2 + 1)``.

    Raises:
        KeyError: Unknown ``kind``.
    """
    k = _radial_frequency(canvas)
    if kind == "widefield":
        otf = _pupil_otf(canvas, CUTOFF)
    elif kind == "sim":
        otf = _pupil_otf(canvas, SR_CUTOFF_FACTOR * CUTOFF)
    elif kind == "haze":
        sigma = OUT_OF_FOCUS_SIGMA_NM / FINE_PIXEL_NM
        otf = np.exp(-2.0 * (np.pi * sigma * k) ** 2)
    elif kind in ("confocal", "ism"):
        ex_cutoff = 2.0 * NUMERICAL_APERTURE / EXCITATION_WAVELENGTH_NM * FINE_PIXEL_NM
        psf_ex = _psf_from_otf(canvas, _pupil_otf(canvas, ex_cutoff))
        em_otf = _pupil_otf(canvas, CUTOFF)
        if kind == "confocal":
            # Detection PSF = emission PSF convolved with the pinhole disk.
            radius = PINHOLE_AIRY_UNITS * 0.61 * EMISSION_WAVELENGTH_NM
            radius /= NUMERICAL_APERTURE * FINE_PIXEL_NM
            d = np.fft.fftfreq(canvas) * canvas  # signed periodic coordinates
            r = np.hypot(d[:, None], d[None, :])
            disk = np.clip(radius + 0.5 - r, 0.0, 1.0)  # anti-aliased edge
            em_otf = em_otf * _otf_from_psf(disk)
        otf = _otf_from_psf(psf_ex * _psf_from_otf(canvas, em_otf))
    else:  # pragma: no cover - internal
        raise KeyError(kind)
    otf = np.ascontiguousarray(otf)
    otf.setflags(write=False)
    return otf


def blur(spectrum: np.ndarray, otf: np.ndarray, canvas: int) -> np.ndarray:
    """Periodic convolution on the canvas, in Fourier space.

    Args:
        spectrum: ``np.fft.rfft2`` of the image(s), last two axes the canvas.
        otf: An rfft2-grid OTF such as ``transfer_function`` returns.
        canvas: Side of the square canvas, fine pixels.

    Returns:
        The blurred image(s), real, ``(..., canvas, canvas)``.
    """
    return np.fft.irfft2(spectrum * otf, s=(canvas, canvas))


def bin_pixels(image: np.ndarray, factor: int) -> np.ndarray:
    """Sums factor x factor blocks over the last two axes (pixel integration).

    Args:
        image: Array whose last two axes are divisible by ``factor``.
        factor: Block side; 1 returns ``image`` itself.

    Returns:
        The binned array, last two axes ``factor`` times smaller.
    """
    if factor == 1:
        return image
    *lead, h, w = image.shape
    shaped = image.reshape(*lead, h // factor, factor, w // factor, factor)
    return shaped.sum(axis=(-3, -1))


def sim_illumination(
    rng: np.random.Generator,
    canvas: int,
    *,
    angles: int,
    phases: int,
    angle_jitter_deg: float,
    pattern_frequency: tuple[float, float],
    modulation: tuple[float, float],
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Sinusoidal SIM patterns ``1 + m cos(2 pi k_p . x + phi)``, angle-major.

    Args:
        rng: Stream for the pattern draws (jitter, frequencies, modulations and
            phase offsets, in that order).
        canvas: Side of the square canvas, fine pixels.
        angles: Pattern orientations (0, 60, 120 degrees plus a common jitter).
        phases: Phases per orientation, ``2 pi p / phases`` plus an offset.
        angle_jitter_deg: Half-range of the common rotation jitter, degrees.
        pattern_frequency: Range of ``|k_p| / CUTOFF``, drawn per orientation.
        modulation: Range of the modulation depth ``m``, drawn per orientation.

    Returns:
        ``(patterns, info)``: patterns ``(angles * phases, canvas, canvas)``
        ordered ``[a0p0, a0p1, ..., a1p0, ...]``, and their parameters under
        ``"angles"``, ``"frequencies"``, ``"modulations"`` and ``"phases"``.
    """
    n_a, n_p = angles, phases
    jitter = np.deg2rad(rng.uniform(-1.0, 1.0) * angle_jitter_deg)
    thetas = jitter + np.deg2rad(60.0) * np.arange(n_a)
    freqs = CUTOFF * rng.uniform(*pattern_frequency, size=n_a)
    mods = rng.uniform(*modulation, size=n_a)
    offsets = rng.uniform(0.0, 2 * np.pi, size=n_a)
    phis = offsets[:, None] + 2 * np.pi * np.arange(n_p)[None, :] / n_p
    coord = np.arange(canvas, dtype=np.float64)
    patterns = np.empty((n_a, n_p, canvas, canvas))
    for a in range(n_a):
        kx, ky = freqs[a] * math.cos(thetas[a]), freqs[a] * math.sin(thetas[a])
        for p in range(n_p):
            # cos(A + B) = cos A cos B - sin A sin B keeps this separable.
            ax = 2 * np.pi * kx * coord + phis[a, p]
            by = 2 * np.pi * ky * coord
            outer = np.outer(np.cos(by), np.cos(ax)) - np.outer(np.sin(by), np.sin(ax))
            patterns[a, p] = 1.0 + mods[a] * outer
    info = {
        "angles": thetas,
        "frequencies": freqs,
        "modulations": mods,
        "phases": phis,
    }
    return patterns.reshape(n_a * n_p, canvas, canvas), info
