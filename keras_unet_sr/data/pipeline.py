"""The tf.data tile pipeline: whole images in, aligned training tiles out.

Per image, once (then cached in memory): select the model's frames,
percentile-normalize input and target with the same function prediction and
serving use, and build an integral image of the target's foreground.

Per draw, in graph ops only (no per-tile Python): propose `candidates` random
tile positions, score each by its foreground fraction in O(1) from the
integral image, keep `tiles_per_image` of those with enough signal (random
among them; the best-scoring ones if too few qualify, so an empty image can
never stall the pipeline), cut aligned low/high tiles (the high tile is
`scale` times the low one, at `scale` times the offset), and apply one of the
8 dihedral transforms to each low/high pair consistently.

Randomness is stateless and keyed by `(seed, element index)` (no
`Dataset.shuffle`, whose order also depends on TF's global seed), and every
stage keeps its order, so a seed alone fixes the whole tile stream: on one
device, under a distribution strategy, and after a restart.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import tensorflow as tf

from keras_unet_sr.data.camera import simulate_low_light
from keras_unet_sr.data.frames import select_frames
from keras_unet_sr.data.normalization import percentile_normalize, safe_scale

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class TileSampler:
    """How tiles are cut from one normalized image pair.

    Attributes:
        tile: Low-resolution tile side (the high tile is `scale` times it).
        scale: High/low size ratio.
        tiles_per_image: Tiles cut per image draw.
        candidates: Random positions scored per draw.
        foreground_threshold: Normalized target intensity that counts as
            signal.
        min_foreground: Fraction of a tile's target pixels that must be
            signal for the tile to count as non-empty.
        low_light: Photon-noise augmentation: half the training tiles are
            resampled as if taken with `1/k` of the light, `k` log-uniform in
            `[1, low_light]` (`keras_unet_sr.data.camera`); 1 turns it off.
        half_turn: Augment with the identity and the 180-degree turn only,
            instead of all 8 dihedral transforms: a half turn keeps the
            orientation of every frame's illumination stripes (SIM), which
            flips and quarter turns exchange between frames.
    """

    tile: int
    scale: int
    tiles_per_image: int = 8
    candidates: int = 32
    foreground_threshold: float = 0.2
    min_foreground: float = 0.05
    low_light: float = 1.0
    half_turn: bool = False

    def foreground_integral(self, high: tf.Tensor) -> tf.Tensor:
        """Summed-area table of the target's foreground on the low grid."""
        mask = tf.cast(high > self.foreground_threshold, tf.float32)
        mask = tf.reduce_mean(mask, axis=-1, keepdims=True)
        mask = tf.nn.avg_pool2d(mask[tf.newaxis], self.scale, self.scale, "VALID")
        table = tf.cumsum(tf.cumsum(mask[0, ..., 0], axis=0), axis=1)
        return tf.pad(table, [[1, 0], [1, 0]])

    def foreground_fraction(self, integral, ys, xs) -> tf.Tensor:
        """Foreground fraction of the tiles at `(ys, xs)` (clipped at the border)."""
        height = tf.shape(integral)[0] - 1
        width = tf.shape(integral)[1] - 1
        y2 = tf.minimum(ys + self.tile, height)
        x2 = tf.minimum(xs + self.tile, width)

        def at(y, x):
            return tf.gather_nd(integral, tf.stack([y, x], axis=-1))

        total = at(y2, x2) - at(ys, x2) - at(y2, xs) + at(ys, xs)
        return total / tf.cast((y2 - ys) * (x2 - xs), tf.float32)

    def sample(self, low, high, integral, seed, augment: bool = True, noise=None):
        """`tiles_per_image` aligned `(low, high)` tiles from one image pair.

        `noise` is the image's `(norm low, norm scale, camera offset, gain,
        read noise)` from `prepare_images`, for the photon-noise augmentation.
        """
        position_seed, pick_seed, augment_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, 3)
        )
        height, width = tf.shape(low)[0], tf.shape(low)[1]
        t, s, n = self.tile, self.scale, self.candidates
        limits = tf.stack([tf.maximum(height - t, 0), tf.maximum(width - t, 0)]) + 1
        yx = (
            tf.random.stateless_uniform(
                (n, 2), position_seed, minval=0, maxval=tf.int32.max, dtype=tf.int32
            )
            % limits
        )
        ys, xs = yx[:, 0], yx[:, 1]
        fraction = self.foreground_fraction(integral, ys, xs)
        accepted = fraction >= self.min_foreground
        lottery = tf.random.stateless_uniform((n,), pick_seed)
        _, picked = tf.math.top_k(
            tf.where(accepted, 2.0 + lottery, fraction), self.tiles_per_image
        )
        ys, xs = tf.gather(ys, picked), tf.gather(xs, picked)
        low_tiles = _crop(low, ys, xs, t)
        high_tiles = _crop(high, ys * s, xs * s, t * s)
        if not augment:
            return low_tiles, high_tiles
        if self.low_light > 1 and noise is not None:
            # A separate stream: the other draws stay as without noise.
            low_tiles = self._dim(
                low_tiles, noise, tf.random.experimental.stateless_fold_in(seed, 7)
            )
        return _dihedral(low_tiles, high_tiles, augment_seed, self.half_turn)

    def _dim(self, tiles, noise, seed):
        """Half the tiles at `1/k` of the light (normalized units in and out)."""
        k_seed, use_seed, noise_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, 3)
        )
        count = tf.shape(tiles)[0]
        log_k = tf.random.stateless_uniform(
            (count, 1, 1, 1), k_seed, 0.0, math.log(self.low_light)
        )
        use = tf.random.stateless_uniform((count, 1, 1, 1), use_seed) < 0.5
        factor = tf.where(use, tf.exp(log_k), tf.ones_like(log_k))
        raw = tiles * noise[1] + noise[0]
        dimmed = simulate_low_light(raw, noise[2:], factor, noise_seed)
        return tf.where(use, (dimmed - noise[0]) / noise[1], tiles)


