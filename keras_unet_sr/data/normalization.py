"""Per-image percentile normalization: the one definition used by the tile
pipeline, local prediction and the TF-Serving signature.

An image (all of its frames together, so relative frame intensities survive)
is mapped so that its low percentile goes to 0 and its high percentile to 1.
Predictions are mapped back with the *input's* range, so a served image comes
back in the units the microscope produced.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

# Above this many values per image, percentiles are estimated on a regular
# subsample: exact for typical tiles and training images, linear-time and
# bounded-memory for 4096 x 4096 x 9-frame stacks.
MAX_PERCENTILE_SAMPLES = 1 << 20


def percentile_range(
    images: tf.Tensor,
    percentiles: Sequence[float] = (1.0, 99.8),
    max_samples: int = MAX_PERCENTILE_SAMPLES,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-image low/high percentiles, linearly interpolated (numpy's default).

    Args:
        images: `(B, H, W, C)` tensor of any real dtype.
        percentiles: `(low, high)` in [0, 100].
        max_samples: Values per image above which a strided subsample is used.

    Returns:
        `(low, high)`, each float32 of shape `(B, 1, 1, 1)`.
    """
    images = tf.convert_to_tensor(images)
    batch = tf.shape(images)[0]
    flat = tf.reshape(images, (batch, -1))
    count = tf.shape(flat)[1]
    stride = tf.maximum(1, (count + max_samples - 1) // max_samples)
    # Subsample before casting: never a float copy of a whole large image.
    flat = tf.sort(tf.cast(flat[:, ::stride], tf.float32), axis=-1)
    last = tf.cast(tf.shape(flat)[1] - 1, tf.float32)

    def at(q):
        position = tf.constant(q / 100.0, tf.float32) * last
        below = tf.floor(position)
        frac = position - below
        below = tf.cast(below, tf.int32)
        above = tf.minimum(below + 1, tf.cast(last, tf.int32))
        value = flat[:, below] * (1.0 - frac) + flat[:, above] * frac
        return tf.reshape(value, (-1, 1, 1, 1))

    return at(float(percentiles[0])), at(float(percentiles[1]))


def safe_scale(low: tf.Tensor, high: tf.Tensor) -> tf.Tensor:
    """`high - low`, or 1 where it is zero: a constant image maps to 0."""
    scale = high - low
    return tf.where(scale > 0, scale, tf.ones_like(scale))


def normalize(images: tf.Tensor, low: tf.Tensor, high: tf.Tensor) -> tf.Tensor:
    """Map `low -> 0` and `high -> 1` (float32)."""
    return (tf.cast(images, tf.float32) - low) / safe_scale(low, high)


def denormalize(images: tf.Tensor, low: tf.Tensor, high: tf.Tensor) -> tf.Tensor:
    """Inverse of `normalize`."""
    return tf.cast(images, tf.float32) * safe_scale(low, high) + low


def percentile_normalize(
    images: tf.Tensor, percentiles: Sequence[float] = (1.0, 99.8)
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Normalize each image of a batch by its own percentiles.

    Args:
        images: `(B, H, W, C)`, or `(H, W, C)` for a single image.
        percentiles: `(low, high)` percentiles.

    Returns:
        `(normalized, low, high)`; `low`/`high` have shape `(B, 1, 1, 1)`
        (`(1, 1, 1)` for a single image) for `denormalize`.
    """
    images = tf.convert_to_tensor(images)
    single = images.shape.rank == 3
    batch = images[tf.newaxis] if single else images
    low, high = percentile_range(batch, percentiles)
    normalized = normalize(batch, low, high)
    if single:
        return normalized[0], low[0], high[0]
    return normalized, low, high
