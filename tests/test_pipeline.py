"""The tf.data tile pipeline: alignment, augmentation, determinism, sampling."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_unet_sr.data.normalization import percentile_normalize
from keras_unet_sr.data.pipeline import (
    TileSampler,
    prepare_images,
    training_tiles,
    validation_tiles,
)
from keras_unet_sr.training.inputs import half_turn_augmentation


def pairs_dataset(lows, highs) -> tf.data.Dataset:
    def gen():
        yield from zip(lows, highs, strict=True)

    return tf.data.Dataset.from_generator(
        gen,
        output_signature=(
            tf.TensorSpec((None, None, lows[0].shape[-1]), tf.float32),
            tf.TensorSpec((None, None, 1), tf.float32),
        ),
    )


def known_pair(rng, height, width, frames, scale):
    """A high image that is the low image's first frame, each pixel
    repeated scale x scale times: any aligned tile pair maps exactly."""
    low = rng.integers(1, 1000, (height, width, frames)).astype(np.float32)
    # Frame 0 holds the stack's extremes, so low and high normalize alike.
    low[0, 0, 0], low[-1, -1, 0] = 0.0, 1000.0
    high = np.kron(low[..., :1], np.ones((scale, scale, 1), np.float32))
    return low, high


def take(dataset, batches):
    return [(a.numpy(), b.numpy()) for a, b in dataset.take(batches)]


@pytest.mark.parametrize(
    ("scale", "size"), [(2, (40, 56)), (4, (24, 24)), (1, (33, 47)), (2, (10, 12))]
)
def test_tiles_are_aligned_and_augmentation_keeps_pairs_consistent(rng, scale, size):
    """Holds for every random crop and dihedral transform, and for images
    smaller than the tile (mirrored consistently at both resolutions)."""
    lows, highs = zip(
        *(known_pair(rng, *size, 3, scale) for _ in range(3)), strict=True
    )
    sampler = TileSampler(tile=16, scale=scale, tiles_per_image=4, min_foreground=0.0)
    # (0, 100) percentiles: the min/max of low and high are the same values.
    prepared = prepare_images(
        pairs_dataset(lows, highs), sampler, 3, None, (0.0, 100.0)
    )
    seen_transforms = set()
    for low, high in take(training_tiles(prepared, sampler, batch_size=8, seed=3), 6):
        assert low.shape == (8, 16, 16, 3) and high.shape == (
            8,
            16 * scale,
            16 * scale,
            1,
        )
        expected = np.kron(low[..., :1], np.ones((1, scale, scale, 1), np.float32))
        np.testing.assert_array_equal(high, expected)
        for tile in low[..., 0]:
            seen_transforms.add(tile.tobytes())
    assert len(seen_transforms) > 12  # crops and transforms really vary


def test_augmentation_uses_all_eight_dihedral_transforms(rng):
    low = rng.random((16, 16, 1), dtype=np.float32)
    sampler = TileSampler(tile=16, scale=1, tiles_per_image=8, min_foreground=0.0)
    prepared = prepare_images(
        pairs_dataset([low], [low]), sampler, 1, None, (0.0, 100.0)
    )
    base = percentile_normalize(low, (0.0, 100.0))[0].numpy()[..., 0]
    variants = {
        np.rot90(np.flip(base, 1) if flip else base, k).tobytes()
        for k in range(4)
        for flip in (False, True)
    }
    seen = {
        t[..., 0].tobytes()
        for a, _ in take(training_tiles(prepared, sampler, 8, 0), 10)
        for t in a
    }
    assert seen == variants


def test_half_turn_augmentation_keeps_stripe_orientations(rng):
    """Only the identity and the 180-degree turn: a stripe pattern keeps its
    orientation in every frame (flips and quarter turns would change it)."""
    low = rng.random((16, 16, 2), dtype=np.float32)
    sampler = TileSampler(
        tile=16, scale=1, tiles_per_image=8, min_foreground=0.0, half_turn=True
    )
    prepared = prepare_images(
        pairs_dataset([low], [low[..., :1]]), sampler, 2, None, (0.0, 100.0)
    )
    base = percentile_normalize(low, (0.0, 100.0))[0].numpy()
    tiles = [t for a, _ in take(training_tiles(prepared, sampler, 8, 0), 10) for t in a]
    seen = {t.tobytes() for t in tiles}
    assert seen == {base.tobytes(), np.rot90(base, 2).tobytes()}


@pytest.mark.parametrize(
    ("transforms", "frames", "half"),
    [
        ("auto", 9, True),
        ("auto", 1, False),
        ("dihedral", 9, False),
        ("half-turn", 1, True),
    ],
)
def test_auto_augmentation_follows_the_frame_count(transforms, frames, half):
    assert half_turn_augmentation(transforms, frames) is half


def test_same_seed_same_stream_other_seed_other_stream(rng):
    lows, highs = zip(*(known_pair(rng, 48, 48, 2, 2) for _ in range(4)), strict=True)
    sampler = TileSampler(tile=16, scale=2, tiles_per_image=4, min_foreground=0.0)

    def stream(seed):
        prepared = prepare_images(
            pairs_dataset(lows, highs), sampler, 2, None, (1, 99.8)
        )
        return take(training_tiles(prepared, sampler, batch_size=4, seed=seed), 5)

    first, again, other = stream(7), stream(7), stream(8)
    for (a, b), (c, d) in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    pairs = zip(first, other, strict=True)
    assert any(not np.array_equal(a, c) for (a, _), (c, _) in pairs)


def test_empty_tiles_are_rejected(rng):
    """Structure only in the left half: tiles land there, but an image
    with no signal at all still yields tiles instead of stalling."""
    high = np.zeros((128, 128, 1), np.float32)
    high[:, :64] = rng.random((128, 64, 1)) > 0.5
    low = high.copy()
    empty = np.zeros_like(high)
    picky = TileSampler(tile=16, scale=1, tiles_per_image=4, min_foreground=0.2)
    blind = TileSampler(tile=16, scale=1, tiles_per_image=4, min_foreground=0.0)

    def fractions(sampler, lows, highs):
        prepared = prepare_images(
            pairs_dataset(lows, highs), sampler, 1, None, (0.0, 100.0)
        )
        tiles = take(training_tiles(prepared, sampler, batch_size=8, seed=0), 8)
        return np.array([(t > 0.2).mean() for _, batch in tiles for t in batch])

    assert fractions(picky, [low], [high]).min() >= 0.2
    assert (fractions(blind, [low], [high]) < 0.2).mean() > 0.3
    assert len(fractions(picky, [empty], [empty])) == 64


def test_validation_tiles_are_fixed_and_normalized_like_prediction(rng):
    lows, highs = zip(*(known_pair(rng, 40, 40, 1, 1) for _ in range(3)), strict=True)
    sampler = TileSampler(tile=16, scale=1, tiles_per_image=2)
    prepared = prepare_images(pairs_dataset(lows, highs), sampler, 1, None, (1.0, 99.8))
    dataset = validation_tiles(prepared, sampler, batch_size=4, count=6)
    first, second = list(dataset), list(dataset)
    assert sum(len(a) for a, _ in first) == 6
    for (a, _), (b, _) in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    image, _, _, _ = next(iter(prepared))
    np.testing.assert_allclose(
        image, percentile_normalize(lows[0], (1.0, 99.8))[0], rtol=1e-6
    )


def test_frame_subset_is_selected_before_normalization(rng):
    low = rng.random((32, 32, 15), dtype=np.float32) * np.arange(
        1, 16, dtype=np.float32
    )
    high = rng.random((32, 32, 1), dtype=np.float32)
    sampler = TileSampler(tile=16, scale=1)
    prepared = prepare_images(
        pairs_dataset([low], [high]), sampler, 3, (0, 5, 10), (0.0, 100.0)
    )
    image, _, _, _ = next(iter(prepared))
    expected = percentile_normalize(low[..., [0, 5, 10]], (0.0, 100.0))[0]
    np.testing.assert_allclose(image, expected, rtol=1e-6)
