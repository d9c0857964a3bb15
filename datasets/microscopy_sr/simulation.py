"""Deterministic synthetic paired data for fluorescence super-resolution.

This module renders a random fluorophore density (a "cell" with microtubule-like
filaments, vesicles and mitochondria), images it through a physical optical model
plus camera noise to obtain the raw *low* input, and computes the noise-free,
higher-resolution *high* target. It is the embedded default dataset: small,
fast, and with a genuine learning problem (the SIM frames carry super-resolution
information in their moire fringes; they are not just noisy copies of the target).

It depends only on NumPy and the standard library so it can be imported on its own.

Sampling grids
    Everything is rendered on a *fine grid* of ``FINE_PIXEL_NM`` = 32 nm pixels.
    The camera pixel is ``CAMERA_BINNING`` = 2 times coarser (64 nm in the sample
    plane): camera images are the optically blurred fine-grid image summed over
    2x2 blocks (pixel integration). The fine field is ``2 * low_size`` pixels
    wide and is rendered on a canvas ``CANVAS_MARGIN`` (>= 16) fine pixels larger
    on each side, then cropped; the FFT convolutions are periodic on that canvas,
    and the margin keeps the point-spread-function core from wrapping around (the
    wrapped far tails statistically replace the structures outside the canvas, so
    the borders show neither a dark rim nor seams).

Optics (all frequencies in cycles per fine pixel)
    Widefield: the incoherent OTF of an aberration-free circular pupil,
    ``OTF(rho) = 2/pi * (arccos(rho) - rho * sqrt(1 - rho**2))`` for
    ``rho = k / k_c <= 1`` and 0 beyond, with cutoff ``k_c = 2 NA / lambda_em``.
    With ``NUMERICAL_APERTURE`` = 1.4 and ``EMISSION_WAVELENGTH_NM`` = 520 nm,
    ``k_c`` = 1/(186 nm) = 0.172 cycles/fine pixel (Abbe limit 186 nm, PSF FWHM
    ~190 nm). The 64 nm camera pixel samples this above Nyquist.

    SIM (``sim9``: 3 orientations x 3 phases; ``sim3``: 3 orientations x 1
    phase): the in-focus density is multiplied by the illumination
    ``I(x) = 1 + m cos(2 pi k_p . x + phi)`` before the widefield blur. The three
    orientations are 0, 60 and 120 degrees plus a per-image rotation jitter;
    ``|k_p|`` is drawn in ``Modality.pattern_frequency`` (0.80-0.90 ``k_c``) and
    the modulation depth ``m`` in ``Modality.modulation`` (0.80-0.90), both per
    orientation; the phases are ``2 pi p / phases`` plus a random offset per
    orientation. Frames are stored angle-major: ``[a0p0, a0p1, a0p2, a1p0, ...]``.

    SIM target (``sim9``, ``sim3``, ``widefield``): the density blurred by the
    same circular-pupil OTF formula with the extended cutoff
    ``SR_CUTOFF_FACTOR * k_c`` = 1.85 ``k_c`` (= ``k_c + |k_p|`` for the nominal
    0.85 ``k_c`` pattern), i.e. an ideal, noise-free linear SIM reconstruction
    (resolution ~100 nm), on the fine grid.

    Confocal input: point-scanning PSF ``PSF_ex * (PSF_em conv pinhole)`` with
    excitation at ``EXCITATION_WAVELENGTH_NM`` = 488 nm, emission at 520 nm and a
    ``PINHOLE_AIRY_UNITS`` = 1 AU pinhole (each intensity PSF from the
    circular-pupil OTF at its wavelength). Its OTF reaches ~2 ``k_c`` but is
    strongly attenuated: FWHM ~176 nm, ~0.92x the widefield one.
    ISM target: the closed-pinhole product ``PSF_ex * PSF_em``, i.e. the
    resolution of ideal pixel-reassignment ISM / Airyscan (FWHM ~130 nm,
    ~widefield / sqrt(2)), noise-free. Both confocal images are simulated on the
    fine grid and then binned 2x2, so input and target share the 64 nm grid
    (``scale`` 1); the scan pixel is thus modelled as integrating its area.

    Out-of-focus haze (``sim9``, ``sim3``, ``widefield`` only): a Gaussian blur
    (sigma ``OUT_OF_FOCUS_SIGMA_NM`` = 500 nm) of the same density, unmodulated by
    the SIM pattern (the pattern contrast vanishes out of focus), added to every
    input frame with a peak drawn in ``Modality.out_of_focus`` (0-12 % of the
    in-focus peak). Absent from the targets, and from confocal (optical sectioning).

Camera (all modalities)
    Expected photons per pixel and frame are the noise-free camera image scaled
    so the brightest in-focus structure of the frame-averaged image receives
    ``peak_photons`` photons, drawn log-uniformly per image in
    ``Modality.peak_photons`` (15-1500 for SIM and widefield, 5-200 for the
    photon-starved confocal). Then Poisson shot noise, a gain drawn per image in
    ``Modality.camera_gain`` (1-2 ADU/photon), an offset of
    ``Modality.camera_offset_adu`` (100 ADU) and Gaussian read noise of
    ``Modality.read_noise_adu`` (1.5 ADU rms); rounded and clipped to uint16.

Specimen (fine-pixel units, rendered sub-pixel accurately by dense point
sampling and bilinear splatting)
    A cell outline (a wobbly ellipse centred inside the field, semi-axes 45-100 %
    of the field width) confines all structures; the rest of the field, and the
    gaps between structures, is empty background (typically 10-35 % of target
    pixels exceed 10 % of its maximum). Each image is a random mix (vesicles,
    and either filaments or mitochondria, may be absent) with lognormal
    per-structure brightness, balanced so the classes peak within ~2x of each
    other in widefield:

    * filaments (microtubules): smooth persistent random walks 100-600 px long
      with slowly varying curvature and labelling density, infinitely thin
      (below any resolution here), ending where they leave the cell;
    * vesicles: filled disks (radius 1.5-5 px) and rings (hollow circles,
      radius 3-10 px);
    * mitochondria: gently curved capsules 30-100 px long and 10-20 px wide
      whose *membrane* is labelled: the surface of the 3-D tube is projected
      with a Gaussian focal-section weight (sigma 200 nm) on the height, which
      gives a hollow outline with a dim interior.

The target is scaled so its maximum is exactly 1 (per image: absolute brightness
is carried by the input only). The same seed and ``low_size`` give the same
specimen for every modality (the specimen, optics and noise use independent
random streams spawned from the seed).

Simplifications
    Thin 2-D specimen (no 3-D PSF; out-of-focus light only as the haze above);
    scalar, aberration-free optics (no vectorial high-NA or refractive-index
    mismatch effects); ideal sinusoidal SIM patterns (no pattern harmonics,
    bleaching or drift between frames); one emission wavelength; the point
    detector of the confocal is modelled with the same camera noise; no sCMOS
    pixel-to-pixel offset/gain variation, hot pixels or EM gain.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["MODALITIES", "Modality", "simulate_pair"]

# --- Microscope and sampling -------------------------------------------------

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
#: Smallest accepted ``low_size``.
MIN_LOW_SIZE = 16

# --- Specimen (fine pixels; densities per fine pixel^2 of cell area) ---------

#: Sample spacing along curves; <= 0.5 px keeps bilinear splats seamless.
_STEP = 0.5
#: Filament length range (px) and expected starts per px^2 of cell.
_FILAMENT_LENGTH = (100.0, 600.0)
_FILAMENT_DENSITY = 2.5e-4
#: Filament curvature: per-filament mean and smooth fluctuation, 1/px, with
#: control points every _FILAMENT_CONTROL px (radius of curvature ~ 2-10 um).
_FILAMENT_MEAN_CURVATURE_SD = 1.0 / 400.0
_FILAMENT_CURVATURE_SD = 1.0 / 120.0
_FILAMENT_CONTROL = 30.0
#: Relative rms of the slowly varying labelling density along a filament.
_FILAMENT_LABEL_SD = 0.2
#: Vesicle counts per px^2 and radii (px).
_VESICLE_DENSITY = 5.0e-4
_RING_RADIUS = (3.0, 10.0)
_SPOT_RADIUS = (1.5, 5.0)
#: Points per vesicle (rings: along the circle; spots: sunflower in the disk).
_VESICLE_POINTS = 128
#: Mitochondria counts per px^2, total length and width ranges (px).
_MITO_DENSITY = 2.0e-4
_MITO_LENGTH = (30.0, 100.0)
_MITO_WIDTH = (10.0, 20.0)
#: Largest total bend of a mitochondrion, radians.
_MITO_MAX_BEND = 1.2
#: Gaussian focal-section sigma (px, 200 nm) weighting the membrane by its
#: height above/below focus: the top and bottom membranes of wide mitochondria
#: fade and the outline reads hollow, as in sectioned SIM/ISM images.
_MITO_SECTION_SIGMA = 200.0 / FINE_PIXEL_NM
#: Brightness per unit length (filaments, rings), per unit area times radius
#: (spots: small puncta are denser) and per unit membrane area (mitochondria);
#: balanced so that after the widefield blur all classes peak within ~2x.
_BRIGHTNESS = {"filament": 1.0, "ring": 1.0, "spot": 2.0, "mito": 0.07}
#: Lognormal sigma of the per-structure brightness.
_BRIGHTNESS_SD = 0.35
#: Probability that a class is absent from an image (filaments or mitochondria
#: always remain); class density multipliers are lognormal with this sigma.
_CLASS_ABSENT = {"filament": 0.25, "vesicle": 0.25, "mito": 0.4}
_CLASS_DENSITY_SD = 0.5
#: Cell semi-axes as a fraction of the field width.
_CELL_SEMI_AXIS = (0.45, 1.0)

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


@dataclasses.dataclass(frozen=True)
class Modality:
    """One simulated imaging modality.

    Attributes:
        name: Registry key: ``"sim9"``, ``"sim3"``, ``"confocal"``, ``"widefield"``.
        frames: Number of raw input frames.
        scale: High-grid / low-grid pixel ratio (1 or 2).
        description: One sentence for the dataset README / config.
        angles: SIM pattern orientations (0: uniform illumination).
        phases: SIM phases per orientation (0: uniform illumination).
        input_psf: ``"widefield"`` or ``"confocal"`` (1 AU pinhole).
        target_psf: ``"sim"`` (circular pupil, SR_CUTOFF_FACTOR * k_c) or
            ``"ism"`` (closed-pinhole confocal, ideal ISM).
        pattern_frequency: Range of ``|k_p| / k_c``, drawn per orientation.
        modulation: Range of the modulation depth ``m``, drawn per orientation.
        angle_jitter_deg: Half-range of the per-image rotation of the
            0/60/120 degree pattern orientations.
        peak_photons: Range (log-uniform draw per image) of the photons per pixel
            per frame at the brightest in-focus structure.
        out_of_focus: Range of the out-of-focus haze peak, relative to the
            in-focus peak.
        camera_offset_adu: Camera offset (bias), ADU.
        camera_gain: Range of the camera gain (drawn per image), ADU/photon.
        read_noise_adu: Gaussian read-noise rms, ADU.
    """

    name: str
    frames: int
    scale: int
    description: str
    angles: int = 0
    phases: int = 0
    input_psf: str = "widefield"
    target_psf: str = "sim"
    pattern_frequency: tuple[float, float] = (0.80, 0.90)
    modulation: tuple[float, float] = (0.80, 0.90)
    angle_jitter_deg: float = 5.0
    peak_photons: tuple[float, float] = (15.0, 1500.0)
    out_of_focus: tuple[float, float] = (0.0, 0.12)
    camera_offset_adu: float = 100.0
    camera_gain: tuple[float, float] = (1.0, 2.0)
    read_noise_adu: float = 1.5

    def __post_init__(self) -> None:
        expected_frames = self.angles * self.phases if self.angles else 1
        if self.frames != expected_frames:
            raise ValueError(
                f"Modality {self.name!r}: frames={self.frames} but "
                f"angles x phases gives {expected_frames}."
            )
        if self.scale not in (1, CAMERA_BINNING):
            raise ValueError(f"Modality {self.name!r}: scale must be 1 or 2.")
        if self.input_psf not in ("widefield", "confocal"):
            raise ValueError(f"Modality {self.name!r}: unknown input_psf.")
        if self.target_psf not in ("sim", "ism"):
            raise ValueError(f"Modality {self.name!r}: unknown target_psf.")
        if self.angles and self.input_psf != "widefield":
            raise ValueError(f"Modality {self.name!r}: SIM needs widefield input.")
        if not 0 < self.peak_photons[0] <= self.peak_photons[1]:
            raise ValueError(f"Modality {self.name!r}: bad peak_photons range.")


MODALITIES: dict[str, Modality] = {
    m.name: m
    for m in (
        Modality(
            name="sim9",
            frames=9,
            scale=2,
            angles=3,
            phases=3,
            description=(
                "Simulated 2D-SIM: 9 raw frames (3 pattern orientations x 3 "
                "phases, 64 nm camera pixels) to the ideal SIM reconstruction "
                "on a 32 nm grid."
            ),
        ),
        Modality(
            name="sim3",
            frames=3,
            scale=2,
            angles=3,
            phases=1,
            description=(
                "Simulated reduced-phase SIM: 3 raw frames (3 pattern "
                "orientations x 1 phase, 64 nm camera pixels) to the ideal SIM "
                "reconstruction on a 32 nm grid."
            ),
        ),
        Modality(
            name="confocal",
            frames=1,
            scale=1,
            input_psf="confocal",
            target_psf="ism",
            peak_photons=(5.0, 200.0),
            out_of_focus=(0.0, 0.0),
            description=(
                "Simulated photon-starved confocal (1 AU pinhole) to noise-free "
                "ISM/Airyscan resolution, both on a 64 nm grid."
            ),
        ),
        Modality(
            name="widefield",
            frames=1,
            scale=2,
            description=(
                "Simulated widefield frame (64 nm camera pixels) to the ideal "
                "SIM-resolution image on a 32 nm grid."
            ),
        ),
    )
}


# --- Validation ---------------------------------------------------------------


def _resolve_modality(modality: str | Modality) -> Modality:
    if isinstance(modality, Modality):
        return modality
    if isinstance(modality, str) and modality in MODALITIES:
        return MODALITIES[modality]
    raise ValueError(
        f"Unknown modality {modality!r}; known modalities: "
        f"{', '.join(sorted(MODALITIES))}."
    )


def _check_low_size(low_size: int) -> int:
    if isinstance(low_size, bool) or not isinstance(low_size, int | np.integer):
        raise ValueError(f"low_size must be an integer, got {low_size!r}.")
    if low_size < MIN_LOW_SIZE:
        raise ValueError(f"low_size must be >= {MIN_LOW_SIZE}, got {low_size}.")
    return int(low_size)


def _spawn_rngs(seed: int | Sequence[int]) -> list[np.random.Generator]:
    """Specimen, optics and noise streams, independent of each other."""
    try:
        root = np.random.default_rng(seed)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"seed must be a non-negative int or a sequence of them, got {seed!r}."
        ) from err
    return root.spawn(3)


# --- Grids and transfer functions ---------------------------------------------


def _canvas_size(field: int) -> int:
    """Smallest 2,3,5-smooth size >= field + 2 margins (fast FFTs)."""
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
def _transfer_function(canvas: int, kind: str) -> np.ndarray:
    """Cached rfft2-grid OTF of one imaging path (read-only)."""
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


def _blur(spectrum: np.ndarray, otf: np.ndarray, canvas: int) -> np.ndarray:
    return np.fft.irfft2(spectrum * otf, s=(canvas, canvas))


def _bin(image: np.ndarray, factor: int) -> np.ndarray:
    """Sum factor x factor blocks over the last two axes."""
    if factor == 1:
        return image
    *lead, h, w = image.shape
    shaped = image.reshape(*lead, h // factor, factor, w // factor, factor)
    return shaped.sum(axis=(-3, -1))


# --- Specimen -----------------------------------------------------------------


class _Cell(NamedTuple):
    """Wobbly ellipse (canvas coordinates, fine pixels)."""

    cx: float
    cy: float
    a: float
    b: float
    angle: float
    wobble: np.ndarray  # (3, 2): amplitude, phase of harmonics 2..4

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        dx, dy = x - self.cx, y - self.cy
        c, s = math.cos(self.angle), math.sin(self.angle)
        u, v = (c * dx + s * dy) / self.a, (-s * dx + c * dy) / self.b
        theta = np.arctan2(v, u)
        edge = 1.0
        for n, (amp, phase) in enumerate(self.wobble, start=2):
            edge = edge + amp * np.cos(n * theta + phase)
        return u * u + v * v < edge * edge


def _random_cell(rng: np.random.Generator, field: int, margin: int) -> _Cell:
    # Centre inside the field so every field has some cell in it.
    cx, cy = margin + field * rng.uniform(0.15, 0.85, size=2)
    a, b = field * rng.uniform(*_CELL_SEMI_AXIS, size=2)
    wobble = np.stack(
        [rng.uniform(0.0, 0.08, 3), rng.uniform(0.0, 2 * np.pi, 3)], axis=1
    )
    return _Cell(cx, cy, a, b, rng.uniform(0.0, np.pi), wobble)


def _poisson_points(
    rng: np.random.Generator, density: float, cell: _Cell, canvas: int
) -> np.ndarray:
    """Homogeneous Poisson points (n, 2) on the canvas, kept inside the cell."""
    n = rng.poisson(density * canvas * canvas)
    xy = rng.uniform(0.0, canvas - 1.0, size=(n, 2))
    return xy[cell.contains(xy[:, 0], xy[:, 1])]


def _brightness(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    return _BRIGHTNESS[kind] * rng.lognormal(0.0, _BRIGHTNESS_SD, n)


def _smooth_random(
    rng: np.random.Generator, n_curves: int, n_steps: int, spacing: float, sd: float
) -> np.ndarray:
    """(n_curves, n_steps) random curves, linear between control points."""
    n_ctrl = int(n_steps * _STEP / spacing) + 2
    ctrl = rng.normal(0.0, sd, size=(n_curves, n_ctrl))
    pos = np.arange(n_steps) * (_STEP / spacing)
    i0 = pos.astype(np.intp)
    frac = pos - i0
    return ctrl[:, i0] * (1.0 - frac) + ctrl[:, i0 + 1] * frac


def _filaments(
    rng: np.random.Generator, density: float, cell: _Cell, canvas: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Persistent random walks from random starts, truncated at the cell edge."""
    starts = _poisson_points(rng, density, cell, canvas)
    n = len(starts)
    lengths = rng.uniform(*_FILAMENT_LENGTH, size=n)
    heading0 = rng.uniform(0.0, 2 * np.pi, size=(n, 1))
    mean_curv = rng.normal(0.0, _FILAMENT_MEAN_CURVATURE_SD, size=(n, 1))
    weight = _brightness(rng, "filament", n)[:, None] * _STEP
    steps = int(_FILAMENT_LENGTH[1] / _STEP)
    curv = mean_curv + _smooth_random(
        rng, n, steps, _FILAMENT_CONTROL, _FILAMENT_CURVATURE_SD
    )
    label = 1.0 + _smooth_random(rng, n, steps, _FILAMENT_CONTROL, _FILAMENT_LABEL_SD)
    heading = heading0 + np.cumsum(curv, axis=1) * _STEP
    x = starts[:, :1] + np.cumsum(np.cos(heading), axis=1) * _STEP
    y = starts[:, 1:] + np.cumsum(np.sin(heading), axis=1) * _STEP
    # Keep each walk up to its length and until it first leaves the cell.
    alive = np.arange(steps)[None, :] * _STEP < lengths[:, None]
    alive &= np.cumprod(cell.contains(x, y), axis=1, dtype=bool)
    w = weight * np.maximum(label, 0.0)
    return x[alive], y[alive], w[alive]


