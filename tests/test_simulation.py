"""Tests for the synthetic microscopy data (datasets/microscopy_sr/simulation.py
and its specimen, optics and camera modules)."""

import dataclasses
import time

import numpy as np
import pytest

from keras_unet_sr.datasets.microscopy_sr import simulation

MODALITY_NAMES = ("sim9", "sim3", "confocal", "widefield")
SIZE = 64  # low_size for most checks: fast, yet several structures per field


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _radial_frequency(n: int) -> np.ndarray:
    """|k| in cycles per pixel on the fft2 grid of an n x n image."""
    k = np.fft.fftfreq(n)
    return np.hypot(k[:, None], k[None, :])


def _band_ratio(image: np.ndarray, fine_pixels_per_pixel: int) -> float:
    """Power beyond the widefield cutoff (1.1-1.4 k_c) / power at 0.2-0.8 k_c."""
    image = image - image.mean()
    window = np.hanning(image.shape[0])
    power = np.abs(np.fft.fft2(image * np.outer(window, window))) ** 2
    k = _radial_frequency(image.shape[0]) / fine_pixels_per_pixel
    k = k / simulation.CUTOFF
    return float(
        power[(k > 1.1) & (k < 1.4)].mean() / power[(k > 0.2) & (k < 0.8)].mean()
    )


# --- API, shapes, determinism, validation -------------------------------------


def test_registry():
    assert set(simulation.MODALITIES) == set(MODALITY_NAMES)
    expected = {"sim9": (9, 2), "sim3": (3, 2), "confocal": (1, 1), "widefield": (1, 2)}
    for name, (frames, scale) in expected.items():
        modality = simulation.MODALITIES[name]
        assert modality.name == name
        assert (modality.frames, modality.scale) == (frames, scale)
        assert modality.description.endswith(".")


@pytest.mark.parametrize("low_size", [16, SIZE])
@pytest.mark.parametrize("name", MODALITY_NAMES)
def test_shapes_and_dtypes(name, low_size):
    modality = simulation.MODALITIES[name]
    low, high = simulation.simulate_pair(name, 3, low_size)
    assert low.dtype == np.uint16
    assert low.shape == (modality.frames, low_size, low_size)
    assert high.dtype == np.float32
    side = modality.scale * low_size
    assert high.shape == (side, side)
    assert high.min() >= 0.0
    assert high.max() == pytest.approx(1.0)
    assert np.all(np.isfinite(high))


def test_modality_object_and_default_size():
    low, high = simulation.simulate_pair(simulation.MODALITIES["widefield"], 0)
    assert low.shape == (1, 128, 128)
    assert high.shape == (256, 256)


def test_deterministic():
    for name in ("sim9", "confocal"):
        low_a, high_a = simulation.simulate_pair(name, (7, 1, 42), SIZE)
        low_b, high_b = simulation.simulate_pair(name, (7, 1, 42), SIZE)
        assert np.array_equal(low_a, low_b)
        assert np.array_equal(high_a, high_b)
        low_c, high_c = simulation.simulate_pair(name, (7, 1, 43), SIZE)
        assert not np.array_equal(low_a, low_c)
        assert not np.array_equal(high_a, high_c)


def test_same_specimen_for_every_modality():
    # Specimen and noise draw from separate streams, so a seed fixes the cell.
    _, high_sim = simulation.simulate_pair("sim9", 5, SIZE)
    _, high_wf = simulation.simulate_pair("widefield", 5, SIZE)
    assert np.array_equal(high_sim, high_wf)


@pytest.mark.parametrize("name", ["sim", "SIM9", "", None])
def test_unknown_modality(name):
    with pytest.raises(ValueError, match="sim9") as info:
        simulation.simulate_pair(name, 0, SIZE)
    for known in MODALITY_NAMES:
        assert known in str(info.value)


@pytest.mark.parametrize("low_size", [0, 8, 15, -32, 32.0, True, "64"])
def test_bad_low_size(low_size):
    with pytest.raises(ValueError, match="low_size"):
        simulation.simulate_pair("sim9", 0, low_size)


