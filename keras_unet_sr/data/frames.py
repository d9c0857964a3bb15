"""Choosing the raw frames a model reads (e.g. SIM3 = frames 0, 5, 10 of 15).

One rule, in two twins: `select_frames` (TF ops: training, prediction and the
serving graph) and `check_model_frames` (numpy, before a file is sent
anywhere, so the error names the file). A model reads either exactly its
`frames` channels, or, when it has a `frame_subset`, a longer raw stack from
which it takes those frames, so a SIM3 model takes the full stack the
microscope writes. `take_frames` keeps listed frames of a stack when data is
prepared (`--frames 0,5,10` on paired TIFFs).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from keras_unet_sr.errors import UserError


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


def frames_needed(subset: Sequence[int] | None) -> int | None:
    """The shortest raw stack a subset can be taken from (None: no subset)."""
    return None if subset is None else max(int(f) for f in subset) + 1


def model_reads(have: int, frames: int, subset: Sequence[int] | None) -> bool:
    """Whether a model of `frames` (and `subset`) reads a `have`-frame image."""
    needed = frames_needed(subset)
    return have == frames or (needed is not None and have >= needed)


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
    needed = frames_needed(subset)
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


def check_model_frames(
    image: np.ndarray, frames: int, subset: Sequence[int] | None, path
) -> None:
    """The numpy twin of `select_frames`' check: the model can read `image`
    `(H, W, F)`, or one line naming `path`."""
    have = image.shape[-1]
    if model_reads(have, frames, subset):
        return
    what = "a 2-D image (1 frame)" if have == 1 else f"{have} frames"
    takes = f"{frames} frame(s)" + (
        f", or a raw stack of >= {frames_needed(subset)} frames (it reads frames "
        f"{', '.join(map(str, subset))})"
        if subset
        else ""
    )
    raise UserError(f"{path}: is {what}; the model takes {takes}")


def take_frames(
    image: np.ndarray, subset: Sequence[int] | None, path: str | os.PathLike
) -> np.ndarray:
    """Keep the listed frames of an `(H, W, F)` stack (all when `None`)."""
    if subset is None:
        return image
    available = image.shape[-1]
    missing = [f for f in subset if not -available <= f < available]
    if missing:
        raise UserError(
            f"{path}: has {available} frame(s); cannot select frame(s) {missing}"
        )
    return image[..., list(subset)]