def _vesicles(
    rng: np.random.Generator, density: float, cell: _Cell, canvas: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rings (hollow circles) and filled disks, half and half on average."""
    centres = _poisson_points(rng, density, cell, canvas)
    n = len(centres)
    is_ring = rng.random(n) < 0.5
    radius = np.where(
        is_ring, rng.uniform(*_RING_RADIUS, size=n), rng.uniform(*_SPOT_RADIUS, size=n)
    )[:, None]
    ring_b = _brightness(rng, "ring", n)[:, None]
    spot_b = _brightness(rng, "spot", n)[:, None]
    j = np.arange(_VESICLE_POINTS)[None, :]
    # Rings: equally spaced on the circle; spots: sunflower (uniform in area).
    ring_angle = 2 * np.pi * (j + rng.random((n, 1))) / _VESICLE_POINTS
    spot_angle = 2 * np.pi * _GOLDEN * j + rng.uniform(0, 2 * np.pi, (n, 1))
    spot_r = np.sqrt((j + 0.5) / _VESICLE_POINTS)
    angle = np.where(is_ring[:, None], ring_angle, spot_angle)
    r = radius * np.where(is_ring[:, None], 1.0, spot_r)
    w = np.where(
        is_ring[:, None],
        ring_b * 2 * np.pi * radius / _VESICLE_POINTS,
        spot_b * np.pi * radius / _VESICLE_POINTS,
    )
    x = centres[:, :1] + r * np.cos(angle)
    y = centres[:, 1:] + r * np.sin(angle)
    return x.ravel(), y.ravel(), np.broadcast_to(w, x.shape).ravel()


def _mitochondrion(
    rng: np.random.Generator, centre: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Projected membrane of a gently bent capsule (tube with hemispherical caps).

    Uses Archimedes' hat-box theorem: for a tube *and* its hemispherical caps the
    membrane area element is ``R d(alpha) dt`` with ``t`` the axial coordinate, so
    a uniform (t, alpha) grid samples the surface uniformly. Projecting the
    lateral offset ``r(t) cos(alpha)`` gives the edge-bright, hollow look.
    """
    radius = 0.5 * rng.uniform(*_MITO_WIDTH)
    length = max(rng.uniform(*_MITO_LENGTH) - 2 * radius, 0.0)  # straight part
    bend = rng.uniform(-_MITO_MAX_BEND, _MITO_MAX_BEND)
    curvature = bend / max(length, 1.0)
    heading0 = rng.uniform(0.0, 2 * np.pi)
    brightness = _brightness(rng, "mito", 1)[0]
    t = np.arange(-radius + _STEP / 2, length + radius, _STEP)
    heading = heading0 + curvature * (np.clip(t, 0.0, length) - length / 2)
    cx = np.cumsum(np.cos(heading)) * _STEP
    cy = np.cumsum(np.sin(heading)) * _STEP
    mid = len(t) // 2
    cx += centre[0] - cx[mid]
    cy += centre[1] - cy[mid]
    over = np.maximum(np.maximum(-t, t - length), 0.0)  # distance into a cap
    ring = np.sqrt(np.maximum(radius * radius - over * over, 0.0))
    n_alpha = max(8, math.ceil(2 * np.pi * radius / _STEP))
    # Golden-ratio row offsets avoid a regular (t, alpha) lattice.
    row = (np.arange(len(t)) * _GOLDEN)[:, None]
    alpha = 2 * np.pi * (np.arange(n_alpha)[None, :] + row) / n_alpha
    offset = ring[:, None] * np.cos(alpha)
    height = ring[:, None] * np.sin(alpha)
    section = np.exp(-0.5 * (height / _MITO_SECTION_SIGMA) ** 2)
    x = cx[:, None] - np.sin(heading)[:, None] * offset
    y = cy[:, None] + np.cos(heading)[:, None] * offset
    w = brightness * radius * (2 * np.pi / n_alpha) * _STEP * section
    return x.ravel(), y.ravel(), w.ravel()


def _splat(xs: np.ndarray, ys: np.ndarray, ws: np.ndarray, canvas: int) -> np.ndarray:
    """Bilinear splatting of weighted points (pixel centres at integers)."""
    x0, y0 = np.floor(xs), np.floor(ys)
    fx, fy = xs - x0, ys - y0
    ix, iy = x0.astype(np.intp), y0.astype(np.intp)
    keep = (ix >= 0) & (ix < canvas - 1) & (iy >= 0) & (iy < canvas - 1)
    ix, iy, fx, fy, ws = ix[keep], iy[keep], fx[keep], fy[keep], ws[keep]
    idx = iy * canvas + ix
    gx = 1.0 - fx
    gy = 1.0 - fy
    flat = np.bincount(
        np.concatenate([idx, idx + 1, idx + canvas, idx + canvas + 1]),
        weights=np.concatenate(
            [ws * gx * gy, ws * fx * gy, ws * gx * fy, ws * fx * fy]
        ),
        minlength=canvas * canvas,
    )
    # bincount returns int64 when there are no points at all.
    return flat.astype(np.float64, copy=False).reshape(canvas, canvas)


def _render_specimen(rng: np.random.Generator, field: int, canvas: int) -> np.ndarray:
    """Fluorophore density on the canvas (float64, arbitrary units)."""
    margin = (canvas - field) // 2
    cell = _random_cell(rng, field, margin)
    mult = {
        kind: 0.0 if rng.random() < absent else rng.lognormal(0.0, _CLASS_DENSITY_SD)
        for kind, absent in _CLASS_ABSENT.items()
    }
    if not (mult["filament"] or mult["mito"]):
        # Vesicles alone leave most of a field empty: keep an extended class.
        mult["filament" if rng.random() < 0.5 else "mito"] = 1.0
    parts = [
        _filaments(rng, _FILAMENT_DENSITY * mult["filament"], cell, canvas),
        _vesicles(rng, _VESICLE_DENSITY * mult["vesicle"], cell, canvas),
    ]
    for centre in _poisson_points(rng, _MITO_DENSITY * mult["mito"], cell, canvas):
        parts.append(_mitochondrion(rng, centre))
    density = _splat(*(np.concatenate(p) for p in zip(*parts, strict=True)), canvas)
    view = density[margin : margin + field, margin : margin + field]
    if not view.any():
        # Tiny fields can miss every structure: add one filament through the
        # cell centre so that no field (and no target) is empty.
        heading = rng.uniform(0.0, 2 * np.pi)
        t = np.arange(-field, field, _STEP)
        x = cell.cx + t * math.cos(heading)
        y = cell.cy + t * math.sin(heading)
        inside = cell.contains(x, y)
        w = np.full(inside.sum(), _BRIGHTNESS["filament"] * _STEP)
        density += _splat(x[inside], y[inside], w, canvas)
    return density


# --- Imaging ------------------------------------------------------------------


class _CleanSample(NamedTuple):
    """Noise-free simulation result (for simulate_pair and the tests)."""

    photons: np.ndarray  # (frames, n, n) float64 expected photons per pixel
    high: np.ndarray  # float32 target, max 1
    in_focus: np.ndarray  # (frames, n, n) float64 photons without the haze
    pattern: dict  # SIM pattern parameters, empty without SIM


def _illumination(
    rng: np.random.Generator, modality: Modality, canvas: int
) -> tuple[np.ndarray, dict]:
    """SIM patterns (frames, canvas, canvas), angle-major, and their parameters."""
    n_a, n_p = modality.angles, modality.phases
    jitter = np.deg2rad(rng.uniform(-1.0, 1.0) * modality.angle_jitter_deg)
    angles = jitter + np.deg2rad(60.0) * np.arange(n_a)
    freqs = CUTOFF * rng.uniform(*modality.pattern_frequency, size=n_a)
    mods = rng.uniform(*modality.modulation, size=n_a)
    offsets = rng.uniform(0.0, 2 * np.pi, size=n_a)
    phases = offsets[:, None] + 2 * np.pi * np.arange(n_p)[None, :] / n_p
    coord = np.arange(canvas, dtype=np.float64)
    patterns = np.empty((n_a, n_p, canvas, canvas))
    for a in range(n_a):
        kx, ky = freqs[a] * math.cos(angles[a]), freqs[a] * math.sin(angles[a])
        for p in range(n_p):
            # cos(A + B) = cos A cos B - sin A sin B keeps this separable.
            ax = 2 * np.pi * kx * coord + phases[a, p]
            by = 2 * np.pi * ky * coord
            outer = np.outer(np.cos(by), np.cos(ax)) - np.outer(np.sin(by), np.sin(ax))
            patterns[a, p] = 1.0 + mods[a] * outer
    info = {
        "angles": angles,
        "frequencies": freqs,
        "modulations": mods,
        "phases": phases,
    }
    return patterns.reshape(n_a * n_p, canvas, canvas), info


def _simulate_clean(
    modality: Modality,
    specimen_rng: np.random.Generator,
    optics_rng: np.random.Generator,
    low_size: int,
) -> _CleanSample:
    """Expected photons per input frame and the target, without noise."""
    field = CAMERA_BINNING * low_size
    canvas = _canvas_size(field)
    margin = (canvas - field) // 2
    crop = (..., slice(margin, margin + field), slice(margin, margin + field))
    density = _render_specimen(specimen_rng, field, canvas)
    spectrum = np.fft.rfft2(density)

    # Raw frames on the camera grid (arbitrary units).
    otf_in = _transfer_function(canvas, modality.input_psf)
    if modality.angles:
        patterns, pattern = _illumination(optics_rng, modality, canvas)
        frames = _blur(np.fft.rfft2(density * patterns), otf_in, canvas)
    else:
        pattern = {}
        frames = _blur(spectrum, otf_in, canvas)[None]
    frames = _bin(frames[crop], CAMERA_BINNING)

    # Photon scaling: the frame average's brightest pixel gets peak_photons.
    lo, hi = modality.peak_photons
    peak = math.exp(optics_rng.uniform(math.log(lo), math.log(hi)))
    reference = frames.mean(axis=0).max()
    in_focus = np.maximum(frames, 0.0) * (peak / reference)
    photons = in_focus
    haze_level = optics_rng.uniform(*modality.out_of_focus)
    if haze_level > 0:
        haze = _bin(
            _blur(spectrum, _transfer_function(canvas, "haze"), canvas)[crop],
            CAMERA_BINNING,
        )
        photons = in_focus + np.maximum(haze, 0.0) * (haze_level * peak / haze.max())

    # Noise-free target, on the fine grid (scale 2) or the camera grid (scale 1).
    target = _blur(spectrum, _transfer_function(canvas, modality.target_psf), canvas)
    target = np.maximum(_bin(target[crop], CAMERA_BINNING // modality.scale), 0.0)
    high = (target / target.max()).astype(np.float32)
    return _CleanSample(photons, high, in_focus, pattern)


def _clean_sample(
    modality: str | Modality, seed: int | Sequence[int], low_size: int = 128
) -> _CleanSample:
    """The noise-free part of ``simulate_pair`` (same draws), for checks."""
    mod = _resolve_modality(modality)
    low_size = _check_low_size(low_size)
    specimen_rng, optics_rng, _ = _spawn_rngs(seed)
    return _simulate_clean(mod, specimen_rng, optics_rng, low_size)


def _camera(
    photons: np.ndarray, modality: Modality, rng: np.random.Generator
) -> np.ndarray:
    """Poisson shot noise, gain, offset and read noise -> uint16 ADU."""
    gain = rng.uniform(*modality.camera_gain)
    counts = rng.poisson(photons).astype(np.float64)
    adu = modality.camera_offset_adu + gain * counts
    adu += rng.normal(0.0, modality.read_noise_adu, size=photons.shape)
    return np.clip(np.rint(adu), 0, 65535).astype(np.uint16)


def simulate_pair(
    modality: str | Modality, seed: int | Sequence[int], low_size: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """Simulates one (low, high) training pair.

    Args:
        modality: A key of ``MODALITIES`` or a ``Modality`` (e.g. a
            ``dataclasses.replace`` of one with a different light level).
        seed: Seed for ``np.random.default_rng``: an int or a sequence of ints
            such as ``(base_seed, split_index, example_index)``.
        low_size: Side of the square input image in camera pixels (>= 16).

    Returns:
        ``(low, high)``. ``low``: uint16 camera counts (ADU) of shape
        ``(frames, low_size, low_size)``, always 3-D. ``high``: float32,
        non-negative, noise-free ground truth of shape
        ``(scale * low_size, scale * low_size)`` scaled so its maximum is 1.
        The same arguments give bit-identical arrays on the same machine.

    Raises:
        ValueError: Unknown modality name, bad ``low_size`` or bad seed.
    """
    mod = _resolve_modality(modality)
    low_size = _check_low_size(low_size)
    specimen_rng, optics_rng, noise_rng = _spawn_rngs(seed)
    clean = _simulate_clean(mod, specimen_rng, optics_rng, low_size)
    return _camera(clean.photons, mod, noise_rng), clean.high