def _symmetric_index(positions, length):
    """Mirror into [0, length) with the edge repeated (numpy's 'symmetric'
    pad mode: ... 1 0 | 0 1 2 | 2 1 ...): aligned across
    scales, unlike 'reflect', so images smaller than a tile stay paired."""
    folded = tf.math.floormod(positions, 2 * length)
    return tf.where(folded >= length, 2 * length - 1 - folded, folded)


def _crop(image, ys, xs, size):
    """Tiles `(k, size, size, C)` at `(ys, xs)`, mirrored past the border."""
    offsets = tf.range(size)
    rows = _symmetric_index(ys[:, tf.newaxis] + offsets, tf.shape(image)[0])
    cols = _symmetric_index(xs[:, tf.newaxis] + offsets, tf.shape(image)[1])
    shape = tf.stack([tf.shape(ys)[0], size, size])
    index = tf.stack(
        [
            tf.broadcast_to(rows[:, :, tf.newaxis], shape),
            tf.broadcast_to(cols[:, tf.newaxis, :], shape),
        ],
        axis=-1,
    )
    return tf.gather_nd(image, index)


def _dihedral(low, high, seed, half_turn: bool = False):
    """One random dihedral transform per tile pair, the same for low and high
    (with `half_turn`, the identity or the 180-degree turn)."""
    choice = tf.random.stateless_uniform(
        (tf.shape(low)[0], 3), seed, 0, 2, dtype=tf.int32
    )
    choice = tf.cast(choice, tf.bool)
    if half_turn:  # no transpose; both reversals or neither
        turn = choice[:, 1:2]
        choice = tf.concat([tf.zeros_like(turn), turn, turn], axis=1)

    def apply(tiles):
        def pick(flag, transformed):
            return tf.where(
                flag[:, tf.newaxis, tf.newaxis, tf.newaxis], transformed, tiles
            )

        tiles = pick(choice[:, 0], tf.transpose(tiles, (0, 2, 1, 3)))
        tiles = pick(choice[:, 1], tf.reverse(tiles, [1]))
        return pick(choice[:, 2], tf.reverse(tiles, [2]))

    return apply(low), apply(high)


