"""Deterministic synthetic paired data for fluorescence super-resolution.

``simulate_pair`` renders a random specimen (``specimen``), images it through
the optical model (``optics``) and the camera (``camera``) into the raw *low*
input, and computes the noise-free, higher-resolution *high* target. NumPy and
the standard library only; the physics is in ``README.md``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from . import camera, optics, specimen
from .optics import CAMERA_BINNING
from .optics import CUTOFF as CUTOFF  # re-exported: callers use simulation.CUTOFF

__all__ = ["MODALITIES", "Modality", "simulate_pair"]

#: Smallest accepted ``low_size``.
MIN_LOW_SIZE = 16


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
        target_psf: ``"sim"`` (circular pupil, ``optics.SR_CUTOFF_FACTOR`` * k_c) or
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


# --- Imaging ------------------------------------------------------------------


class _CleanSample(NamedTuple):
    """Noise-free simulation result (for simulate_pair and the tests)."""

    photons: np.ndarray  # (frames, n, n) float64 expected photons per pixel
    high: np.ndarray  # float32 target, max 1
    in_focus: np.ndarray  # (frames, n, n) float64 photons without the haze
    pattern: dict  # SIM pattern parameters, empty without SIM


def _simulate_clean(
    modality: Modality,
    specimen_rng: np.random.Generator,
    optics_rng: np.random.Generator,
    low_size: int,
) -> _CleanSample:
    """Expected photons per input frame and the target, without noise."""
    field = CAMERA_BINNING * low_size
    canvas = optics.canvas_size(field)
    margin = (canvas - field) // 2
    crop = (..., slice(margin, margin + field), slice(margin, margin + field))
    density = specimen.render_specimen(specimen_rng, field, canvas)
    spectrum = np.fft.rfft2(density)

    # Raw frames on the camera grid (arbitrary units).
    otf_in = optics.transfer_function(canvas, modality.input_psf)
    if modality.angles:
        patterns, pattern = optics.sim_illumination(
            optics_rng,
            canvas,
            angles=modality.angles,
            phases=modality.phases,
            angle_jitter_deg=modality.angle_jitter_deg,
            pattern_frequency=modality.pattern_frequency,
            modulation=modality.modulation,
        )
        frames = optics.blur(np.fft.rfft2(density * patterns), otf_in, canvas)
    else:
        pattern = {}
        frames = optics.blur(spectrum, otf_in, canvas)[None]
    frames = optics.bin_pixels(frames[crop], CAMERA_BINNING)

    # Photon scaling: the frame average's brightest pixel gets peak_photons.
    peak = camera.draw_peak_photons(optics_rng, modality.peak_photons)
    in_focus = camera.to_photons(frames, peak)
    photons = in_focus
    haze_level = optics_rng.uniform(*modality.out_of_focus)
    if haze_level > 0:
        haze_otf = optics.transfer_function(canvas, "haze")
        haze = optics.blur(spectrum, haze_otf, canvas)[crop]
        haze = optics.bin_pixels(haze, CAMERA_BINNING)
        photons = in_focus + np.maximum(haze, 0.0) * (haze_level * peak / haze.max())

    # Noise-free target, on the fine grid (scale 2) or the camera grid (scale 1).
    target_otf = optics.transfer_function(canvas, modality.target_psf)
    target = optics.blur(spectrum, target_otf, canvas)[crop]
    target = optics.bin_pixels(target, CAMERA_BINNING // modality.scale)
    target = np.maximum(target, 0.0)
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
    low = camera.read_out(
        clean.photons,
        noise_rng,
        gain=mod.camera_gain,
        offset_adu=mod.camera_offset_adu,
        read_noise_adu=mod.read_noise_adu,
    )
    return low, clean.high
