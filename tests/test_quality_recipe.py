"""The pieces of the training recipe for real data: validation strips, target
registration, and the photon-noise (low-light) augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tifffile

from keras_unet_sr.config import FitConfig, smoke
from keras_unet_sr.data import regions
from keras_unet_sr.data.camera import estimate_camera_noise, simulate_low_light
from keras_unet_sr.data.pipeline import (
    TileSampler,
    prepare_images,
    shift_target,
    training_tiles,
)
from keras_unet_sr.data.sources import load_paired_images
from keras_unet_sr.quality.registration import estimate_shift, shift_image
from keras_unet_sr.training.inputs import load_training_data


def band_limited(rng, shape, cutoff=0.12):
    spectrum = np.fft.fft2(rng.random(shape))
    fy, fx = np.fft.fftfreq(shape[0])[:, None], np.fft.fftfreq(shape[1])[None, :]
    spectrum[np.hypot(fy, fx) > cutoff] = 0
    return np.fft.ifft2(spectrum).real.astype(np.float32)


# --- validation strips ---


@pytest.mark.parametrize("shape", [(64, 48), (40, 96), (33, 33)])
def test_training_tiles_never_touch_the_validation_strip(rng, shape):
    """Pixels hold their own coordinates, so every tile says where it came from."""
    scale, tile = 2, 16
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    coordinates = np.stack([rows, cols], -1).astype(np.float32)  # (H, W, 2)
    high = np.kron(rng.random(shape), np.ones((scale, scale)))[..., None]
    strip = regions.choose_strip(high, scale, shape)
    train_low, val_low = strip.split(coordinates)
    train_high, _ = strip.split(high, scale)
    assert train_high.shape[:2] == (train_low.shape[0] * 2, train_low.shape[1] * 2)
    held = {tuple(p) for p in val_low.reshape(-1, 2).astype(int)}
    assert len(held) == (strip.stop - strip.start) * shape[1 - strip.axis]
    sampler = TileSampler(tile=tile, scale=scale, tiles_per_image=8)
    dataset = tf.data.Dataset.from_tensors(
        (tf.constant(train_low), tf.constant(train_high, tf.float32))
    )
    # (0, 100) keeps the coordinates exactly recoverable after normalization.
    prepared = prepare_images(dataset, sampler, 2, None, (0.0, 100.0))
    low_n, *_ = next(iter(prepared))
    lo, hi = train_low.min(), train_low.max()
    seen = set()
    for low_tiles, _ in training_tiles(prepared, sampler, 8, seed=3).take(12):
        values = np.rint(low_tiles.numpy() * (hi - lo) + lo).astype(int)
        seen |= {tuple(p) for p in values.reshape(-1, 2)}
    assert seen and not seen & held
    assert np.allclose(low_n.numpy() * (hi - lo) + lo, train_low)


def test_the_strip_is_on_the_side_with_signal():
    high = np.zeros((64, 64, 1), np.float32)
    high[:, -12:] = 1.0  # signal only at the right border
    strip = regions.choose_strip(high, 1, (64, 64))
    assert (strip.axis, strip.stop) == (1, 64)


def _pair_folder(root, rng, count, size=48, shift=(0.0, 0.0)):
    for side in ("low", "high"):
        (root / side).mkdir(parents=True)
    for i in range(count):
        target = band_limited(rng, (size, size)) * 1000 + 1200
        low = shift_image(target, shift)  # the target sits -shift from the input
        frames = np.stack([low * (0.5 + 0.25 * f) for f in range(3)])
        tifffile.imwrite(root / "low" / f"im{i}.tif", frames.astype(np.uint16))
        tifffile.imwrite(root / "high" / f"im{i}.tif", target.astype(np.uint16))
    return root


def test_a_folder_of_three_images_trains_on_all_three(tmp_path, rng, tfds_dir):
    folder = _pair_folder(tmp_path / "three", rng, 3)
    config = smoke(FitConfig())
    config.data.source, config.data.data_dir = str(folder), tfds_dir
    data = load_paired_images(config.data)
    names = {split: [n for n, *_ in data.named_images(split)] for split in data.splits}
    assert sorted(names["train"]) == ["im0", "im1", "im2"]
    assert sorted(names["validation"]) == ["im0", "im1", "im2"]  # their strips
    parts = {s: {n: low for n, low, _ in data.named_images(s)} for s in data.splits}
    for name, low in parts["train"].items():  # the strip and the rest: the image
        strip = parts["validation"][name]
        assert 48 in (low.shape[0] + strip.shape[0], low.shape[1] + strip.shape[1])
    config.train.min_foreground = 0.25
    prepared = load_training_data(config)
    assert prepared.validation_split == "validation"
    assert prepared.sampler.min_foreground == 0.25  # the config reaches the tiles


# --- registration ---


@pytest.mark.parametrize("shift", [(0.4, -1.3), (-2.25, 0.7)])
def test_estimate_shift_recovers_a_known_sub_pixel_shift(rng, shift):
    image = band_limited(rng, (96, 80))
    noisy = shift_image(image, shift) + rng.normal(0, 0.05 * image.std(), image.shape)
    found = estimate_shift(image, noisy)
    assert np.allclose(found, (-shift[0], -shift[1]), atol=0.1)


def test_the_pipeline_moves_the_target_as_the_numpy_shift_does(rng):
    image = band_limited(rng, (64, 60))
    moved = shift_target(tf.constant(image[..., None]), tf.constant([0.7, -1.2]))
    expected = shift_image(image, (0.7, -1.2))
    np.testing.assert_allclose(
        moved.numpy()[10:-10, 10:-10, 0], expected[10:-10, 10:-10], atol=5e-3
    )


def test_preparing_a_folder_records_each_target_offset(tmp_path, rng, tfds_dir):
    folder = _pair_folder(tmp_path / "shifted", rng, 2, size=64, shift=(1.0, -0.5))
    config = smoke(FitConfig())
    config.data.source, config.data.data_dir = str(folder), tfds_dir
    offsets = load_paired_images(config.data).offsets()
    assert sorted(offsets) == ["im0", "im1"]
    for dy, dx in offsets.values():
        assert abs(dy - 1.0) < 0.15 and abs(dx + 0.5) < 0.15


# --- photon noise ---


def test_low_light_resampling_keeps_the_mean_and_has_the_poisson_variance():
    offset, gain, k = 100.0, 2.0, 8.0
    photons = np.array([5.0, 50.0, 400.0], np.float32)
    raw = np.repeat((offset + gain * photons)[None], 200_000, axis=0)
    camera = tf.constant([offset, gain, 0.0])
    dimmed = simulate_low_light(
        tf.constant(raw), camera, tf.constant(k), tf.constant([1, 2])
    ).numpy()
    signal = gain * photons
    np.testing.assert_allclose(dimmed.mean(0) - offset, signal, rtol=0.01)
    # The variance of an acquisition with 1/k of the light, rescaled by k.
    np.testing.assert_allclose(dimmed.var(0), k * gain * signal, rtol=0.03)


def test_read_noise_is_scaled_with_the_light():
    camera = tf.constant([100.0, 1.0, 3.0])
    raw = tf.fill([100_000], 100.0)  # no photons: read noise alone
    dimmed = simulate_low_light(raw, camera, tf.constant(4.0), tf.constant([5, 6]))
    assert abs(float(tf.math.reduce_std(dimmed)) - 4.0 * 3.0) < 0.2


def test_the_camera_estimate_on_a_smooth_ramp(rng):
    yy, xx = np.mgrid[:256, :256]
    photons = 5 + 200 * np.sin(xx / 40) ** 2 * (yy / 256)
    for gain in (1.0, 2.0):
        adu = 100 + gain * rng.poisson(photons) + rng.normal(0, 1.5, photons.shape)
        found = estimate_camera_noise(np.rint(adu))
        assert abs(found.gain - gain) < 0.2 * gain
        assert abs(found.offset - 100) < 3


def test_noise_augmentation_changes_only_training_tiles(rng):
    low = (100 + 2 * rng.poisson(50, (48, 48, 2))).astype(np.float32)
    high = rng.random((48, 48, 1), dtype=np.float32)
    dataset = tf.data.Dataset.from_tensors(
        (low, high, tf.zeros(2), tf.constant([100.0, 2.0, 1.0]))
    )
    plain = TileSampler(tile=16, scale=1, tiles_per_image=4, min_foreground=0.0)
    noisy = TileSampler(16, 1, 4, min_foreground=0.0, low_light=20.0)
    a = next(
        iter(
            training_tiles(
                prepare_images(dataset, plain, 2, None, (1, 99)), plain, 8, 0
            )
        )
    )
    b = next(
        iter(
            training_tiles(
                prepare_images(dataset, noisy, 2, None, (1, 99)), noisy, 8, 0
            )
        )
    )
    changed = ~np.all(np.isclose(a[0].numpy(), b[0].numpy()), axis=(1, 2, 3))
    assert 0 < changed.sum() < 8  # about half the tiles are dimmed
    np.testing.assert_array_equal(a[1], b[1])  # targets and positions unchanged
