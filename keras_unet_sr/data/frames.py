"""Choosing the raw frames a model reads (e.g. SIM3 = frames 0, 5, 10 of 15).

Training, prediction and serving all go through `select_frames`, so a model
trained on a frame subset takes the full raw stack the microscope writes.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf


def parse_frame_subset(text: str | None) -> tuple[int, ...] | None:
    """`"0,5,10"` -> `(0, 5, 10)`; `None`, `""` or `"all"` -> `None`."""
    if text is None or text.strip().lower() in ("", "all"):
        return None
    try:
        subset = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise ValueError(f"frame list {text!r}: expected e.g. 0,5,10") from error
    if not subset or any(f < 0 for f in subset):
        raise ValueError(f"frame list {text!r}: expected non-negative indices")
    return subset


def select_frames(
    images: tf.Tensor, frames: int, subset: Sequence[int] | None
) -> tf.Tensor:
    """Reduce `(..., F)` raw stacks to the `frames` channels a model reads.

    An input that already has `frames` channels is used as is; a longer raw
    stack is reduced to `subset`. Anything else fails with a message naming
    both counts (`InvalidArgumentError` in graphs, e.g. TF-Serving).
    """
    have = tf.shape(images)[-1]
    if subset is None:
        tf.debugging.assert_equal(
            have, frames, message=f"the model takes {frames} frame(s); got"
        )
        return tf.ensure_shape(images, images.shape[:-1].concatenate([frames]))
    subset = [int(f) for f in subset]
    needed = max(subset) + 1
    tf.debugging.assert_equal(
        tf.logical_or(tf.equal(have, frames), have >= needed),
        True,
        message=(
            f"the model takes {frames} frame(s), or a raw stack of at least "
            f"{needed} frames from which it uses frames {subset}; wrong frame count"
        ),
    )
    selected = tf.cond(
        tf.equal(have, frames),
        lambda: images,
        lambda: tf.gather(images, subset, axis=-1),
    )
    return tf.ensure_shape(selected, images.shape[:-1].concatenate([frames]))