@pytest.mark.parametrize("seed", [-1, 1.5, "seed"])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        simulation.simulate_pair("widefield", seed, 16)


def test_inconsistent_modality_rejected():
    with pytest.raises(ValueError, match="frames"):
        dataclasses.replace(simulation.MODALITIES["sim9"], frames=4)


# --- Camera ---------------------------------------------------------------------


@pytest.mark.parametrize("name", MODALITY_NAMES)
def test_camera_offset(name):
    offset = simulation.MODALITIES[name].camera_offset_adu
    lows = [simulation.simulate_pair(name, seed, SIZE)[0] for seed in range(6)]
    # The empty background sits at the offset, with ~1.5 ADU read noise.
    assert np.median([np.percentile(low, 5) for low in lows]) == pytest.approx(
        offset, abs=3
    )
    assert min(int(low.min()) for low in lows) >= offset - 12


def test_higher_light_gives_higher_snr():
    base = simulation.MODALITIES["widefield"]
    clean = simulation._clean_sample(base, 11, SIZE).in_focus[0]
    correlations = []
    for photons in (10.0, 100.0, 1000.0):
        modality = dataclasses.replace(base, peak_photons=(photons, photons))
        low, _ = simulation.simulate_pair(modality, 11, SIZE)
        correlations.append(_corr(low[0].astype(float), clean))
    assert correlations[0] < correlations[1] < correlations[2]
    assert correlations[2] > 0.95


def test_confocal_is_photon_starved():
    peaks = [
        simulation._clean_sample(name, seed, SIZE).in_focus.max()
        for name in ("confocal", "widefield")
        for seed in range(8)
    ]
    assert np.median(peaks[:8]) < np.median(peaks[8:])


# --- Optics ---------------------------------------------------------------------


def test_sim_frame_mean_resembles_widefield():
    for seed in range(3):
        low, _ = simulation.simulate_pair("sim9", seed, SIZE)
        widefield = simulation._clean_sample("widefield", seed, SIZE).in_focus[0]
        sim_clean = simulation._clean_sample("sim9", seed, SIZE).in_focus
        # Three equally spaced phases average the pattern out exactly.
        assert _corr(sim_clean.mean(axis=0), widefield) > 0.999
        assert _corr(low.mean(axis=0).astype(float), widefield) > 0.9


def test_phases_at_one_angle_differ():
    clean = simulation._clean_sample("sim9", 2, SIZE).in_focus
    low, _ = simulation.simulate_pair("sim9", 2, SIZE)
    for angle in range(3):
        group = clean[3 * angle : 3 * angle + 3]
        for p, q in ((0, 1), (1, 2), (0, 2)):
            diff = np.abs(group[p] - group[q]).mean() / group.mean()
            assert diff > 0.1
            assert not np.array_equal(low[3 * angle + p], low[3 * angle + q])


@pytest.mark.parametrize("name", MODALITY_NAMES)
def test_target_carries_information_beyond_widefield_cutoff(name):
    modality = simulation.MODALITIES[name]
    bright = dataclasses.replace(modality, peak_photons=(2000.0, 2000.0))
    fine_per_high = 2 // modality.scale
    for seed in range(3):
        clean = simulation._clean_sample(name, seed, SIZE)
        low, high = simulation.simulate_pair(bright, seed, SIZE)
        target = _band_ratio(high, fine_per_high)
        # Confocal passes some (attenuated) detail beyond k_c, hence only 20x.
        assert target > 20 * _band_ratio(clean.in_focus.mean(axis=0), 2)
        if modality.target_psf == "sim":
            # Even bright noisy frames hold mere noise there (the ISM target's
            # gain over confocal is too modest for this check).
            assert target > 3 * _band_ratio(low.mean(axis=0).astype(float), 2)