def shift_target(high: tf.Tensor, offset: tf.Tensor, pad: int = 8) -> tf.Tensor:
    """`high` `(H, W, C)` moved by `offset` `(dy, dx)` pixels: a Fourier shift
    of the reflect-padded image (so nothing wraps around), cropped back."""
    padded = tf.pad(high, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    rows, cols = tf.shape(padded)[0], tf.shape(padded)[1]

    def frequencies(n):  # numpy's fftfreq(n)
        k = tf.concat([tf.range((n + 1) // 2), tf.range(-(n // 2), 0)], axis=0)
        return tf.cast(k, tf.float32) / tf.cast(n, tf.float32)

    angle = (
        -2.0
        * math.pi
        * (
            frequencies(rows)[:, tf.newaxis] * offset[0]
            + frequencies(cols)[tf.newaxis, :] * offset[1]
        )
    )
    phase = tf.complex(tf.cos(angle), tf.sin(angle))
    channels_first = tf.cast(tf.transpose(padded, (2, 0, 1)), tf.complex64)
    moved = tf.math.real(tf.signal.ifft2d(tf.signal.fft2d(channels_first) * phase))
    return tf.transpose(moved, (1, 2, 0))[pad:-pad, pad:-pad]


def prepare_images(
    images: tf.data.Dataset,
    sampler: TileSampler,
    frames: int,
    frame_subset: Sequence[int] | None,
    percentiles: Sequence[float],
    register: bool = False,
    camera: Sequence[float | None] = (None, None),
) -> tf.data.Dataset:
    """Raw `(low, high[, offset, camera])` -> cached `(low_n, high_n, foreground
    integral, noise)`.

    With `register`, the target is first moved by its offset onto the input's
    grid. `noise` is `(norm low, norm scale, camera offset, gain, read noise)`
    for the photon-noise augmentation; `camera` `(offset, gain)` overrides
    the data's estimate where not None.
    """

    def prepare(low, high, offset=None, noise_model=None):
        if register and offset is not None:
            high = shift_target(high, offset)
        if noise_model is None:
            noise_model = tf.fill([3], float("nan"))
        given = (*camera, None)  # (offset, gain) from the config; read noise not
        noise_model = tf.stack(
            [noise_model[i] if g is None else float(g) for i, g in enumerate(given)]
        )
        low = select_frames(low, frames, frame_subset)
        low, lo, hi = percentile_normalize(low, percentiles)
        high, _, _ = percentile_normalize(high, percentiles)
        norm = tf.stack([tf.reshape(lo, []), tf.reshape(safe_scale(lo, hi), [])])
        noise = tf.concat([norm, noise_model], axis=0)
        return low, high, sampler.foreground_integral(high), noise

    return images.map(prepare, num_parallel_calls=AUTOTUNE).cache()


def _seeded(dataset: tf.data.Dataset, seed: int) -> tf.data.Dataset:
    """Attach a per-element stateless seed `(seed, index)`."""
    return dataset.enumerate().map(
        lambda index, element: (*element, tf.stack([tf.cast(seed, tf.int64), index]))
    )


def _window_shuffle(
    dataset: tf.data.Dataset, window: int, seed: int
) -> tf.data.Dataset:
    """Permute consecutive windows of `window` elements, statelessly.

    Unlike `Dataset.shuffle(seed=...)`, whose order also depends on TF's
    global and graph-level seeds, the permutation of window `i` depends only
    on `(seed, i)`: the same stream on one device, under any tf.distribute
    strategy, and in a resumed process.
    """

    def permute(index, tiles):
        key = tf.stack([tf.cast(seed, tf.int64), index])
        order = tf.random.experimental.stateless_shuffle(
            tf.range(tf.shape(tiles[0])[0]), key
        )
        return tuple(tf.gather(t, order) for t in tiles)

    return dataset.batch(window).enumerate().map(permute).unbatch()


def training_tiles(
    prepared: tf.data.Dataset,
    sampler: TileSampler,
    batch_size: int,
    seed: int,
    shuffle_window: int = 512,
    augment: bool = True,
) -> tf.data.Dataset:
    """Infinite, shuffled, augmented batches of `(low, high)` tiles.

    Each pass visits the images in the data set's (TFDS-shuffled) order,
    drawing new random tiles every time; tiles are then permuted in windows
    of `shuffle_window`, so a batch mixes tiles of many images.
    """
    dataset = _seeded(prepared.repeat(), seed)
    dataset = dataset.map(
        lambda low, high, integral, noise, key: sampler.sample(
            low, high, integral, key, augment, noise
        ),
        num_parallel_calls=AUTOTUNE,
    )
    dataset = _window_shuffle(dataset.unbatch(), shuffle_window, seed + 1)
    dataset = dataset.batch(batch_size, drop_remainder=True)
    options = tf.data.Options()
    options.deterministic = True
    return dataset.with_options(options).prefetch(AUTOTUNE)


def validation_tiles(
    prepared: tf.data.Dataset,
    sampler: TileSampler,
    batch_size: int,
    count: int,
    seed: int = 0,
) -> tf.data.Dataset:
    """A fixed, cached set of `count` validation tiles (same every epoch)."""
    dataset = _seeded(prepared, seed).map(
        lambda low, high, integral, noise, key: sampler.sample(
            low, high, integral, key, augment=False
        )
    )
    return dataset.unbatch().take(count).cache().batch(batch_size)