def _sideband_match(clean, frames_angle, pattern_angle, target):
    """Minimal SIM reconstruction of one angle, compared with a target.

    The three phases of angle ``frames_angle`` are unmixed into the 0 and +-1
    spectral bands with the pattern of ``pattern_angle``; the +1 band, moved back
    by -k_p, holds the specimen spectrum beyond the widefield cutoff k_c.
    Returns its normalized complex correlation with ``target`` there.
    """
    n = 2 * SIZE
    q = np.fft.fftfreq(n)
    qy, qx = q[:, None], q[None, :]
    kc = simulation.CUTOFF
    coord = np.arange(n) + 0.5  # fine-grid centres of the 2x upsampled pixels
    window = np.outer(np.hanning(n), np.hanning(n))
    frames = clean.in_focus[3 * frames_angle : 3 * frames_angle + 3]
    phases = clean.pattern["phases"][pattern_angle]
    mixing = np.stack([np.ones(3), np.exp(1j * phases), np.exp(-1j * phases)], 1)
    bands = np.tensordot(np.linalg.inv(mixing), np.fft.fft2(frames), axes=1)
    # Upsample the +1 band 2x by zero padding (it is band-limited to k_c).
    padded = np.zeros((n, n), complex)
    half = SIZE // 2
    padded[n // 2 - half : n // 2 + half, n // 2 - half : n // 2 + half] = (
        np.fft.fftshift(bands[1])
    )
    plus = np.fft.ifft2(np.fft.ifftshift(padded))
    freq = clean.pattern["frequencies"][pattern_angle]
    theta = clean.pattern["angles"][pattern_angle]
    kx, ky = freq * np.cos(theta), freq * np.sin(theta)
    ramp = np.exp(-2j * np.pi * (kx * coord[None, :] + ky * coord[:, None]))
    # Undo the half-pixel offset between the upsampled and the target grid.
    moved = np.fft.fft2(plus * ramp * window) * np.exp(-1j * np.pi * (qx + qy))
    k = np.hypot(qx, qy)
    region = (k > 1.1 * kc) & (k < 1.75 * kc) & (np.hypot(qx + kx, qy + ky) < 0.9 * kc)
    s, t = moved[region], np.fft.fft2(target * window)[region]
    return abs(np.vdot(t, s)) / np.sqrt(np.vdot(s, s).real * np.vdot(t, t).real)


def test_sim_sidebands_carry_the_target_beyond_cutoff():
    """The raw SIM frames encode the target's details beyond the widefield cutoff.

    Checked per angle, in the documented angle-major frame order; the target of
    another specimen, or the pattern of another angle, must not match.
    """
    clean = simulation._clean_sample("sim9", 8, SIZE)
    unrelated = simulation._clean_sample("sim9", 9, SIZE).high
    for angle in range(3):
        assert _sideband_match(clean, angle, angle, clean.high) > 0.7
        assert _sideband_match(clean, angle, angle, unrelated) < 0.25
        assert _sideband_match(clean, angle, (angle + 1) % 3, clean.high) < 0.25


def test_confocal_target_sharper_than_input():
    clean = simulation._clean_sample("confocal", 1, SIZE)
    target = _band_ratio(clean.high, 2)
    assert target > 5 * _band_ratio(clean.in_focus[0], 2)


# --- Specimen ---------------------------------------------------------------------


def test_foreground_fraction():
    fractions = [
        (simulation._clean_sample("widefield", seed, SIZE).high > 0.1).mean()
        for seed in range(12)
    ]
    assert 0.05 < np.median(fractions) < 0.6
    assert min(fractions) > 0.01
    assert max(fractions) < 0.9


def test_empty_background_present():
    empty = [
        (simulation._clean_sample("widefield", seed, SIZE).high < 0.01).mean()
        for seed in range(12)
    ]
    assert np.median(empty) > 0.2


def test_fast_enough():
    simulation.simulate_pair("sim9", 0, 128)  # warm the OTF cache
    start = time.perf_counter()
    for seed in range(3):
        simulation.simulate_pair("sim9", seed, 128)
    # ~35 ms each on a laptop core; the bound only catches gross regressions.
    assert (time.perf_counter() - start) / 3 < 0.5
